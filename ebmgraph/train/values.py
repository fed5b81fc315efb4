"""Intermediate values of a compiled spec, and the free energy with training's inference settings.

The regularized losses of §4.5 (VICReg, Barlow Twins, latent limits) and the collapse
monitors need the representations themselves (s_x, s_y, the expander outputs v_x, v_y):
the generated code returns them on request (``ebm.evaluate(inputs, outputs=[...])``), and
training reads them from the same forward that computed the energy.
"""
from __future__ import annotations

import torch

from .. import ir


def values(ebm, names, **inputs) -> dict[str, torch.Tensor]:
    """Evaluate named variables (inputs or function outputs) of a compiled spec.

    Only the functions the requested names depend on are evaluated, by the generated code
    (``ebm.evaluate(inputs, outputs=names)``).

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
    names = [names] if isinstance(names, str) else list(names)
    return ebm.evaluate(inputs, outputs=names)


def latents(ebm) -> list[ir.Var]:
    """Latent variables of a spec (the ones a free energy minimizes over, eq. 4–5)."""
    return [v for v in ebm.variables if v.role == "latent"]


def training_free_energy(ebm, inputs: dict, *, steps: int = 30, lr: float = 0.1,
                         seed: int | torch.Generator = 0, return_z: bool = False, penalty=None, outputs=None,
                         weights: dict | None = None):
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
        outputs: named values (``ebm.evaluate(..., outputs=)``) from the forward that computes the energy.
        weights: overrides of the spec's symbolic weights ``{name: number}`` for this free energy, the
            minimization and the energy returned alike (amortized inference: the encoder term off, Fig. 20);
            the model's own weights are never changed. Unknown names are refused.

    Returns:
        total energy at the minimizer ``[B]`` (and ``{latent: z* [B, *shape]}`` when ``return_z``);
        with ``outputs``, ``(energy, z*, values)``.
    """
    from ..infer import free_energy
    from ..infer.core import check_weights

    weights = check_weights(ebm, weights) or None
    over = [v.name for v in latents(ebm) if v.name not in inputs]
    if not over:
        if outputs is not None:
            out = ebm.evaluate(inputs, outputs=list(outputs), energy=True, weights=weights)
            return out.total, {}, out.values
        e = ebm.energy(weights, **inputs).total
        return (e, {}) if return_z else e
    continuous = [n for n in over if not isinstance(ebm.graph.var(n).domain, ir.Discrete)]
    settings = dict(method="gradient", optimizer="adam", steps=steps, lr=lr, schedule="none") \
        if len(continuous) == len(over) else {}
    gen = {"generator": seed} if isinstance(seed, torch.Generator) else {"seed": int(seed)}
    if weights is None:
        return free_energy(ebm, inputs, over, penalty=penalty, return_values=return_z, outputs=outputs, **gen,
                           **settings)
    # free_energy's envelope re-evaluation reads the model's own weights: minimize under the overrides without
    # it, then evaluate F (and the outputs) at the detached minimizer under the same overrides
    with torch.no_grad():
        F, z = free_energy(ebm, inputs, over, penalty=penalty, return_values=True, weights=weights, **gen, **settings)
    if outputs is not None:
        out = ebm.evaluate({**inputs, **z}, outputs=list(outputs), energy=True, weights=weights)
        return out.total, z, out.values
    if torch.is_grad_enabled() and any(p.requires_grad for p in ebm.parameters()):
        F = ebm.energy(weights, **inputs, **z).total  # envelope theorem: the gradient at fixed z*
    return (F, z) if return_z else F
