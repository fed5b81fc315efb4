"""Pictures of episodes: a returns plot, a strip of frames, a GIF (all written atomically)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..util import atomic_write_bytes


def returns_plot(results, path, *, baselines: dict | None = None, title: str | None = None) -> Path:
    """Per-episode returns (one bar per seed) with the mean, and baselines as dashed lines."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    r = results.returns
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=110)
    seeds = [e.seed for e in results.episodes]
    ax.bar(range(len(r)), r, color="#4c72b0")
    ax.axhline(r.mean(), color="#c44e52", lw=1.5, label=f"mean {r.mean():.1f} ({len(r)} episodes)")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, color=f"C{i + 2}", ls="--", lw=1.2, label=f"{name} {value:.1f}")
    ax.set_xticks(range(len(r)), [str(s) for s in seeds], fontsize=7)
    ax.set_xlabel("episode seed")
    ax.set_ylabel("return")
    ax.set_title(title or f"{results.env_id}: {results.method}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def frame_strip(frames: list, path, *, n: int = 8, width: int = 160) -> Path:
    """``n`` evenly spaced frames side by side (each ``width`` pixels wide), as a PNG."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to draw (record an episode with render_mode='rgb_array')")
    idx = np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)
    tiles = [_thumb(frames[i], width) for i in idx]
    h = max(t.height for t in tiles)
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 2 * (len(tiles) - 1), h), "white")
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width + 2
    buf = io.BytesIO()
    strip.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def gif(frames: list, path, *, fps: int = 20, width: int = 240, every: int = 2) -> Path:
    """An animated GIF of every ``every``-th frame."""
    if not frames:
        raise ValueError("no frames to animate")
    imgs = [_thumb(f, width) for f in frames[::every]]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=int(1000 * every / fps), loop=0)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def start_goal_final(frames: list, goals: list, successes, path, *, width: int = 128, title: str = "") -> Path:
    """One row per episode: its first frame, its goal frame and its last frame side by side, each row labelled
    with the episode's index and whether it succeeded (a PNG)."""
    from PIL import Image, ImageDraw

    if not frames:
        raise ValueError("no episodes to draw")
    gap, label_h = 4, 16
    rows = []
    for i, (f, g) in enumerate(zip(frames, goals)):
        if not len(f):
            raise ValueError(f"episode {i} has no frames")
        tiles = [_thumb(f[0], width), _thumb(g, width), _thumb(f[-1], width)]
        rows.append((i, bool(successes[i]), tiles))
    h = rows[0][2][0].height
    top = label_h + (label_h if title else 0)
    img = Image.new("RGB", (3 * width + 4 * gap, top + len(rows) * (h + label_h + gap)), "white")
    d = ImageDraw.Draw(img)
    if title:
        d.text((gap, 2), title, fill="black")
    for j, name in enumerate(("start", "goal", "final")):
        d.text((gap + j * (width + gap) + width // 2 - 12, top - label_h + 2), name, fill="black")
    for r, (i, ok, tiles) in enumerate(rows):
        y = top + r * (h + label_h + gap)
        d.text((gap, y + 2), f"episode {i}: {'success' if ok else 'failure'}", fill="#2a7a2a" if ok else "#b22222")
        for j, t in enumerate(tiles):
            img.paste(t, (gap + j * (width + gap), y + label_h))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def beside(frames: list, other) -> list:
    """Each frame with ``other`` (e.g. the goal frame) to its right, 2 white pixels between: for a GIF."""
    o = np.asarray(other, dtype=np.uint8)
    pad = np.full((o.shape[0], 2, 3), 255, np.uint8)
    return [np.concatenate([np.asarray(f, np.uint8), pad, o], axis=1) for f in frames]


def _thumb(frame, width: int):
    from PIL import Image

    img = Image.fromarray(np.asarray(frame, dtype=np.uint8))
    h = max(1, round(img.height * width / img.width))
    return img.resize((width, h))


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def is_maze_episode(env_id: str) -> bool:
    from .maze import is_maze

    return is_maze(env_id)


def maze_paths(env_id: str, results, path, *, upper=None, episodes: int = 5, title: str | None = None) -> Path:
    """The maze (walls from the env), the level-2 graph when given (its abstract states and moves),
    and for the first ``episodes`` episodes: the executed path, the sub-goals, the upper level's
    planned path at the first decision (dashed), start and goal."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .maze import make_maze

    env = make_maze(env_id)
    try:
        u = env.unwrapped
        grid, unit = np.asarray(u.maze_map), float(u._maze_unit)
        centre = u.ij_to_xy
    finally:
        env.close()
    fig, ax = plt.subplots(figsize=(0.45 * grid.shape[1] + 1.5, 0.45 * grid.shape[0] + 1), dpi=110)
    for i, j in zip(*np.nonzero(grid == 1)):
        x, y = centre((i, j))
        ax.add_patch(Rectangle((x - unit / 2, y - unit / 2), unit, unit, color="#999999", lw=0))
    if upper is not None:
        c = upper.centroids[:, list(upper.dims)]
        for a, b in upper.edges:
            ax.plot(*zip(c[a], c[b]), color="#c9d7ea", lw=0.6, zorder=1)
        ax.scatter(c[:, 0], c[:, 1], s=4, color="#8fa8c8", zorder=2)
    for k, e in enumerate((results.episodes if results is not None else [])[:episodes]):
        col = f"C{k}"
        xy = np.asarray(e.positions if e.positions else [np.asarray(o)[:2] for o in e.observations])
        if xy.ndim != 2 or len(xy) == 0:  # an episode with no positions recorded: nothing to draw
            continue
        xy = xy[:, :2]
        ok = "success" if e.success else ("fail" if e.success is not None else "")
        ax.plot(xy[:, 0], xy[:, 1], color=col, lw=1.4, zorder=4, label=f"seed {e.seed}: {len(xy)} steps {ok}")
        ax.plot(*xy[0], "o", color=col, ms=6, zorder=5)
        goal = e.reset_info.get("goal_xy", e.reset_info.get("goal"))
        if goal is not None and np.asarray(goal).shape == (2,):
            ax.plot(*np.asarray(goal)[:2], "*", color=col, ms=13, mec="black", mew=0.6, zorder=6)
        if e.subgoals and upper is not None and np.asarray(e.subgoals).shape[1] == 2:
            sg = np.unique(np.round(np.asarray(e.subgoals)[:, :2], 3), axis=0)
            ax.scatter(sg[:, 0], sg[:, 1], marker="x", s=22, color=col, zorder=5, lw=1)
        if upper is not None and e.upper_path:
            p = upper.centroids[e.upper_path][:, list(upper.dims)]
            ax.plot(p[:, 0], p[:, 1], ls="--", color=col, lw=0.9, alpha=0.8, zorder=3)
    ax.set_aspect("equal")
    ax.set_xlim(-unit * 1.5, (grid.shape[1] - 1.5) * unit)
    ax.set_ylim(-unit * 1.5, (grid.shape[0] - 1.5) * unit)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or env_id, fontsize=9)
    if results is not None and results.episodes:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.text(0.01, 0.01, "line: executed; x: sub-goals; dashed: upper plan at the first decision; o start, * goal",
             fontsize=6)
    fig.tight_layout()
    return _save(fig, path)
