"""Intermediate values of a compiled spec, and free energies with latents eliminated.

The generated forward of a :class:`~ebmgraph.CompiledEBM` returns energies only; the
regularized losses of §4.5 (VICReg, Barlow Twins, latent limits) and the collapse
monitors need the representations themselves (s_x, s_y, the expander outputs v_x,
v_y). :func:`values` evaluates named variables by walking the checked graph in
dependency order, the way the reference interpreter (``ebmgraph/interp.py``) does.
"""
from __future__ import annotations

import networkx as nx
import torch

from .. import ir
from ..interp import evaluate_elements


def values(ebm, names, **inputs) -> dict[str, torch.Tensor]:
    """Evaluate named variables (inputs or function outputs) of a compiled spec.

    Only the functions the requested names depend on are evaluated.

    Args:
        ebm: a :class:`~ebmgraph.CompiledEBM`.
        names: variable names, e.g. ``["s_x", "v_y"]``.
        **inputs: the spec's leaf variables ``[B, *shape]`` (only those the requested
            names depend on are needed).

    Returns:
        ``{name: [B, *shape]}``; array variables come back stacked ``[B, L, *shape]``.

    Example:
        >>> import ebmgraph, torch
        >>> ebm = ebmgraph.compile("specs/fig12_jepa.yaml", seed=0)
        >>> values(ebm, ["s_x"], x=torch.zeros(3, 64))["s_x"].shape
        torch.Size([3, 32])
    """
    chk, g = ebm.checked, ebm.graph
    names = [names] if isinstance(names, str) else list(names)
    env: dict[tuple[str, int], torch.Tensor] = {}
    leaf = {v.name: v for v in g.variables}
    for k, x in inputs.items():
        if k not in leaf:
            raise KeyError(f"{k!r} is not an input of {g.name}; inputs: {sorted(leaf)}")
        x = torch.as_tensor(x)
        if isinstance(leaf[k].domain, ir.Discrete) and not x.is_floating_point():
            x = torch.nn.functional.one_hot(x.long(), leaf[k].domain.K)
        x = x.to(device=ebm.device, dtype=ebm.dtype)
        if k in chk.lengths:
            for p in range(chk.lengths[k]):
                env[(k, p)] = x[:, p]
        else:
            env[(k, 0)] = x
    wanted = {n for n in chk.elements.nodes if n[0] in names}
    if not wanted:
        raise KeyError(f"no variable named {names} in {g.name}")
    need = set(wanted)
    for n in wanted:
        need |= nx.ancestors(chk.elements, n)
    evaluate_elements(chk, ebm.mods, env, ebm.weights(), need)
    out = {}
    for n in names:
        if n in chk.lengths:
            out[n] = torch.stack([env[(n, p)] for p in range(chk.lengths[n])], 1)
        else:
            out[n] = env[(n, 0)]
    return out


def latents(ebm) -> list[ir.Var]:
    """Latent variables of a spec (the ones a free energy minimizes over, eq. 4–5)."""
    return [v for v in ebm.variables if v.role == "latent"]


def free_energy(ebm, inputs: dict, *, steps: int = 30, lr: float = 0.1, restarts: int = 1,
                seed: int | torch.Generator = 0, return_z: bool = False, penalty=None):
    """F(x, y) = min_z E(x, y, z) (§4.2, eq. 4), differentiable in the parameters.

    Discrete latents (one at most per spec here) are searched exhaustively over their K
    values; continuous latents are minimized with Adam from zero (plus ``restarts - 1``
    Gaussian starts) and the energy is re-evaluated at the detached minimizer, so the
    gradient reaching the parameters is the envelope-theorem gradient ∂E/∂w at z*.

    Args:
        ebm: a compiled spec.
        inputs: every non-latent variable ``[B, *shape]``.
        penalty: optional ``f({latent: z}) -> [B]`` added to the energy while inferring the
            continuous latents (e.g. the information cost of a noisy latent); not part of the result.

    Returns:
        total energy at the minimizer ``[B]`` (and ``{latent: z* [B, *shape]}`` when
        ``return_z``).
    """
    from ..util import as_generator

    lat = [v for v in latents(ebm) if v.name not in inputs]
    B = next(iter(inputs.values())).shape[0]
    if not lat:
        e = ebm.energy(**inputs).total
        return (e, {}) if return_z else e
    disc = [v for v in lat if isinstance(v.domain, ir.Discrete)]
    cont = [v for v in lat if not isinstance(v.domain, ir.Discrete)]
    if disc and (len(disc) > 1 or cont or disc[0].name in ebm.checked.lengths):
        raise NotImplementedError("free_energy: one non-array discrete latent, or continuous latents only")
    if disc:
        v = disc[0]
        K = v.domain.K
        rep = {k: x.repeat_interleave(K, 0) for k, x in inputs.items()}
        zk = torch.arange(K, device=ebm.device).repeat(B)
        E = ebm.energy(**rep, **{v.name: zk}).total.view(B, K)
        best = E.argmin(1)
        e = E.gather(1, best[:, None]).squeeze(1)
        return (e, {v.name: best}) if return_z else e
    gen = as_generator(seed)
    best_e, best_z = None, None
    for r in range(restarts):
        zs = {}
        for v in cont:
            shape = (B,) + ebm.var_shape(v.name)
            z0 = torch.zeros(shape) if r == 0 else torch.randn(shape, generator=gen)
            zs[v.name] = z0.to(ebm.device, ebm.dtype).requires_grad_(True)
        opt = torch.optim.Adam(list(zs.values()), lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad()
                e = ebm.energy(**{k: x.detach() for k, x in inputs.items()}, **zs).total
                if penalty is not None:
                    e = e + penalty(zs)
                gz = torch.autograd.grad(e.sum(), list(zs.values()))
                for z, gzi in zip(zs.values(), gz):
                    z.grad = gzi
                opt.step()
                with torch.no_grad():
                    for v in cont:
                        lo, hi = v.domain.lo, v.domain.hi
                        if lo is not None or hi is not None:
                            zs[v.name].clamp_(min=lo, max=hi)
        with torch.no_grad():
            e = ebm.energy(**inputs, **zs).total + (penalty(zs) if penalty is not None else 0.0)
        if best_e is None:
            best_e, best_z = e, {k: z.detach().clone() for k, z in zs.items()}
        else:
            better = e < best_e
            best_e = torch.where(better, e, best_e)
            for k in best_z:
                m = better.view(-1, *[1] * (best_z[k].dim() - 1))
                best_z[k] = torch.where(m, zs[k].detach(), best_z[k])
    e = ebm.energy(**inputs, **best_z).total
    return (e, best_z) if return_z else e
