"""Every module kind against an independent formula, from a small spec.

Each test compiles a spec that declares the module with the options under test, and compares
(1) the compiled energy and (2) the module's own output with the formula of tests/helpers.py,
which reads the kind and the options from the spec's declaration (documented defaults written
in the helper) and nothing from the module but its weights. The energy kinds are also checked
on hand-computed numbers. Where a test exercises an option, it also checks that the formula
with a different value of that option gives a clearly different answer on the same inputs,
so the test cannot pass while the option is ignored.
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import ACT, DEFAULTS, FORMULAS, Oracle

import ebmgraph

B = 5
TOL = {"rtol": 1e-10, "atol": 1e-10}


def _spec(decl: str | None, inputs: dict[str, list], energy: str, out: list | None = None) -> str:
    lines = ["name: formula", "variables:"]
    lines += [f"  {n}: {{observed: {list(s)}}}" for n, s in inputs.items()]
    if out is not None:
        lines.append(f"  y: {{observed: {list(out)}}}")
    if decl is not None:
        lines += ["modules:", f"  F: {decl}"]
    lines += ["energy:", f"  E: {energy}"]
    return "\n".join(lines) + "\n"


def _inputs(ebm, seed=0, scale=2.0):
    x = ebm.random_inputs(B, seed=seed)
    return {k: scale * v if v.is_floating_point() else v for k, v in x.items()}


def _perturb(ebm, seed=1, scale=0.3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ebm.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _formula_with(ebm, name, args, xs, **override):
    """The oracle's formula for ``name`` with some options replaced (to show an option matters)."""
    O = Oracle(ebm)
    d = O.decl(name)
    opt = O.options(name)
    opt.update(override)
    with torch.no_grad():
        return FORMULAS[d.kind](args, opt, ebm.mods[name], *xs)


def check_function(decl, inputs, args, out, *, seed=0, perturb=False):
    """Compile ``E: sq_dist(y, F(args))`` and compare with the oracle; return (ebm, x, oracle output)."""
    ebm = ebmgraph.compile(_spec(decl, inputs, f"sq_dist(y, F({', '.join(args)}))", out), seed=seed).double()
    if perturb:
        _perturb(ebm, seed + 1)
    x = _inputs(ebm, seed)
    O = Oracle(ebm)
    with torch.no_grad():
        want = O.F(*[x[a] for a in args])
        got_mod = ebm.mods["F"](*[x[a] for a in args])
        got = ebm.energy(**x).total
    assert want.shape == (B, *out)
    torch.testing.assert_close(got_mod, want, **TOL)
    torch.testing.assert_close(got, ((x["y"] - want) ** 2).reshape(B, -1).sum(1), **TOL)
    return ebm, x, want


def _differs(a, b, by=1e-3):
    return float((a - b).abs().max()) > by


# ----------------------------------------------------------------------------- linear
@pytest.mark.parametrize("bias", [None, True, False])
def test_linear_bias_on_off(bias):
    decl = "linear(5, 3)" if bias is None else f"linear(5, 3, bias={str(bias).lower()})"
    ebm, x, want = check_function(decl, {"a": [2], "b": [3]}, ["a", "b"], [3], perturb=True)
    n_params = sum(p.numel() for p in ebm.mods["F"].parameters())
    assert n_params == 15 + (3 if bias in (None, True) else 0)  # a bias exists exactly when declared
    if bias is not False:
        assert _differs(want, _formula_with(ebm, "F", (5, 3), [x["a"], x["b"]], bias=False))


# ----------------------------------------------------------------------------- mlp
@pytest.mark.parametrize("act", [None, *ACT])
def test_mlp_each_activation(act):
    decl = "mlp(3, 7, 5, 4)" if act is None else f"mlp(3, 7, 5, 4, act={act})"
    ebm, x, want = check_function(decl, {"a": [3]}, ["a"], [4])
    for other in ACT:  # the inputs separate every pair of activations
        if other != (act or DEFAULTS["mlp"]["act"]):
            assert _differs(want, _formula_with(ebm, "F", (3, 7, 5, 4), [x["a"]], act=other)), other


@pytest.mark.parametrize("residual", [None, False, True])
def test_mlp_residual_adds_the_first_argument(residual):
    r = "" if residual is None else f", residual={str(residual).lower()}"
    ebm, x, want = check_function(f"mlp(6, 8, 4, act=tanh{r})", {"s": [4], "a": [2]}, ["s", "a"], [4])
    flipped = _formula_with(ebm, "F", (6, 8, 4), [x["s"], x["a"]], residual=not residual)
    torch.testing.assert_close((want - flipped).abs(), x["s"].abs(), **TOL)  # differ by exactly s


