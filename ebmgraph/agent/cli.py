"""``ebmgraph plan`` (receding-horizon control in an environment) and ``ebmgraph collect``
(transitions for training world models). The same calls as :func:`ebmgraph.agent.run` and
:func:`ebmgraph.agent.collect.collect`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

from ..cliargs import (MODULE_HELP, PARAMS_HELP, count, load_modules, load_params, parse_settings, parse_sizes, positive,
                       print_errors)
from ..errors import SpecError
from .envs import DEFAULT_METHOD_HELP


def _given(items: list[str] | None) -> dict:
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k:
            raise SystemExit(f"ebmgraph: --given takes NAME=v1,v2,..., got {it!r}")
        try:
            out[k] = np.array([float(x) for x in v.split(",")], dtype=np.float32)
        except ValueError:
            raise SystemExit(f"ebmgraph: --given {it}: values must be numbers separated by commas") from None
    return out


def _pairs(items: list[str] | None, flag: str, form: str) -> dict:
    """``["m=m1", ...]`` -> ``{"m": "m1", ...}``; ``form`` (e.g. ``VARIABLE=FUNCTION (e.g. m=m1)``) names them."""
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k or not v:
            raise SystemExit(f"ebmgraph: {flag} takes {form}, got {it!r}")
        out[k] = v
    return out


def _reset_options(items: list[str] | None) -> list[dict] | None:
    """``--reset task_id=1,2,3`` -> ``[{"task_id": 1}, {"task_id": 2}, {"task_id": 3}]`` (cycled per episode)."""
    if not items:
        return None
    cols = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k or not v:
            raise SystemExit(f"ebmgraph: --reset takes KEY=V1,V2,... (e.g. task_id=1,2,3,4,5), got {it!r}")
        try:
            cols[k] = [int(x) for x in v.split(",")]
        except ValueError:
            raise SystemExit(f"ebmgraph: --reset {it}: values must be integers separated by commas") from None
    n = max(len(v) for v in cols.values())
    return [{k: v[i % len(v)] for k, v in cols.items()} for i in range(n)]


THREADS_HELP = ("torch's CPU threads while acting (default 1: a decision's tensors are small, and on a busy 2-core "
                "machine a second thread made each decision 7-36x slower, measured; 0: torch's default, one per core)")


@contextlib.contextmanager
def _threads(n: int):
    """torch's intra-op threads set to ``n`` (0: left as they are) for the verb, restored after."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_planner(spec: str, env_id: str, *, method: str | None, settings: dict, seed: int, sizes: dict,
                 horizon: int | None, params: str | None, modules: dict, obs: str | None = None,
                 action: str | None = None, given: dict | None = None, task: str | None = None,
                 carry: dict | None = None,
                 warm_policy=None, warm_state: str = "s", from_info: dict | None = None, upper=None,
                 upper_settings: dict | None = None):
    """Compile ``spec`` (at ``horizon`` steps), load ``params`` (:func:`~ebmgraph.cliargs.load_params`), configure ``task``, bind it to ``env_id``.

    ``method`` None: :func:`ebmgraph.agent.envs.default_method` (MPPI for continuous action
    arrays, ``auto`` for discrete ones). ``settings`` keys that name a weight of the spec set that
    weight (the configurator's knob, after ``task``); the others are the method's settings.
    """
    from ..compiled import compile as compile_spec
    from ..compiled import read_spec
    from .envs import default_method, horizon_sizes
    from .mpc import make_planner

    g = read_spec(spec)
    if horizon is not None:
        sizes = {**sizes, **horizon_sizes(g, action, horizon,
                                          lambda sz: compile_spec(g, sizes={**sizes, **sz}, seed=seed, modules=modules))}
    ebm = load_params(compile_spec(g, sizes=sizes, seed=seed, modules=modules), params)
    if task is not None:
        try:
            ebm.configure(task)
        except KeyError as exc:
            raise SpecError(str(exc.args[0])) from None
    names = set(ebm.weights())
    wset = {k: v for k, v in settings.items() if k in names}
    if wset:
        ebm.set_weights(**wset)
    settings = {k: v for k, v in settings.items() if k not in names}
    if method is None:
        method = default_method(ebm, action)
    return make_planner(ebm, env_id, method=method, settings=settings, seed=seed, obs=obs, action=action, given=given,
                        carry=carry, warm_policy=warm_policy, warm_state=warm_state, from_info=from_info,
                        upper=upper, upper_settings=upper_settings)


