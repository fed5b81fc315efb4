"""Inference and planning as energy minimization (§3.1.2, §4.2, §4.8, §5).

Public API::

    result = minimize(ebm, observed={"x": x}, over=["z"], method="auto", seed=0)
    F = free_energy(ebm, observed={"x": x, "y": y}, over=["z"], beta=float("inf"))
    plan = MCTS(ebm, observed, over=["a"]); plan.search(200); plan.search(100)  # continues the tree
"""
from .api import METHODS, minimize
from .core import MinimizeResult
from .free_energy import free_energy
from .mcts import MCTS

__all__ = ["MCTS", "METHODS", "MinimizeResult", "free_energy", "minimize"]
