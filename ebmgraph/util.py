"""Small shared helpers: atomic writes (and the check that a path can be written), reading
``.npz`` files with one-line errors, progress bars that stay quiet in logs, seeded generators,
the CPU model."""
from __future__ import annotations

import functools
import gc
import math
import os
import platform
import re
import secrets
import stat
import sys
from pathlib import Path

import torch


def _nearest_existing(p: Path) -> Path:
    """``p``'s closest ancestor that exists (``p``'s parent when it does)."""
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    return anc


def _not_a_folder(p: Path) -> NotADirectoryError:
    """The error for a ``p`` whose folder is blocked by a file: names ``p`` and the file."""
    anc = _nearest_existing(p)
    return NotADirectoryError(f"cannot write {p}: {anc} is a file, not a folder")


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, naming ``path``, where :func:`atomic_write_bytes` would fail at the end of a long run.

    ``path`` must not be a folder, its closest existing ancestor must be a folder, and a file
    must be creatable there (probed with a temporary file, removed at once: permission bits
    alone say nothing for root or on a read-only mount). Nothing else is created.

    Raises:
        IsADirectoryError, NotADirectoryError, PermissionError, OSError: with ``path`` in the message.
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"cannot write {p}: it is a folder; name a file inside it")
    anc = _nearest_existing(p)
    if not anc.is_dir():
        raise _not_a_folder(p)
    probe = anc / f".{p.name}.{secrets.token_hex(6)}.probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise type(exc)(f"cannot write {p}: {exc.strerror or exc} ({anc})") from None
    os.close(fd)
    os.unlink(probe)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: never a half-written file.

    Permissions are those of an ordinary ``open(path, "wb")``: a new file gets 0666 minus the
    process umask (0644 under umask 022), and an existing file keeps its mode, so replacing a file
    someone made group-writable or private does not silently change who may read it.

    Errors name ``path`` (never the temporary file): a parent that is a file, a folder where the
    file should be, a folder that cannot be written.
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"cannot write {p}: it is a folder; name a file inside it")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise _not_a_folder(p) from None
    except OSError as exc:
        raise type(exc)(f"cannot write {p}: {exc.strerror or exc} (creating {p.parent})") from None
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
        except OSError as exc:
            raise type(exc)(f"cannot write {p}: {exc.strerror or exc} ({p.parent})") from None
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
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):  # a full disk, a quota: named by the user's path, not the temporary file
            raise type(exc)(f"cannot write {p}: {exc.strerror or exc}") from None
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


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive's first bytes (an empty archive: the second)


def read_npz(path: str | os.PathLike, keys=None, *, required: bool = True) -> dict:
    """The arrays of an ``.npz`` as ``{name: numpy array}``, read now, without pickle.

    Every way a file can be wrong is one ``ValueError`` (``FileNotFoundError`` for a missing
    file) whose message names ``path``: not a file, empty, not a zip archive, truncated or
    corrupt (a bad CRC, a cut-short member), an array of Python objects (never unpickled), a
    data array that is not numbers, or a name in ``keys`` it does not hold. Arrays whose names
    start with ``_`` are records (``ebmgraph collect``'s ``_meta``: text), not checked for numbers.

    Args:
        path: the ``.npz``.
        keys: the names to read; default every array.
        required: every name in ``keys`` must be there (else the ones there are read).
    """
    import zipfile
    import zlib

    import numpy as np

    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a folder, not an .npz file")
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no such file") from None
    except OSError as exc:
        raise type(exc)(f"cannot read {p}: {exc.strerror or exc}") from None
    if not head:
        raise ValueError(f"{p} is empty, not an .npz archive")
    if head not in _ZIP_MAGIC:
        what = "a single .npy array" if head == b"\x93NUM" else "not an .npz archive (no zip header)"
        raise ValueError(f"{p} is {what}; ebmgraph reads .npz files (numpy.savez)")
    try:
        with np.load(p, allow_pickle=False) as z:
            names = list(z.files)
            want = names if keys is None else list(keys)
            missing = [k for k in want if k not in names]
            if not required:
                want, missing = [k for k in want if k in names], []
            if missing:
                raise ValueError(f"{p} holds no array {', '.join(map(repr, missing))} (arrays: "
                                 f"{', '.join(names) or 'none'})")
            out = {}
            for k in want:
                try:
                    out[k] = z[k]
                except ValueError as exc:
                    if "pickle" in str(exc) or "Object arrays" in str(exc):
                        raise ValueError(f"{p}: array {k!r} holds Python objects (a pickled dtype=object array), "
                                         f"not numbers; ebmgraph reads numeric arrays and never unpickles") from None
                    raise
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise ValueError(f"{p} is truncated or corrupt, not a readable .npz archive ({exc})") from None
    except ValueError as exc:
        if str(exc).startswith(str(p)):
            raise
        raise ValueError(f"{p} is truncated or corrupt, not a readable .npz archive ({exc})") from None
    for k, v in out.items():
        if not k.startswith("_") and v.dtype.kind not in "biuf":
            raise ValueError(f"{p}: array {k!r} holds {v.dtype} values, not real numbers (bool, integer or float)")
    return out


