"""Command-line helpers every verb shares (the ground floor: they import nothing above errors).

``parse_sizes`` reads ``--size NAME=INT``, ``parse_settings`` reads ``--set KEY=VALUE`` (a
JSON value, or the text itself) and ``print_errors`` prints spec errors as ``FILE:LINE:``
lines on stderr.
"""
from __future__ import annotations

import json
import sys

from .errors import SpecError, SpecErrors


def print_errors(exc: SpecError) -> None:
    """Every error of ``exc`` as ``FILE:LINE: error: message`` on stderr."""
    errs = exc.errors if isinstance(exc, SpecErrors) else [exc]
    for e in errs:
        print(f"{e.loc}: error: {e.message}", file=sys.stderr)


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
