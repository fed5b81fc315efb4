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
from .render import repr_mimebundle as _repr_mimebundle
from .spec import dumps, load, loads, save
from .version import __version__

# Notebook display hooks, attached from the top floor so that the IR and the compiled model
# never import the renderer (imports point down the pipeline only).
Graph._repr_mimebundle_ = CompiledEBM._repr_mimebundle_ = (
    lambda self, include=None, exclude=None: _repr_mimebundle(self))

__all__ = [
    "CompiledEBM", "Checked", "EnergyResult", "Graph", "GraphBuilder", "Loc", "MCTS", "MinimizeResult",
    "SpecError", "SpecErrors", "check", "compile", "dumps", "free_energy", "load", "loads", "minimize", "pretty",
    "save", "__version__",
]
