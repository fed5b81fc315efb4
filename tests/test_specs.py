"""Every figure spec: checks, compiles, evaluates, equals a hand-written torch energy,
equals the reference interpreter, and round-trips through YAML.

The hand-written energies take each module's formula from tests/helpers.py's Oracle, which
reads the kind and options (act=, residual=, ...) from the spec's declarations and only the
weights from the module: a module that ignores what the spec declares disagrees with them."""
from __future__ import annotations

import pytest
import torch
from conftest import ROOT, SPECS
from helpers import Oracle, sq

import ebmgraph
from ebmgraph.cli import main

FIGURES = {"3", "4", "5", "6", "7", "8", "9", "10a", "10b", "10c", "10d", "12", "13", "14", "15", "16", "17",
           "18", "19", "20"}


def test_every_figure_has_a_spec():
    figs = {ebmgraph.load(p).figure for p in SPECS}
    assert FIGURES <= figs, f"missing figures: {sorted(FIGURES - figs)}"


def test_cli_check_all_specs_exits_zero(capsys):
    assert main(["check", *map(str, SPECS)]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok") == len(SPECS)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_roundtrip_yaml_ir_yaml_ir(path):
    g = ebmgraph.load(path)
    text = ebmgraph.dumps(g)
    g2 = ebmgraph.loads(text)
    assert g2 == g
    assert ebmgraph.dumps(g2) == text


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_compiled_equals_reference_interpreter(path):
    ebm = ebmgraph.compile(path, seed=1).double()
    x = ebm.random_inputs(5, seed=2)
    fast = ebm.energy(**x)
    ref = ebm.reference_energy(**x)
    assert fast.total.shape == (5,)
    assert set(fast.terms) == {e.name for e in ebm.graph.energies}
    for k in ref.terms:
        torch.testing.assert_close(fast.terms[k], ref.terms[k], rtol=1e-12, atol=1e-12)
    for k, v in fast.steps.items():
        torch.testing.assert_close(v.sum(1), fast.terms[k], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- hand-written energies
def _fig03(M, x):
    s0 = M.Enc(x["x"])
    a = M.A(s0)
    s1 = M.Pred(s0, a)
    return {"C": M.C(s1)}


def _chain(M, s0, a, pred="Pred"):
    s = [s0]
    for t in range(a.shape[1]):
        s.append(getattr(M, pred)(s[-1], a[:, t]))
    return s


def _fig04(M, x):
    s = _chain(M, M.Enc(x["x"]), x["a"])
    return {"cost": sum(M.C(st) for st in s[1:])}


def _fig05(M, x):
    a = x["a_check"]
    s = _chain(M, M.Enc(x["x"]), a)
    return {"cost": sum(M.C(st) for st in s[1:]),
            "D": sum(sq(a[:, t], M.A(s[t])) for t in range(a.shape[1]))}


def _fig06(M, x, w=None):
    w = w or {"u1": 1.0, "u2": 0.5, "v1": 1.0, "v2": 1.0}
    s = x["s"]
    return {"IC": w["u1"] * M.IC1(s) + w["u2"] * M.IC2(s)[:, 0],
            "TC": w["v1"] * M.TC1(s)[:, 0] + w["v2"] * M.TC2(s)[:, 0]}


def _fig07(M, x):
    return {"D": sq(x["ic_future"], M.TC(x["s_tau"]))}


def _fig08(M, x):
    return {"F": M.F(x["x"], x["y"])[:, 0]}


def _fig09(M, x):
    return {"E": M.E(x["x"], x["y"], x["z"])[:, 0]}


def _fig10a(M, x):
    return {"D": sq(x["y"], M.Pred(M.Enc(x["x"])))}


def _fig10b(M, x):
    return {"D": sq(x["y"], M.Dec(M.Enc(x["x"]), x["z"]))}


def _fig10c(M, x):
    return {"D": sq(x["y"], M.Dec(M.Enc(x["y"])))}


def _fig10d(M, x):
    return {"D": sq(M.Enc_x(x["x"]), M.Enc_y(x["y"]))}


def _jepa(M, x):
    s_x, s_y = M.Enc_x(x["x"]), M.Enc_y(x["y"])
    return {"D": sq(s_y, M.Pred(s_x, x["z"])), "R": 0.1 * x["z"].abs().sum(-1)}


def _fig15(M, x):
    X, z1, z2 = x["x"], x["z1"], x["z2"]
    T = X.shape[1]
    s1 = [M.Enc1(X[:, t]) for t in range(T)]
    s2 = [M.Enc2(s1[2 * k]) for k in range(T // 2)]
    return {"D1": sum(sq(s1[u + 1], M.Pred1(s1[u], z1[:, u])) for u in range(T - 1)),
            "D2": sum(sq(s2[j + 1], M.Pred2(s2[j], z2[:, j])) for j in range(T // 2 - 1)),
            "R1": 0.1 * z1.abs().sum((1, 2)), "R2": 0.1 * z2.abs().sum((1, 2))}


def _hier(M, x, z=None, z2=None):
    a, a2 = x["a"], x["a2"]
    T, K = a.shape[1], a2.shape[1]
    s = [M.Enc1(x["x"])]
    for t in range(T):
        s.append(M.Pred1(s[-1], a[:, t], *([z[:, t]] if z is not None else [])))
    s2 = [M.Enc2(s[0])]
    for k in range(K):
        s2.append(M.Pred2(s2[-1], a2[:, k], *([z2[:, k]] if z2 is not None else [])))
    return {"goal": M.C2(s2[K]),
            "subgoal": sum(M.Csub(s[2 * k + 2], a2[:, k])[:, 0] for k in range(K))}


def _fig16(M, x):
    return _hier(M, x)


def _fig17(M, x):
    out = _hier(M, x, x["z"], x["z2"])
    out["R1"] = 0.5 * (x["z"] ** 2).sum((1, 2))
    out["R2"] = 0.5 * (x["z2"] ** 2).sum((1, 2))
    return out


def _fig18(M, x):
    return {"D": sq(x["y"], M.g(x["x"], x["z"])), "R": 0.5 * sq(x["z"])}


def _fig19(M, x):
    s_x = M.Enc(x["x"])
    return {"E": M.E(s_x, x["y"], x["z"])[:, 0], "H": sq(x["z"], M.Enc_z(s_x, x["y"]))}


def _fig20(M, x):
    s_x = M.Enc(x["x"])
    return {"D": sq(x["y"], M.Dec(s_x, x["z"])), "R": 0.1 * x["z"].abs().sum(-1),
            "H": sq(x["z"], M.Enc_z(s_x, x["y"]))}


def _mem_parts(m, N, dk, dv):
    return m[:, :N * dk].reshape(-1, N, dk), m[:, N * dk:N * (dk + dv)].reshape(-1, N, dv), m[:, N * (dk + dv):]


def _mem_coefficients(keys, used, q, gamma):
    """eq. 16–17 slot by slot: c_j = u_j e^{−‖k_j − q‖²} / (γ + Σ_k u_k e^{−‖k_k − q‖²}), u_j = [used_j > 0]."""
    e = [(used[:, j] > 0).double() * torch.exp(-((keys[:, j] - q) ** 2).sum(-1)) for j in range(keys.shape[1])]
    z = gamma + sum(e)
    return [ej / z for ej in e], gamma / z


def _mem_write(m, q, r, N, dk, dv, gamma):
    """eq. 18–20: every slot moves to c_j r + (1 − c_j) v_j; if the unmatched mass exceeds 1/2 the
    first free slot takes (q, r)."""
    keys, vals, used = (t.clone() for t in _mem_parts(m, N, dk, dv))
    c, unmatched = _mem_coefficients(keys, used, q, gamma)
    for j in range(N):
        vals[:, j] = c[j][:, None] * r + (1 - c[j][:, None]) * vals[:, j]
    for b in range(m.shape[0]):
        free = [j for j in range(N) if used[b, j] <= 0]
        if free and unmatched[b] > 0.5:
            keys[b, free[0]], vals[b, free[0]], used[b, free[0]] = q[b], r[b], 1.0
    return torch.cat([keys.flatten(1), vals.flatten(1), used], 1)


def _mem_read(m, q, N, dk, dv, gamma):
    keys, vals, used = _mem_parts(m, N, dk, dv)
    c, _ = _mem_coefficients(keys, used, q, gamma)
    return sum(c[j][:, None] * vals[:, j] for j in range(N))


def _pendulum_g2(s, a):
    """gymnasium's Pendulum-v1 step with g = 2 (3g/2l = 3, 3/ml² = 3, dt = 0.05)."""
    th, thdot = torch.atan2(s[:, 1], s[:, 0]), s[:, 2]
    thdot = (thdot + (3.0 * torch.sin(th) + 3.0 * a[:, 0].clamp(-2, 2)) * 0.05).clamp(-8, 8)
    th = th + thdot * 0.05
    return torch.stack([torch.cos(th), torch.sin(th), thdot], -1)


def _fig02(M, x):
    obs = x["x"]
    m1 = _mem_write(x["m"], 4 * obs[:, 3:4], obs[:, 4:6], 4, 1, 2, 0.1)
    g = _mem_read(m1, x["q_goal"], 4, 1, 2, 0.1)
    s, D, V, U = obs[:, :3], 0, 0, 0
    for t in range(x["a"].shape[1]):
        s = _pendulum_g2(s, x["a"][:, t])
        D = D + sq(s[:, :2], g)
        V = V + 0.05 * s[:, 2] ** 2
        U = U + 0.0005 * (x["a"][:, t] ** 2).sum(-1)
    return {"D": D, "V": V, "U": U}


HAND = {"fig02_memory_goal": _fig02, "fig03_mode1": _fig03, "fig04_mode2": _fig04, "fig05_policy": _fig05, "fig06_cost": _fig06,
        "fig07_critic": _fig07, "fig08_ebm": _fig08, "fig09_lvebm": _fig09, "fig10a_prediction": _fig10a,
        "fig10b_generative_latent": _fig10b, "fig10c_autoencoder": _fig10c, "fig10d_joint_embedding": _fig10d,
        "fig12_jepa": _jepa, "fig13_jepa_vicreg": _jepa, "fig14_jepa_vicreg_expanders": _jepa,
        "fig15_hjepa": _fig15, "fig16_hier_planning": _fig16, "fig17_hier_uncertain": _fig17,
        "fig18_nondeterministic": _fig18, "fig19_amortized": _fig19, "fig20_amortized_generative": _fig20}


def test_every_spec_has_a_hand_written_energy():
    assert {p.stem for p in SPECS} <= set(HAND)


@pytest.mark.parametrize("stem", sorted(HAND))
def test_energy_matches_hand_written_torch(stem):
    path = ROOT / "specs" / f"{stem}.yaml"
    ebm = ebmgraph.compile(path, seed=3).double()
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():  # every parameter moved off its init: quadratic forms get a non-trivial Q and goal
        for p in ebm.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x = ebm.random_inputs(6, seed=5)
    x = {k: 2 * v if v.is_floating_point() and not getattr(ebm.graph.var(k).domain, "bounded", True) else v
         for k, v in x.items()}  # reach the activations' curved parts (bounded inputs stay in their box)
    got = ebm.energy(**x)
    want = HAND[stem](Oracle(ebm), {k: v.double() for k, v in x.items()})
    assert set(want) == set(got.terms)
    for k in want:
        torch.testing.assert_close(got.terms[k], want[k], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got.total, sum(want.values()), rtol=1e-10, atol=1e-10)


def test_configurator_weights_change_energy_without_retraining():
    ebm = ebmgraph.compile(ROOT / "specs/fig06_cost.yaml").double()
    x = ebm.random_inputs(4, seed=0)
    w = {"u1": 0.3, "u2": 2.0, "v1": 0.0, "v2": -1.0}
    want = _fig06(Oracle(ebm), x, w)
    per_call = ebm.energy(weights=w, **x)
    ebm.set_weights(**w)
    persistent = ebm.energy(**x)
    for k in want:
        torch.testing.assert_close(per_call.terms[k], want[k])
        torch.testing.assert_close(persistent.terms[k], want[k])
    with pytest.raises(KeyError):
        ebm.set_weights(nope=1.0)
