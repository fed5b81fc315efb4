"""ebmgraph: a graph-based energy-model compiler for the architectures of
LeCun's "A Path Towards Autonomous Machine Intelligence" (2022).

Public API (everything else is private)::

    graph = ebmgraph.load("specs/fig12_jepa.yaml")   # spec -> IR
    chk = ebmgraph.check(graph)                        # names, shapes, collapse analysis
    ebm = ebmgraph.compile("specs/fig12_jepa.yaml")    # -> torch.nn.Module
    ebm.energy(x=..., y=..., z=...)                    # total [B] and per-term breakdown
"""
from .builder import GraphBuilder
from .check import Checked, check
from .compiled import CompiledEBM, EnergyResult, compile
from .errors import Loc, SpecError, SpecErrors
from .infer import MCTS, MinimizeResult, free_energy, minimize
from .ir import Graph, pretty
from .spec import dumps, load, loads, save

__version__ = "0.1.0"

__all__ = [
    "CompiledEBM", "Checked", "EnergyResult", "Graph", "GraphBuilder", "Loc", "MCTS", "MinimizeResult",
    "SpecError", "SpecErrors", "check", "compile", "dumps", "free_energy", "load", "loads", "minimize", "pretty",
    "save", "__version__",
]
