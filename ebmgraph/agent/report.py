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