def load_mode1(spec: str, env_id: str, output: str, *, params: str | None, sizes: dict, modules: dict,
               obs: str | None = None, seed: int = 0):
    """Compile ``spec``, load ``params`` and act with its function ``output`` (Mode-1)."""
    from ..compiled import compile as compile_spec
    from .mpc import Mode1

    return Mode1(load_params(compile_spec(spec, sizes=sizes, seed=seed, modules=modules), params), output, env_id,
                 obs=obs)


def cmd_plan(args) -> int:
    with _threads(args.threads):
        return _plan(args)


def _plan(args) -> int:
    """``plan``'s stages: check the outputs, load the actor, run the episodes (errors end here, one line each),
    then summarize, draw, keep the memory, write ``results.json`` and report."""
    from ..util import atomic_write_text

    try:
        _check_outputs(args)
        if args.eval_data and not args.env.startswith("swm/"):
            raise ValueError(f"--eval-data runs stable-worldmodel's evaluation loop, for swm/ envs (swm/TwoRoom-v1, "
                             f"swm/PushT-v1), not {args.env}")
        planner, upper_settings = _load_actor(args)
        if args.eval_data:
            return _swm_evaluate(args, planner)
        res = _episodes(args, planner)
    except SpecError as exc:
        print_errors(exc)
        return 1
    except (ValueError, OSError) as exc:
        print(f"ebmgraph plan: error: {exc}", file=sys.stderr)
        return 1
    summary = _summary(args, res, planner, upper_settings)
    out = Path(args.out or f"runs/plan-{planner.ebm.graph.name}-{args.env}")
    out.mkdir(parents=True, exist_ok=True)
    files = _pictures(args, res, planner, summary, out)
    summary["files"] = files
    if args.memory:
        _save_memory(args, res, summary, files)
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary))
        return 0
    _print_plan(args, res, summary, out, files)
    return 0


def _swm_evaluate(args, planner) -> int:
    """``plan --eval-data STORE``: stable-worldmodel's dataset-driven ``World.evaluate`` (the peers' protocol) over
    ``--episodes`` (start, goal) pairs of the store, planned as one batch per step; results.json and one line."""
    from ..util import atomic_write_text
    from . import swm_eval

    if getattr(planner, "binding", None) is None or args.mode1:
        raise ValueError("--eval-data evaluates a planner (not --mode1)")
    goal = next((v for v, k in planner.binding.from_info.items() if k == "goal"), None)
    if goal is None:
        raise ValueError("--eval-data: name the spec's goal frame with --from-info VAR=goal (e.g. goal=goal)")
    r = swm_eval.evaluate(planner, args.eval_data, env_id=args.env, goal_var=goal, goal_offset=args.goal_offset,
                          budget=args.budget, episodes=args.episodes, seed=args.seed,
                          record=0 if args.no_frames else min(8, args.episodes))
    out = Path(args.out or f"runs/plan-{planner.ebm.graph.name}-{args.env.replace('/', '_')}")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"env": args.env, "spec": args.spec, "params": args.params, "protocol": "stable-worldmodel "
               "World.evaluate (dataset-driven)", "data": args.eval_data, "episodes": args.episodes,
               "goal_offset": args.goal_offset, "budget": args.budget, "seed": args.seed, "method": planner.method,
               "settings": {k: v for k, v in planner.settings.items() if k != "init"},
               "success_rate": r["success_rate"], "successes": r["successes"].astype(int).tolist(),
               "starts": [[int(e), int(t)] for e, t in zip(r["episodes"], r["starts"])],
               "ms_per_decision_median": r["ms_per_decision"], "wall_s": r["wall_s"]}
    if r.get("frames"):
        from . import report

        what = f"{args.env}, goal {args.goal_offset} steps ahead, budget {args.budget}"
        summary["files"] = {
            "episodes": str(report.start_goal_final(r["frames"], r["goals"], r["successes"], out / "episodes.png",
                                                    title=what)),
            "gif": str(report.gif(report.beside(r["frames"][0], r["goals"][0]), out / "episode0.gif", fps=10,
                                  width=260, every=1))}
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.env}: success {r['success_rate']:.1f}% of {args.episodes} episodes (World.evaluate, goal "
              f"{args.goal_offset} steps ahead, budget {args.budget}, seed {args.seed}); {r['ms_per_decision']:.1f} ms "
              f"per decision (median, batched), {r['wall_s']:.0f} s; wrote {out / 'results.json'}")
    return 0


