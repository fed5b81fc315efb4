"""Core compiler behaviour: collapse analysis, builder, rollouts, parameters, inputs."""
from __future__ import annotations

import pytest
import torch
from conftest import ROOT

import ebmgraph
from ebmgraph import SpecError

S = ROOT / "specs"


@pytest.mark.parametrize("stem,code,collapse", [
    ("fig10a_prediction", "10a", False),
    ("fig10b_generative_latent", "10b", True),
    ("fig10c_autoencoder", "10c", True),
    ("fig10d_joint_embedding", "10d", True),
    ("fig13_jepa_vicreg", "jepa", False),
    ("fig14_jepa_vicreg_expanders", "jepa", False),
    ("fig12_jepa", "jepa", True),
])
def test_collapse_analysis(stem, code, collapse):
    chk = ebmgraph.check(ebmgraph.load(S / f"{stem}.yaml"))
    assert chk.architecture.code == code
    assert chk.architecture.can_collapse is collapse
    warned = [w for w in chk.warnings if "CAN COLLAPSE" in w.message]
    assert bool(warned) is collapse
    for w in warned:  # the warning points at the prediction energy's line
        assert w.loc.line > 0 and w.loc.file.endswith(f"{stem}.yaml")


JEPA = open(S / "fig12_jepa.yaml").read()


def test_collapse_fixes_flip_the_verdict():
    """The same architectures with the paper's remedies: narrow/regularized code, limited latent."""
    ae = open(S / "fig10c_autoencoder.yaml").read()
    narrow = ae.replace("Enc: mlp(8, 32, 8)", "Enc: mlp(8, 32, 3)").replace("Dec: mlp(8, 32, 8)", "Dec: mlp(3, 32, 8)")
    assert not ebmgraph.check(ebmgraph.loads(narrow)).architecture.can_collapse
    gl = open(S / "fig10b_generative_latent.yaml").read()
    reg = gl.replace("  D: sq_dist(y, y_tilde)", "  D: sq_dist(y, y_tilde)\n  R: l1(z)")
    assert not ebmgraph.check(ebmgraph.loads(reg)).architecture.can_collapse
    disc = gl.replace("z: {latent: [4]}", "z: {latent: discrete, values: 3}").replace("Dec: mlp(20", "Dec: mlp(19")
    assert not ebmgraph.check(ebmgraph.loads(disc)).architecture.can_collapse
    # a JEPA latent as wide as s_y with no regularizer can collapse even with VICReg
    wide = open(S / "fig13_jepa_vicreg.yaml").read().replace("z: {latent: [2]}", "z: {latent: [32]}") \
        .replace("Pred: mlp(34", "Pred: mlp(64").replace("  R: 0.1 * l1(z)\n", "")
    rep = ebmgraph.check(ebmgraph.loads(wide)).architecture
    assert rep.can_collapse and any("latent z" in r for r in rep.reasons)


def test_builder_gives_the_same_ir_as_the_file():
    b = (ebmgraph.GraphBuilder("jepa", figure="12",
                               description="Two encoders and a predictor with a regularized latent; "
                                           "E = D(s_y, Pred(s_x, z)) + R(z).")
         .observed("x", [64]).observed("y", [64]).latent("z", [2])
         .module("Enc_x", "mlp(64, 128, 32)").module("Enc_y", "mlp(64, 128, 32)")
         .module("Pred", "mlp(34, 64, 32)").module("R", "l1")
         .function("s_x", "Enc_x(x)").function("s_y", "Enc_y(y)").function("s_y_tilde", "Pred(s_x, z)")
         .energy("D", "sq_dist(s_y, s_y_tilde)").energy("R", "0.1 * R(z)"))
    assert b.build() == ebmgraph.load(S / "fig12_jepa.yaml")
    with pytest.raises(ValueError):
        b.observed("x", [3])


def test_builder_time_indexed_matches_file():
    b = (ebmgraph.GraphBuilder("mode2", figure="4").index("t", "0..T-1").size("T", 5)
         .observed("x", [3]).action("a[t]", [1], bounds=(-2, 2))
         .module("Enc", "mlp(3, 16, 3)").module("Pred", "mlp(4, 32, 3, act=tanh, residual=true)")
         .module("C", "fixed(quadratic(3))")
         .function("s[0]", "Enc(x)").function("s[t+1]", "Pred(s[t], a[t])").energy("cost[t]", "C(s[t+1])"))
    assert b.build() == ebmgraph.load(S / "fig04_mode2.yaml")


