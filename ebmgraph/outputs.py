"""``CompiledEBM.evaluate(outputs=[...])``: the named values a spec computes, from generated code that
computes only what they need (§4.4: the representations ``s_x``, a rolled-out state ``s[3]``, an energy
term ``energy:cost`` or one of its steps).

Two kinds of program, each generated once per request shape and kept on the model (``_program``):

* from the spec's leaf variables (``lower.lower`` pruned to the outputs, or the whole energy too with
  ``energy=True``, from the same forward);
* from given intermediate values or single elements (``"s[3]"``, ``"s_x"``, ``"a[3]"``), element by
  element (``lower.lower_elements``): nothing upstream of them is computed (a search's stored state).

:class:`NamedValues` holds them as methods of :class:`~ebmgraph.compiled.CompiledEBM` (a mixin: it reads the
model's ``prepare``, ``_weights``, ``_program``, ``_build_forward``, ``_rows``, ``_as_batch``, ``_package`` and
checks).
"""
from __future__ import annotations

import re

import torch

from . import ir
from .conventions import repeat_rows
from .errors import Loc, SpecError
from .lower import lower, lower_elements, needed, parse_outputs, pyname


_ELEMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[([0-9]+)\]")


class NamedValues:
    """The ``evaluate(outputs=)`` machinery of :class:`~ebmgraph.compiled.CompiledEBM` (mixed into it)."""

    def _evaluate_outputs(self, inputs: dict, outputs, energy: bool, weights, validate, check_finite, repeat):
        """``evaluate(inputs, outputs=...)`` (its arguments): ``{label: [B, ...]}``, or with ``energy`` an
        :class:`~ebmgraph.compiled.EnergyResult` whose ``values`` hold them."""
        labels = (outputs,) if isinstance(outputs, str) else tuple(outputs)
        names = {v.name for v in self.graph.variables}
        given = [k for k in inputs if k not in names]
        W = self._weights(weights, validate)
        if given:
            if energy:
                raise SpecError(f"energy=True evaluates the whole spec from its inputs; intermediate values "
                                f"({', '.join(given)}) are given only with energy=False", Loc(self.graph.file))
            return self._evaluate_elements(inputs, labels, W, validate, check_finite, repeat)

        def build():
            outs = parse_outputs(self.checked, labels)
            src, _ = lower(self.checked, self.rollouts, outs, energy=energy)
            if energy:
                leaves = list(names)
            else:
                nodes, _ = needed(self.checked, [n for o in outs for n in o.nodes(self.checked)])
                leaves = sorted({n for n, _ in nodes} & names)
            return self._build_forward(src), outs, leaves

        fn, outs, leaves = self._program(("values", labels, bool(energy)), build)
        x = self.prepare(inputs, validate=validate, repeat=repeat, only=leaves)
        self._check_inputs(x, validate, check_finite, inputs)
        E, S, vals = fn(self, **{pyname(k): v for k, v in x.items()}, W=W, _R=repeat)
        B = self._rows(x, repeat)
        values = {o.label: self._as_batch(v, B) for o, v in zip(outs, vals)}
        if not energy:
            return values
        out = self._package(E, S, B)
        out.values.update(values)
        if check_finite:
            self._check_terms(out.terms)
        return out

    def _evaluate_elements(self, inputs: dict, labels: tuple, W: dict, validate, check_finite, repeat) -> dict:
        """``evaluate(outputs=)`` with intermediate values or single elements given (:func:`lower.lower_elements`):
        ``{label: [B, ...]}``."""
        leaves = {v.name for v in self.graph.variables}
        whole = {k for k in inputs if k in leaves}
        x = self.prepare({k: inputs[k] for k in whole}, validate=validate, repeat=repeat, only=sorted(whole)) \
            if whole else {}
        I, nodes = self._given_values(inputs, whole, x, validate, repeat)
        if check_finite is not False and (validate or check_finite):
            bad = [k for k, v in I.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
            if bad:
                raise SpecError(f"non-finite (NaN or Inf) values in input(s) {', '.join(bad)}", Loc(self.graph.file))

        def build():
            outs = parse_outputs(self.checked, labels)
            return self._build_forward(lower_elements(self.checked, outs, nodes, whole), "part"), outs

        fn, outs = self._program(("elements", labels, frozenset(nodes), frozenset(whole)), build)
        vals = fn(self, I, W)
        B = next(iter(I.values())).shape[0] if I else 1
        return {o.label: self._as_batch(v, B) for o, v in zip(outs, vals)}

    def _given_values(self, inputs: dict, whole: set, x: dict, validate: bool, repeat: int) -> tuple[dict, set]:
        """``(I, nodes)``: every given value as the element program reads it (``{"s[3]": [B, ...], "x": ...}``,
        observed ones repeated ``repeat`` times) and the elements ``(name, pos)`` they stand for."""
        chk, g = self.checked, self.graph
        leaves = {v.name: v for v in g.variables}
        derived = {f.target.name for f in g.functions}
        I, nodes = {}, set()
        for k, v in x.items():
            I[k] = v
            nodes |= {(k, p) for p in range(chk.lengths.get(k, 1))}
        for k, v in inputs.items():
            if k in whole:
                continue
            m = _ELEMENT.fullmatch(k)
            name, p = (m.group(1), int(m.group(2))) if m else (k, None)
            if name not in leaves and name not in derived:
                raise SpecError(f"unknown input {k}; {g.name} takes {', '.join(sorted(leaves))} and its values "
                                f"{', '.join(sorted(derived))} (or their elements, e.g. 's[3]')", Loc(g.file), (name,))
            if p is None and name in chk.lengths:  # a whole intermediate array [B, L, ...]: its elements
                t = self._as_value(name, v, (chk.lengths[name],) + tuple(chk.shapes[name]), validate)
                for q in range(chk.lengths[name]):
                    I[f"{name}[{q}]"] = t[:, q]
                    nodes.add((name, q))
                continue
            if p is not None and (name not in chk.lengths or p >= chk.lengths[name]):
                raise SpecError(f"input {k}: {name} " + (f"has {chk.lengths[name]} elements" if name in chk.lengths
                                                          else "is not an array"), Loc(g.file), (name,))
            var = leaves.get(name)
            t = self._as_value(name, v, tuple(chk.shapes[name]), validate)
            if var is not None and var.role == "observed" and repeat > 1:
                t = repeat_rows(t, repeat)
            I[k if p is not None else name] = t
            nodes.add((name, p or 0))
        if repeat > 1:
            for k in whole:
                if leaves[k].role == "observed":
                    I[k] = repeat_rows(I[k], repeat)
        return I, nodes

    def _as_value(self, name: str, v, shape: tuple, validate: bool) -> torch.Tensor:
        """One given value ``[B, *shape]`` as the generated code reads it (discrete integers one-hot)."""
        t = v if isinstance(v, torch.Tensor) else torch.as_tensor(v)
        var = self.graph.var(name)
        if var is not None and isinstance(var.domain, ir.Discrete) and not t.is_floating_point():
            if validate and t.numel() and (int(t.min()) < 0 or int(t.max()) >= var.domain.K):
                raise SpecError(f"{name}: values must lie in 0..{var.domain.K - 1}", var.loc, (name,))
            t = torch.nn.functional.one_hot(t.long(), var.domain.K)
        if t.is_complex() or tuple(t.shape[1:]) != tuple(shape) or t.dim() == 0:
            raise SpecError(f"input {name}: expected shape [B, {', '.join(map(str, shape))}] of real values, got "
                            f"{list(t.shape)} {t.dtype}", Loc(self.graph.file), (name,))
        return t.to(device=self.device, dtype=self.dtype)