def test_mlp_single_layer_has_no_activation():
    ebm, x, want = check_function("mlp(3, 2, act=sigmoid)", {"a": [3]}, ["a"], [2])
    W, b = list(ebm.mods["F"].parameters())
    torch.testing.assert_close(want, x["a"] @ W.T + b, **TOL)


# ----------------------------------------------------------------------------- convolutions
@pytest.mark.parametrize("kind,args,opts,shape", [
    ("conv1d", (2, 9, 4), "", [2, 9]),
    ("conv1d", (2, 9, 4), "channels=3, layers=1, kernel=5, act=tanh", [2, 9]),
    ("conv1d", (3, 6, 2), "channels=2, layers=3, kernel=1, act=elu", [18]),  # flat input
    ("conv2d", (2, 5, 6, 3), "", [2, 5, 6]),
    ("conv2d", (1, 5, 5, 3), "channels=4, layers=3, kernel=1, act=elu", [25]),  # flat input
    ("conv2d", (2, 4, 5, 2), "channels=3, layers=1, kernel=5, act=gelu", [2, 4, 5]),
])
def test_conv_against_F_conv_with_the_module_weights(kind, args, opts, shape):
    decl = f"{kind}({', '.join(map(str, args))}{', ' + opts if opts else ''})"
    ebm, x, want = check_function(decl, {"a": shape}, ["a"], [args[-1]], perturb=True)
    act = Oracle(ebm).options("F")["act"]
    assert _differs(want, _formula_with(ebm, "F", args, [x["a"]], act="sigmoid" if act != "sigmoid" else "relu"))


def test_conv_defaults_are_the_documented_ones():
    ebm = ebmgraph.compile(_spec("conv1d(2, 9, 4)", {"a": [2, 9]}, "sq_dist(F(a))"), seed=0)
    shapes = [tuple(p.shape) for p in ebm.mods["F"].parameters()]
    # channels=16, layers=2, kernel=3, then a linear head from 16*9 features
    assert shapes == [(16, 2, 3), (16,), (16, 16, 3), (16,), (4, 16 * 9), (4,)]


# ----------------------------------------------------------------------------- gru
@pytest.mark.parametrize("inputs,args", [({"h": [4], "a": [3]}, ["h", "a"]),
                                         ({"h": [4], "a": [2], "b": [3]}, ["h", "a", "b"])])
def test_gru_cell_equations(inputs, args):
    n_in = sum(s[0] for k, s in inputs.items() if k != "h")
    ebm, x, want = check_function(f"gru({n_in}, 4)", inputs, args, [4], perturb=True)
    assert _differs(want, x["h"])


# ----------------------------------------------------------------------------- transformer
@pytest.mark.parametrize("decl,inputs,args", [
    ("transformer(8)", {"x": [3, 8]}, ["x"]),
    ("transformer(8, heads=4, ff=12)", {"x": [4, 8]}, ["x"]),
    ("transformer(6, heads=3)", {"x": [3, 6], "c1": [2], "c2": [3]}, ["x", "c1", "c2"]),
    ("transformer(6, heads=1, ff=5)", {"x": [2, 6], "c": [4]}, ["x", "c"]),
])
def test_transformer_pre_norm_block(decl, inputs, args):
    ebm, x, want = check_function(decl, inputs, args, inputs["x"], perturb=True)
    d = inputs["x"][1]
    xs = [x[a] for a in args]
    heads = Oracle(ebm).options("F")["heads"]
    other = 1 if heads != 1 else 2
    assert _differs(want, _formula_with(ebm, "F", (d,), xs, heads=other))  # heads matter on these inputs
    if len(args) > 1:  # the conditions move every token
        assert _differs(want, _formula_with(ebm, "F", (d,), [x["x"]] + [torch.zeros_like(c) for c in xs[1:]]))


def test_transformer_ff_default_is_4d():
    ebm = ebmgraph.compile(_spec("transformer(8)", {"x": [3, 8]}, "sq_dist(F(x))"), seed=0)
    ff = [p.shape for n, p in ebm.mods["F"].named_parameters() if n.endswith("linear1.weight")]
    assert ff == [torch.Size([32, 8])]