def test_recurrence_is_one_rollout_and_sizes_override():
    ebm = ebmgraph.compile(S / "fig04_mode2.yaml", sizes={"T": 9})
    assert [r.state for r in ebm.rollouts] == ["s"] and ebm.rollouts[0].steps == 9
    assert ebm.code.count("rollout(") == 1
    x = ebm.random_inputs(3)
    assert x["a"].shape == (3, 9, 1)
    out = ebm.energy(**x)
    assert out.steps["cost"].shape == (3, 9)
    assert "rollout s: 9 steps of Pred" in ebm.explain()


def test_non_recurrent_self_reference_is_unrolled_and_correct():
    text = """
name: skip
index: {t: 0..T-1}
sizes: {T: 4}
variables:
  x: {observed: [3]}
  a[t]: {action: [3]}
modules:
  P: mlp(9, 8, 3, act=tanh)
functions:
  s[0]: x
  s[t+1]: P(s[t], s[0], a[t])
energy:
  c[t]: sq_dist(s[t+1])
"""
    text = text.replace("  s[0]: x", "  s[0]: identity(x)")
    ebm = ebmgraph.compile(text).double()
    assert not ebm.rollouts and "(unrolled)" in ebm.code
    x = ebm.random_inputs(2, seed=1)
    torch.testing.assert_close(ebm.energy(**x).total, ebm.reference_energy(**x).total)


def test_two_time_scales_and_strided_reads():
    ebm = ebmgraph.compile(S / "fig16_hier_planning.yaml", sizes={"T": 8}).double()
    assert {r.state for r in ebm.rollouts} == {"s", "s2"}
    x = ebm.random_inputs(3, seed=0)
    assert x["a2"].shape == (3, 4, 3)
    torch.testing.assert_close(ebm.energy(**x).total, ebm.reference_energy(**x).total)
    with pytest.raises(SpecError, match="not an integer"):
        ebmgraph.compile(S / "fig16_hier_planning.yaml", sizes={"T": 5})


def test_parameters_are_ordinary_torch_parameters(tmp_path):
    ebm = ebmgraph.compile(S / "fig04_mode2.yaml", seed=0)
    names = {n for n, _ in ebm.named_parameters()}
    assert any(n.startswith("mods.Pred.") for n in names)
    assert not ebm.mods.C.L.requires_grad  # fixed(quadratic(3))
    x = ebm.random_inputs(8, seed=0)
    opt = torch.optim.Adam([p for p in ebm.parameters() if p.requires_grad], lr=1e-3)
    before = ebm.energy(**x).total.mean().item()
    for _ in range(5):
        opt.zero_grad()
        ebm.energy(**x).total.mean().backward()
        opt.step()
    assert ebm.energy(**x).total.mean().item() < before
    # gradients reach the actions (planning by gradient)
    a = x["a"].clone().requires_grad_(True)
    ebm.energy(x=x["x"], a=a).total.sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    # state_dict / safetensors round trip / dtype
    path = tmp_path / "w.safetensors"
    ebm.save(path)
    other = ebmgraph.compile(S / "fig04_mode2.yaml", seed=123).load(path)
    torch.testing.assert_close(other.energy(**x).total, ebm.energy(**x).total)
    d = ebm.double()
    assert d.energy(**x).total.dtype == torch.float64