def _check_outputs(args) -> None:
    """A folder or file that cannot be written fails now, not after the episodes."""
    from ..util import check_writable

    if args.out:
        check_writable(Path(args.out) / "results.json")
    if args.memory:
        check_writable(args.memory)


def _load_actor(args):
    """``(actor, upper settings)``: a :class:`Mode1` policy (``--mode1``) or a planner (with its warm policy and
    its upper level when asked)."""
    if args.mode1:
        return load_mode1(args.spec, args.env, args.mode1, params=args.params, sizes=parse_sizes(args.size),
                          modules=load_modules(args.module), obs=args.obs, seed=args.seed), {}
    warm = None
    if args.warm_policy:
        spec, _, output = args.warm_policy.partition(":")
        warm = load_mode1(spec, args.env, output or "a_tilde", params=args.warm_policy_params, sizes={},
                          modules=load_modules(args.module), seed=args.seed)
    upper, upper_settings = None, {}
    if args.upper:
        from ..infer.hierarchical import AbstractGraph

        upper = AbstractGraph.load(args.upper)
        upper_settings = {"mode": args.upper_mode, "goal": args.upper_goal, "subgoal": args.subgoal or args.upper_goal,
                          "state": args.upper_state, "candidates": args.upper_candidates}
    planner = load_planner(args.spec, args.env, method=args.method, settings=parse_settings(args.set),
                           seed=args.seed, sizes=parse_sizes(args.size), horizon=args.horizon,
                           params=args.params, modules=load_modules(args.module), obs=args.obs,
                           action=args.action, given=_given(args.given), task=args.task,
                           carry=_pairs(args.carry, "--carry", "VARIABLE=FUNCTION (e.g. m=m1)"),
                           warm_policy=warm, warm_state=args.warm_state,
                           from_info=_pairs(args.from_info, "--from-info", "VARIABLE=KEY (e.g. goal=goal)"),
                           upper=upper, upper_settings=upper_settings)
    return planner, upper_settings


def _episodes(args, actor):
    """The seeded episodes (:func:`ebmgraph.agent.run`) of a planner, or of a Mode-1 policy (``--mode1``)."""
    from .mpc import run

    common = dict(episodes=args.episodes, seed=args.seed, record_first=not args.no_frames,
                  frame_every=args.frame_every, max_steps=args.max_steps, progress=not args.quiet)
    if args.mode1:
        res = run(args.env, None, **common, policy=actor)
        res.method = f"mode1 {args.mode1}"
        return res
    if args.parallel > 1:
        from .batch import run_parallel

        args.no_frames = True  # episodes stepped together: no first episode to film
        return run_parallel(args.env, actor, episodes=args.episodes, seed=args.seed, parallel=args.parallel,
                            max_steps=args.max_steps, progress=not args.quiet, options=_reset_options(args.reset))
    return run(args.env, actor, **common, options=_reset_options(args.reset))


def _summary(args, res, planner, upper_settings: dict) -> dict:
    """``results.json``'s record (less its files): the episodes' summary, the spec, its weights, the upper level."""
    summary = res.summary()
    summary["spec"] = planner.ebm.graph.name
    summary["horizon"] = planner.binding.T if not args.mode1 else None
    summary["task"] = args.task
    summary["weights"] = {k: round(float(v), 6) for k, v in planner.ebm.weights().items()}
    summary["mean_abs_action"] = float(np.mean([np.abs(np.asarray(e.actions, dtype=float)).mean()
                                                for e in res.episodes]))
    if args.upper:
        summary["upper"] = {"file": args.upper, **planner.upper.summary(), **upper_settings}
    return summary


