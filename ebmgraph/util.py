"""Small shared helpers: atomic writes, seeded generators, the CPU model."""
from __future__ import annotations

import functools
import gc
import os
import platform
import secrets
import stat
from pathlib import Path

import torch


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: never a half-written file.

    Permissions are those of an ordinary ``open(path, "wb")``: a new file gets 0666 minus the
    process umask (0644 under umask 022), and an existing file keeps its mode, so replacing a file
    someone made group-writable or private does not silently change who may read it.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(p).st_mode)
    except FileNotFoundError:
        mode = None
    # os.open applies the umask to 0o666 itself (mkstemp would force 0600); O_EXCL keeps the name ours
    for _ in range(100):
        tmp = p.parent / f".{p.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise FileExistsError(f"cannot create a temporary file beside {p}")
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def as_generator(seed_or_gen, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator from a seed, a generator, or None (seed 0)."""
    if isinstance(seed_or_gen, torch.Generator):
        return seed_or_gen
    g = torch.Generator(device=device)
    g.manual_seed(0 if seed_or_gen is None else int(seed_or_gen))
    return g


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (for benchmark tables)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def round_robin(fns: dict, reps: int, warmup: int = 1, device: torch.device | None = None) -> tuple[dict, dict]:
    """``({name: [seconds per call]}, {name: last output})``, calling the candidates in turn each round
    (fair under load); on a CUDA ``device`` each call is timed between synchronisations."""
    import time

    sync = device is not None and device.type == "cuda"
    outs = {}
    for _ in range(warmup):
        for k, fn in fns.items():
            outs[k] = fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            if sync:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            outs[k] = fn()
            if sync:
                torch.cuda.synchronize()
            samples[k].append(time.perf_counter() - t0)
    return samples, outs


def gc_paused(fn):
    """Run ``fn`` with Python's cyclic garbage collector paused (re-enabled after, if it was on).

    Checking and lowering build hundreds of thousands of small acyclic objects (element-graph
    nodes, positions); each GC generation scan walks all live objects again, which made checking
    superlinear in the horizon (``ebmgraph bench scaling``). Reference counting still frees
    everything; only cycle detection waits until the call returns.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        was = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was:
                gc.enable()

    return wrapper
