"""Receding-horizon control (Mode-2, §3.1.2, Figure 4): perceive, plan, act with the first
action, shift the plan as the next warm start, repeat.

The loop is a function over explicit state: :func:`plan_step` maps (observation, state) to
(action, new state, what the plan found) with :func:`ebmgraph.minimize` doing the planning, so
any method the action domain allows (gradient, CEM, MPPI for continuous actions; exhaustive,
beam, DP, MCTS for discrete ones) drives the agent. :func:`run_episode` and :func:`run` add the
environment (stepped by :func:`ebmgraph.agent.loop.rollout`, the loop ``collect`` shares); nothing here knows
which environment or model it is.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..elements import ancestors_of
from ..errors import SpecError
from ..infer import minimize
from ..util import as_generator
from .envs import Binding, bind, default_method, env_facts, make_env
from .loop import rollout

# methods that take a warm start (init=), and per-method settings for acting on a per-decision budget
WARM = ("gradient", "cem", "mppi", "mcts", "auto")
# MPPI's noise is coloured (noise_beta = 2: smooth action sequences), which finds MountainCar's goal with the
# defaults and leaves Pendulum as it was (seeds 0-2: -80.9 against -81.5)
ACTING_DEFAULTS = {"mppi": {"samples": 256, "iters": 1, "final_mean": False, "noise_beta": 2.0},
                   "cem": {"samples": 256, "iters": 2, "final_mean": False},
                   "gradient": {"optimizer": "adam", "steps": 20, "lr": 0.1},
                   "beam": {"width": 16}, "mcts": {"simulations": 200}}


_MODE_DEPENDENT = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._NormBase)


def check_eval_mode(ebm) -> None:
    """Planning evaluates the model as the user left it (nothing is switched on it): refuse a model whose
    layers behave differently in training mode (dropout, batch or instance norm) while it is training."""
    bad = [n for n, m in ebm.named_modules() if isinstance(m, _MODE_DEPENDENT) and m.training]
    if bad:
        raise SpecError(f"{ebm.graph.name}: {', '.join(bad[:4])} behave differently while training (dropout or "
                        f"batch statistics); call .eval() on the model before planning or acting with it")


class PlanError(SpecError):
    """Planning failed inside an episode (a NaN energy, a bad setting); says where."""


def shift_plan(values: dict, name: str, fill: float | int | None = None) -> dict:
    """Shift a plan one step for receding-horizon control (§3.1.2, Mode-2).

    ``a[1:]`` becomes the new ``a[:-1]``; the last step repeats the old last step
    (or ``fill``). Other entries are copied.

    Args:
        values: ``{name: [B, L, ...]}`` e.g. ``result.values``.
        name: the time-indexed variable to shift.

    Example:
        >>> import torch
        >>> shift_plan({"a": torch.tensor([[1, 2, 3]])}, "a")["a"].tolist()
        [[2, 3, 3]]
    """
    out = dict(values)
    a = values[name]
    last = a[:, -1:].clone() if fill is None else torch.full_like(a[:, -1:], fill)
    out[name] = torch.cat([a[:, 1:], last], 1)
    return out


@dataclass
class Planner:
    """What plans each decision: a compiled spec bound to an environment, a method and its settings.

    Args:
        ebm: the compiled Mode-2 spec (world model + cost).
        binding: from :func:`ebmgraph.agent.envs.bind`.
        method: any :func:`ebmgraph.minimize` method the action domain allows.
        settings: the method's settings; :data:`ACTING_DEFAULTS` fill what is not given.
        seed: seeds the planner's sampling (one random stream for the whole run, carried in
            :class:`PlanState` from decision to decision and episode to episode).
        warm_start: start each plan from the previous one, shifted one step.
        warm_policy: a :class:`Mode1` policy that proposes each plan instead (§3.1.3, Figure 5:
            Mode-1 proposes, Mode-2 refines): ``a[t] = A(s[t])`` rolled through this spec's own
            world model, the plan's initial value.
        warm_state: the spec's state array ``s[t]`` the policy reads (default ``s``).
        upper: a level-2 model (:class:`ebmgraph.infer.hierarchical.AbstractGraph`): plan two levels
            (§4.7, Figure 16), this spec being the lower one whose sub-goal the upper level sets.
        upper_settings: :func:`ebmgraph.infer.hierarchical.minimize_two_level`'s ``goal``, ``subgoal``,
            ``state``, ``mode``, ``candidates``, ``weight``.
    """

    ebm: object
    binding: Binding
    method: str = "auto"
    settings: dict = field(default_factory=dict)
    seed: int = 0
    warm_start: bool = True
    warm_policy: object = None
    warm_state: str = "s"
    upper: object = None
    upper_settings: dict = field(default_factory=dict)

    def __post_init__(self):
        self.settings = {**ACTING_DEFAULTS.get(self.method, {}), **self.settings}
        check_eval_mode(self.ebm)
        if self.warm_policy is not None:
            self._check_warm_policy()

    def initial_rng(self) -> torch.Tensor:
        """The planner's random state at the start of a run (seeded by ``seed``), as a value
        (``torch.Generator.get_state()``): it lives in :class:`PlanState`, not here."""
        return as_generator(self.seed).get_state()

    def initial_state(self, given: dict | None = None, rng: torch.Tensor | None = None) -> "PlanState":
        """The state before the first decision of an episode."""
        return PlanState(given=given, rng=self.initial_rng() if rng is None else rng)

    def _check_warm_policy(self):
        from .envs import EnvMismatch

        chk, name, b = self.ebm.checked, self.warm_state, self.binding
        if self.method not in WARM:
            raise EnvMismatch(f"a warm-start policy needs a method that takes a warm start ({', '.join(WARM)}), "
                              f"not {self.method}")
        if name not in chk.lengths or name not in {f.target.name for f in self.ebm.graph.functions}:
            raise EnvMismatch(f"warm start: {self.ebm.graph.name} has no state array {name}[t] for the policy to read "
                              f"(warm_state=..., --warm-state)")
        if chk.lengths[name] < b.T:
            raise EnvMismatch(f"warm start: {name} has {chk.lengths[name]} steps, the plan {b.T}")
        want = tuple(self.warm_policy.ebm.var_shape(self.warm_policy.obs))
        if tuple(chk.shapes[name]) != want:
            raise EnvMismatch(f"warm start: {name}[t] is {list(chk.shapes[name])}, but the policy reads "
                              f"{self.warm_policy.obs} {list(want)}")
        act = tuple(self.ebm.var_shape(b.action)[1:])
        if tuple(self.warm_policy.out_shape) != act:
            raise EnvMismatch(f"warm start: the policy's {self.warm_policy.output} is {list(self.warm_policy.out_shape)}"
                              f", but {b.action}[t] is {list(act)}")

    def policy_plan(self, observed: dict) -> dict:
        """``{action: [1, T, A]}``: the warm policy's actions along this spec's predicted states.

        Each state comes from the generated code given the states and actions so far (one predictor
        step per action, ``ebm.evaluate(..., outputs=["s[t+1]"])``), nothing recomputed."""
        ebm, b, s = self.ebm, self.binding, self.warm_state
        acts, known = [], dict(observed)
        with torch.no_grad():
            for t in range(b.T):
                state = ebm.evaluate(known, outputs=[f"{s}[{t}]"], validate=False)[f"{s}[{t}]"]
                a = self.warm_policy.act(state).to(ebm.dtype)
                known[f"{s}[{t}]"], known[f"{b.action}[{t}]"] = state, a
                acts.append(a)
        return {b.action: torch.stack(acts, 1)}

    def initial_carry(self) -> dict:
        """The carried state at the start of an episode: zeros (an empty memory)."""
        ebm = self.ebm
        return {v: torch.zeros((1, *ebm.var_shape(v)), dtype=ebm.dtype, device=ebm.device) for v in self.binding.carry}

    def next_carry(self, observed: dict) -> dict:
        """The carried state after this decision: each carried variable's function, from what was observed."""
        if not self.binding.carry:
            return {}
        with torch.no_grad():
            vals = self.ebm.evaluate(observed, outputs=list(dict.fromkeys(self.binding.carry.values())),
                                     validate=False)
        return {var: vals[fn].detach() for var, fn in self.binding.carry.items()}