# ----------------------------------------------------------------------------- plumbing
def test_identity_and_concat():
    ebm = ebmgraph.compile(_spec(None, {"a": [3], "b": [2], "y": [5], "w": [3]},
                                 "sq_dist(y, concat(a, b)) + 3 * sq_dist(w, identity(a))"), seed=0).double()
    x = _inputs(ebm)
    want = ((x["y"] - torch.cat([x["a"], x["b"]], 1)) ** 2).sum(1) + 3 * ((x["w"] - x["a"]) ** 2).sum(1)
    torch.testing.assert_close(ebm.energy(**x).total, want, **TOL)
    ebm = ebmgraph.compile(_spec(None, {"a": [3], "b": [2], "y": [5]}, "sq_dist(y, concat(b, a))"), seed=0).double()
    x = _inputs(ebm)
    torch.testing.assert_close(ebm.energy(**x).total, ((x["y"] - torch.cat([x["b"], x["a"]], 1)) ** 2).sum(1), **TOL)


# ----------------------------------------------------------------------------- divergences
D_A = torch.tensor([[1.2, -0.3, 0.7, -2.0], [1.0, 2.0, 0.0, 0.0]], dtype=torch.float64)
D_B = torch.tensor([[1.0, 0.0, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
# row 0: a - b = [0.2, -0.3, 0.7, -2.0]  (|d| on both sides of 0.5 and of 1)
# row 1: a - b = [-1, 1, 0, 0]; cos(a, b) = 4/5


@pytest.mark.parametrize("decl,call,want", [
    (None, "sq_dist(a, b)", [0.04 + 0.09 + 0.49 + 4.0, 2.0]),
    (None, "l1_dist(a, b)", [0.2 + 0.3 + 0.7 + 2.0, 2.0]),
    (None, "cosine_dist(a, b)", [1.0 - (1.2 * 1.0) / (math.sqrt(1.44 + 0.09 + 0.49 + 4.0) * 1.0), 1.0 - 4.0 / 5.0]),
    (None, "huber(a, b)", [0.02 + 0.045 + 0.245 + (2.0 - 0.5), 0.5 + 0.5]),  # delta = 1
    ("huber(delta=0.5)", "F(a, b)", [0.02 + 0.045 + 0.5 * (0.7 - 0.25) + 0.5 * (2.0 - 0.25),
                                     0.5 * (1 - 0.25) * 2]),
    ("huber(delta=3)", "F(a, b)", [0.02 + 0.045 + 0.245 + 2.0, 1.0]),
    (None, "sq_dist(a)", [1.44 + 0.09 + 0.49 + 4.0, 5.0]),
    (None, "l1_dist(a)", [1.2 + 0.3 + 0.7 + 2.0, 3.0]),
    ("huber(delta=0.5)", "F(a)", [0.5 * (1.2 - 0.25) + 0.045 + 0.5 * (0.7 - 0.25) + 0.5 * (2.0 - 0.25),
                                  0.5 * (1 - 0.25) + 0.5 * (2 - 0.25)]),
])
def test_divergences_on_hand_computed_points(decl, call, want):
    ebm = ebmgraph.compile(_spec(decl, {"a": [4], "b": [4]}, call), seed=0).double()
    got = ebm.energy(a=D_A, b=D_B).total
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), **TOL)


@pytest.mark.parametrize("kind,opts", [("sq_dist", ""), ("l1_dist", ""), ("cosine_dist", ""), ("huber", ""),
                                       ("huber", "delta=0.3"), ("huber", "delta=4.5")])
def test_divergences_against_formula_on_distinct_arguments(kind, opts):
    ebm = ebmgraph.compile(_spec(f"{kind}({opts})", {"a": [2, 3], "b": [2, 3]}, "F(a, b)"), seed=0).double()
    x = _inputs(ebm)
    assert not torch.allclose(x["a"], x["b"])
    want = Oracle(ebm).F(x["a"], x["b"])
    torch.testing.assert_close(ebm.energy(**x).total, want, **TOL)
    if kind == "huber":  # points on both sides of delta, and delta changes the answer
        d = (x["a"] - x["b"]).abs()
        delta = Oracle(ebm).options("F")["delta"]
        assert (d < delta).any() and (d > delta).any()
        assert _differs(want, _formula_with(ebm, "F", (), [x["a"], x["b"]], delta=2 * delta))


# ----------------------------------------------------------------------------- quadratic
def _set_quadratic(mod, L, g):
    with torch.no_grad():
        (PL,) = [p for p in mod.parameters() if p.dim() == 2]
        (Pg,) = [p for p in mod.parameters() if p.dim() == 1]
        PL.copy_(torch.as_tensor(L, dtype=PL.dtype))
        Pg.copy_(torch.as_tensor(g, dtype=Pg.dtype))


@pytest.mark.parametrize("call,a,b,want", [
    ("F(a)", [2.0, 0.0], [0.0, 0.0], 1.0),  # a - g = [1, 0] -> Q_00 = 1 (L^T L would give 5)
    ("F(a, b)", [2.0, 0.0], [2.0, -1.0], 5.0),  # a - b = [0, 1] -> Q_11 = 5 (L^T L would give 1; goal unused)
    ("F(a)", [0.0, 3.0], [0.0, 0.0], 1.0 - 2 * 3 * 2.0 + 9 * 5.0),  # a - g = [-1, 3]
])
def test_quadratic_hand_computed(call, a, b, want):
    ebm = ebmgraph.compile(_spec("quadratic(2)", {"a": [2], "b": [2]}, call), seed=0).double()
    _set_quadratic(ebm.mods["F"], [[1.0, 0.0], [2.0, 1.0]], [1.0, 0.0])  # Q = L L^T = [[1, 2], [2, 5]]
    got = ebm.energy(a=torch.tensor([a]), b=torch.tensor([b])).total
    torch.testing.assert_close(got, torch.tensor([want], dtype=torch.float64), **TOL)


@pytest.mark.parametrize("call", ["F(a)", "F(a, b)"])
def test_quadratic_against_formula(call):
    ebm = ebmgraph.compile(_spec("quadratic(3)", {"a": [3], "b": [3]}, call), seed=0).double()
    _perturb(ebm, scale=0.5)  # L non-symmetric, goal non-zero
    x = _inputs(ebm)
    args = [x["a"]] if call == "F(a)" else [x["a"], x["b"]]
    torch.testing.assert_close(ebm.energy(**x).total, Oracle(ebm).F(*args), **TOL)


# ----------------------------------------------------------------------------- regularizers
Z = torch.tensor([[0.5, -1.5, 2.0], [0.0, 0.0, -3.0]], dtype=torch.float64)


@pytest.mark.parametrize("decl,call,want", [
    (None, "l1(z)", [4.0, 3.0]),
    (None, "l2(z)", [6.5, 9.0]),
    (None, "gaussian(z)", [3.25, 4.5]),
    ("gaussian(sigma=2)", "F(z)", [6.5 / 8, 9.0 / 8]),
    ("gaussian(sigma=0.5)", "F(z)", [13.0, 18.0]),
    ("l1", "0.1 * F(z)", [0.4, 0.3]),
])
def test_regularizers_hand_computed(decl, call, want):
    ebm = ebmgraph.compile(_spec(decl, {"z": [3]}, call), seed=0).double()
    torch.testing.assert_close(ebm.energy(z=Z).total, torch.tensor(want, dtype=torch.float64), **TOL)


@pytest.mark.parametrize("decl", ["l1", "l2", "gaussian", "gaussian(sigma=3)"])
def test_regularizers_against_formula(decl):
    ebm = ebmgraph.compile(_spec(decl, {"z": [2, 3]}, "F(z)"), seed=0).double()
    x = _inputs(ebm)
    torch.testing.assert_close(ebm.energy(**x).total, Oracle(ebm).F(x["z"]), **TOL)


@pytest.mark.parametrize("kind", ["discrete", "onehot"])
def test_discrete_prior_is_r_of_k(kind):
    spec = f"name: d\nvariables:\n  k: {{latent: discrete, values: 4}}\nmodules:\n  F: {kind}(4)\nenergy:\n  E: F(k)\n"
    ebm = ebmgraph.compile(spec, seed=0).double()
    r = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=torch.float64)
    with torch.no_grad():
        (p,) = list(ebm.mods["F"].parameters())
        p.copy_(r)
    k = torch.tensor([0, 1, 2, 3, 2])
    torch.testing.assert_close(ebm.energy(k=k).total, r[k], **TOL)
    rows = torch.eye(4, dtype=torch.float64)[[2, 0, 3]]  # one-hot float rows: r . z
    torch.testing.assert_close(ebm.energy(k=rows).total, (rows * r).sum(1), **TOL)
    torch.testing.assert_close(ebm.energy(k=k).total, Oracle(ebm).F(k), **TOL)
