"""Intermediate values of a compiled spec, and the free energy with training's inference settings.

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


def training_free_energy(ebm, inputs: dict, *, steps: int = 30, lr: float = 0.1,
                         seed: int | torch.Generator = 0, return_z: bool = False, penalty=None):
    """F(x, y) = min_z E(x, y, z) (§4.2, eq. 4) with the inference settings training uses.

    The one free energy is :func:`ebmgraph.infer.free_energy` (through ``minimize``, with the
    envelope-theorem gradient ``∂E/∂w`` at the minimizer); this picks training's settings:
    Adam at a fixed step ``lr`` for ``steps`` iterations from zero for continuous latents,
    exact enumeration for discrete ones.

    Args:
        ebm: a compiled spec.
        inputs: every non-latent variable ``[B, *shape]``.
        penalty: optional ``f({latent: z}) -> [B]`` added while inferring (e.g. the information
            cost of a noisy latent); not part of the result.

    Returns:
        total energy at the minimizer ``[B]`` (and ``{latent: z* [B, *shape]}`` when ``return_z``).
    """
    from ..infer import free_energy

    over = [v.name for v in latents(ebm) if v.name not in inputs]
    if not over:
        e = ebm.energy(**inputs).total
        return (e, {}) if return_z else e
    continuous = [n for n in over if not isinstance(ebm.graph.var(n).domain, ir.Discrete)]
    settings = dict(method="gradient", optimizer="adam", steps=steps, lr=lr, schedule="none") \
        if len(continuous) == len(over) else {}
    gen = {"generator": seed} if isinstance(seed, torch.Generator) else {"seed": int(seed)}
    return free_energy(ebm, inputs, over, penalty=penalty, return_values=return_z, **gen, **settings)