@dataclass(frozen=True)
class PlanState:
    """The agent's memory between decisions: the shifted plan (a warm start), the step count, the
    carried state (world-state memory, :attr:`Binding.carry`) and the planner's random state, so that
    :func:`plan_step` is a function of it: the same state in gives the same decision out."""

    plan: dict | None = None
    step: int = 0
    carried: dict | None = None
    given: dict | None = None  # values from the reset's info (Binding.from_info)
    rng: torch.Tensor | None = None  # torch.Generator state (get_state()); None: seeded from the planner's seed


@dataclass(frozen=True)
class Decision:
    """What one planning call found: the energy of the plan, its length and the wall time spent."""

    energy: float
    seconds: float
    plan: dict
    subgoal: object = None  # the upper level's sub-goal [D] when planning two levels
    upper_path: list | None = None  # the abstract states the upper level planned through


def plan_step(planner: Planner, observation, state: PlanState) -> tuple[object, PlanState, Decision]:
    """One decision: encode the observation, minimize the planned energy, act with the first action.

    Returns:
        ``(action for env.step, next state, Decision)``.
    """
    b, ebm = planner.binding, planner.ebm
    t0 = time.perf_counter()
    observed = b.observed(observation, ebm)
    if state.given:
        observed.update(state.given)
    if b.carry:
        observed.update(state.carried if state.carried is not None else planner.initial_carry())
    gen = torch.Generator()
    gen.set_state(state.rng if state.rng is not None else planner.initial_rng())
    settings = dict(planner.settings)
    if planner.warm_policy is not None and "init" not in settings:
        settings["init"] = planner.policy_plan(observed)
    elif planner.warm_start and state.plan is not None and planner.method in WARM and "init" not in settings:
        settings["init"] = state.plan
    try:
        if planner.upper is not None:
            from ..infer.hierarchical import minimize_two_level

            r = minimize_two_level(planner.upper, ebm, observed, [b.action], method=planner.method,
                                   generator=gen, **planner.upper_settings, **settings)
        else:
            r = minimize(ebm, observed, over=[b.action], method=planner.method, generator=gen, **settings)
    except SpecError as exc:
        raise PlanError(f"planning at step {state.step}: {exc.message if hasattr(exc, 'message') else exc}",
                        exc.loc, exc.symbols) from exc
    plan = r.info.get("mean") or r.values
    plan = {b.action: plan[b.action].detach()}
    action = b.to_env(r.values[b.action][0, 0])
    carried = planner.next_carry(observed) if b.carry else None
    dt = time.perf_counter() - t0
    sub = r.info.get("subgoal")
    return (action, PlanState(shift_plan(plan, b.action), state.step + 1, carried, state.given, gen.get_state()),
            Decision(float(r.energy[0]), dt, plan, None if sub is None else sub[0].cpu().numpy(),
                     r.info.get("upper_path")))


