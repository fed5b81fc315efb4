"""Build a graph from Python with the same vocabulary as a spec file.

>>> b = GraphBuilder("ebm", figure="8")
>>> b.observed("x", [3]).observed("y", [3])
GraphBuilder('ebm')
>>> b.module("F", "mlp(6, 16, 1)").energy("F", "F(x, y)").build().name
'ebm'

The builder assembles the same document a YAML spec holds and parses it through the
same path, so a builder and a file that say the same thing give equal IRs.
"""
from __future__ import annotations

import yaml

from .ir import Graph


class GraphBuilder:
    def __init__(self, name: str, *, figure: str = "", description: str = ""):
        self._doc: dict = {"name": name}
        if figure:
            self._doc["figure"] = str(figure)
        if description:
            self._doc["description"] = description

    def __repr__(self) -> str:
        return f"GraphBuilder({self._doc['name']!r})"

    def _put(self, section: str, key: str, value) -> "GraphBuilder":
        sec = self._doc.setdefault(section, {})
        if key in sec:
            raise ValueError(f"{key} is already bound in {section}")
        sec[key] = value
        return self

    def index(self, name: str, rng: str) -> "GraphBuilder":
        """``b.index("t", "0..T-1")``"""
        return self._put("index", name, rng)

    def size(self, name: str, value: int) -> "GraphBuilder":
        return self._put("sizes", name, int(value))

    def weight(self, name: str, value: float) -> "GraphBuilder":
        return self._put("weights", name, float(value))

    def task(self, name: str, **weights: float) -> "GraphBuilder":
        """A configurator task (§6): the weights it sets, e.g. ``.task("hold_down", u_up=0, u_down=1)``."""
        return self._put("tasks", name, {k: float(v) for k, v in weights.items()})

    def _var(self, role: str, name: str, shape, bounds, values, sampled) -> "GraphBuilder":
        body: dict = {role: "discrete" if values is not None and shape is None else list(shape)}
        if values is not None:
            body["values"] = int(values)
        if bounds is not None:
            body["bounds"] = [None if b is None else float(b) for b in bounds]
        if sampled:
            body["sampled"] = True
        return self._put("variables", name, body)

    def observed(self, name: str, shape) -> "GraphBuilder":
        return self._var("observed", name, shape, None, None, False)

    def latent(self, name: str, shape=None, *, bounds=None, values: int | None = None, sampled: bool = False):
        return self._var("latent", name, shape, bounds, values, sampled)

    def action(self, name: str, shape=None, *, bounds=None, values: int | None = None):
        return self._var("action", name, shape, bounds, values, False)

    def module(self, name: str, decl: str) -> "GraphBuilder":
        """``b.module("Pred", "mlp(34, 64, 32, act=tanh)")``"""
        return self._put("modules", name, decl)

    def function(self, target: str, expr: str) -> "GraphBuilder":
        """``b.function("s[t+1]", "Pred(s[t], a[t])")``"""
        return self._put("functions", target, expr)

    def energy(self, name: str, expr: str) -> "GraphBuilder":
        return self._put("energy", name, expr)

    def regularizer(self, name: str, expr: str) -> "GraphBuilder":
        return self._put("regularizers", name, expr)

    def build(self) -> Graph:
        from .spec import loads

        return loads(yaml.safe_dump(self._doc, sort_keys=False), f"<builder {self._doc['name']}>")