def _pictures(args, res, planner, summary: dict, out: Path) -> dict:
    """The returns plot, a maze's paths, the first episode's frames and GIF: ``{what: path}``."""
    from . import report

    name = planner.ebm.graph.name
    files = {"returns_plot": str(report.returns_plot(res, out / "returns.png",
                                                     title=f"{args.env}: {name}, {res.method}"
                                                           + (f", horizon {summary['horizon']}" if summary["horizon"]
                                                              else "")))}
    if res.episodes and report.is_maze_episode(args.env):
        drawn = None if args.env.startswith("visual-") else getattr(planner, "upper", None)  # xy-space graphs only
        files["maze_paths"] = str(report.maze_paths(args.env, res, out / "maze_paths.png", upper=drawn,
                                                    title=f"{args.env}: {name}, {res.method}"
                                                          + (f", {args.upper_mode}" if args.upper else "")))
    if res.episodes and res.episodes[0].frames:
        files["frames"] = str(report.frame_strip(res.episodes[0].frames, out / "episode0_frames.png"))
        files["gif"] = str(report.gif(res.episodes[0].frames, out / "episode0.gif"))
    return files


def _save_memory(args, res, summary: dict, files: dict) -> None:
    """``--memory``: the episodes' short-term memory (Fig. 7), a critic's training set."""
    from .memory import ShortTermMemory

    mem = ShortTermMemory()
    for e in res.episodes:
        mem.add_episode(e)
    arr = mem.save(args.memory, args.gamma, {"env_id": args.env, "spec": summary["spec"], "seeds": summary["seeds"]})
    files["memory"] = str(args.memory)
    summary["memory"] = {"path": str(args.memory), "records": int(len(arr["tau"])), "gamma": args.gamma}


def _print_plan(args, res, summary: dict, out: Path, files: dict) -> None:
    """One line per episode, the mean return, the files written."""
    for e in res.episodes:
        print(f"episode seed {e.seed}: return {e.ret:.2f}, {e.length} steps"
              + (", terminated" if e.terminated else "") + f", {1e3 * np.median(e.seconds):.2f} ms per decision")
    print(f"{args.env} with {summary['spec']} ({res.method}"
          + (f", horizon {summary['horizon']}" if summary["horizon"] else "") + "): mean return "
          f"{summary['mean_return']:.2f} ± {summary['std_return']:.2f} over {len(res.episodes)} episodes "
          f"(seeds {args.seed}..{args.seed + len(res.episodes) - 1}); {summary['ms_per_decision_median']:.2f} ms per "
          f"decision (median)" + (f"; success {summary['successes']}/{len(res.episodes)}"
                                   if "success_rate" in summary else ""))
    print(f"wrote {out}/results.json, " + ", ".join(files.values()))


def _encode(encoder: str, params: str | None, obs: np.ndarray, batch: int = 1024) -> np.ndarray:
    """``obs`` through ``SPEC:FUNCTION`` (e.g. a JEPA's ``s_x: Enc(image(obs))``), with trained weights."""
    import torch

    from ..compiled import compile as compile_spec
    from ..train import values

    spec, _, fn = encoder.partition(":")
    if not fn:
        raise SpecError(f"--encoder takes SPEC:FUNCTION (e.g. world_model.yaml:s_x), got {encoder!r}")
    ebm = load_params(compile_spec(spec), params)
    ebm.eval()
    import networkx as nx

    leaves = [v.name for v in ebm.graph.variables if v.role == "observed"]
    try:  # the one observed variable the function reads (g: Enc(image(goal)) reads goal)
        feeds = sorted({n for n, _ in nx.ancestors(ebm.checked.elements, (fn, 0))} & set(leaves))
    except nx.NetworkXError:
        feeds = []
    name = feeds[0] if len(feeds) == 1 else "obs" if "obs" in leaves else leaves[0]
    out = []
    with torch.no_grad():
        for i in range(0, len(obs), batch):
            x = torch.as_tensor(obs[i:i + batch])
            out.append(values(ebm, [fn], **{name: x if not x.is_floating_point() else x.to(ebm.dtype)})[fn].numpy())
    return np.concatenate(out).astype(np.float64)