@dataclass
class Episode:
    """One episode: its seed, return, length, how it ended (``success``: the env's ``info["success"]``
    at the last step, None when it reports none), seconds per decision, frames if recorded."""

    seed: int
    ret: float = 0.0
    length: int = 0
    terminated: bool = False
    success: bool | None = None
    seconds: list = field(default_factory=list)
    frames: list = field(default_factory=list)
    observations: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    subgoals: list = field(default_factory=list)  # the upper level's sub-goal at each decision (two levels)
    upper_path: list | None = None  # the abstract states the upper level planned at the first decision
    reset_info: dict = field(default_factory=dict)  # the reset's numeric info (a maze's goal)
    positions: list = field(default_factory=list)  # the agent's xy each step where the env tells it (env_facts)
    rng: object = None  # the planner's random state after the last decision (the next episode starts there)


def run_episode(env, planner: Planner, *, seed: int, record: bool = False, frame_every: int = 1,
                max_steps: int | None = None, on_step=None, policy=None, options: dict | None = None,
                rng: torch.Tensor | None = None) -> Episode:
    """Reset with ``seed`` and act until the episode ends (or ``max_steps``); the steps are
    :func:`ebmgraph.agent.loop.rollout`'s, the recording :class:`_EpisodeRecorder`'s.

    Args:
        record: keep ``env.render()`` frames (the env must be made with ``render_mode="rgb_array"``).
        on_step: called after every step (a progress bar's update).
        policy: ``observation -> action`` instead of planning (a baseline such as zero torque).
        options: passed to ``env.reset`` (e.g. a task's goal).
        rng: the planner's random state to start from (``Episode.rng`` of the previous episode); default:
            seeded from the planner's seed.
    """
    rec = _EpisodeRecorder(Episode(seed), env, planner, policy, rng, record, frame_every, on_step)
    rollout(env, rec.act, seed=seed, options=options, episodes=1, max_steps=max_steps, on_reset=rec.begin,
            on_step=rec.step)
    return rec.ep


