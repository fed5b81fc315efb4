"""Two-level H-JEPA data and evaluation (§4.6, Figure 15): windows of ``L`` steps cut from collected
episodes, and whether one level-2 prediction ``L/2`` steps ahead beats chaining ``L/2`` level-1
predictions and encoding the result with Enc2.

A window holds observations ``x[0..L-1]`` and the actions ``a[0..L-1]`` taken from them (the
variables of examples/specs/pointmaze_hjepa.yaml, ``L = 20``). Its two halves of ``H = L/2`` steps
are pooled and encoded at level 2: ``s2_0 = Enc2(mean_t<H s1[t])``, ``s2_1 = Enc2(mean_t>=H s1[t])``
with ``s1[t] = Enc1(x[t])``; the abstract action ``abar`` is the mean action between the halves'
centres, ``a[H/2 .. H/2+H-1]`` (``a[5..14]`` for ``L = 20``).

The comparison's errors are normalized in level-2 space: the mean squared distance to ``s2_1``
divided by the total variance of ``s2_1`` over the windows, so predicting the windows' mean
``s2_1`` scores exactly 1.
"""
from __future__ import annotations

import numpy as np
import torch

from ebmgraph.train.episodes import EpisodeError, Episodes, Windows, split_episodes

LEVELS_MODULES = ("Enc1", "Pred1", "Enc2", "Pred2")


def hjepa_windows(path, *, length: int = 20, stride: int = 5, held_out: float = 0.2, noise: float = 0.0,
                  seed: int = 0) -> tuple[dict, dict]:
    """``(train, test)`` windows ``{"x": [N, L, *obs], "a": [N, L, *act]}`` (float32) of an episode store.

    Args:
        path: ``ebmgraph collect``'s ``.npz`` or an episode store (``.h5``) with fields ``obs`` and ``action``.
        length: ``L`` steps per window; windows never cross an episode's end (:class:`Windows`).
        stride: steps between consecutive windows' starts.
        held_out: the last fraction of the episodes are the test windows (:func:`split_episodes`).
        noise: std of sensor noise N(0, noise²) added to every observation (§4.6, unpredictable detail),
            drawn once per step of the data (numpy, seed ``[seed, 31]``, shape ``[steps, *obs]``) before
            the windows are cut, so overlapping windows see the same draw.
        seed: the noise's seed.

    Raises:
        ValueError: ``length``, ``held_out`` or ``noise`` out of range.
        EpisodeError: a store that cannot be read, lacks ``obs``/``action``, or leaves no train or test episode.
    """
    if not (isinstance(length, int) and length >= 2 and length % 2 == 0):
        raise ValueError(f"length must be an even integer >= 2 (two halves), got {length!r}")
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be in (0, 1), got {held_out!r}")
    if not noise >= 0.0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    eps = Episodes(path)
    if "obs" not in eps.frames or "action" not in eps.steps:
        raise EpisodeError(f"{eps.path}: H-JEPA windows need frames 'obs' and steps 'action'; it holds frames "
                           f"{sorted(eps.frames)}, steps {sorted(eps.steps)}")
    train_eps, test_eps = split_episodes(len(eps), held_out)
    if len(train_eps) == 0 or len(test_eps) == 0:
        raise EpisodeError(f"{eps.path}: {len(eps)} episodes leave {len(train_eps)} to train on and "
                           f"{len(test_eps)} held out (held_out={held_out})")
    draw = None
    if noise:
        shape = (int(eps.lengths.sum()), *eps.frames["obs"])
        draw = np.random.default_rng([seed, 31]).standard_normal(shape).astype(np.float32)
    return tuple(_cut(eps, which, length, stride, noise, draw) for which in (train_eps, test_eps))


def _cut(eps: Episodes, which: np.ndarray, L: int, stride: int, noise: float, draw: np.ndarray | None) -> dict:
    """The windows of episodes ``which``: a window of ``L`` steps holds frames ``t..t+L`` and steps
    ``t..t+L-1``; the last frame (the observation after ``a[L-1]``) is dropped so ``x`` and ``a`` align."""
    w = Windows(eps, L, stride=stride, which=which)
    b = w.batch(np.arange(len(w)))
    x = b["obs"][:, :L].numpy()  # [N, L, *obs]
    if draw is not None:  # step k of window (e, t) reads the draw of step row step_start[e] + t + k
        rows = eps.step_start[w.index[:, 0]] + w.index[:, 1]
        x = x + noise * draw[rows[:, None] + np.arange(L)]
    return {"x": torch.from_numpy(np.ascontiguousarray(x)).float(), "a": b["action"].float()}