def cmd_fit_upper(args) -> int:
    """Learn a level-2 model (abstract states and moves) from collected transitions."""
    from ..infer.hierarchical import AbstractGraph
    from ..util import check_writable, read_npz
    from . import report
    from .collect import read_meta

    try:
        check_writable(args.out)
        if str(args.data).endswith(".h5"):  # an episode store: its frames in time order, episode by episode
            from ..train.episodes import Episodes

            store = Episodes(args.data)
            n = int((store.lengths + 1).sum()) if args.frames is None else min(args.frames, int((store.lengths + 1).sum()))
            obs = store.read("frames", "obs", 0, n)
            ep = np.repeat(np.arange(len(store)), store.lengths + 1)[:n]
            meta = store.meta
        else:
            arrays = read_npz(args.data, ["obs", "episode"])
            obs, ep = arrays["obs"], arrays["episode"]
            meta = read_meta(args.data)
        if args.encoder:
            obs = _encode(args.encoder, args.params, obs)
        dims = (tuple(range(obs.reshape(len(obs), -1).shape[1])) if args.dims == "all"
                else tuple(int(d) for d in args.dims.split(",")))
        g = AbstractGraph.fit(obs, ep, unit=args.unit or 0.0, clusters=args.clusters or 0, pool=args.pool, dims=dims,
                              min_count=args.min_count, seed=args.seed,
                              meta={"data": str(args.data), "env_id": meta.get("env_id"), "steps": int(len(obs))})
        g.save(args.out)
    except SpecError as exc:
        print_errors(exc)
        return 1
    except (ValueError, OSError, KeyError) as exc:
        print(f"ebmgraph fit-upper: error: {exc}", file=sys.stderr)
        return 1
    s = g.summary()
    pic = None
    if meta.get("env_id") and report.is_maze_episode(meta["env_id"]) and not args.encoder:
        pic = report.maze_paths(meta["env_id"], None, Path(args.out).with_suffix(".png"), upper=g,
                                title=f"{meta['env_id']}: {s['abstract_states']} abstract states, {s['moves']} moves "
                                      f"learned from {len(obs)} steps")
    how = f"{g.clusters} k-means clusters" if g.clusters else f"grid {g.unit}"
    print(f"wrote {args.out}: {s['abstract_states']} abstract states, {s['moves']} moves ({how}, pooled over "
          f"{g.pool} steps) from {len(obs)} transitions of {meta.get('env_id')}" + (f"; picture {pic}" if pic else ""))
    return 0


def cmd_collect(args) -> int:
    if args.env_id and args.env and args.env_id != args.env:
        print(f"ebmgraph collect: two environments given ({args.env_id} and --env {args.env}); give one",
              file=sys.stderr)
        return 2
    args.env_id = args.env or args.env_id
    if not args.env_id:
        print("ebmgraph collect: which environment? --env ID (e.g. --env Pendulum-v1)", file=sys.stderr)
        return 2
    with _threads(args.threads):
        return _collect(args)


def _collect(args) -> int:
    from .collect import collect

    try:
        planner = None
        if args.policy == "plan":
            if not args.plan:
                raise SpecError("--policy plan needs a spec: --policy plan --plan SPEC")
            planner = load_planner(args.plan, args.env_id, method=args.method, settings=parse_settings(args.set),
                                   seed=args.seed, sizes=parse_sizes(args.size), horizon=args.horizon,
                                   params=args.params, modules=load_modules(args.module))
        data = collect(args.env_id, args.steps, planner=planner, seed=args.seed,
                       repeat=args.repeat, epsilon=args.epsilon, out=args.out, progress=not args.quiet,
                       oracle=args.policy == "oracle", noise=args.noise)
    except SpecError as exc:
        print_errors(exc)
        return 1
    except (ValueError, OSError) as exc:
        print(f"ebmgraph collect: error: {exc}", file=sys.stderr)
        return 1
    m = data["_meta"]
    r = data["reward"]
    print(f"wrote {args.out}: {m['steps']} transitions of {m['env_id']} in {m['episodes']} episodes "
          f"(policy {m['policy']}, seed {m['seed']}); mean reward per step {float(r.mean()):.3f}")
    return 0


def register_cli(subparsers) -> None:
    """The agent's verbs: ``plan``, ``fit-upper``, ``collect``."""
    _plan_parser(subparsers)
    _fit_upper_parser(subparsers)
    _collect_parser(subparsers)