class _EpisodeRecorder:
    """:func:`run_episode`'s callbacks: plans (or asks ``policy``) each action and fills an :class:`Episode`
    with what :func:`ebmgraph.agent.loop.rollout` reports."""

    def __init__(self, ep: Episode, env, planner, policy, rng, record: bool, frame_every: int, on_step):
        self.ep, self.env, self.planner, self.policy, self.rng = ep, env, planner, policy, rng
        self.record, self.frame_every, self.on_step = record, frame_every, on_step
        self.state = PlanState()

    def begin(self, episode: int, obs, info: dict, facts: dict) -> None:
        """The reset: the planner's first state (values from the reset's info, the random state carried in)."""
        p, ep = self.planner, self.ep
        self.state = p.initial_state(p.binding.reset_values(info, p.ebm), self.rng) if p is not None else PlanState()
        ep.reset_info = {k: np.asarray(v) for k, v in info.items() if isinstance(v, (int, float, np.ndarray))}
        ep.reset_info.update({k: v for k, v in facts.items() if k != "xy"})  # envs.INFO_HOOKS (a maze's goal_xy)

    def act(self, obs):
        """One decision, timed; the frame before it when recording."""
        ep = self.ep
        if self.record and ep.length % self.frame_every == 0:
            ep.frames.append(self.env.render())
        if self.policy is not None:
            t0 = time.perf_counter()
            action = self.policy(obs)
            ep.seconds.append(time.perf_counter() - t0)
            return action
        action, self.state, d = plan_step(self.planner, obs, self.state)
        ep.seconds.append(d.seconds)
        if d.subgoal is not None:
            ep.subgoals.append(d.subgoal)
        if ep.upper_path is None and d.upper_path is not None:
            ep.upper_path = list(d.upper_path)
        return action

    def step(self, tr) -> None:
        """Record one transition; at the episode's end, how it ended (and its last frame)."""
        ep = self.ep
        ep.observations.append(np.asarray(tr.obs))
        if "xy" in tr.facts:
            ep.positions.append(tr.facts["xy"])
        ep.actions.append(np.asarray(tr.action))
        ep.rewards.append(float(tr.reward))
        ep.ret += float(tr.reward)
        ep.length += 1
        if self.on_step is not None:
            self.on_step()
        if tr.last:
            ep.terminated = bool(tr.terminated)
            ep.rng = self.state.rng
            ep.success = bool(tr.info["success"]) if "success" in tr.info else None
            if self.record:
                ep.frames.append(self.env.render())