def test_seeded_initialization():
    a = ebmgraph.compile(S / "fig12_jepa.yaml", seed=7)
    b = ebmgraph.compile(S / "fig12_jepa.yaml", seed=7)
    c = ebmgraph.compile(S / "fig12_jepa.yaml", seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_discrete_values_as_integers_or_one_hot():
    text = """
name: disc
variables:
  x: {observed: [3]}
  k: {latent: discrete, values: 4}
modules:
  P: mlp(7, 8, 3)
  R: discrete(4)
functions:
  y_tilde: P(x, k)
energy:
  D: sq_dist(x, y_tilde)
  R: R(k)
"""
    ebm = ebmgraph.compile(text).double()
    x = ebm.random_inputs(5, seed=0)
    assert x["k"].dtype == torch.int64 and x["k"].shape == (5,)
    onehot = torch.nn.functional.one_hot(x["k"], 4).double()
    torch.testing.assert_close(ebm.energy(x=x["x"], k=x["k"]).total, ebm.energy(x=x["x"], k=onehot).total)
    with pytest.raises(SpecError, match="0..3"):
        ebm.energy(x=x["x"], k=torch.full((5,), 4))


def test_bad_inputs_are_clear_errors():
    ebm = ebmgraph.compile(S / "fig12_jepa.yaml")
    x = ebm.random_inputs(2)
    with pytest.raises(SpecError, match="missing input"):
        ebm.energy(x=x["x"], y=x["y"])
    with pytest.raises(SpecError, match="unknown input"):
        ebm.energy(**x, w=x["z"])
    with pytest.raises(SpecError, match=r"z: expected shape \[B, 2\]"):
        ebm.energy(x=x["x"], y=x["y"], z=torch.zeros(2, 3))
    with pytest.raises(SpecError, match="batch size"):
        ebm.energy(x=x["x"], y=x["y"], z=torch.zeros(3, 2))


def test_show_and_emit_python(capsys):
    from ebmgraph.cli import main

    assert main(["show", str(S / "fig04_mode2.yaml")]) == 0
    out = capsys.readouterr().out
    assert "fn       s[t+1] = Pred(s[t], a[t])    for t" in out
    assert main(["compile", str(S / "fig04_mode2.yaml"), "--emit", "python"]) == 0
    code = capsys.readouterr().out
    assert code.startswith("def forward(self, x, a, W, _R=1):") and "rollout(M.Pred" in code
    assert main(["check", str(S / "fig04_mode2.yaml"), "--json"]) == 0


def test_transformer_gru_conv_modules_compile_and_match_reference():
    text = """
name: zoo
index: {t: 0..T-1}
sizes: {T: 3}
variables:
  img: {observed: [1, 8, 8]}
  seq: {observed: [2, 10]}
  tok: {observed: [4, 8]}
  a[t]: {action: [2]}
modules:
  C2: conv2d(1, 8, 8, 6, channels=4)
  C1: conv1d(2, 10, 6, channels=4)
  G: gru(2, 6)
  Tf: transformer(8, heads=2, ff=16)
  L: linear(12, 8)
functions:
  h[0]: identity(C2(img))
  h[t+1]: G(h[t], a[t])
  q: L(h[T], C1(seq))
  o: Tf(tok, q)
energy:
  D: sq_dist(o, tok)
  H: huber(h[T], C1(seq))
  K: cosine_dist(q, q)
"""
    ebm = ebmgraph.compile(text).double()
    x = ebm.random_inputs(3, seed=0)
    out = ebm.energy(**x)
    torch.testing.assert_close(out.total, ebm.reference_energy(**x).total)
    torch.testing.assert_close(out.terms["K"], torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("text,what", [
    ("name: r\nvariables: {x: {observed: [2]}}\nmodules:\n  train: mlp(2, 4, 1)\nenergy: {E: train(x)}\n",
     "module name train is reserved"),
    ("name: r\nvariables: {weights: {observed: [2]}}\nenergy: {E: l1(weights)}\n", "variable name weights is reserved"),
])
def test_names_that_collide_with_torch_or_the_api_are_spec_errors(text, what):
    with pytest.raises(SpecError, match=what) as e:
        ebmgraph.compile(text)
    assert e.value.loc.line in (2, 4)


def test_names_that_shadow_python_builtins_compile():
    text = """
name: shadow
variables:
  sum: {observed: [2]}
  len: {latent: [2]}
modules:
  list: mlp(4, 4, 2)
functions:
  print: list(sum, len)
energy:
  E: sq_dist(print, sum)
"""
    ebm = ebmgraph.compile(text).double()
    x = ebm.random_inputs(2)
    torch.testing.assert_close(ebm.energy(**x).total, ebm.reference_energy(**x).total)


def test_unordered_targets_and_names_like_loop_temporaries():
    """Targets that are not an increasing run (s[2-t]) with spec variables named p and v."""
    text = """
name: rev
index: {t: 0..2}
variables:
  y[t]: {observed: [2]}
  v: {observed: [2]}
  p: {observed: [2]}
modules:
  F: mlp(2, 8, 2)
functions:
  s[2-t]: F(y[t])
energy:
  E[t]: sq_dist(s[t], v) + sq_dist(s[t], p)
"""
    ebm = ebmgraph.compile(text).double()
    x = ebm.random_inputs(3, seed=0)
    torch.testing.assert_close(ebm.energy(**x).total, ebm.reference_energy(**x).total)


def test_recurrence_that_reads_forward_is_evaluated_in_dependency_order():
    text = """
name: backward
index: {t: 0..2}
variables:
  x: {observed: [2]}
modules:
  G: mlp(2, 8, 2)
  F: mlp(2, 8, 2)
functions:
  s[3]: G(x)
  s[t]: F(s[t+1])
energy:
  E: sq_dist(s[0])
"""
    ebm = ebmgraph.compile(text).double()
    x = ebm.random_inputs(3, seed=0)
    torch.testing.assert_close(ebm.energy(**x).total, ebm.reference_energy(**x).total)


def test_reserved_python_names_cannot_collide_after_renaming():
    text = """
name: clash
variables:
  sum: {observed: [2]}
  sum_: {observed: [2]}
energy:
  E: sq_dist(sum, sum_)
"""
    ebm = ebmgraph.compile(text).double()
    x = ebm.random_inputs(2, seed=0)
    torch.testing.assert_close(ebm.energy(**x).total, ((x["sum"] - x["sum_"]) ** 2).sum(-1).double())


@pytest.mark.parametrize("decl,msg", [
    ("conv1d(2, 10, 6, layers=foo)", "layers='foo' must be an integer"),
    ("conv1d(2, 10, 6, kernel=0)", "kernel=0 must be an odd integer"),
    ("conv1d(2, 10, 6, kernel=2)", "kernel=2 must be an odd integer"),
    ("conv1d(2, 10, 6, kernel=2.5)", "kernel=2.5 must be an odd integer"),
    ("conv1d(2, 10, 6, channels=-1)", "channels=-1 must be an integer"),
    ("mlp(20, 8, 6, residual=maybe)", "residual='maybe' must be true or false"),
    ("mlp(20, 8, 6, act=swish)", "act='swish' must be one of"),
])
def test_bad_module_options_are_spec_errors_with_line(decl, msg):
    text = f"name: o\nvariables:\n  x: {{observed: [2, 10]}}\nmodules:\n  P: {decl}\nenergy:\n  E: sq_dist(P(x))\n"
    with pytest.raises(SpecError, match=msg.replace("(", r"\(")) as e:
        ebmgraph.check(ebmgraph.loads(text, "o.yaml"))
    assert str(e.value).startswith("o.yaml:5:")


@pytest.mark.parametrize("decl", ["huber(delta=0)", "huber(delta=abc)", "gaussian(sigma=0)"])
def test_bad_energy_options_are_spec_errors(decl):
    text = f"name: o\nvariables:\n  x: {{observed: [3]}}\nmodules:\n  D: {decl}\nenergy:\n  E: D(x)\n"
    with pytest.raises(SpecError, match="must be a positive number"):
        ebmgraph.check(ebmgraph.loads(text))


def test_sizes_may_appear_in_target_indices():
    text = """
name: down
sizes: {T: 3}
index: {t: 0..T-1}
variables:
  x: {observed: [2]}
modules:
  G: mlp(2, 4, 2)
functions:
  s[T]: G(x)
  s[T-1-t]: G(s[T-t])
energy:
  E: sq_dist(s[0])
"""
    ebm = ebmgraph.compile(text).double()
    x = ebm.random_inputs(2, seed=0)
    torch.testing.assert_close(ebm.energy(**x).total, ebm.reference_energy(**x).total)


def test_per_sample_scalars_scale_vectors_inside_functions():
    """A [B] weight override and a scalar term times a vector, with B equal to the vector width
    (where a wrong broadcast would silently give [B, B])."""
    text = """
name: scale
weights: {u: 1.0}
variables:
  x: {observed: [3]}
  z: {latent: [3]}
functions:
  h: u * x + l2(z) * z
energy:
  E: sq_dist(h)
"""
    ebm = ebmgraph.compile(text).double()
    x = ebm.random_inputs(3, seed=0)
    u = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64)
    h = u[:, None] * x["x"] + (x["z"] ** 2).sum(-1, keepdim=True) * x["z"]
    want = (h ** 2).sum(-1)
    torch.testing.assert_close(ebm.energy(weights={"u": u}, **x).total, want)
    torch.testing.assert_close(ebm.reference_energy(weights={"u": u}, **x).total, want)
