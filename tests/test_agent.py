"""The agent acts (issue 11): specs meet gymnasium environments, plan with every method their
action domain allows, collect data, learn world models and plan with them. Small and seeded;
nothing here is timed (speed is in BENCHMARKS.md)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT

import ebmgraph
from ebmgraph import agent
from ebmgraph.agent import EnvMismatch, PlanError
from ebmgraph.agent.collect import collect, read_meta
from ebmgraph.cli import main
from ebmgraph.train import get_dataset

gym = pytest.importorskip("gymnasium")
EX = ROOT / "examples" / "specs"


def _pendulum(T=10):
    return ebmgraph.compile(EX / "pendulum_mpc.yaml", sizes={"T": T})


def _cartpole(T=8):
    return ebmgraph.compile(EX / "cartpole_mpc.yaml", sizes={"T": T})


def _zero_policy(env_id):
    env = gym.make(env_id)
    if isinstance(env.action_space, gym.spaces.Discrete):
        return lambda obs: 0
    return lambda obs: np.zeros(env.action_space.shape, np.float32)


# ----------------------------------------------------------------------------- closed loop, every method
PENDULUM_METHODS = {"mppi": {"sigma": 1.5, "temperature": 0.1}, "cem": {"samples": 128, "iters": 2},
                    "gradient": {"optimizer": "adam", "steps": 8, "lr": 0.3}}


@pytest.mark.parametrize("method", list(PENDULUM_METHODS))
def test_pendulum_true_dynamics_beats_zero_torque(method, monkeypatch):
    """One short closed-loop episode per continuous method on Pendulum-v1 with its true dynamics.

    Every method plans inside the torque box itself (the spec's bounds: [-2, 2]): the first action of
    each plan, as the planner chose it, is recorded before ``Binding.to_env`` clips it for the env, so
    a planner that wandered out of its box (and was saved by the clip) fails here."""
    from ebmgraph.agent.envs import Binding

    steps, seeds = 60, [0, 3]
    chosen = []  # each decision's first action as planned, before the env's clip
    to_env = Binding.to_env

    def spy(self, first):
        chosen.append(first.detach().cpu().numpy().reshape(-1).copy())
        return to_env(self, first)

    monkeypatch.setattr(Binding, "to_env", spy)
    planner = agent.make_planner(_pendulum(10), "Pendulum-v1", method=method, settings=PENDULUM_METHODS[method])
    res = agent.run("Pendulum-v1", planner, episodes=len(seeds), seed=seeds[0], max_steps=steps, progress=False)
    base = agent.run("Pendulum-v1", None, episodes=len(seeds), seed=seeds[0], max_steps=steps, progress=False,
                     policy=_zero_policy("Pendulum-v1"))
    assert [e.length for e in res.episodes] == [steps] * len(seeds)
    assert all(len(e.seconds) == steps for e in res.episodes)  # every decision planned
    planned = np.concatenate(chosen)
    acted = np.concatenate([np.asarray(e.actions).reshape(-1) for e in res.episodes])
    assert len(planned) == steps * len(seeds)
    # the planner's own actions lie in the box (the clip did nothing), and the box binds: swinging up
    # takes full torque (measured: 13-18% of the decisions at ±2 for each method)
    assert np.abs(planned).max() <= 2.0, f"{(np.abs(planned) > 2.0).sum()} planned torques beyond ±2, up to " \
        f"{np.abs(planned).max():.2f}"
    np.testing.assert_array_equal(acted, planned.astype(np.float32))
    assert (np.abs(planned) >= 2.0 - 1e-6).mean() > 0.05
    # measured (seeds 0, 3; 60 steps): zero torque -265.5 mean return, mppi -65.4, cem -65.7, gradient -66.2
    assert res.returns.mean() > base.returns.mean() + 100, (res.returns, base.returns)


@pytest.mark.parametrize("method,settings", [("exhaustive", {}), ("beam", {"width": 8}),
                                             ("mcts", {"simulations": 64})])
def test_cartpole_true_dynamics_discrete_methods_keep_the_pole_up(method, settings):
    """Discrete actions (CartPole's two pushes) plan by search; a constant push falls in about 10 steps."""
    planner = agent.make_planner(_cartpole(8), "CartPole-v1", method=method, settings=settings)
    res = agent.run("CartPole-v1", planner, episodes=1, seed=1, max_steps=80, progress=False)
    base = agent.run("CartPole-v1", None, episodes=1, seed=1, max_steps=80, progress=False,
                     policy=_zero_policy("CartPole-v1"))
    assert base.returns[0] < 20
    assert res.returns[0] == 80, res.returns  # upright for all 80 steps
    assert set(np.concatenate([np.atleast_1d(a) for a in res.episodes[0].actions]).tolist()) == {0, 1}


def test_plan_step_is_a_function_of_explicit_state():
    """``plan_step(planner, observation, state)`` depends on nothing but its arguments: the same state
    given twice to the same planner gives the same decision. MPPI samples, so this holds only if the
    sampler's random state is part of ``PlanState`` (not hidden in the planner, where the first call
    would advance it under the second)."""
    ebm = _pendulum(6)
    p = agent.make_planner(ebm, "Pendulum-v1", method="mppi", seed=5)
    obs = np.array([-1.0, 0.0, 0.5], np.float32)
    start = agent.PlanState()
    a1, s1, d1 = agent.plan_step(p, obs, start)
    a2, s2, d2 = agent.plan_step(p, obs, start)
    np.testing.assert_array_equal(a1, a2)  # same planner, same state: the same decision
    assert d1.energy == d2.energy
    torch.testing.assert_close(d1.plan["a"], d2.plan["a"], rtol=0, atol=0)
    # a later state too: the decision after s1 does not depend on how often s1 was used
    a3, s3, d3 = agent.plan_step(p, obs, s1)
    a4, s4, d4 = agent.plan_step(p, obs, s1)
    np.testing.assert_array_equal(a3, a4)
    assert d3.energy == d4.energy and s3.step == s4.step == 2
    # the randomness matters (so the equalities above say something): another seed decides otherwise
    other = agent.make_planner(ebm, "Pendulum-v1", method="mppi", seed=6)
    assert not np.array_equal(agent.plan_step(other, obs, agent.PlanState())[0], a1)
    assert s1.step == 1 and s1.plan["a"].shape == (1, 6, 1)
    # the next state is the plan shifted by one step (the warm start of the next decision)
    torch.testing.assert_close(s1.plan["a"][:, :-1], d1.plan["a"][:, 1:])
    # the shifted plan is always a candidate of the next decision: its energy is an upper bound
    e_warm = float(ebm.energy(x=torch.as_tensor(obs)[None], a=s1.plan["a"]).total[0])
    assert d3.energy <= e_warm + 1e-5, (d3.energy, e_warm)


# ----------------------------------------------------------------------------- bad input
def test_unknown_env_and_mismatched_spaces_are_clear_errors():
    with pytest.raises(EnvMismatch, match=r"unknown environment id 'Pendulum-v9'.*Pendulum-v1"):
        agent.make_env("Pendulum-v9")
    with pytest.raises(EnvMismatch, match=r"pendulum_mpc's x is \[3\], but CartPole-v1 observes \[4\]"):
        agent.make_planner(_pendulum(), "CartPole-v1")
    discrete = MODE2.format(obs=3, action="{action: discrete, values: 3}", pred="mlp(6, 8, 3)")
    with pytest.raises(EnvMismatch, match=r"Pendulum-v1 acts with Box\(\[1\].*but m2's a\[t\] is discrete with 3"):
        agent.make_planner(ebmgraph.compile(discrete), "Pendulum-v1")
    wide = MODE2.format(obs=3, action="{action: [2], bounds: [-2, 2]}", pred="mlp(5, 8, 3)")
    with pytest.raises(EnvMismatch, match=r"acts with Box\(\[1\].*a\[t\] is \[2\]"):
        agent.make_planner(ebmgraph.compile(wide), "Pendulum-v1")
    three = MODE2.format(obs=4, action="{action: discrete, values: 3}", pred="mlp(7, 8, 4)")
    with pytest.raises(EnvMismatch, match=r"CartPole-v1 acts with Discrete\(2\), but m2's a\[t\] is discrete with 3"):
        agent.make_planner(ebmgraph.compile(three), "CartPole-v1")
    single = MODE2.format(obs=3, action="{action: [1]}", pred="mlp(4, 8, 3)").replace("a[t]:", "a:").replace(
        "Pred(s[t], a[t])", "Pred(s[t], a)")
    with pytest.raises(EnvMismatch, match="one action, not a sequence"):
        agent.make_planner(ebmgraph.compile(single), "Pendulum-v1")


MODE2 = """
name: m2
index: {{t: 0..T-1}}
sizes: {{T: 3}}
variables:
  x: {{observed: [{obs}]}}
  a[t]: {action}
modules:
  Pred: {pred}
functions:
  s[0]: identity(x)
  s[t+1]: Pred(s[t], a[t])
energy:
  cost[t]: l2(s[t+1])
"""


def test_a_nan_in_a_plan_is_an_error_naming_the_step():
    ebm = _pendulum(5).double()
    planner = agent.make_planner(ebm, "Pendulum-v1", method="mppi")
    orig = ebm.mods["C"].forward
    calls = {"n": 0}

    def cost(s, a):
        calls["n"] += 1
        out = orig(s, a)
        return out + (float("nan") if calls["n"] > 3 else 0.0)  # the 4th planning call meets a NaN

    ebm.mods["C"].forward = cost
    with pytest.raises(PlanError, match=r"planning at step 3: mppi met a non-finite energy .* cost"):
        agent.run("Pendulum-v1", planner, episodes=1, seed=0, max_steps=10, progress=False)


# ----------------------------------------------------------------------------- collect
def test_collect_writes_transitions_that_replay_in_the_env(tmp_path):
    out = tmp_path / "p.npz"
    data = collect("Pendulum-v1", 250, seed=3, out=out, progress=False)
    with np.load(out, allow_pickle=False) as z:
        assert sorted(z.files) == ["_meta", "action", "episode", "next_obs", "obs", "reward", "t", "terminated",
                                   "truncated"]
        obs, act, nxt, rew = z["obs"], z["action"], z["next_obs"], z["reward"]
    meta = read_meta(out)
    assert meta["env_id"] == "Pendulum-v1" and meta["seed"] == 3 and meta["steps"] == 250 and meta["episodes"] == 2
    assert obs.shape == (250, 3) and act.shape == (250, 1) and nxt.shape == (250, 3)
    assert data["truncated"][199] and data["t"][200] == 0  # the 200-step limit, then a new episode
    np.testing.assert_array_equal(obs[1:200], nxt[:199])  # consecutive within an episode
    # replaying the recorded actions from the same seed gives the same observations and rewards
    env = gym.make("Pendulum-v1")
    o, _ = env.reset(seed=3)
    for i in range(50):
        np.testing.assert_allclose(o, obs[i], rtol=0, atol=0)
        o, r, *_ = env.step(act[i])
        assert r == pytest.approx(float(rew[i]), abs=1e-5)
    # the trainer reads it (the _meta record is skipped)
    ds = get_dataset(str(out))
    assert "_meta" not in ds.tensors and ds.tensors["obs"].shape == (250, 3)


def test_collect_random_actions_can_be_held(tmp_path):
    d = collect("MountainCarContinuous-v0", 90, seed=0, repeat=30, progress=False)
    a = d["action"][:, 0]
    assert len(set(a[:30].tolist())) == 1 and a[29] != a[30] and len(set(a[:90].tolist())) == 3


def test_collect_discrete_actions_are_integers(tmp_path):
    d = collect("CartPole-v1", 120, seed=0, progress=False)
    assert d["action"].dtype == np.int64 and set(d["action"].tolist()) <= {0, 1} and d["terminated"].any()


def test_a_killed_collect_leaves_no_half_written_file(tmp_path):
    out = tmp_path / "data.npz"
    collect("Pendulum-v1", 20, seed=0, out=out, progress=False)
    before = out.read_bytes()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "ebmgraph.cli", "collect", "Pendulum-v1", "--steps", "100000000",
                          "--out", str(out), "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(4.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert out.read_bytes() == before  # the previous file, untouched
    assert [f.name for f in tmp_path.iterdir()] == ["data.npz"]


# ----------------------------------------------------------------------------- collect -> train -> plan
def test_collect_train_plan_end_to_end(tmp_path, capsys):
    data, run, plan = tmp_path / "pend.npz", tmp_path / "wm", tmp_path / "plan"
    assert main(["collect", "Pendulum-v1", "--steps", "600", "--seed", "0", "--out", str(data), "--quiet"]) == 0
    assert main(["train", str(EX / "pendulum_world_model.yaml"), "--data", str(data), "--loss", "energy",
                 "--epochs", "3", "--batch", "100", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    argv = ["plan", str(EX / "pendulum_mpc_learned.yaml"), "--env", "Pendulum-v1", "--weights", str(run),
            "--method", "mppi", "--horizon", "5", "--episodes", "2", "--max-steps", "15", "--out", str(plan),
            "--json", "--quiet"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["horizon"] == 5 and out["episodes"] == 2 and out["seeds"] == [0, 1] and out["lengths"] == [15, 15]
    assert len(out["returns"]) == 2 and out["ms_per_decision_median"] > 0
    assert json.loads((plan / "results.json").read_text())["returns"] == out["returns"]
    for name in ("returns.png", "episode0_frames.png", "episode0.gif"):
        assert (plan / name).stat().st_size > 1000, name
    assert (plan / "returns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the planner used the trained predictor: its weights are the run's, not a fresh initialization
    trained = ebmgraph.compile(EX / "pendulum_world_model.yaml").load(run / "model.safetensors")
    planner = agent.cli.load_planner(str(EX / "pendulum_mpc_learned.yaml"), "Pendulum-v1", method="mppi", settings={},
                                     seed=0, sizes={}, horizon=5, params=str(run), modules={})
    for a, b in zip(trained.mods["Pred"].parameters(), planner.ebm.mods["Pred"].parameters()):
        assert torch.equal(a, b)
    # weights that do not hold the planner's predictor are refused
    ebmgraph.compile(EX / "pendulum_mpc.yaml").save(tmp_path / "other.safetensors")
    assert main(["plan", str(EX / "pendulum_mpc_learned.yaml"), "--env", "Pendulum-v1", "--weights",
                 str(tmp_path / "other.safetensors"), "--quiet", "--no-frames"]) == 1
    assert "holds no parameters for module(s) Pred" in capsys.readouterr().err


def test_plan_cli_errors_are_messages(tmp_path, capsys):
    spec = str(EX / "pendulum_mpc.yaml")
    assert main(["plan", spec, "--env", "NoSuchEnv-v0", "--quiet"]) == 1
    assert "unknown environment id 'NoSuchEnv-v0'" in capsys.readouterr().err
    assert main(["plan", spec, "--env", "CartPole-v1", "--quiet"]) == 1
    assert "CartPole-v1 observes [4]" in capsys.readouterr().err
    assert main(["plan", spec, "--env", "Pendulum-v1", "--method", "beam", "--quiet", "--max-steps", "2"]) == 1
    assert "discrete" in capsys.readouterr().err


# ----------------------------------------------------------------------------- external modules
EXT = """
name: ext
index: {t: 0..T-1}
sizes: {T: 4}
variables:
  x: {observed: [3]}
  a[t]: {action: [1], bounds: [-2, 2]}
modules:
  Pred: external([3], [1] -> [3])
  C: pendulum_cost
functions:
  s[0]: identity(x)
  s[t+1]: Pred(s[t], a[t])
energy:
  cost[t]: C(s[t], a[t])
"""


class _Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, s, a):
        return s + self.lin(torch.cat([s, a], -1))


def test_external_module_is_the_users_and_is_checked_by_one_probe():
    g = ebmgraph.loads(EXT)
    assert ebmgraph.loads(ebmgraph.dumps(g)) == g  # the signature round-trips; the spec stays data
    assert "Pred: external([3], [1] -> [3])" in ebmgraph.dumps(g)
    body = _Residual()
    ebm = ebmgraph.compile(EXT, modules={"Pred": body})
    assert ebm.mods["Pred"] is body  # its parameters are the model's, trainable
    assert {id(p) for p in body.parameters()} <= {id(p) for p in ebm.parameters() if p.requires_grad}
    x = ebm.random_inputs(3, seed=0)
    with torch.no_grad():
        s = x["x"]
        want = 0
        for t in range(4):
            want = want + ebm.mods["C"](s, x["a"][:, t])
            s = body(s, x["a"][:, t])
    torch.testing.assert_close(ebm.energy(**x).total, want)
    # a torch function works too, and fixed(...) freezes the parameters
    f = ebmgraph.compile(EXT, modules={"Pred": lambda s, a: s * torch.cos(a)})
    assert ebm.energy(**x).total.shape == f.energy(**x).total.shape
    frozen = ebmgraph.compile(EXT.replace("Pred: external", "Pred: fixed(external").replace("-> [3])", "-> [3]))"),
                              modules={"Pred": _Residual()})
    assert not any(p.requires_grad for p in frozen.parameters())


@pytest.mark.parametrize("given,match", [
    ({}, r"module Pred is external\(\[3\], \[1\] -> \[3\]\): its body is yours to supply"),
    ({"Pred": lambda s, a: s[:, :2]}, r"declared external\(\[3\], \[1\] -> \[3\]\), but the body given returned "
                                      r"\[2, 2\] for inputs \[\[2, 3\], \[2, 1\]\] \(expected \[2, 3\]\)"),
    ({"Pred": lambda s: s}, r"raised TypeError"),
    ({"Pred": 3}, r"takes an nn.Module or a torch function, got int"),
    ({"Pred": _Residual(), "Q": _Residual()}, r"modules= names Q, which ext does not declare external"),
])
def test_external_module_errors_name_the_module_and_shapes(given, match):
    with pytest.raises(ebmgraph.SpecError, match=match):
        ebmgraph.compile(EXT, modules=given)


def test_external_signature_is_checked_against_its_calls():
    bad = EXT.replace("s[t+1]: Pred(s[t], a[t])", "s[t+1]: Pred(s[t])")
    with pytest.raises(ebmgraph.SpecError, match=r"external is declared with 2 argument\(s\)"):
        ebmgraph.compile(bad, modules={"Pred": _Residual()})
    for text in ("Pred: external(3 -> 3)", "Pred: external([3])", "Pred: mlp(3 -> 3)"):
        with pytest.raises(ebmgraph.SpecError, match="external|signature"):
            ebmgraph.loads(EXT.replace("Pred: external([3], [1] -> [3])", text))


def test_cli_module_flag_imports_the_users_code(tmp_path, monkeypatch, capsys):
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "class Pred(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.lin = torch.nn.Linear(4, 3)\n"
        "    def forward(self, s, a):\n"
        "        return s + self.lin(torch.cat([s, a], -1))\n")
    spec = tmp_path / "ext.yaml"
    spec.write_text(EXT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["compile", str(spec), "--module", "Pred=mymodels:Pred"]) == 0
    assert "15 parameters" in capsys.readouterr().out  # Linear(4, 3): the user's module's parameters
    assert main(["compile", str(spec)]) == 1
    assert "its body is yours to supply" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="cannot import"):
        main(["compile", str(spec), "--module", "Pred=nosuchmodule:Pred"])


# ----------------------------------------------------------------------------- scale, colored noise, lean planners
def test_scale_module_formula_and_a_fixed_transform_of_data_is_still_a_prediction():
    ebm = ebmgraph.compile(EX / "mountaincar_world_model.yaml")
    assert ebm.checked.architecture.code == "10a" and not ebm.checked.architecture.can_collapse
    x = torch.tensor([[0.5, 0.01]])
    torch.testing.assert_close(ebm.mods["Up"](x), torch.tensor([[0.5, 0.2]]))
    with pytest.raises(ebmgraph.SpecError, match="non-zero factors"):
        ebmgraph.compile((EX / "mountaincar_world_model.yaml").read_text().replace("scale(1, 20)", "scale(1, 0)"))
    with pytest.raises(ebmgraph.SpecError, match=r"reads a vector of 3 features, got \[2\]"):
        ebmgraph.compile((EX / "mountaincar_world_model.yaml").read_text().replace("scale(1, 20)", "scale(1, 2, 3)"))


def test_colored_noise_is_smooth_in_time_and_unit_variance():
    from ebmgraph.infer.sampling import _draws, colour_filter

    mu = torch.zeros(1, 64)
    colour = [(0, 64, 1, colour_filter(64, 2.0, mu.dtype))]
    g = torch.Generator().manual_seed(0)
    white = _draws(g, 2000, mu, None)[1:]
    red = _draws(g, 2000, mu, colour)[1:]

    def lag1(x):
        return float((x[:, 1:] * x[:, :-1]).mean() / (x * x).mean())

    assert abs(lag1(white)) < 0.05 and lag1(red) > 0.8
    assert abs(float(red.std()) - 1.0) < 0.05
    assert torch.equal(_draws(torch.Generator().manual_seed(1), 4, mu, colour)[0], torch.zeros(64))


def test_sampling_planners_call_the_model_once_per_iteration_and_report_its_energy():
    ebm = _pendulum(6)
    calls = {"n": 0}
    orig = ebm._forward

    def counted(*a, **kw):
        calls["n"] += 1
        return orig(*a, **kw)

    ebm._forward = counted
    obs = {"x": torch.tensor([[-1.0, 0.1, 0.0], [0.0, 1.0, 2.0]])}
    for method, extra in (("mppi", 0), ("cem", 0)):
        for final_mean in (False, True):
            calls["n"] = 0
            r = ebmgraph.minimize(ebm, obs, over=["a"], method=method, samples=32, iters=3, final_mean=final_mean)
            assert calls["n"] == 3 + int(final_mean) + extra, (method, final_mean, calls["n"])
            ebm._forward = orig
            torch.testing.assert_close(r.energy, ebm.energy(**obs, a=r.values["a"]).total, rtol=1e-5, atol=1e-5)
            assert (r.energy <= r.trace[0] + 1e-6).all()  # never above the start
            ebm._forward = counted
    ebm._forward = orig
    a = ebmgraph.minimize(ebm, obs, over=["a"], method="mppi", samples=32, iters=2, noise_beta=2.0, seed=4)
    b = ebmgraph.minimize(ebm, {"x": obs["x"][1:]}, over=["a"], method="mppi", samples=32, iters=2, noise_beta=2.0,
                          seed=4)
    torch.testing.assert_close(a.values["a"][1:], b.values["a"])  # batched equals alone, coloured noise too
    with pytest.raises(ebmgraph.SpecError, match="noise_beta must be a non-negative"):
        ebmgraph.minimize(ebm, obs, over=["a"], method="mppi", noise_beta=-1)


def test_trainer_cosine_schedule_decays_to_zero():
    from ebmgraph.train import Regularized, Trainer, get_dataset

    ebm = ebmgraph.compile(EX / "pendulum_world_model.yaml", seed=0)
    data = get_dataset("pendulum", n=400).tensors
    from ebmgraph.train.data import Dataset

    ds = Dataset("p", {"obs": data["s"], "action": data["a"], "next_obs": data["s_next"]})
    lrs = []
    t = Trainer(Regularized(ebm, use_regularizers=False), ds, epochs=2, batch=100, lr=0.01, schedule="cosine",
                progress=False, callbacks=[lambda tr, e, s: lrs.append(tr.opt.param_groups[0]["lr"])])
    t.fit()
    want = [0.01 * 0.5 * (1 + np.cos(np.pi * k / 8)) for k in range(8)]
    np.testing.assert_allclose(lrs, want, rtol=1e-12)
    with pytest.raises(ValueError, match="schedule must be"):
        Trainer(Regularized(ebm, use_regularizers=False), ds, schedule="step", progress=False)


def test_jepa_world_model_learns_in_representation_space_without_collapse(tmp_path):
    """Figure 12 with an action input: VICReg keeps the representations spread; without it they collapse.
    The trained predictor beats 'nothing changes' on held-out transitions."""
    from ebmgraph.train import Regularized, Trainer

    train, held = (collect("Pendulum-v1", n, seed=s, progress=False) for n, s in ((1200, 0), (400, 7)))
    from ebmgraph.train.data import Dataset

    ds = Dataset("p", {k: torch.as_tensor(train[k]) for k in ("obs", "action", "next_obs")})
    stds, errs = {}, {}
    for use in (True, False):
        ebm = ebmgraph.compile(EX / "pendulum_jepa_world_model.yaml", seed=0)
        Trainer(Regularized(ebm, use_regularizers=use), ds, epochs=8, batch=100, lr=1e-3, seed=0,
                progress=False).fit()
        with torch.no_grad():
            o, a, n = (torch.as_tensor(held[k]) for k in ("obs", "action", "next_obs"))
            sx, sy = ebm.mods["Enc"](o), ebm.mods["Enc"](n)
            pred = ebm.mods["Pred"](sx, a)
        stds[use] = float(sy.std(0).mean())
        errs[use] = (float(((pred - sy) ** 2).sum(1).mean()), float(((sx - sy) ** 2).sum(1).mean()))
    assert stds[True] > 0.5 and stds[False] < 0.1 * stds[True], stds
    pred_err, still_err = errs[True]
    assert pred_err < 0.5 * still_err, errs


# ----------------------------------------------------------------------------- the rest of Figure 2 (issue 12)
CFG = EX / "pendulum_configurable.yaml"


def test_tasks_are_the_configurators_table():
    g = ebmgraph.load(CFG)
    assert ebmgraph.loads(ebmgraph.dumps(g)) == g
    ebm = ebmgraph.compile(g)
    assert set(ebm.tasks()) == {"swing_up", "swing_up_frugal", "hold_down"}
    x = ebm.random_inputs(2, seed=0)
    ebm.configure("hold_down")
    t = ebm.energy(**x).terms
    assert float(t["IC_up"].abs().max()) == 0.0 and float(t["IC_down"].abs().max()) > 0
    # IC_down is cos θ of the predicted states: pick(0) on the rollout, by hand
    with torch.no_grad():
        s, want = x["x"], 0
        for k in range(20):
            s = ebm.mods["F"](s, x["a"][:, k])
            want = want + s[:, 0]
    torch.testing.assert_close(t["IC_down"], want)
    with pytest.raises(KeyError, match="no task 'fly'"):
        ebm.configure("fly")
    with pytest.raises(ebmgraph.SpecError, match="task t sets 'nope', which is not a weight"):
        ebmgraph.loads(CFG.read_text().replace("  swing_up: {u_up: 1.0,", "  t: {nope: 1.0,", 1))
    b = ebmgraph.GraphBuilder("b").weight("u", 1.0).task("off", u=0.0).observed("x", [2]).energy("E", "u * l2(x)")
    assert b.build().tasks == (("off", (("u", 0.0),)),)


def test_plan_cli_configures_weights_without_retraining(tmp_path, capsys):
    base = ["plan", str(CFG), "--env", "Pendulum-v1", "--method", "mppi", "--set", "sigma=1.5", "--max-steps", "40",
            "--quiet", "--no-frames", "--json"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(base + ["--set", "u_energy=0.5", "--out", str(tmp_path / "b")]) == 0
    frugal = json.loads(capsys.readouterr().out)
    assert frugal["weights"]["u_energy"] == 0.5 and plain["weights"]["u_energy"] == 0.0
    assert frugal["mean_abs_action"] < 0.8 * plain["mean_abs_action"]
    assert main(base + ["--task", "hold_down", "--out", str(tmp_path / "c")]) == 0
    down = json.loads(capsys.readouterr().out)
    assert down["task"] == "hold_down" and down["weights"] == {"u_up": 0.0, "u_down": 1.0, "u_energy": 0.0}
    assert main(base + ["--task", "fly", "--out", str(tmp_path / "d")]) == 1
    assert "no task 'fly'" in capsys.readouterr().err


def test_plan_memory_and_a_critic_as_terminal_energy(tmp_path, capsys):
    mem = tmp_path / "mem.npz"
    assert main(["plan", str(EX / "pendulum_mpc.yaml"), "--env", "Pendulum-v1", "--method", "mppi", "--horizon", "5",
                 "--episodes", "2", "--max-steps", "30", "--memory", str(mem), "--gamma", "0.9", "--quiet",
                 "--no-frames", "--out", str(tmp_path / "p")]) == 0
    with np.load(mem, allow_pickle=False) as z:
        s, g, ic = z["s_tau"], z["ic_future"][:, 0], z["ic"]
    assert s.shape == (60, 3) and g.shape == (60,)
    np.testing.assert_allclose(g[:29], ic[:29] + 0.9 * g[1:30], rtol=1e-5)  # G_τ = IC_τ + γ G_τ+1 in episode 0
    assert g[29] == pytest.approx(ic[29])
    capsys.readouterr()
    assert main(["train", str(EX / "pendulum_critic.yaml"), "--data", str(mem), "--loss", "energy", "--epochs", "2",
                 "--batch", "20", "--out", str(tmp_path / "critic"), "--quiet"]) == 0
    ebm = ebmgraph.compile(EX / "pendulum_mpc_critic.yaml").load(tmp_path / "critic", strict=False)
    assert ebm.missing_weights() == []
    x = ebm.random_inputs(2, seed=0)
    out = ebm.energy(**x)
    with torch.no_grad():
        s = x["x"]
        for k in range(5):
            s = ebm.mods["F"](s, x["a"][:, k])
        torch.testing.assert_close(out.terms["critic"], ebm.mods["TC"](s)[:, 0])  # TC(s[T]), T = 5
    wide = (EX / "pendulum_mpc_critic.yaml").read_text().replace("TC: mlp(3, 256, 256, 1, act=silu)",
                                                                 "TC: mlp(3, 256, 256, 2, act=silu)")
    with pytest.raises(ebmgraph.SpecError, match="critic"):
        ebmgraph.compile(wide)


def test_mode1_acts_with_one_forward_pass_of_the_policy(tmp_path):
    ebm = ebmgraph.compile(EX / "pendulum_policy.yaml", seed=0)
    pol = agent.Mode1(ebm, "a_tilde", "Pendulum-v1")
    obs = np.array([0.0, 1.0, 0.5], np.float32)
    with torch.no_grad():
        want = ebm.mods["A"](torch.as_tensor(obs)[None])[0].numpy()
    np.testing.assert_allclose(pol(obs), np.clip(want, -2, 2), rtol=1e-6)
    res = agent.run("Pendulum-v1", None, episodes=1, seed=0, max_steps=10, progress=False, policy=pol)
    assert res.episodes[0].length == 10 and len(res.episodes[0].seconds) == 10
    with pytest.raises(EnvMismatch, match=r"pendulum_policy.s obs is \[3\], but CartPole-v1 observes \[4\]"):
        agent.Mode1(ebm, "a_tilde", "CartPole-v1")
    with pytest.raises(EnvMismatch, match="has no function 'pi'"):
        agent.Mode1(ebm, "pi", "Pendulum-v1")
    two = ebmgraph.compile((EX / "pendulum_policy.yaml").read_text().replace("mlp(3, 256, 256, 1, act=tanh)",
                                                                         "mlp(3, 256, 256, 2, act=tanh)").replace(
        "action: {observed: [1]}", "action: {observed: [2]}"))
    with pytest.raises(EnvMismatch, match=r"a_tilde is \[2\], but Pendulum-v1 acts with \[1\]"):
        agent.Mode1(two, "a_tilde", "Pendulum-v1")