class Mode1:
    """Mode-1 (§3.1.1, Figure 3): act with one forward pass of a policy the spec computes, e.g.
    ``a_tilde: A(obs)`` of a policy trained from planned actions (Figure 5, §3.1.3). No planning.

    Args:
        ebm: the compiled spec holding the policy (weights loaded).
        output: the function whose value is the action.
        env_id: the environment whose spaces the output and observation must fit.
        obs: the observed variable receiving the observation (default: the only one the output reads).
    """

    def __init__(self, ebm, output: str, env_id: str, *, obs: str | None = None):
        import gymnasium as gym

        from .envs import EnvMismatch, check_observation, make_env

        chk, g = ebm.checked, ebm.graph
        wanted = [n for n in chk.elements.nodes if n[0] == output]
        if not wanted or output not in {f.target.name for f in g.functions}:
            raise EnvMismatch(f"{g.name} has no function {output!r} to act with (functions: "
                              f"{', '.join(dict.fromkeys(f.target.name for f in g.functions))})")
        need = ancestors_of(chk.elements, wanted)
        leaves = sorted({n for n, _ in need} & {v.name for v in g.variables})
        if obs is None:
            if len(leaves) != 1:
                raise EnvMismatch(f"{output} reads {', '.join(leaves)}; Mode-1 acts from one observation (obs=...)")
            obs = leaves[0]
        elif leaves != [obs]:
            raise EnvMismatch(f"{output} reads {', '.join(leaves)}, not only the observation {obs}")
        env = make_env(env_id)
        try:
            ospace, aspace = env.observation_space, env.action_space
        finally:
            env.close()
        check_observation(ebm, obs, ospace, env_id)
        out_shape = tuple(chk.shapes[output]) if output in chk.shapes else None
        if isinstance(aspace, gym.spaces.Discrete):
            raise EnvMismatch(f"{env_id} acts with Discrete({aspace.n}); Mode-1 policies here output Box actions")
        if out_shape != tuple(aspace.shape):
            raise EnvMismatch(f"{output} is {list(out_shape or ())}, but {env_id} acts with {list(aspace.shape)}")
        self.ebm, self.output, self.obs, self.env_id = ebm, output, obs, env_id
        self.low, self.high = np.asarray(aspace.low, np.float32), np.asarray(aspace.high, np.float32)
        self.out_shape = out_shape
        self._label = output if output not in chk.lengths else f"{output}[{wanted[0][1]}]"
        check_eval_mode(ebm)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Actions ``[B, *A]`` (inside the action box) for states ``[B, *S]`` (a planner's warm start)."""
        with torch.no_grad():
            a = self.ebm.evaluate({self.obs: x.to(self.ebm.dtype)}, outputs=[self._label], validate=False)[self._label]
        return torch.clamp(a, torch.as_tensor(self.low, dtype=a.dtype, device=a.device),
                           torch.as_tensor(self.high, dtype=a.dtype, device=a.device))

    def __call__(self, observation):
        """The action for one observation (run_episode times each call)."""
        x = torch.as_tensor(np.asarray(observation), dtype=self.ebm.dtype, device=self.ebm.device)[None]
        a = self.act(x)[0].cpu().numpy().astype(np.float32)
        return a.reshape(self.low.shape)


@dataclass
class Results:
    """Seeded episodes of one planner on one environment."""

    env_id: str
    method: str
    settings: dict
    episodes: list

    @property
    def returns(self) -> np.ndarray:
        return np.array([e.ret for e in self.episodes])

    @property
    def seconds(self) -> np.ndarray:
        return np.concatenate([np.asarray(e.seconds) for e in self.episodes]) if self.episodes else np.zeros(0)

    def summary(self) -> dict:
        r, s = self.returns, self.seconds
        return {"env": self.env_id, "method": self.method,
                "settings": {k: v for k, v in self.settings.items() if k != "init"},
                "episodes": len(r), "seeds": [e.seed for e in self.episodes],
                "returns": [round(float(x), 3) for x in r], "mean_return": float(r.mean()) if len(r) else None,
                "std_return": float(r.std()) if len(r) else None, "lengths": [e.length for e in self.episodes],
                "ms_per_decision_median": float(np.median(s) * 1e3) if len(s) else None,
                "ms_per_decision_mean": float(np.mean(s) * 1e3) if len(s) else None,
                **self.success_summary()}

    def success_summary(self) -> dict:
        """``{success_rate, successes}`` where the env reports success (``info["success"]``), else ``{}``."""
        flags = [e.success for e in self.episodes if e.success is not None]
        if not flags:
            return {}
        return {"success_rate": float(np.mean(flags)), "successes": int(sum(flags))}


def run(env_id: str, planner: Planner | None = None, *, episodes: int = 1, seed: int = 0, record_first: bool = False,
        frame_every: int = 1, max_steps: int | None = None, progress: bool = True, policy=None, env=None,
        options: list[dict] | None = None) -> Results:
    """``episodes`` seeded episodes (seeds ``seed, seed+1, ...``) with a progress bar over steps.

    ``options``: the reset's options, episode ``i`` taking ``options[i % len(options)]`` (e.g. a
    maze's five tasks, ``[{"task_id": k} for k in range(1, 6)]``).

    ``env`` reuses an environment (made with ``make_env(env_id, render=record_first)`` otherwise).
    """
    from ..util import progress as progress_bar

    env = env if env is not None else make_env(env_id, render=record_first)
    limit = getattr(getattr(env, "spec", None), "max_episode_steps", None)
    total = episodes * (max_steps or limit or 0) or None
    bar = progress_bar(total=total, disable=not progress, desc=f"plan {env_id}", unit="step")
    out, rng = [], None
    try:
        for i in range(episodes):
            ep = run_episode(env, planner, seed=seed + i, record=record_first and i == 0, frame_every=frame_every,
                             max_steps=max_steps, on_step=bar.update, policy=policy,
                             options=options[i % len(options)] if options else None, rng=rng)
            rng = ep.rng
            out.append(ep)
            bar.set_postfix({"return": f"{ep.ret:.1f}", "mean": f"{np.mean([e.ret for e in out]):.1f}"})
    finally:
        bar.close()
        env.close()
    method = planner.method if planner is not None else "policy"
    return Results(env_id, method, dict(planner.settings) if planner else {}, out)


def make_planner(ebm, env_id: str, *, method: str | None = None, settings: dict | None = None, seed: int = 0,
                 obs: str | None = None, action: str | None = None, given: dict | None = None,
                 carry: dict | None = None, warm_policy=None, warm_state: str = "s",
                 from_info: dict | None = None, upper=None, upper_settings: dict | None = None,
                 horizon: int | None = None) -> Planner:
    """Bind ``ebm`` to ``env_id``'s spaces (checked) and build a :class:`Planner`.

    ``method`` None: :func:`ebmgraph.agent.envs.default_method` — MPPI for a continuous action array (one
    batched sampling step per decision), ``auto`` (exact or tree search by domain) for a discrete one; the
    same default as ``ebmgraph plan``. ``horizon``: the plan's length (the spec's size ``T`` by default).

    With ``upper``, the sub-goal's variable (``upper_settings["subgoal"]``) is set by the upper level
    each decision; it needs no value here.
    """
    if horizon is not None:
        ebm = with_horizon(ebm, horizon, action)
    us = dict(upper_settings or {})
    sub = us.get("subgoal") or us.get("goal", "goal")
    given = dict(given or {})
    if upper is not None and ebm.graph.var(sub) is not None and sub not in given and sub not in (from_info or {}):
        given[sub] = np.zeros(tuple(ebm.var_shape(sub)), np.float32)  # a placeholder the upper level overwrites
    env = make_env(env_id)
    try:
        b = bind(ebm, env, obs=obs, action=action, given=given, carry=carry, from_info=from_info)
    finally:
        env.close()
    if method is None:
        method = default_method(ebm, b.action)
    if upper is not None:
        goal = us.get("goal", "goal")
        funcs = {f.target.name for f in ebm.graph.functions}
        if ebm.graph.var(goal) is None and goal not in funcs:
            raise SpecError(f"two-level planning: {ebm.graph.name} has no variable or function {goal} (goal=...)")
        if ebm.graph.var(goal) is not None and goal not in b.from_info and goal not in b.given:
            raise SpecError(f"two-level planning toward {goal}, which neither the reset's info (--from-info) nor "
                            f"--given sets")
        if ebm.graph.var(sub) is None or ebm.graph.var(sub).role != "observed":
            raise SpecError(f"two-level planning: {ebm.graph.name} has no observed variable {sub} to receive the "
                            f"sub-goal (subgoal=...)")
    return Planner(ebm, b, method, dict(settings or {}), seed, warm_policy=warm_policy, warm_state=warm_state,
                   upper=upper, upper_settings=us)


def with_horizon(ebm, horizon: int, action: str | None = None):
    """``ebm`` recompiled so that its action array has ``horizon`` steps (the size its range reads), with the
    same parameters and weights (``ebmgraph plan --horizon H``); ``ebm`` itself when it already has them."""
    from ..compiled import compile as compile_spec
    from .envs import horizon_sizes

    externals = {n: ebm.mods[n] for n, i in ebm.checked.modules.items() if i.kind == "external" and n in ebm.mods}

    def build(sz):
        return compile_spec(ebm.graph, sizes={**ebm.checked.sizes, **sz}, seed=None, modules=externals or None,
                            dtype=ebm.dtype, device=ebm.device)

    acts = [v.name for v in ebm.graph.variables if v.role == "action" and (action is None or v.name == action)]
    if len(acts) == 1 and ebm.checked.lengths.get(acts[0]) == horizon:
        return ebm
    out = build(horizon_sizes(ebm.graph, action, int(horizon), build))
    out.load_state_dict(ebm.state_dict())
    return out


__all__ = ["Mode1", "Planner", "PlanState", "Decision", "Episode", "Results", "PlanError", "plan_step", "run_episode",
           "run", "make_planner", "shift_plan", "with_horizon"]
