"""Episodes on disk, read in windows of K steps that never cross an episode's end (§4.4: a world model
learned from what the agent sees, trained K steps at a time).

The store is one HDF5 file (through h5py: a single file a user can move, chunked and compressed
datasets read a window at a time, readable from DataLoader workers, a format every field's tools
read). Its layout, per field:

=====================  =========================================================================
``frames/<name>``      ``[sum(T_e + 1), *shape]``: what is seen, T_e + 1 per episode (first to last)
``steps/<name>``       ``[sum(T_e), *shape]``: one per step (the action, the reward)
``episodes/length``    ``[E]`` int64 steps per episode; ``episodes/frame_start``, ``episodes/step_start``
attrs                  ``format`` (``ebmgraph-episodes/1``) and ``meta`` (JSON: env id, seed, policy ...)
=====================  =========================================================================

A window of K steps of episode ``e`` at step ``t`` holds frames ``t .. t+K`` (K + 1 values) and steps
``t .. t+K-1`` (K values). It is written once, through a temporary name renamed at the end, so a
killed writer never leaves a half-written store. ``.npz`` transitions from ``ebmgraph collect``
(``obs``, ``action``, ``next_obs``, ``episode``) read as the same episodes, in memory.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FORMAT = "ebmgraph-episodes/1"


class EpisodeError(ValueError):
    """A store that cannot be read or a window that cannot be cut; the message names the path."""


class EpisodeWriter:
    """Append whole episodes to a store; ``close()`` (or leaving the ``with`` block) publishes it.

    Args:
        path: the ``.h5`` file to write (replaced atomically at close).
        chunk: steps per chunk on disk (a window reads one or two chunks).
        compression: an h5py filter (``"lzf"``: fast; None: raw).
        meta: facts stored with the data (env id, seed, policy, versions).

    Example:
        >>> import numpy as np, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "ep.h5")
        >>> with EpisodeWriter(p) as w:
        ...     w.add(frames={"obs": np.zeros((4, 2))}, steps={"action": np.ones((3, 1))})
        >>> Episodes(p).lengths.tolist()
        [3]
    """

    def __init__(self, path, *, chunk: int = 64, compression: str | None = "lzf", meta: dict | None = None):
        import h5py

        self.path = Path(path)
        if self.path.parent and not self.path.parent.is_dir():
            raise EpisodeError(f"{self.path}: the folder {self.path.parent} does not exist")
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.f = h5py.File(self.tmp, "w")
        except OSError as exc:
            raise EpisodeError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.chunk, self.compression = int(chunk), compression
        self.f.attrs["format"] = FORMAT
        self.f.attrs["meta"] = json.dumps(meta or {})
        self.lengths: list[int] = []
        self.kinds: dict[str, str] = {}

    def _append(self, group: str, name: str, x: np.ndarray) -> None:
        x = np.asarray(x)
        key = f"{group}/{name}"
        if key not in self.f:
            self.f.create_dataset(key, shape=(0, *x.shape[1:]), maxshape=(None, *x.shape[1:]), dtype=x.dtype,
                                  chunks=(self.chunk, *x.shape[1:]), compression=self.compression)
        d = self.f[key]
        if d.shape[1:] != x.shape[1:]:
            raise EpisodeError(f"{self.path}: {key} has shape {list(d.shape[1:])} per row, this episode "
                               f"{list(x.shape[1:])}")
        n = d.shape[0]
        d.resize(n + len(x), axis=0)
        d[n:] = x

    def add(self, *, frames: dict, steps: dict) -> None:
        """One episode: ``frames {name: [T + 1, *shape]}`` and ``steps {name: [T, *shape]}``."""
        T = {len(np.asarray(v)) - 1 for v in frames.values()} | {len(np.asarray(v)) for v in steps.values()}
        if len(T) != 1 or min(T) < 1:
            raise EpisodeError(f"{self.path}: an episode needs T + 1 frames and T steps (T >= 1) in every field, got "
                               + ", ".join(f"{k} {len(v)}" for k, v in {**frames, **steps}.items()))
        if self.lengths and (set(frames) != {k for k, g in self.kinds.items() if g == "frames"}
                             or set(steps) != {k for k, g in self.kinds.items() if g == "steps"}):
            raise EpisodeError(f"{self.path}: every episode has the same fields ({sorted(self.kinds)})")
        for k, v in frames.items():
            self.kinds[k] = "frames"
            self._append("frames", k, v)
        for k, v in steps.items():
            self.kinds[k] = "steps"
            self._append("steps", k, v)
        self.lengths.append(T.pop())

    def close(self) -> None:
        """Write the episode index and publish the file under its name."""
        if self.f is None:
            return
        L = np.asarray(self.lengths, np.int64)
        self.f["episodes/length"] = L
        self.f["episodes/step_start"] = np.concatenate([[0], np.cumsum(L)[:-1]]).astype(np.int64)
        self.f["episodes/frame_start"] = np.concatenate([[0], np.cumsum(L + 1)[:-1]]).astype(np.int64)
        self.f.close()
        self.f = None
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drop what was written (nothing is published)."""
        if self.f is not None:
            self.f.close()
            self.f = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.abort()


