"""Differential fuzzing of the lowering: random valid time-indexed specs (recurrences, maps,
reversed and strided targets, offset reads, weights) must give the same energies and
gradients through the generated code as through the reference interpreter."""
from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ebmgraph


@st.composite
def time_indexed_specs(draw):
    T = draw(st.integers(1, 4))
    b = ebmgraph.GraphBuilder("fuzz").size("T", T).size("K", (T + 1) // 2)
    b.index("t", "0..T-1").index("u", "0..T").index("k", "0..K-1")
    b.observed("x", [2]).action("a[t]", [2]).latent("z", [2])
    if draw(st.booleans()):
        b.weight("w", draw(st.floats(-2, 2, allow_nan=False)))
    weighted = "w" in b._doc.get("weights", {})
    arrays = {"a": T}          # name -> length
    singles = ["x", "z"]
    n_mod = 0

    def module(n_in: int, residual: bool = False) -> str:
        nonlocal n_mod
        n_mod += 1
        act = draw(st.sampled_from(["tanh", "relu", "silu"]))
        b.module(f"M{n_mod}", f"mlp({2 * n_in}, 5, 2, act={act}{', residual=true' if residual else ''})")
        return f"M{n_mod}"

    def pick_array(min_len: int) -> str:
        return draw(st.sampled_from(sorted(n for n, L in arrays.items() if L >= min_len)))

    for i in range(draw(st.integers(1, 4))):
        v = f"v{i}"
        kind = draw(st.sampled_from(["rec", "map", "rev", "stride", "single", "rec_extra", "unrolled"]))
        if kind in ("rec", "rec_extra"):
            src = draw(st.sampled_from(singles))
            b.function(f"{v}[0]", f"{module(1)}({src})")
            arg = pick_array(T)
            extra = f", {draw(st.sampled_from(singles))}" if kind == "rec_extra" else ""
            m = module(2 + bool(extra), residual=draw(st.booleans()))
            b.function(f"{v}[t+1]", f"{m}({v}[t], {arg}[t]{extra})")
            arrays[v] = T + 1
        elif kind == "unrolled":  # reads its own first element too: not a Rollout, element by element
            b.function(f"{v}[0]", f"{module(1)}({draw(st.sampled_from(singles))})")
            b.function(f"{v}[t+1]", f"{module(3)}({v}[t], {pick_array(T)}[t], {v}[0])")
            arrays[v] = T + 1
        elif kind == "map":
            c = draw(st.integers(0, 1)) if max(arrays.values()) > T else 0
            arg = pick_array(T + c)
            b.function(f"{v}[t]", f"{module(1)}({arg}[t+{c}])")
            arrays[v] = T
        elif kind == "rev":
            arg = pick_array(T)
            b.function(f"{v}[T-1-t]", f"{module(1)}({arg}[t])")
            arrays[v] = T
        elif kind == "stride":
            arg = pick_array(T)
            b.function(f"{v}[k]", f"{module(1)}({arg}[2*k])")
            arrays[v] = (T + 1) // 2
        else:
            args = draw(st.lists(st.sampled_from(singles), min_size=1, max_size=2))
            b.function(v, f"{module(len(args))}({', '.join(args)})")
            singles.append(v)
    idx = {T: "t", T + 1: "u", (T + 1) // 2: "k"}
    terms = 0
    for name, L in arrays.items():
        if name == "a":
            continue
        i = idx[L]
        coef = draw(st.sampled_from(["", "0.5 * ", "w * " if weighted else "2 * "]))
        b.energy(f"E{name}[{i}]", f"{coef}sq_dist({name}[{i}])")
        terms += 1
    for name in singles[2:]:
        b.energy(f"E{name}", f"sq_dist({name}, x)")
        terms += 1
    b.energy("Ra[t]", "0.1 * l2(a[t])")
    b.energy("Rz", "l1(z)")
    return b.build()


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(time_indexed_specs())
def test_generated_code_equals_reference_interpreter(g):
    ebm = ebmgraph.compile(g, seed=0).double()
    x = ebm.random_inputs(3, seed=1)
    a = x["a"].clone().requires_grad_(True)
    a_ref = x["a"].clone().requires_grad_(True)
    fast = ebm.energy(**{**x, "a": a})
    ref = ebm.reference_energy(**{**x, "a": a_ref})
    for k in ref.terms:
        torch.testing.assert_close(fast.terms[k], ref.terms[k], rtol=1e-10, atol=1e-10, msg=lambda m: f"{k}: {m}\n{ebm.code}")
    fast.total.sum().backward()
    ref.total.sum().backward()
    torch.testing.assert_close(a.grad, a_ref.grad, rtol=1e-9, atol=1e-10)
