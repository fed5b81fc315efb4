"""Sampled latents: draws from the Gibbs distribution of their regularizer, ``P(z) ∝ exp(−R(z))`` (eq. 23).

Used by the risk objective (Figure 17, ``infer/objectives.py``) and by MCTS chance nodes.
"""
from __future__ import annotations

import torch

from .. import ir
from ..elements import ancestors_of
from ..errors import SpecError


def prior_terms(ebm, sample) -> list[str]:
    """The energy terms that read only sampled latents: their regularizers R(z), whose Gibbs
    distribution the draws come from (eq. 23)."""
    G = ebm.checked.elements
    names = {x.name for x in ebm.graph.variables}
    reads: dict[str, set] = {}
    for node in G.nodes:
        if isinstance(node[0], str) and node[0].startswith("energy:"):
            reads.setdefault(node[0][7:], set()).update(a[0] for a in ancestors_of(G, [node]) if a[0] in names)
    return [t for t, vs in reads.items() if vs and vs <= set(sample)]


def gibbs_energy(ebm, name: str, dtype, device) -> torch.Tensor:
    """``R(k)`` ``[K]``: the energy terms that read only the discrete latent ``name``, at each value."""
    v = ebm.graph.var(name)
    if v.index is not None:
        raise SpecError(f"sampled discrete arrays are not supported ({name}[t]); declare one value per step")
    own = prior_terms(ebm, [name])
    K = v.domain.K
    if not own:
        return torch.zeros(K, dtype=dtype, device=device)
    inputs = {}
    for x in ebm.graph.variables:
        shp = ebm.var_shape(x.name)
        if isinstance(x.domain, ir.Discrete):
            inputs[x.name] = torch.zeros((K,) + shp[:-1], dtype=torch.long, device=device)
        else:
            inputs[x.name] = torch.zeros((K,) + shp, dtype=dtype, device=device)
    inputs[name] = torch.arange(K, device=device)
    with torch.no_grad():
        out = ebm.evaluate(inputs, validate=False)
    return sum(out.terms[t] for t in own)


def gibbs_draws(ebm, name: str, n: int, gen: torch.Generator, dtype, device) -> torch.Tensor:
    """``n`` draws of a sampled latent from ``P(z) ∝ exp(−R(z))`` (eq. 23).

    Discrete: R is the sum of the energy terms that read only ``z``, evaluated at each of
    the K values. Continuous: a standard normal (the Gibbs distribution of ``gaussian``
    with σ=1, and the proposal we state for other regularizers).
    """
    v = ebm.graph.var(name)
    shape = ebm.var_shape(name)
    if isinstance(v.domain, ir.Discrete):
        R = gibbs_energy(ebm, name, dtype, device)
        p = torch.softmax(-R.double().cpu(), 0)
        return torch.multinomial(p, n, replacement=True, generator=gen).to(device)
    return torch.randn((n,) + shape, generator=gen, dtype=dtype).to(device)
