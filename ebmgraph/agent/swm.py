"""stable-worldmodel's environments and evaluation loop (the peers' harness; issue 29): ``swm/TwoRoom-v1``,
``swm/PushT-v1``, observed as pixels, planned in representation space (§4.4, Figure 12; §3.1.2, Figure 4).

Installed with the ``swm`` extra (``pip install 'ebmgraph[swm]'``; ``make test`` installs it); the core
package never imports it. Three pieces:

- :func:`make_swm`: the environment as gymnasium made it, observed as ``[S, S, 3]`` uint8 frames (``S`` = 64
  by default) resized from its 224-pixel render the way stable-worldmodel's own ``AddPixelsWrapper`` does
  (PIL, bilinear), so that training frames and the frames ``World.evaluate`` shows a policy are the same
  pixels. The reset's ``info["goal"]`` is the goal frame (TwoRoom: the agent drawn at the target; PushT: its
  goal image); :func:`facts` gives the agent's position ``xy`` and the full ``state`` at every step.
- :class:`Expert`: the environment's own data policy (TwoRoom's ``ExpertPolicy`` with Gaussian action noise,
  PushT's ``WeakPolicy``) for ``collect --policy oracle``.
- :func:`ebmgraph.agent.swm_eval.evaluate` (its own module): an ebmgraph planner wrapped as a stable-worldmodel
  policy, run by ``World.evaluate`` in its dataset-driven mode over held-out episodes of an ebmgraph episode
  store: start and goal ``goal_offset`` steps apart, ``eval_budget`` steps, its own success test (the env's
  ``terminated``).

torchvision (which stable-worldmodel imports) ships on PyPI as a CUDA build whose C++ operators cannot load
beside a CPU torch; its import then fails registering fake kernels for ``torchvision::nms`` and ``qnms``
(pytorch/vision#9085). :func:`import_swm` declares those two operator schemas (without kernels) and imports it
again; nothing here calls them.
"""
from __future__ import annotations

import sys
import warnings

import gymnasium as gym
import numpy as np

PREFIX = "swm/"
ENVS = ("swm/TwoRoom-v1", "swm/PushT-v1")
EXTRA = "pip install 'ebmgraph[swm]' (stable-worldmodel==0.1.1 and torchvision==0.28.*)"
SIZE = 64  # frames are SIZE x SIZE x 3: the agent (a 7-px blob on 224) stays 2 px wide, the wall and door sharp
_TV_LIB = []  # the torch.library fragment that declares torchvision's nms/qnms when its C++ ops did not load


def is_swm(env_id: str) -> bool:
    return env_id.startswith(PREFIX)


def _import_torchvision() -> None:
    import torch

    try:
        import torchvision  # noqa: F401
        return
    except RuntimeError as exc:
        if "torchvision::" not in str(exc) or "does not exist" not in str(exc):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TV_LIB.append(lib)
    import torchvision  # noqa: F401,F811


def import_swm():
    """``stable_worldmodel``, imported (registers the ``swm/`` ids); an ImportError names the extra."""
    if sys.modules.get("stable_worldmodel") is not None:
        return sys.modules["stable_worldmodel"]
    import warnings

    try:
        _import_torchvision()
        with warnings.catch_warnings():  # "ale-py not found; ALE/* envs are unavailable" (Atari: not used here)
            warnings.filterwarnings("ignore", message=".*ale-py")
            import stable_worldmodel
    except ImportError as exc:
        raise ImportError(f"stable-worldmodel's environments need the swm extra ({exc}): {EXTRA}") from None
    return stable_worldmodel


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[size, size, 3]`` uint8 with PIL's bilinear filter, as ``AddPixelsWrapper`` does."""
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((size, size), Image.BILINEAR))


def _as_image(x) -> np.ndarray:
    x = x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)
    if x.ndim == 3 and x.shape[0] == 3 and x.shape[-1] != 3:
        x = x.transpose(1, 2, 0)
    return np.asarray(x, np.uint8)


