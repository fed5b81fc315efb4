"""Fused Triton kernels, each beside its plain torch reference.

Imported lazily, so that ``import ebmgraph.kernels`` (or the CLI) does not import triton before
``TRITON_INTERPRET`` is decided.
"""
_EXPORTS = {
    "MLPPredictor": "rollout", "RolloutCost": "rollout", "dispatch": "rollout", "mlp_rollout": "rollout",
    "mlp_rollout_reference": "rollout", "supports": "rollout",
    "PlanResult": "mppi", "plan_cem": "mppi", "plan_mppi": "mppi",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
