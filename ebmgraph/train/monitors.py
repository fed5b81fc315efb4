"""Collapse monitors (§4.5, Fig. 10): per-dimension spread and effective rank of each
representation, and the energy gap between data and contrastive samples."""
from __future__ import annotations

import torch

from ..elements import ancestors_of
from .values import latents, values


def effective_rank(z: torch.Tensor, eps: float = 1e-12) -> float:
    """exp of the entropy of the normalized singular values of ``z`` ``[N, D]`` (RankMe).

    Not centred, as in RankMe: a representation that collapsed to one constant vector has
    rank 1, and one that collapsed to zero has rank 0.
    """
    z = z.detach().double().reshape(z.shape[0], -1)
    s = torch.linalg.svdvals(z)
    if float(s.sum()) <= 1e-8 * max(1.0, z.shape[0] * z.shape[1]) ** 0.5:
        return 0.0
    p = s / s.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))


def spread(z: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension standard deviation over the batch."""
    return float(z.detach().reshape(z.shape[0], -1).std(0).mean())


def representation_names(ebm) -> list[str]:
    """Vector-valued function outputs (encoders, expanders, predictions) that need no latent."""
    chk = ebm.checked
    lat = {v.name for v in latents(ebm)}
    out = []
    for f in ebm.graph.functions:
        n = f.target.name
        if n in chk.lengths or len(chk.shapes.get(n, ())) != 1 or n in out:
            continue
        anc = {a for a, _ in ancestors_of(chk.elements, [(n, 0)])}
        if anc & lat:
            continue
        out.append(n)
    return out


def collapse_report(ebm, batch: dict, names: list[str] | None = None) -> dict[str, float]:
    """``{"<rep>.std": ..., "<rep>.rank": ...}`` for each representation on ``batch``."""
    names = representation_names(ebm) if names is None else names
    if not names:
        return {}
    leaf = {v.name for v in ebm.variables if v.role != "latent"}
    with torch.no_grad():
        vals = values(ebm, names, **{k: v for k, v in batch.items() if k in leaf})
    out = {}
    for n, z in vals.items():
        out[f"{n}.std"] = spread(z)
        out[f"{n}.rank"] = effective_rank(z)
        out[f"{n}.dim"] = float(z.shape[-1])
    return out


def energy_gap(loss, batch: dict, gen: torch.Generator) -> dict[str, float]:
    """Mean F on contrastive samples minus mean F on data (≤ 0 means a flat or inverted landscape)."""
    neg = loss.negatives(batch, gen)
    with torch.no_grad():
        ep = loss.F(batch)
    if neg is None:
        return {"E_data": float(ep.mean())}
    with torch.no_grad():
        en = loss.F(batch, neg)
    return {"E_data": float(ep.mean()), "E_contrast": float(en.mean()), "gap": float(en.mean() - ep.mean())}
