"""Associative world-state memory (§3.3, §4.9, eq. 15–20) against hand computations, gradcheck,
allocation, and clear errors; the short-term memory's discounted targets (Figure 7)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ROOT

import ebmgraph
from ebmgraph.agent.memory import ShortTermMemory
from ebmgraph.modules import MemoryRead, MemoryWrite

N, DK, DV, GAMMA = 4, 2, 3, 0.5
F64 = torch.float64


def _memory(B=3, used=(1, 1, 0, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(B, N, DK, generator=g, dtype=F64)
    vals = torch.randn(B, N, DV, generator=g, dtype=F64)
    u = torch.tensor(used, dtype=F64).expand(B, N)
    return keys, vals, u, torch.cat([keys.flatten(1), vals.flatten(1), u], 1)


def _hand_coefficients(keys, u, q):
    """eq. 16–17 written out: c̃_j = −‖k_j − q‖², c_j = u_j e^{c̃_j} / (γ + Σ_k u_k e^{c̃_k})."""
    B = keys.shape[0]
    c = np.zeros((B, N))
    unmatched = np.zeros(B)
    for b in range(B):
        e = [float(u[b, j]) * math.exp(-float(((keys[b, j] - q[b]) ** 2).sum())) for j in range(N)]
        z = GAMMA + sum(e)
        c[b] = [x / z for x in e]
        unmatched[b] = GAMMA / z
    return c, unmatched


def test_read_is_eq_15_to_17_by_hand():
    keys, vals, u, m = _memory()
    q = torch.randn(3, DK, generator=torch.Generator().manual_seed(1), dtype=F64) * 0.7
    got = MemoryRead(N, DK, DV, GAMMA)(m, q)
    c, _ = _hand_coefficients(keys, u, q)
    want = np.einsum("bn,bnd->bd", c, vals.numpy())
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-14)
    # the free slot (used = 0) contributes nothing, whatever it holds
    vals2 = vals.clone()
    vals2[:, 2] = 1e6
    m2 = torch.cat([keys.flatten(1), vals2.flatten(1), u], 1)
    torch.testing.assert_close(MemoryRead(N, DK, DV, GAMMA)(m2, q), got)


def test_write_updates_existing_entries_by_eq_20():
    keys, vals, u, m = _memory(used=(1, 1, 1, 1))  # full: nothing to allocate
    q = keys[:, 1] + 0.1  # close to slot 1
    r = torch.randn(3, DV, generator=torch.Generator().manual_seed(2), dtype=F64)
    out = MemoryWrite(N, DK, DV, GAMMA)(m, q, r)
    c, _ = _hand_coefficients(keys, u, q)
    want_vals = c[..., None] * r.numpy()[:, None, :] + (1 - c[..., None]) * vals.numpy()  # Update(r, v, c)
    k2, v2, u2 = MemoryWrite(N, DK, DV, GAMMA).split(out)
    np.testing.assert_allclose(v2.numpy(), want_vals, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(k2, keys)  # keys stay
    torch.testing.assert_close(u2, u)


def test_write_allocates_a_new_slot_when_no_key_matches():
    W, R = MemoryWrite(N, DK, DV, GAMMA), MemoryRead(N, DK, DV, GAMMA)
    empty = torch.zeros(1, N * (DK + DV + 1), dtype=F64)
    a, b = torch.tensor([[0.0, 0.0]], dtype=F64), torch.tensor([[4.0, -3.0]], dtype=F64)
    ra, rb = torch.tensor([[1.0, 2.0, 3.0]], dtype=F64), torch.tensor([[-1.0, 0.0, 5.0]], dtype=F64)
    m = W(W(empty, a, ra), b, rb)  # two distant addresses: two slots
    k, v, u = W.split(m)
    assert u.tolist() == [[1.0, 1.0, 0.0, 0.0]]
    torch.testing.assert_close(k[0, :2], torch.cat([a, b]))
    torch.testing.assert_close(v[0, 1], rb[0])
    # reading at a stored key returns its value scaled by 1 / (1 + γ) (the other key is 25 away)
    torch.testing.assert_close(R(m, a), ra / (1 + GAMMA), rtol=1e-9, atol=1e-9)
    # writing again at a matching address updates that slot instead of allocating
    m2 = W(m, a + 0.01, torch.zeros(1, DV, dtype=F64))
    assert W.split(m2)[2].tolist() == [[1.0, 1.0, 0.0, 0.0]]
    c = 1 * math.exp(-2e-4) / (GAMMA + math.exp(-2e-4) + math.exp(-((4.01) ** 2 + 3.01**2)))
    torch.testing.assert_close(W.split(m2)[1][0, 0], (1 - c) * ra[0], rtol=1e-9, atol=1e-12)
    # a full memory allocates nothing
    full = m
    for i in range(2, 6):
        full = W(full, torch.tensor([[10.0 * i, 0.0]], dtype=F64), rb)
    assert W.split(full)[2].tolist() == [[1.0, 1.0, 1.0, 1.0]]


def test_gradcheck_through_a_read_and_a_write():
    _, _, _, m = _memory(B=2)
    m = m.clone().requires_grad_(True)
    q = (torch.randn(2, DK, dtype=F64) * 0.5).requires_grad_(True)
    r = torch.randn(2, DV, dtype=F64).requires_grad_(True)
    used = m.detach()[:, -N:].clone()  # not a view: gradcheck perturbs m in place

    def read(mm, qq):  # the used flags are a state, not a parameter: keep them fixed
        return MemoryRead(N, DK, DV, GAMMA)(torch.cat([mm[:, :-N], used], 1), qq)

    def write(mm, qq, rr):
        out = MemoryWrite(N, DK, DV, GAMMA)(torch.cat([mm[:, :-N], used], 1), qq, rr)
        return out[:, :-N]

    assert torch.autograd.gradcheck(read, (m, q))
    assert torch.autograd.gradcheck(write, (m, q, r))


def test_bad_memory_use_is_a_clear_error():
    with pytest.raises(ValueError, match="read from an empty memory"):
        MemoryRead(N, DK, DV, GAMMA)(torch.zeros(2, N * (DK + DV + 1)), torch.zeros(2, DK))
    spec = (ROOT / "examples" / "specs" / "memory_goal.yaml").read_text()
    with pytest.raises(ebmgraph.SpecError, match="option gamma=-1 must be a positive number"):
        ebmgraph.compile(spec.replace("gamma=0.5)\n  Read", "gamma=-1)\n  Read"))
    with pytest.raises(ebmgraph.SpecError, match=r"mem_read\(4, 2, 3\) is called as \(m, q\) with m \[24\]"):
        ebmgraph.compile(spec.replace("g: Read(m1, key)", "g: Read(m1, cue)"))


def test_memory_spec_remembers_the_cue():
    ebm = ebmgraph.compile(ROOT / "examples" / "specs" / "memory_goal.yaml").double()
    B = 2
    cue = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]], dtype=F64)
    x = cue[:, None].expand(B, 3, 3) / (1 + 0.5)  # what the memory returns for its only entry
    out = ebm.energy(m0=torch.zeros(B, 24, dtype=F64), cue=cue, key=torch.ones(B, 2, dtype=F64), x=x)
    torch.testing.assert_close(out.total, torch.zeros(B, dtype=F64), atol=1e-12, rtol=0)
    ref = ebm.reference_energy(m0=torch.zeros(B, 24, dtype=F64), cue=cue, key=torch.ones(B, 2, dtype=F64), x=x + 1)
    torch.testing.assert_close(ref.total, torch.full((B,), 9.0, dtype=F64))


def test_short_term_memory_targets_are_discounted_future_costs():
    mem = ShortTermMemory()
    mem.add(np.arange(8, dtype=np.float32).reshape(4, 2), [1.0, 2.0, 3.0, 4.0])
    mem.add(np.zeros((2, 2), np.float32), [5.0, 6.0])
    t = mem.targets(0.5)
    want = [1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4, 2 + 0.5 * 3 + 0.25 * 4, 3 + 0.5 * 4, 4, 5 + 0.5 * 6, 6]
    np.testing.assert_allclose(t["ic_future"][:, 0], want)
    assert t["tau"].tolist() == [0, 1, 2, 3, 0, 1] and t["episode"].tolist() == [0, 0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="gamma must lie in"):
        mem.targets(1.0)
    with pytest.raises(ValueError, match="memory is empty"):
        ShortTermMemory().targets(0.9)
