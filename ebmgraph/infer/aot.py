"""Ahead-of-time compiled planner code, built once and kept on disk across processes (issue 28).

A planner step written as a function of tensors over a model (the MCTS simulation) is exported
with ``torch.export`` and compiled by AOTInductor into a package (inductor's own ``.pt2`` format:
a shared library and metadata; never pickled). The model's parameters and buffers are inputs of
the package, read as they are at each call, so training or loading weights between calls is seen
and weights never decide the key.

Packages live under :func:`cache_dir` — ``$EBMGRAPH_CACHE_DIR``, else ``$XDG_CACHE_HOME/ebmgraph``,
else ``~/.cache/ebmgraph`` — in ``aot/<key>.pt2``, where the key is a SHA-256 of what the code was
built from: ebmgraph's own source files, the model's generated code, spec and architecture (module
structure, parameter names, shapes and dtypes), the planner's settings, every input's shape,
stride, dtype and device, torch's and Python's versions, the CPU's instruction set, inductor's
options and the thread count its CPU kernels are built for. A model with ``external`` modules (a
user's class, whose code the key cannot see) is built in memory only. Files are written atomically
(a reader never sees half a package); a package that fails to load is rebuilt. The first build of a
key is announced on stderr in one line. Packages are never deleted: the folder can be removed at
any time (the next search of each configuration builds again).
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import io
import os
import platform
import sys
import tempfile
import threading
import weakref
from pathlib import Path

import torch

from ..util import atomic_write_bytes

ENV = "EBMGRAPH_CACHE_DIR"
_LOCK = threading.Lock()
_LOADED: dict = {}  # digest -> runner, for this process (packages kept on disk)
_PRIVATE = weakref.WeakKeyDictionary()  # model -> {digest: runner}: models whose code no key can see


def cache_dir() -> Path:
    """Where packages are kept: ``$EBMGRAPH_CACHE_DIR``, ``$XDG_CACHE_HOME/ebmgraph`` or ``~/.cache/ebmgraph``."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ebmgraph"


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 over ebmgraph's own ``.py`` files (path and bytes), once per process."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def model_fingerprint(ebm) -> str | None:
    """What a model's compiled code depends on (not its weights' values), or None when the model has
    ``external`` modules, whose code no key can see."""
    if any(m.kind == "external" for m in ebm.checked.modules.values()):
        return None
    state = [(n, tuple(t.shape), str(t.dtype)) for n, t in list(ebm.named_parameters()) + list(ebm.named_buffers())]
    variables = [(v.name, v.role, repr(v.domain), v.index is not None) for v in ebm.graph.variables]
    return "\n".join([ebm.code, repr(variables), repr(sorted(ebm.checked.sizes.items())), repr(ebm.mods),
                      repr(state)])


def signature(args: tuple) -> tuple:
    """Shapes, strides, dtypes and devices of the inputs: what a package is specialised to."""
    return tuple((tuple(a.shape), tuple(a.stride()), str(a.dtype), str(a.device)) for a in args)


def digest(parts: tuple, options: dict) -> str:
    """The package key of ``parts`` (what the caller's code depends on: model, settings, input signature)
    built with inductor ``options`` here: ebmgraph's sources, torch, Python, the CPU's instruction set, and
    the thread count inductor bakes into CPU kernels (``torch.get_num_threads()`` unless ``cpp.threads``)."""
    cpu = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else ""
    threads = options.get("cpp.threads", -1)
    text = repr((source_digest(), parts, sorted(options.items()), torch.__version__, sys.version,
                 platform.machine(), cpu, threads if threads >= 1 else torch.get_num_threads()))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def package_path(key: str) -> Path:
    return cache_dir() / "aot" / f"{key}.pt2"


def is_built(key: str, owner=None) -> bool:
    """Whether the package of ``key`` is loaded in this process or kept on disk (``owner``: see
    :func:`load_or_build`)."""
    if owner is not None:
        return key in _PRIVATE.get(owner, {})
    return key in _LOADED or package_path(key).is_file()