class Episodes:
    """The episodes of a store (``.h5``) or of ``ebmgraph collect``'s ``.npz`` (held in memory).

    Attributes:
        lengths: ``[E]`` steps per episode.
        frames, steps: field name -> per-row shape.
        meta: what the writer stored (env id, seed, policy ...).
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise EpisodeError(f"{self.path}: no such file")
        self._h5 = None
        self._mem: dict | None = None
        if self.path.suffix == ".npz":
            self._load_npz()
        else:
            self._open_index()

    # ------------------------------------------------------------------ reading
    def _file(self):
        import h5py

        if self._h5 is None:  # opened lazily, once per process (DataLoader workers each open their own)
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as exc:
                raise EpisodeError(f"{self.path}: not a readable episode store ({exc})") from None
        return self._h5

    def _open_index(self) -> None:
        f = self._file()
        if f.attrs.get("format") != FORMAT or "episodes/length" not in f:
            raise EpisodeError(f"{self.path}: not an ebmgraph episode store (format {f.attrs.get('format')!r}; "
                               f"write one with ebmgraph collect --out FILE.h5)")
        self.lengths = np.asarray(f["episodes/length"], np.int64)
        self.frame_start = np.asarray(f["episodes/frame_start"], np.int64)
        self.step_start = np.asarray(f["episodes/step_start"], np.int64)
        self.frames = {k: tuple(f["frames"][k].shape[1:]) for k in f.get("frames", {})}
        self.steps = {k: tuple(f["steps"][k].shape[1:]) for k in f.get("steps", {})}
        self.meta = json.loads(f.attrs.get("meta", "{}"))
        n_frames, n_steps = int((self.lengths + 1).sum()), int(self.lengths.sum())
        for k in self.frames:
            if f["frames"][k].shape[0] != n_frames:
                raise EpisodeError(f"{self.path}: frames/{k} holds {f['frames'][k].shape[0]} rows, the index "
                                   f"{n_frames} (a truncated or damaged store)")
        for k in self.steps:
            if f["steps"][k].shape[0] != n_steps:
                raise EpisodeError(f"{self.path}: steps/{k} holds {f['steps'][k].shape[0]} rows, the index "
                                   f"{n_steps} (a truncated or damaged store)")

    def _load_npz(self) -> None:
        import zipfile

        try:
            with np.load(self.path, allow_pickle=False) as z:
                arr = {k: z[k] for k in z.files if not k.startswith("_")}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise EpisodeError(f"{self.path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
        need = {"obs", "next_obs", "episode"}
        if not need <= set(arr):
            raise EpisodeError(f"{self.path}: episodes from an .npz need arrays {sorted(need)}; it holds {sorted(arr)}")
        ep = arr["episode"]
        cuts = np.flatnonzero(np.diff(ep)) + 1
        bounds = np.concatenate([[0], cuts, [len(ep)]])
        self.lengths = np.diff(bounds).astype(np.int64)
        per_step = [k for k, v in arr.items() if k not in ("obs", "next_obs", "episode", "t") and len(v) == len(ep)]
        frames = [np.concatenate([arr["obs"][a:b], arr["next_obs"][b - 1:b]]) for a, b in zip(bounds, bounds[1:])]
        self._mem = {"frames/obs": np.concatenate(frames), **{f"steps/{k}": arr[k] for k in per_step}}
        self.frame_start = np.concatenate([[0], np.cumsum(self.lengths + 1)[:-1]]).astype(np.int64)
        self.step_start = bounds[:-1].astype(np.int64)
        self.frames = {"obs": tuple(arr["obs"].shape[1:])}
        self.steps = {k: tuple(arr[k].shape[1:]) for k in per_step}
        self.meta = {}

    def __len__(self) -> int:
        return len(self.lengths)

    def __getstate__(self):  # DataLoader workers: reopen the file in each process
        d = dict(self.__dict__)
        d["_h5"] = None
        return d

    def read(self, group: str, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of ``group/name`` (``frames`` or ``steps``)."""
        if self._mem is not None:
            return self._mem[f"{group}/{name}"][start:stop]
        return self._file()[group][name][start:stop]

    def window(self, episode: int, t: int, K: int, fields=None) -> dict[str, np.ndarray]:
        """Frames ``t..t+K`` ``[K + 1, *shape]`` and steps ``t..t+K-1`` ``[K, *shape]`` of one episode
        (``fields``: only these)."""
        if not 0 <= t <= self.lengths[episode] - K:
            raise EpisodeError(f"{self.path}: a window of {K} steps at step {t} does not fit episode {episode} "
                               f"({self.lengths[episode]} steps)")
        f0, s0 = int(self.frame_start[episode]) + t, int(self.step_start[episode]) + t
        out = {k: self.read("frames", k, f0, f0 + K + 1) for k in self.frames if fields is None or k in fields}
        out.update({k: self.read("steps", k, s0, s0 + K) for k in self.steps if fields is None or k in fields})
        return out