def _chain(pred1, enc2, h: torch.Tensor, actions: list[torch.Tensor]) -> torch.Tensor:
    """``Enc2(mean_k h_k)`` with ``h_k = Pred1(h_{k-1}, actions[k-1])``: ``h [N, S1]`` -> ``[N, S2]``."""
    out = []
    for u in actions:
        h = pred1(h, u)
        out.append(h)
    return enc2(torch.stack(out, 1).mean(1))


@torch.no_grad()
def compare_predictions(ebm, test: dict) -> dict:
    """Normalized errors of three predictions of ``s2_1`` on windows ``test`` (Figure 15's question).

    Args:
        ebm: a model whose ``mods`` maps Enc1, Pred1, Enc2, Pred2 to callables (a :class:`CompiledEBM` of
            examples/specs/pointmaze_hjepa.yaml): ``Enc1 [..., X] -> [..., S1]``, ``Pred1(s1, a)``,
            ``Enc2 [N, S1] -> [N, S2]``, ``Pred2(s2, abar)``.
        test: ``{"x": [N, L, X], "a": [N, L, A]}`` with ``L`` even (from :func:`hjepa_windows`).

    Returns:
        ``level2_nerr``: ``Pred2(s2_0, abar)``, one prediction ``H`` steps ahead;
        ``chained_level1_nerr``: from ``s1[H-1]``, Pred1 ``H`` times with the window's actions
        ``a[H-1..L-2]``, the predicted ``s1[H..L-1]`` pooled and encoded with Enc2;
        ``chained_level1_abstract_action_nerr``: the same with ``abar`` held for the ``H`` steps (what an
        upper level has at plan time: the fine actions are not chosen yet);
        ``level1_one_step_nerr``: ``Pred1(s1[t], a[t])`` against ``s1[t+1]``, normalized by the variance of
        ``s1`` over windows and steps (for scale); ``windows`` (``N``), ``s2_std``, ``s1_std``.
    """
    mods = ebm.mods
    missing = [k for k in LEVELS_MODULES if k not in mods]
    if missing:
        raise ValueError(f"compare_predictions needs modules {list(LEVELS_MODULES)}; the model lacks {missing}")
    x, a = test["x"], test["a"]
    L = x.shape[1]
    if x.dim() < 3 or L < 2 or L % 2 or a.shape[:2] != x.shape[:2]:
        raise ValueError(f"compare_predictions needs x [N, L, X] and a [N, L, A] with L even; got x "
                         f"{list(x.shape)}, a {list(a.shape)}")
    H = L // 2
    enc1, pred1, enc2, pred2 = (mods[k] for k in LEVELS_MODULES)
    s1 = enc1(x)  # [N, L, S1]
    s2_0, s2_1 = enc2(s1[:, :H].mean(1)), enc2(s1[:, H:].mean(1))  # [N, S2]
    abar = a[:, H // 2:H // 2 + H].mean(1)  # [N, A]
    var2 = ((s2_1 - s2_1.mean(0)) ** 2).sum(1).mean()

    def nerr(p):  # p [N, S2]
        return float(((p - s2_1) ** 2).sum(1).mean() / var2)

    chained = _chain(pred1, enc2, s1[:, H - 1], [a[:, t] for t in range(H - 1, L - 1)])
    held = _chain(pred1, enc2, s1[:, H - 1], [abar] * H)
    flat = s1.reshape(-1, s1.shape[-1])  # [N*L, S1]
    var1 = ((flat - flat.mean(0)) ** 2).sum(-1).mean()
    one = pred1(s1[:, :-1], a[:, :-1])  # [N, L-1, S1]
    return {"level2_nerr": nerr(pred2(s2_0, abar)), "chained_level1_nerr": nerr(chained),
            "chained_level1_abstract_action_nerr": nerr(held), "windows": int(len(x)),
            "level1_one_step_nerr": float(((one - s1[:, 1:]) ** 2).sum(-1).mean() / var1),
            "s2_std": float(s2_1.std(0).mean()), "s1_std": float(flat.std(0).mean())}
