"""The agent of Figure 2, assembled from compiled parts: Mode-2 planning (§3.1.2) against
real environments. It sits above ``infer`` and ``train``; only the CLI and the demo import it.
"""
from .mpc import shift_plan

__all__ = ["shift_plan"]