def _plan_parser(subparsers) -> None:
    p = subparsers.add_parser("plan", help="receding-horizon control (Mode-2) of a gymnasium environment")
    p.add_argument("spec")
    p.add_argument("--env", required=True, help="gymnasium id, e.g. Pendulum-v1, CartPole-v1")
    p.add_argument("--params", "--weights", dest="params", metavar="FILE", help=PARAMS_HELP)
    p.add_argument("--episodes", type=count(), default=1)
    p.add_argument("--seed", type=count(0), default=0, help="episodes use seeds SEED, SEED+1, ...; also the planner's")
    p.add_argument("--method", help="gradient | cem | mppi | exhaustive | beam | dp | mcts | auto; "
                                     + DEFAULT_METHOD_HELP)
    p.add_argument("--horizon", type=count(), help="planning steps (sets the size the action array's range reads)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a method setting (samples=256, iters=2, ...) or a weight of the spec (u_energy=0.5)")
    p.add_argument("--task", help="a task of the spec's tasks: table; the configurator sets its weights (§6)")
    p.add_argument("--size", action="append", metavar="NAME=INT")
    p.add_argument("--module", action="append", metavar="NAME=PKG.MOD:ATTR", help=MODULE_HELP)
    p.add_argument("--obs", help="the variable that receives the observation (default: the only observed one)")
    p.add_argument("--action", help="the action array to plan (default: the only action variable)")
    p.add_argument("--mode1", metavar="NAME", help="act with the spec's function NAME in one forward pass (Mode-1, "
                                                    "Fig. 3), e.g. a policy trained from planned actions; no planning")
    p.add_argument("--warm-policy", metavar="SPEC[:FUNCTION]",
                   help="a Mode-1 policy (FUNCTION, default a_tilde) proposes each plan, which the planner refines "
                        "(§3.1.3); its parameters with --warm-policy-params")
    p.add_argument("--warm-policy-params", "--warm-policy-weights", dest="warm_policy_params", metavar="FILE")
    p.add_argument("--warm-state", default="s", help="the state array s[t] the warm policy reads (default s)")
    p.add_argument("--given", action="append", metavar="NAME=v1,v2", help="a fixed value for another observed variable")
    p.add_argument("--carry", action="append", metavar="VAR=FUNCTION",
                   help="carry state between decisions: VAR starts at zeros and takes FUNCTION's value after each "
                        "decision (world-state memory, e.g. m=m1 with m1: Write(m, q, r))")
    p.add_argument("--from-info", action="append", metavar="VAR=KEY",
                   help="an observed variable set at each reset from the env's info[KEY] (a maze's goal: goal=goal)")
    p.add_argument("--reset", action="append", metavar="KEY=V1,V2",
                   help="reset options cycled over episodes (a maze's five tasks: task_id=1,2,3,4,5)")
    p.add_argument("--upper", metavar="GRAPH", help="plan two levels (Fig. 16): the level-2 model from ebmgraph "
                                                   "fit-upper sets this spec's sub-goal each decision")
    p.add_argument("--upper-mode", choices=("top_down", "joint"), default="top_down",
                   help="top_down: upper then lower; joint: the best pair over --upper-candidates first moves")
    p.add_argument("--upper-candidates", type=count(), default=3, help="with --upper-mode joint: first moves tried")
    p.add_argument("--upper-goal", default="goal", help="the variable holding the final goal (default goal)")
    p.add_argument("--subgoal", help="the variable receiving the sub-goal (default: the goal's variable)")
    p.add_argument("--upper-state", default="s", help="the level-1 state the upper level encodes (default s[0])")
    p.add_argument("--max-steps", type=count(), help="stop each episode after this many steps")
    p.add_argument("--parallel", type=count(), default=1,
                   help="step N environments together and plan the live ones in one batched minimize per step "
                        "(continuous actions, one level; no frames recorded)")
    p.add_argument("--eval-data", metavar="FILE.h5", help="swm/ envs: run stable-worldmodel's World.evaluate over "
                   "(start, goal) pairs of this episode store's episodes (the peers' protocol; --episodes pairs, "
                   "drawn with --seed as the peers draw them)")
    p.add_argument("--goal-offset", type=count(), default=25, help="with --eval-data: steps from start to goal "
                                                                   "(default 25; the far-goal protocol: 100)")
    p.add_argument("--budget", type=count(), default=50, help="with --eval-data: steps allowed (default 50)")
    p.add_argument("--frame-every", type=count(), default=2, help="record every N-th frame of the first episode")
    p.add_argument("--no-frames", action="store_true", help="do not render the first episode")
    p.add_argument("--out", help="directory for results.json and pictures (default runs/plan-SPEC-ENV)")
    p.add_argument("--memory", metavar="FILE.npz", help="write the short-term memory (s_tau, ic_future) of the "
                                                         "episodes: a critic's training set (Fig. 7)")
    p.add_argument("--gamma", type=float, default=0.95, help="discount of the future intrinsic energy (--memory)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--threads", type=count(0), default=1, help=THREADS_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_plan)