class Pixels(gym.Wrapper):
    """A stable-worldmodel env observed as ``[size, size, 3]`` uint8 frames; ``info["goal"]`` the goal's frame.

    The env's own observation (TwoRoom: agent and target xy, door centres; PushT: a dict) stays in
    ``info["state_obs"]``; ``last_info`` is the latest info (its ``state`` is what :func:`facts` reads).
    """

    def __init__(self, env, size: int = SIZE):
        super().__init__(env)
        self.size = int(size)
        self.observation_space = gym.spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        self.last_info: dict = {}
        self.goal = None

    def _frame(self) -> np.ndarray:
        return resize(_as_image(self.env.render()), self.size)

    def _goal_frame(self, info: dict):
        u = self.env.unwrapped
        if getattr(u, "_target_img", None) is not None:  # TwoRoom: the agent drawn at the target
            return resize(_as_image(u._target_img), self.size)
        if "goal" in info:  # PushT renders its goal image into the info
            return resize(_as_image(info["goal"]), self.size)
        return None

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.goal = self._goal_frame(info)
        return self._frame(), self._info(obs, info)

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        info = self._info(obs, info)
        info.setdefault("success", bool(term))  # both envs terminate on success (TwoRoom: within 16 px of the target)
        return self._frame(), r, term, trunc, info

    def _info(self, obs, info: dict) -> dict:
        info = dict(info)
        info["state_obs"] = obs
        if self.goal is not None:
            info["goal"] = self.goal
        self.last_info = info
        return info


def make_swm(env_id: str, *, render: bool = False, size: int = SIZE, max_episode_steps: int | None = None,
             **kwargs) -> Pixels:
    """``gymnasium.make(env_id, render_mode="rgb_array")`` after importing stable-worldmodel, observed as
    ``[size, size, 3]`` frames (:class:`Pixels`). ``render`` is accepted for ``make_env``'s signature: the
    frames are rendered anyway."""
    import_swm()
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = int(max_episode_steps)
    kwargs.pop("render_mode", None)
    # gymnasium's passive checker warns at every step that TwoRoom returns a torch tensor: the pixels are what
    # ebmgraph observes, so the check is off for these envs
    kwargs.setdefault("disable_env_checker", True)
    return Pixels(gym.make(env_id, render_mode="rgb_array", **kwargs), size)


def _is_swm_env(env) -> bool:
    return isinstance(env, Pixels) or (hasattr(env, "last_info") and type(env.unwrapped).__module__.startswith(
        "stable_worldmodel"))


def _facts(env, at_reset: bool) -> dict:
    """The agent's position ``xy`` and the env's ``state`` at every step; the goal's at the reset."""
    info = env.last_info
    obs = info.get("state_obs")
    state = info["state"] if "state" in info else obs.get("state", []) if isinstance(obs, dict) else []
    state = np.asarray(state, np.float64).reshape(-1)  # TwoRoom: agent xy; PushT: agent xy, block xy, angle, velocity
    out = {"xy": state[:2].copy(), "state": state}
    if at_reset and "goal_state" in info:
        out["goal_xy"] = np.asarray(info["goal_state"], np.float64).reshape(-1)[:2]
    return out


FACTS = (_is_swm_env, _facts)  # registered by envs.make_env


class _PoolOfOne:
    """One env as the pool of envs a stable-worldmodel data policy expects (``envs``, a batched action space)."""

    def __init__(self, env):
        self.envs, self.spec = [env], env.spec
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1, *env.action_space.shape), np.float32)


class Expert:
    """The env's own data policy, as the peers collect with: TwoRoom's ``ExpertPolicy`` (toward the door, then
    the target; Gaussian noise of std ``noise`` on its unit action, clipped to [-1, 1]) and PushT's
    ``WeakPolicy`` (random pushes near the block; ``noise`` unused). Seeded from ``rng``."""

    def __init__(self, env: Pixels, noise: float, rng: np.random.Generator):
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.env, self.noise = env, float(noise)
        seed = int(rng.integers(2**31))
        eid = env.spec.id if env.spec is not None else ""
        if "TwoRoom" in eid:
            from stable_worldmodel.envs.two_room.expert_policy import ExpertPolicy

            self.policy = ExpertPolicy(action_noise=self.noise, seed=seed)
            self.label = f"stable-worldmodel ExpertPolicy (action_noise {self.noise})"
        elif "PushT" in eid:
            from stable_worldmodel.envs.pusht.expert_policy import WeakPolicy

            self.policy = WeakPolicy(seed=seed)
            self.label = "stable-worldmodel WeakPolicy"
        else:
            raise ValueError(f"no data policy for {eid}: the oracle acts in {', '.join(ENVS)}")
        # WeakPolicy acts for a pool of envs only (one row per env): it sees this env as a pool of one
        self.policy.set_env(_PoolOfOne(env.env) if "PushT" in eid else env.env)

    def reset(self, seed=None):
        return self.env.reset(seed=seed)

    def act(self, obs) -> np.ndarray:
        a = self.policy.get_action(self.env.last_info)
        return np.asarray(a, np.float32).reshape(self.env.action_space.shape)