class _WithState(torch.nn.Module):
    """``fn(*inputs)`` with a module's parameters and buffers appended as inputs (``functional_call``)."""

    def __init__(self, run: torch.nn.Module, n: int):
        super().__init__()
        self.run, self.n = run, n
        self.names = tuple(n for n, _ in run.named_parameters()) + tuple(n for n, _ in run.named_buffers())

    def forward(self, *xs):
        return torch.func.functional_call(self.run, dict(zip(self.names, xs[self.n:])), xs[:self.n])


def live_state(run: torch.nn.Module) -> tuple:
    """The module's parameters and buffers as they are now, in the order :class:`_WithState` reads them."""
    return tuple(t.detach() for _, t in run.named_parameters()) + tuple(t.detach() for _, t in run.named_buffers())


def load_or_build(run: torch.nn.Module, example: tuple, key: str, options: dict, *, owner=None,
                  what: str, expected_s: float):
    """The AOTInductor runner of ``run(*inputs, *live_state(run))`` for inputs like ``example``.

    Loaded from this process, else from disk, else exported, compiled, written atomically under
    :func:`cache_dir` and loaded; a build prints one line on stderr naming ``what`` and ``expected_s``.
    With ``owner`` (a model whose code the key cannot see) the package is kept for that object, in
    memory only. Call the runner as ``runner(*inputs, *live_state(run))``."""
    persist = owner is None
    with _LOCK:
        table = _LOADED if persist else _PRIVATE.setdefault(owner, {})
        if key in table:
            return table[key]
        path = package_path(key)
        if persist and path.is_file():
            try:
                table[key] = _load(path)
                return table[key]
            except Exception as e:  # noqa: BLE001 - a damaged or foreign file: build it again
                print(f"ebmgraph: rebuilding {path} ({type(e).__name__}: {str(e).splitlines()[0][:120]})",
                      file=sys.stderr)
        where = f"kept in {path.parent}" if persist else "kept in memory: the model has external modules"
        print(f"ebmgraph: compiling {what} ahead of time (about {expected_s:.0f} s, once; {where})",
              file=sys.stderr, flush=True)
        inductor = importlib.import_module("torch._inductor")  # only a build needs it (seconds to import)
        mod = _WithState(run, len(example))
        ep = torch.export.export(mod, tuple(a.clone() for a in example) + live_state(run), strict=False)
        buf = io.BytesIO()
        inductor.aoti_compile_and_package(ep, package_path=buf, inductor_configs=options)
        if persist:
            try:
                atomic_write_bytes(path, buf.getvalue())
            except OSError as e:  # an unwritable cache folder: this process keeps a private copy
                print(f"ebmgraph: cannot write {path} ({e.strerror or e}); set {ENV} to a writable folder",
                      file=sys.stderr)
                persist = False
        if not persist:
            path = Path(_private_dir()) / f"{key}.pt2"
            atomic_write_bytes(path, buf.getvalue())
        table[key] = _load(path)
        return table[key]


def _load(path: Path):
    """A package's runner on flat tensors, ``run(*tensors) -> [outputs]``, through AOTInductor's C++ loader.

    Neither ``torch._inductor`` (seconds to import) nor the Python wrapper, whose ``__call__`` parses the
    input and output tree specs from JSON on every call (measured: 62 µs against 7.5 µs per call with 25
    inputs, one thread, a loaded 2-core EPYC), is on this path."""
    aoti = getattr(torch._C, "_aoti", None)
    if aoti is None or not hasattr(aoti, "AOTIModelPackageLoader"):  # pragma: no cover - other torch builds
        model = importlib.import_module("torch._inductor").aoti_load_package(str(path))
        return lambda *xs: list(model(*xs))
    loader = aoti.AOTIModelPackageLoader(str(path), "model", False, 1, -1)
    return lambda *xs: loader.boxed_run(list(xs))


@functools.lru_cache(maxsize=1)
def _private_dir() -> str:
    import atexit
    import shutil

    d = tempfile.mkdtemp(prefix="ebmgraph-aot-")
    atexit.register(shutil.rmtree, d, True)
    return d
