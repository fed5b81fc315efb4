"""The command line: ``ebmgraph check | show | render | compile | infer | train | plan | bench | demo``.

Verbs beyond the core live beside their capability: a module listed in ``_PLUGINS``
defines ``register_cli(subparsers)`` adding its verb(s), so the CLI and the Python API
share one implementation.
"""
from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading

from .cliargs import MODULE_HELP, load_modules, parse_sizes, print_errors
from .errors import SpecError
from .version import __version__

_PLUGINS = ("ebmgraph.render.cli", "ebmgraph.infer.cli", "ebmgraph.train.cli", "ebmgraph.agent.cli",
            "ebmgraph.bench", "ebmgraph.demo")


def cmd_check(args) -> int:
    from .check import check
    from .spec import load

    status = 0
    for path in args.specs:
        try:
            chk = check(load(path), parse_sizes(args.size))
        except SpecError as exc:
            print_errors(exc)
            status = 1
            continue
        for w in chk.warnings:
            print(f"{w.loc}: warning: {w.message}", file=sys.stderr)
        if args.json:
            arch = chk.architecture
            print(json.dumps({"spec": path, "ok": True, "summary": chk.summary(),
                              "architecture": arch.code if arch else None,
                              "can_collapse": bool(arch and arch.can_collapse),
                              "warnings": [f"{w.loc}: {w.message}" for w in chk.warnings]}))
        else:
            print(f"{path}: ok — {chk.summary()}")
    return status


def cmd_show(args) -> int:
    from .ir import pretty
    from .spec import load

    try:
        print(pretty(load(args.spec)))
    except SpecError as exc:
        print_errors(exc)
        return 1
    return 0


def cmd_compile(args) -> int:
    from .compiled import compile as compile_spec

    try:
        ebm = compile_spec(args.spec, sizes=parse_sizes(args.size), modules=load_modules(args.module))
    except SpecError as exc:
        print_errors(exc)
        return 1
    if args.explain:
        print(ebm.explain())
    if args.emit == "python":
        print(ebm.code, end="")
    elif args.emit == "summary":
        print(repr(ebm))
        print(ebm.explain())
    if args.out:
        ebm.save(args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``ebmgraph plan: error: argument --episodes: must be a positive
    integer, got 0``) pointing at ``--help``, instead of the whole usage block first."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ebmgraph", description="A graph-based energy-model compiler "
                                "(LeCun, A Path Towards Autonomous Machine Intelligence).")
    p.add_argument("--version", action="version", version=f"ebmgraph {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    c = sub.add_parser("check", help="check specs: names, shapes, domains, cycles, collapse analysis")
    c.add_argument("specs", nargs="+")
    c.add_argument("--size", action="append", metavar="NAME=INT", help="override a size, e.g. T=16")
    c.add_argument("--json", action="store_true", help="one JSON line per spec")
    c.set_defaults(fn=cmd_check)
    s = sub.add_parser("show", help="print the IR's text form")
    s.add_argument("spec")
    s.set_defaults(fn=cmd_show)
    k = sub.add_parser("compile", help="compile a spec to PyTorch")
    k.add_argument("spec")
    k.add_argument("--emit", choices=("python", "summary", "none"), default="summary")
    k.add_argument("--explain", action="store_true", help="say which path each rollout takes and why")
    k.add_argument("--size", action="append", metavar="NAME=INT")
    k.add_argument("-o", "--out", help="save initial weights as safetensors")
    k.add_argument("--module", action="append", metavar="NAME=PKG.MOD:ATTR", help=MODULE_HELP)
    k.set_defaults(fn=cmd_compile)
    for mod in _PLUGINS:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == mod or mod.startswith(exc.name + ".")):
                continue  # capability not installed in this build
            raise
        if hasattr(m, "register_cli"):
            m.register_cli(sub)
    return p


class Terminated(BaseException):
    """SIGTERM arrived (``timeout``, ``kill``, a job scheduler, torchrun stopping its workers).

    Raised from the signal handler :func:`main` installs, it unwinds the verb as Ctrl-C's
    ``KeyboardInterrupt`` does: ``finally`` blocks close environments and progress bars, and an
    atomic write in progress removes its temporary file (every file is written whole or not at
    all). A ``BaseException``, so no ``except Exception`` on the way swallows it.
    """


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run one verb. Exit status: 0 done, 1 bad input (one ``error:`` line), 2 usage, 130 Ctrl-C,
    143 SIGTERM (both one line on stderr; nothing half-written)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 0
    handled = threading.current_thread() is threading.main_thread()  # only the main thread sets handlers
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if handled else None
    try:
        return int(args.fn(args) or 0)
    except SpecError as exc:
        print_errors(exc)
        return 1
    except KeyboardInterrupt:
        print(f"ebmgraph {args.verb}: stopped (Ctrl-C)", file=sys.stderr)
        return 130
    except Terminated:
        print(f"ebmgraph {args.verb}: stopped (SIGTERM)", file=sys.stderr)
        return 143
    finally:
        if handled:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
