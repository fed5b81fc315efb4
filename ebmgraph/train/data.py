"""Embedded data sets for training: toy 2-D densities, digits with views, world-model
transitions from gymnasium, and the user's own ``.npz``.

A :class:`Dataset` is a dict of tensors ``{variable: [N, *shape]}`` whose keys are the
spec's observed variables, plus an optional batch transform (augmentations for
joint-embedding training) that takes a seeded ``torch.Generator``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..util import as_generator, read_npz


@dataclass
class Dataset:
    """Tensors ``{name: [N, *shape]}`` plus an optional seeded batch transform.

    Attributes:
        name: a label for reports.
        tensors: stored arrays, all with the same first dimension N.
        transform: ``(batch, generator) -> batch`` applied per batch (e.g. two views).
        labels: optional class labels ``[N]`` for linear probes (never trained on).
        info: free-form facts about the data (e.g. a horizon).
        shapes: per-sample shapes ``{name: shape}`` that batches are reshaped to (see :meth:`with_shapes`).
    """

    name: str
    tensors: dict[str, torch.Tensor]
    transform: Callable | None = None
    labels: torch.Tensor | None = None
    info: dict = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def batch(self, idx: torch.Tensor, gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Rows ``idx`` of every tensor, transformed with ``gen`` when a transform is set, in the
        declared shapes ``[B, *shape]``."""
        b = {k: v[idx] for k, v in self.tensors.items()}
        if self.transform:
            b = self.transform(b, gen if gen is not None else as_generator(0))
        for k, shape in self.shapes.items():
            if k in b:
                b[k] = _reshaped(self.name, k, b[k], shape)
        return b

    def with_shapes(self, shapes: dict[str, tuple[int, ...]]) -> "Dataset":
        """A copy whose batches come in a spec's declared per-sample shapes.

        The built-in sets store images flat (digits ``[N, 64]``); a spec that declares
        ``x: {observed: [1, 8, 8]}`` gets ``x`` as ``[B, 1, 8, 8]``. A variable with the same number
        of values is reshaped; a different number is an error now rather than at the first step.

        Args:
            shapes: ``{variable: per-sample shape}``; names the batches do not hold are ignored.

        Raises:
            ValueError: a variable's values do not fit its declared shape.
        """
        out = replace(self, shapes={**self.shapes, **{k: tuple(int(d) for d in v) for k, v in shapes.items()}})
        if len(out):
            out.batch(torch.arange(min(2, len(out))), as_generator(0))  # a mismatch fails here, named
        return out

    def split(self, frac: float = 0.8, *, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """A seeded train / held-out split."""
        perm = torch.randperm(len(self), generator=as_generator(seed))
        n = int(round(frac * len(self)))
        parts = []
        for ix in (perm[:n], perm[n:]):
            parts.append(Dataset(self.name, {k: v[ix] for k, v in self.tensors.items()}, self.transform,
                                 None if self.labels is None else self.labels[ix], dict(self.info), dict(self.shapes)))
        return parts[0], parts[1]


def _reshaped(data: str, name: str, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``x`` ``[B, ...]`` as ``[B, *shape]``, or a ValueError naming both shapes."""
    if tuple(x.shape[1:]) == shape:
        return x
    have, want = math.prod(x.shape[1:]), math.prod(shape)
    if x.dim() >= 1 and have == want:
        return x.reshape(x.shape[0], *shape)
    raise ValueError(f"data set {data!r} gives {name} with per-sample shape {list(x.shape[1:])} ({have} values), "
                     f"but the spec declares {name} as {list(shape)} ({want} values)")


# ----------------------------------------------------------------------------- 2-D toy densities
def two_moons(n: int = 2000, *, seed: int = 0, noise: float = 0.05) -> torch.Tensor:
    """Two interleaved half circles, centred near the origin ``[n, 2]``."""
    g = np.random.default_rng(seed)
    k = g.integers(0, 2, n)
    t = g.uniform(0, math.pi, n)
    x = np.where(k == 0, np.cos(t), 1 - np.cos(t)) - 0.5
    y = np.where(k == 0, np.sin(t), 0.5 - np.sin(t)) - 0.25
    pts = np.stack([x, y], 1) + noise * g.standard_normal((n, 2))
    return torch.tensor(pts, dtype=torch.float32)


def moons_labels(n: int = 2000, *, seed: int = 0, noise: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-moons points ``[n, 2]`` and which moon each lies on ``[n]`` (same draws as :func:`two_moons`)."""
    g = np.random.default_rng(seed)
    k = g.integers(0, 2, n)
    return two_moons(n, seed=seed, noise=noise), torch.tensor(k)


def spirals(n: int = 2000, *, seed: int = 0, noise: float = 0.05) -> torch.Tensor:
    """Two interleaved spiral arms ``[n, 2]`` within about [-1.5, 1.5]^2."""
    g = np.random.default_rng(seed)
    t = np.sqrt(g.uniform(0.05, 1, n)) * 3 * math.pi
    arm = g.integers(0, 2, n) * math.pi
    r = t / (3 * math.pi) * 1.5
    pts = np.stack([r * np.cos(t + arm), r * np.sin(t + arm)], 1) + noise * g.standard_normal((n, 2))
    return torch.tensor(pts, dtype=torch.float32)


def rings(n: int = 2000, *, seed: int = 0, noise: float = 0.04, radii=(0.5, 1.0, 1.5)) -> torch.Tensor:
    """Concentric circles ``[n, 2]``."""
    g = np.random.default_rng(seed)
    r = np.asarray(radii)[g.integers(0, len(radii), n)]
    t = g.uniform(0, 2 * math.pi, n)
    pts = np.stack([r * np.cos(t), r * np.sin(t)], 1) + noise * g.standard_normal((n, 2))
    return torch.tensor(pts, dtype=torch.float32)


def off_manifold(data: torch.Tensor, n: int, *, seed: int = 0, pad: float = 0.5, min_dist: float = 0.25) -> torch.Tensor:
    """Uniform points in the data's padded bounding box farther than ``min_dist`` from every data point ``[m, 2]``."""
    g = as_generator(seed)
    lo, hi = data.min(0).values - pad, data.max(0).values + pad
    pts = lo + (hi - lo) * torch.rand(4 * n, data.shape[1], generator=g)
    keep = torch.cdist(pts, data).min(1).values > min_dist
    return pts[keep][:n]


def latent_modes(n: int = 1024, *, dim: int = 8, modes: int = 4, step: float = 1.0, noise: float = 0.02,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs whose y depends on x through a hidden discrete choice (§4.5, latent capacity).

    x ~ U[-1, 1]^dim; y = x + step·e_k + noise·ε with k uniform among the first ``modes``
    coordinate axes. A latent with ``modes`` values (or a sparse one) captures the
    multimodality exactly; a latent as wide as y can explain any y.

    Returns:
        x ``[n, dim]``, y ``[n, dim]``, the mode k ``[n]``.
    """
    g = as_generator(seed)
    x = 2 * torch.rand(n, dim, generator=g) - 1
    k = torch.randint(0, modes, (n,), generator=g)
    y = x + step * torch.nn.functional.one_hot(k, dim).float() + noise * torch.randn(n, dim, generator=g)
    return x, y, k


# ----------------------------------------------------------------------------- digits with views
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits scaled to [0, 1]: images ``[1797, 64]`` and labels ``[1797]``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.data / 16.0, dtype=torch.float32), torch.tensor(d.target)


def digit_view(x: torch.Tensor, gen: torch.Generator, *, shift: int = 1, noise: float = 0.1,
               erase: int = 3, p_erase: float = 0.5, rotate: float = 0.0, scale: float = 0.0) -> torch.Tensor:
    """One random view of flattened 8×8 images ``[B, 64]``: an optional small rotation by up to
    ``rotate`` degrees and zoom by a factor in [1 − ``scale``, 1 + ``scale``] (bilinear resampling,
    zero fill), a shift by up to ``shift`` pixels (zero fill), erasure of a random
    ``erase``×``erase`` square with probability ``p_erase``, and Gaussian noise; clamped to [0, 1]."""
    B = x.shape[0]
    img = x.view(B, 8, 8)
    if rotate or scale:
        th = (2 * torch.rand(B, generator=gen) - 1) * math.radians(rotate)
        sc = 1 + (2 * torch.rand(B, generator=gen) - 1) * scale
        c, s_ = torch.cos(th) / sc, torch.sin(th) / sc
        aff = torch.stack([torch.stack([c, -s_, torch.zeros(B)], 1), torch.stack([s_, c, torch.zeros(B)], 1)], 1)
        grid = torch.nn.functional.affine_grid(aff.to(img.dtype), (B, 1, 8, 8), align_corners=False)
        img = torch.nn.functional.grid_sample(img[:, None], grid, align_corners=False, padding_mode="zeros")[:, 0]
    pad = torch.nn.functional.pad(img, (shift, shift, shift, shift))
    dx = torch.randint(0, 2 * shift + 1, (B,), generator=gen)
    dy = torch.randint(0, 2 * shift + 1, (B,), generator=gen)
    rows = (dy[:, None] + torch.arange(8)[None])  # [B, 8]
    cols = (dx[:, None] + torch.arange(8)[None])
    out = pad[torch.arange(B)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if erase:
        ex = torch.randint(0, 8 - erase + 1, (B,), generator=gen)
        ey = torch.randint(0, 8 - erase + 1, (B,), generator=gen)
        on = torch.rand(B, generator=gen) < p_erase
        r = torch.arange(8)
        m = (((r[None, :, None] >= ey[:, None, None]) & (r[None, :, None] < ey[:, None, None] + erase))
             & ((r[None, None, :] >= ex[:, None, None]) & (r[None, None, :] < ex[:, None, None] + erase)))
        out = out.masked_fill(m & on[:, None, None], 0.0)
    out = out.reshape(B, 64) + noise * torch.randn(B, 64, generator=gen)
    return out.clamp(0.0, 1.0)


def digits_views(**view_kw) -> Dataset:
    """Digits for joint-embedding training: each batch gives two views ``x``, ``y`` ``[B, 64]`` of the same images."""
    X, labels = digits()

    def two_views(b, gen):
        img = b["img"]
        return {"x": digit_view(img, gen, **view_kw), "y": digit_view(img, gen, **view_kw)}

    return Dataset("digits_views", {"img": X}, two_views, labels)


# ----------------------------------------------------------------------------- world-model transitions
def pendulum(n: int = 5000, *, seed: int = 0, episode: int = 200) -> Dataset:
    """Pendulum-v1 transitions under uniform random actions: ``s, a, s_next`` ``[n, 3], [n, 1], [n, 3]``."""
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    S, A, S2 = [], [], []
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    t = 0
    while len(S) < n:
        a = rng.uniform(-2, 2, size=(1,)).astype(np.float32)
        nxt, _, term, trunc, _ = env.step(a)
        S.append(obs), A.append(a), S2.append(nxt)
        obs, t = nxt, t + 1
        if term or trunc or t >= episode:
            obs, _ = env.reset(seed=int(rng.integers(0, 2**31 - 1)))
            t = 0
    env.close()
    f = lambda xs: torch.tensor(np.asarray(xs), dtype=torch.float32)  # noqa: E731
    return Dataset("pendulum", {"s": f(S), "a": f(A), "s_next": f(S2)})


def pendulum_sequences(n: int = 1000, *, horizon: int = 5, seed: int = 0) -> Dataset:
    """Pendulum-v1 rollouts under uniform random actions, for specs with arrays (``s[t+1] = Pred(s[t], a[t])``).

    Each sequence starts from its own seeded reset; the actions come from a generator seeded
    with ``seed``, so the data set is a function of (n, horizon, seed).

    Returns:
        a :class:`Dataset` with ``x`` ``[n, 3]`` (the first observation), ``obs`` ``[n, horizon + 1, 3]``
        (observations (cos θ, sin θ, θ̇), ``obs[:, 0] == x``) and ``a`` ``[n, horizon, 1]`` (torques in [-2, 2]).
    """
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    O = np.zeros((n, horizon + 1, 3), np.float32)
    A = rng.uniform(-2, 2, size=(n, horizon, 1)).astype(np.float32)
    for i in range(n):
        O[i, 0], _ = env.reset(seed=int(rng.integers(0, 2**31 - 1)))
        for t in range(horizon):
            O[i, t + 1], *_ = env.step(A[i, t])
    env.close()
    obs = torch.from_numpy(O)
    return Dataset("pendulum_sequences", {"x": obs[:, 0].clone(), "obs": obs, "a": torch.from_numpy(A)},
                   info={"horizon": horizon})


def load_npz(path: str | Path) -> Dataset:
    """A user data set: every array of an ``.npz`` (no pickles) becomes a variable, ``labels`` a probe label
    (arrays whose names start with ``_`` are records, not data: ``ebmgraph collect`` writes ``_meta``).

    Raises:
        FileNotFoundError, ValueError: one line naming ``path``: a missing, truncated or corrupt
            file, object (pickled) or non-numeric arrays (:func:`ebmgraph.util.read_npz`), or
            arrays of different lengths.
    """
    arrs = {k: torch.from_numpy(np.asarray(v)) for k, v in read_npz(path).items() if not k.startswith("_")}
    if not arrs:
        raise ValueError(f"{path} holds no data arrays")
    labels = arrs.pop("labels", None)
    ten = {k: (v.float() if v.is_floating_point() else v) for k, v in arrs.items()}
    if not ten:
        raise ValueError(f"{path} holds only labels, no data arrays")
    if any(v.dim() == 0 for v in ten.values()):
        raise ValueError(f"{path}: array(s) {', '.join(k for k, v in ten.items() if v.dim() == 0)} hold one value, "
                         f"not one row per sample")
    n = {v.shape[0] for v in ten.values()}
    if len(n) != 1:
        raise ValueError(f"{path}: arrays differ in their first dimension: { {k: v.shape[0] for k, v in ten.items()} }")
    return Dataset(Path(path).stem, ten, None, labels)


def _toy(fn):
    def make(n: int = 2000, *, seed: int = 0, var: str = "y") -> Dataset:
        return Dataset(fn.__name__, {var: fn(n, seed=seed)})
    return make


DATASETS: dict[str, Callable[..., Dataset]] = {
    "moons": _toy(two_moons), "spirals": _toy(spirals), "rings": _toy(rings),
    "digits_views": lambda seed=0, **kw: digits_views(**kw),
    "digits": lambda seed=0: Dataset("digits", {"x": digits()[0]}, None, digits()[1]),
    "pendulum": lambda seed=0, **kw: pendulum(seed=seed, **kw),
    "pendulum_sequences": lambda seed=0, **kw: pendulum_sequences(seed=seed, **kw),
    "latent_modes": lambda seed=0, **kw: Dataset("latent_modes", dict(zip("xy", latent_modes(seed=seed, **kw)[:2]))),
}


def get_dataset(name: str, *, seed: int = 0, **kw) -> Dataset:
    """A data set by name (``moons``, ``spirals``, ``rings``, ``digits``, ``digits_views``,
    ``pendulum``, ``pendulum_sequences``, ``latent_modes``) or by path to an ``.npz``."""
    if name.endswith(".npz"):
        return load_npz(name)
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(DATASETS)} or a path to .npz")
    return DATASETS[name](seed=seed, **kw)
