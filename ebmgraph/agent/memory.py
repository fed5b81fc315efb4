"""Short-term memory (§3.3, Figure 7): while the agent acts it stores (τ, s_τ, IC(s_τ)); the critic
is trained from it to predict the intrinsic energy still to come from s_τ.

The target is the discounted future intrinsic energy within the episode,
``G_τ = Σ_{k ≥ 0} γ^k IC(s_{τ+k})``, computed backwards (``G_τ = IC_τ + γ G_{τ+1}``). Written as
``s_tau`` / ``ic_future`` (the variable names of ``specs/fig07_critic.yaml``), so the trainer
learns a critic from it directly; the planner then uses the critic as a terminal energy.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np

from ..util import atomic_write_bytes


@dataclass
class ShortTermMemory:
    """Per-episode records of (τ, s_τ, IC(s_τ)); IC is the environment's cost, −reward, by default."""

    episodes: list = field(default_factory=list)

    def add(self, observations, ic) -> None:
        """One episode: observations ``[L, *S]`` and the intrinsic energy of each step ``[L]``."""
        obs = np.asarray(observations, np.float32)
        ic = np.asarray(ic, np.float32).reshape(-1)
        if len(obs) != len(ic) or len(obs) == 0:
            raise ValueError(f"an episode needs one intrinsic energy per observation, got {len(obs)} and {len(ic)}")
        self.episodes.append((obs, ic))

    def add_episode(self, ep) -> None:
        """An :class:`ebmgraph.agent.Episode` (IC = −reward of each step)."""
        self.add(ep.observations, -np.asarray(ep.rewards, np.float32))

    def targets(self, gamma: float) -> dict:
        """``{"s_tau": [N, *S], "ic_future": [N, 1], "ic": [N], "tau": [N], "episode": [N]}``."""
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"gamma must lie in [0, 1), got {gamma}")
        if not self.episodes:
            raise ValueError("the memory is empty: add episodes first")
        S, G, IC, TAU, EP = [], [], [], [], []
        for i, (obs, ic) in enumerate(self.episodes):
            g = np.zeros_like(ic)
            acc = 0.0
            for t in range(len(ic) - 1, -1, -1):
                acc = float(ic[t]) + gamma * acc
                g[t] = acc
            S.append(obs), G.append(g), IC.append(ic), TAU.append(np.arange(len(ic))), EP.append(np.full(len(ic), i))
        return {"s_tau": np.concatenate(S), "ic_future": np.concatenate(G)[:, None].astype(np.float32),
                "ic": np.concatenate(IC), "tau": np.concatenate(TAU).astype(np.int32),
                "episode": np.concatenate(EP).astype(np.int32)}

    def save(self, path, gamma: float, meta: dict | None = None) -> dict:
        """Write the critic's training set to ``path`` (``.npz``, atomically); returns the arrays."""
        arrays = self.targets(gamma)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays, _meta=np.array(json.dumps({"gamma": gamma, **(meta or {})})))
        atomic_write_bytes(path, buf.getvalue())
        return arrays