class _LineWriter:
    """A stream that turns tqdm's carriage-return rewrites into one line per update (for logs)."""

    def __init__(self, fp):
        self.fp, self.fresh = fp, True

    def write(self, s: str) -> int:
        out = []
        for piece in re.split(r"([\r\n])", s):
            if piece in ("\r", "\n"):
                if not self.fresh:
                    out.append("\n")
                    self.fresh = True
            elif piece.strip():
                out.append(piece.rstrip())
                self.fresh = False
        self.fp.write("".join(out))
        return len(s)

    def flush(self) -> None:
        self.fp.flush()

    def __getattr__(self, name):
        return getattr(self.fp, name)


def progress(total: int | None = None, *, desc: str = "", unit: str = "it", initial: int = 0, disable: bool = False,
             file=None, updates: int = 10, **kwargs):
    """A tqdm progress bar that keeps logs readable.

    On a terminal (or in a notebook) it is tqdm's live bar. When its stream is a pipe or a file
    (a CI log, ``make demo > log``) it writes one line per ``1/updates`` of ``total`` (about
    ``updates + 1`` lines in all) with no time-based refreshes, and nothing at all when ``total``
    is unknown. ``set_postfix``/``set_description`` then wait for the next of those lines.

    Args:
        total: the number of updates expected (None: unknown).
        desc, unit, initial, disable: tqdm's.
        file: the stream (default ``sys.stderr``).
        updates: lines written over the whole run when not on a terminal.
        **kwargs: passed to tqdm (e.g. ``leave``).

    Example:
        >>> bar = progress(total=100, desc="collect", unit="step", disable=True)
        >>> bar.update(1); bar.close()
    """
    stream = file if file is not None else sys.stderr
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or minimal stream
        tty = False
    if tty or type(stream).__module__.startswith("ipykernel"):  # a terminal, or a notebook (tqdm's widget)
        from tqdm.auto import tqdm as auto_tqdm

        return auto_tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=file,
                         dynamic_ncols=True, **kwargs)
    if not total:
        disable = True  # a log, and no total to count tenths of: no bar
    every = max(1, math.ceil((total or 1) / max(1, updates)))
    return _log_bar()(total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=_LineWriter(stream),
                   mininterval=0, maxinterval=float("inf"), miniters=every, **kwargs)


@functools.lru_cache(maxsize=None)
def _log_bar():
    """tqdm whose postfix and description changes wait for the next update line (no extra lines)."""
    from tqdm import tqdm as std_tqdm

    class LogBar(std_tqdm):
        def set_postfix(self, ordered_dict=None, refresh=True, **kw):
            super().set_postfix(ordered_dict, refresh=False, **kw)

        def set_postfix_str(self, s="", refresh=True):
            super().set_postfix_str(s, refresh=False)

        def set_description(self, desc=None, refresh=True):
            super().set_description(desc, refresh=False)

    return LogBar


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