@dataclass
class Windows:
    """Every window of ``K`` steps of the chosen episodes, as a data set the :class:`Trainer` reads
    (``len``, ``batch(idx)``); windows never cross an episode's end and are read from disk per batch.

    Args:
        episodes: the store.
        K: steps per window (``K = 1``: one transition).
        stride: steps between consecutive windows' starts.
        names: store field -> the spec variable receiving it (default: the same name).
        which: the episodes used (default: all), e.g. from :func:`split_episodes`.
        fields: the store fields read (default: all).
    """

    episodes: Episodes
    K: int
    stride: int = 1
    names: dict | None = None
    which: np.ndarray | None = None
    name: str = "windows"
    fields: frozenset | None = None

    def __post_init__(self):
        if not (isinstance(self.K, int) and self.K >= 1 and isinstance(self.stride, int) and self.stride >= 1):
            raise EpisodeError(f"windows need K >= 1 and stride >= 1 (integers), got K={self.K}, stride={self.stride}")
        eps = np.arange(len(self.episodes)) if self.which is None else np.asarray(self.which, np.int64)
        fits = eps[self.episodes.lengths[eps] >= self.K]
        if len(fits) == 0:
            longest = int(self.episodes.lengths[eps].max()) if len(eps) else 0
            raise EpisodeError(f"{self.episodes.path}: no episode is long enough for a window of {self.K} steps "
                               f"(the longest has {longest})")
        counts = (self.episodes.lengths[fits] - self.K) // self.stride + 1
        self.index = np.stack([np.repeat(fits, counts),
                               np.concatenate([np.arange(c) * self.stride for c in counts])], 1)  # [N, 2] (e, t)
        self.transform, self.labels, self.info, self.shapes = None, None, {"K": self.K}, {}
        self.tensors = {}  # nothing held in memory
        self.streamed = True  # read from disk per batch (the Trainer's workers may read ahead)

    def __len__(self) -> int:
        return len(self.index)

    def rename(self, k: str) -> str:
        return (self.names or {}).get(k, k)

    def batch(self, idx, gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Windows ``idx`` stacked: frames ``[B, K + 1, *shape]``, steps ``[B, K, *shape]``."""
        rows = [self.episodes.window(int(e), int(t), self.K, self.fields)
                for e, t in self.index[np.asarray(idx, np.int64)]]
        return {self.rename(k): torch.from_numpy(np.stack([r[k] for r in rows])) for k in rows[0]}

    def with_shapes(self, shapes: dict) -> "Windows":
        return self


def split_episodes(n: int, held_out: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` episode numbers: the last ``held_out`` of the episodes are held out."""
    cut = int(round(n * (1 - held_out)))
    return np.arange(cut), np.arange(cut, n)


def spec_windows(ebm, path, *, stride: int = 1, names: dict | None = None, which=None) -> Windows:
    """The windows of a store that a time-indexed spec trains on (§4.4: the predictor unrolled K steps
    from the first frame, each prediction compared with the encoding of the frame it predicts).

    The spec's observed arrays name the store's fields (``names``: store field -> spec variable, for
    fields named otherwise): an array declared over frames (``obs[u]``, ``u: 0..K``) reads ``frames/``,
    one over steps (``action[t]``, ``t: 0..K-1``) reads ``steps/``; K is the window the arrays' lengths
    imply (``K = 1``: one transition). Every observed input of the spec must be such an array.

    Raises:
        EpisodeError: one line naming the store: a field the spec needs and the store lacks (listing
            what it holds), arrays implying different K, frames of another size than the spec declares,
            an observed input that is not an array, or no episode as long as the window.
    """
    eps = Episodes(path)
    to_spec = dict(names or {})
    to_store = {v: k for k, v in to_spec.items()}
    want = {v.name: tuple(ebm.var_shape(v.name)) for v in ebm.graph.variables if v.role == "observed"}
    not_arrays = sorted(n for n in want if ebm.graph.var(n).index is None)
    if not_arrays:
        raise EpisodeError(f"{eps.path}: {ebm.graph.name} trains on windows of episodes, so its observed inputs must be "
                           f"arrays over steps (obs[u], action[t]); {', '.join(not_arrays)} is not")
    ks = {}
    for n, shape in sorted(want.items()):
        field = to_store.get(n, n)
        if field in eps.frames:
            ks[n], have = shape[0] - 1, eps.frames[field]
        elif field in eps.steps:
            ks[n], have = shape[0], eps.steps[field]
        else:
            raise EpisodeError(f"{eps.path}: {ebm.graph.name} reads {n}, which the store does not hold (frames: "
                               f"{sorted(eps.frames)}, steps: {sorted(eps.steps)}); name it with names={{FIELD: {n!r}}}")
        if tuple(have) != tuple(shape[1:]):
            raise EpisodeError(f"{eps.path}: {field} holds rows of shape {list(have)}; {ebm.graph.name} declares "
                               f"{n} with elements of shape {list(shape[1:])}")
    if len(set(ks.values())) != 1:
        raise EpisodeError(f"{eps.path}: the arrays of {ebm.graph.name} imply different windows "
                           f"({', '.join(f'{n}: K={k}' for n, k in sorted(ks.items()))}); frames hold K+1 values, "
                           f"steps K")
    K = next(iter(ks.values()))
    if K < 1:
        raise EpisodeError(f"{eps.path}: {ebm.graph.name}'s arrays imply a window of {K} steps; at least 1")
    fields = {to_store.get(n, n) for n in want}
    return Windows(eps, K, stride=stride, names={f: to_spec.get(f, f) for f in fields}, which=which,
                   name=eps.path.stem, fields=frozenset(fields))


def is_episode_source(ebm, data: str) -> bool:
    """Whether ``train --data`` names episodes to cut into windows: an ``.h5`` store, or ``collect``'s
    ``.npz`` for a spec whose observed inputs are arrays over steps."""
    if str(data).endswith(".h5"):
        return True
    arrays = [v for v in ebm.graph.variables if v.role == "observed" and v.index is not None]
    return str(data).endswith(".npz") and bool(arrays)
