"""Command-line helpers every verb shares (the ground floor: they import nothing above errors).

``parse_sizes`` reads ``--size NAME=INT``, ``parse_settings`` reads ``--set KEY=VALUE`` (a
JSON value, or the text itself), ``load_modules`` reads ``--module NAME=package.module:attribute``
and ``print_errors`` prints spec errors as ``FILE:LINE:`` lines on stderr. ``count`` and
``positive`` are argparse types that refuse a bad count (``--episodes 0``) before any work.
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import SpecError, SpecErrors


def print_errors(exc: SpecError) -> None:
    """Every error of ``exc`` as ``FILE:LINE: error: message`` on stderr."""
    errs = exc.errors if isinstance(exc, SpecErrors) else [exc]
    for e in errs:
        print(f"{e.loc}: error: {e.message}", file=sys.stderr)


def count(minimum: int = 1):
    """An argparse ``type`` for counts (episodes, steps, epochs, batch...): an integer of at least
    ``minimum``, else argparse's usage error (one line under :mod:`ebmgraph.cli`) before any work.

    Example:
        >>> count()("3"), count(0)("0")
        (3, 0)
    """
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes an integer, got {text!r}") from None
        if v < minimum:
            want = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be {want}, got {v}")
        return v

    parse.__name__ = "count"
    return parse


def positive(text: str) -> float:
    """An argparse ``type`` for a positive finite number (a grid's side, a learning rate)."""
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def parse_sizes(items: list[str] | None, flag: str = "--size") -> dict[str, int]:
    """``["T=16", "K=4"]`` -> ``{"T": 16, "K": 4}``; anything else exits with a usage message."""
    out = {}
    for it in items or []:
        k, _, v = it.partition("=")
        if not k or not v.lstrip("-").isdigit():
            raise SystemExit(f"ebmgraph: {flag} takes NAME=INT, got {it!r}")
        out[k] = int(v)
    return out


def parse_settings(items: list[str] | None, flag: str = "--set") -> dict:
    """``["steps=50", "optimizer=adam"]`` -> ``{"steps": 50, "optimizer": "adam"}`` (values read as JSON when they parse)."""
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k:
            raise SystemExit(f"ebmgraph: {flag} takes KEY=VALUE, got {it!r}")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


MODULE_HELP = ("the body of an external module: NAME=package.module:attribute (an nn.Module class, instance or "
               "torch function). This imports and runs your code — the only flag that does; specs never do")


PARAMS_HELP = ("trained parameters: a .safetensors file or a run directory with model.safetensors; the tensors "
               "this spec shares by name with the spec that trained them are loaded, and a trainable module they "
               "leave empty is refused by name (--weights: the former name)")


def load_params(ebm, path: str | None):
    """The one loading rule of every verb (``--params``): load the tensors ``ebm`` shares by name with the
    spec that trained them (a planning spec reads a world model's Enc and Pred), refuse a tensor of another
    shape, and refuse a trainable module the file leaves empty — one message naming the file and the modules.

    ``--params`` are trained parameters; the configurator's cost weights u_i are ``--set NAME=VALUE`` and
    ``weights=`` in Python (README, "One vocabulary")."""
    if path:
        ebm.load(path, strict=False)
        missing = ebm.missing_weights()
        if missing:
            raise SpecError(f"{path} holds no parameters for module(s) {', '.join(missing)} of {ebm.graph.name} "
                            f"(a spec loads the modules it shares by name with the spec that trained them)")
    return ebm


def load_modules(items: list[str] | None, flag: str = "--module") -> dict:
    """``["Pred=mypkg.models:Pred"]`` -> ``{"Pred": Pred()}``: the explicit opt-in that imports user code.

    The attribute may be an ``nn.Module`` subclass (instantiated with no arguments), an instance,
    or a torch function. The current directory is searched first, as ``python -m`` would.
    """
    import importlib
    import os

    out = {}
    for it in items or []:
        name, sep, target = it.partition("=")
        modname, colon, attr = target.partition(":")
        if not (sep and name and modname and colon and attr):
            raise SystemExit(f"ebmgraph: {flag} takes NAME=package.module:attribute, got {it!r}")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            obj = importlib.import_module(modname)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise SystemExit(f"ebmgraph: {flag} {it}: cannot import {target}: {exc}") from None
        if isinstance(obj, type):
            try:
                obj = obj()
            except TypeError as exc:
                raise SystemExit(f"ebmgraph: {flag} {it}: {attr} must build with no arguments: {exc}") from None
        out[name] = obj
    return out