def _fit_upper_parser(subparsers) -> None:
    u = subparsers.add_parser("fit-upper", help="learn a level-2 model (abstract states, moves) from collected data")
    u.add_argument("data", help="an .npz or an episode store (.h5) from ebmgraph collect")
    u.add_argument("--frames", type=count(), help="with a .h5 store: fit on its first N frames (default all)")
    q = u.add_mutually_exclusive_group(required=True)
    q.add_argument("--unit", type=positive, help="the grid's side in level-1 units (a maze's cell: 4)")
    q.add_argument("--clusters", type=count(), help="k-means clusters of the level-1 states instead of a grid (a wider "
                                                "learned representation)")
    u.add_argument("--seed", type=count(0), default=0, help="the k-means seed (--clusters)")
    u.add_argument("--pool", type=count(), default=5, help="steps averaged into one level-2 state (temporal pooling)")
    u.add_argument("--dims", default="0,1", help="the level-1 features the grid or the clusters read (default 0,1; "
                                                 "all: every feature)")
    u.add_argument("--min-count", type=count(), default=1, help="keep moves seen at least this often")
    u.add_argument("--encoder", metavar="SPEC:FUNCTION", help="fit on the observations' representations, e.g. a "
                                                               "JEPA's s_x (with --params): level 1 from pixels")
    u.add_argument("--params", "--weights", dest="params", metavar="FILE", help="with --encoder: " + PARAMS_HELP)
    u.add_argument("--out", required=True, help="the .safetensors to write")
    u.set_defaults(fn=cmd_fit_upper)


def _collect_parser(subparsers) -> None:
    c = subparsers.add_parser("collect", help="write environment transitions (.npz) or episodes (.h5) for training a world model")
    c.add_argument("env_id", nargs="?", help=argparse.SUPPRESS)  # the positional form, kept as an alias of --env
    c.add_argument("--env", help="gymnasium id, e.g. Pendulum-v1 (as plan --env)")
    c.add_argument("--steps", type=count(), required=True)
    c.add_argument("--out", required=True, help="the .npz (transitions) or .h5 (episodes, read by train in windows of "
                   "K steps) to write, atomically, at the end")
    c.add_argument("--policy", choices=("random", "plan", "oracle"), default="random",
                   help="random actions, a planner (--plan SPEC), or OGBench's noisy oracle navigator (point mazes)")
    c.add_argument("--noise", type=float, default=0.2, help="with --policy oracle: the action noise's std")
    c.add_argument("--plan", metavar="SPEC", help="with --policy plan: the planning spec")
    c.add_argument("--params", "--weights", dest="params", metavar="FILE", help="with --policy plan: " + PARAMS_HELP)
    c.add_argument("--method", help="with --policy plan: as plan's --method (default: mppi for continuous "
                                     "actions, auto for discrete ones)")
    c.add_argument("--horizon", type=count())
    c.add_argument("--set", action="append", metavar="KEY=VALUE")
    c.add_argument("--size", action="append", metavar="NAME=INT")
    c.add_argument("--module", action="append", metavar="NAME=PKG.MOD:ATTR", help=MODULE_HELP)
    c.add_argument("--seed", type=count(0), default=0)
    c.add_argument("--repeat", type=count(), default=1, help="hold each random action for N steps")
    c.add_argument("--epsilon", type=float, default=0.0, help="with --policy plan: random action with this probability")
    c.add_argument("--threads", type=count(0), default=1, help=THREADS_HELP)
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(fn=cmd_collect)
