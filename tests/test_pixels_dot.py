"""From pixels, end to end on a world the test renders (issue 29): a dot on a 16×16 grid.

collect (random pushes, episodes on disk) -> ``ebmgraph train`` of a time-indexed spec on windows of K
steps (prediction unrolled K steps + inverse dynamics + VICReg) -> Mode-2 planning in representation
space toward a goal frame reaches the goal where random pushes do not. Also: the K-step energy equals a
hand-unrolled reference, windows read from the store equal windows cut by hand, and the store/spec
mismatches a user can make are refused in one line naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import ebmgraph
from ebmgraph.cli import main
from ebmgraph.infer import minimize
from ebmgraph.train.episodes import EpisodeError, EpisodeWriter, Episodes, spec_windows

EX = Path(__file__).resolve().parents[1] / "examples" / "specs"
N, SPEED, REACH = 16, 1.5, 1.5  # grid side, pixels per unit action, success radius


def render(p) -> np.ndarray:
    """The dot at ``p = (x, y)`` as a ``[16, 16, 1]`` uint8 frame (a Gaussian blob, 0..255 as envs render)."""
    yy, xx = np.mgrid[0:N, 0:N]
    return np.round(255 * np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / 8.0)).astype(np.uint8)[..., None]


def move(p, a) -> np.ndarray:
    return np.clip(p + SPEED * np.clip(a, -1, 1), 0, N - 1)


def collect(path, episodes: int, steps: int, seed: int):
    rng = np.random.default_rng(seed)
    pos = []
    with EpisodeWriter(path, meta={"env": "dot16", "policy": "uniform random", "seed": seed}) as w:
        for _ in range(episodes):
            p = rng.uniform(0, N - 1, 2)
            P, A = [p], []
            for _ in range(steps):
                a = rng.uniform(-1, 1, 2).astype(np.float32)
                p = move(p, a)
                P.append(p)
                A.append(a)
            w.add(frames={"obs": np.stack([render(q) for q in P])}, steps={"action": np.stack(A)})
            pos.append(np.stack(P))
    return pos


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("dots")
    collect(d / "dots.h5", episodes=40, steps=20, seed=0)  # 680 windows of K = 4; ~15 s of training on one core
    assert main(["train", str(EX / "dot_jepa.yaml"), "--data", str(d / "dots.h5"), "--loss", "vicreg",
                 "--epochs", "8", "--batch", "64", "--lr", "2e-3", "--set", "var_weight=16", "--set", "cov_weight=8",
                 "--quiet", "--out", str(d / "run")]) == 0
    return d


def reach(act, episodes: int = 10, seed: int = 1, steps: int = 30) -> int:
    """Goals reached within ``steps`` pushes by ``act(p, g) -> a`` over seeded start/goal pairs."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(episodes):
        p, g = rng.uniform(0, N - 1, 2), rng.uniform(0, N - 1, 2)
        for t in range(steps):
            p = move(p, act(p, g, t))
            if np.linalg.norm(p - g) < REACH:
                hits += 1
                break
    return hits


def test_a_world_model_trained_on_windows_from_pixels_plans_to_the_goal(trained):
    plan = ebmgraph.compile(EX / "dot_jepa_plan.yaml", seed=0).load(trained / "run", strict=False)
    assert plan.missing_weights() == []

    def mppi(p, g, t):
        r = minimize(plan, {"x": torch.from_numpy(render(p))[None], "goal": torch.from_numpy(render(g))[None]},
                     over=["a"], method="mppi", samples=128, iters=3, seed=t)
        return r.values["a"][0, 0].numpy()

    rng = np.random.default_rng(7)
    planned, random = reach(mppi, episodes=20, steps=20), reach(lambda p, g, t: rng.uniform(-1, 1, 2), episodes=20,
                                                                steps=20)
    assert planned >= 16 and random <= 5, (planned, random)  # measured: 20 and 2


def test_the_representation_holds_the_position(trained):
    """A linear read-out of the dot's position from s = Enc(frame), on frames never trained on."""
    ebm = ebmgraph.compile(EX / "dot_jepa.yaml", seed=0).load(trained / "run")
    P = np.random.default_rng(3).uniform(0, N - 1, (400, 2))
    with torch.no_grad():
        S = ebm.mods.Enc(ebm.mods.image(torch.from_numpy(np.stack([render(p) for p in P])))).double()
    Z = torch.cat([S, torch.ones(len(S), 1, dtype=S.dtype)], 1)
    Y = torch.from_numpy(P)
    fit, test = slice(0, 300), slice(300, 400)
    coef = torch.linalg.lstsq(Z[fit], Y[fit]).solution
    r2 = 1 - ((Z[test] @ coef - Y[test]) ** 2).sum(0) / ((Y[test] - Y[test].mean(0)) ** 2).sum(0)
    assert (r2 > 0.8).all(), r2


def test_the_k_step_energy_equals_a_hand_unrolled_reference():
    ebm = ebmgraph.compile(EX / "dot_jepa.yaml", seed=3).double()
    g = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 256, (5, 5, 16, 16, 1), generator=g).double()
    act = torch.rand(5, 4, 2, generator=g).double() * 2 - 1
    out = ebm.energy(obs=obs, action=act)
    M = ebm.mods
    s = [M.Enc(obs[:, u].permute(0, 3, 1, 2) / 255) for u in range(5)]  # image(): [H, W, C] 0..255 -> [C, H, W]
    p, D, I = s[0], 0.0, 0.0
    for t in range(4):
        p = M.Pred(p, act[:, t])  # residual: p + MLP([p, a])
        D = D + ((s[t + 1] - p) ** 2).sum(1)
        I = I + ((M.IDM(s[t], s[t + 1]) - act[:, t]) ** 2).sum(1)
    torch.testing.assert_close(out.terms["D"], D)
    torch.testing.assert_close(out.terms["I"], I)


def test_windows_from_the_store_equal_windows_cut_by_hand(tmp_path):
    pos = collect(tmp_path / "d.h5", episodes=4, steps=7, seed=5)
    ebm = ebmgraph.compile(EX / "dot_jepa.yaml", seed=0)
    w = spec_windows(ebm, tmp_path / "d.h5")
    assert w.K == 4 and len(w) == 4 * (7 - 4 + 1)  # K from the spec; every window inside its episode
    b = w.batch(np.arange(len(w)))
    assert set(b) == {"obs", "action"} and b["obs"].shape == (16, 5, 16, 16, 1) and b["action"].shape == (16, 4, 2)
    for i, (e, t) in enumerate(w.index):
        want = np.stack([render(q) for q in pos[e][t:t + 5]])
        np.testing.assert_array_equal(b["obs"][i].numpy(), want)


def test_a_store_that_does_not_fit_the_spec_is_refused_by_name(tmp_path):
    ebm = ebmgraph.compile(EX / "dot_jepa.yaml", seed=0)
    collect(tmp_path / "short.h5", episodes=2, steps=3, seed=0)  # K = 4 does not fit 3-step episodes
    with pytest.raises(EpisodeError, match=r"short\.h5: no episode is long enough for a window of 4 steps"):
        spec_windows(ebm, tmp_path / "short.h5")
    with EpisodeWriter(tmp_path / "big.h5") as w:  # frames of another size
        w.add(frames={"obs": np.zeros((9, 32, 32, 1), np.uint8)}, steps={"action": np.zeros((8, 2), np.float32)})
    with pytest.raises(EpisodeError, match=r"big\.h5: obs holds rows of shape \[32, 32, 1\]; dot_jepa declares obs "
                                           r"with elements of shape \[16, 16, 1\]"):
        spec_windows(ebm, tmp_path / "big.h5")
    with EpisodeWriter(tmp_path / "noact.h5") as w:
        w.add(frames={"obs": np.zeros((9, 16, 16, 1), np.uint8)}, steps={"push": np.zeros((8, 2), np.float32)})
    with pytest.raises(EpisodeError, match=r"noact\.h5: dot_jepa reads action, which the store does not hold"):
        spec_windows(ebm, tmp_path / "noact.h5")
    assert spec_windows(ebm, tmp_path / "noact.h5", names={"push": "action"}).K == 4
    good = tmp_path / "good.h5"
    collect(good, episodes=3, steps=8, seed=0)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(EpisodeError, match=r"cut\.h5"):
        spec_windows(ebm, cut)


def test_train_cli_says_in_one_line_why_a_store_does_not_fit(tmp_path, capsys):
    with EpisodeWriter(tmp_path / "big.h5") as w:
        w.add(frames={"obs": np.zeros((9, 32, 32, 1), np.uint8)}, steps={"action": np.zeros((8, 2), np.float32)})
    rc = main(["train", str(EX / "dot_jepa.yaml"), "--data", str(tmp_path / "big.h5"), "--loss", "vicreg",
               "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "big.h5: obs holds rows of shape [32, 32, 1]" in err[0], err


def test_resconv_is_an_impala_encoder_with_a_normalized_output():
    spec = """
name: rc
variables: {x: {observed: [3, 20, 20]}}
modules: {Enc: "resconv(3, 20, 20, 12, width=4, stages=2, blocks=1)", C: "sq_dist"}
functions: {s: Enc(x)}
energy: {E: C(s)}
"""
    ebm = ebmgraph.compile(spec, seed=0)
    enc = ebm.mods.Enc
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 4, 4, 8, 8, 8]  # stage conv + one block (2 convs), twice
    assert enc.head.in_features == 8 * 5 * 5  # 20 -> 10 -> 5 after two stride-2 pools
    x = torch.randn(6, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    s = enc(x)
    torch.testing.assert_close(s.mean(1), torch.zeros(6), atol=1e-5, rtol=0)  # LayerNorm at init: zero mean
    torch.testing.assert_close(enc(x.flatten(1)), s)  # flat input reads the same
    from ebmgraph.modules import KINDS
    info = ebm.checked.modules["Enc"]
    assert KINDS["resconv"].params(info.args, info.kwargs, info.in_shapes) == sum(p.numel() for p in enc.parameters())


def test_collect_writes_episodes_that_equal_its_transitions(tmp_path):
    """``collect --out FILE.h5`` stores the same episodes as ``--out FILE.npz`` (read back as episodes)."""
    assert main(["collect", "--env", "Pendulum-v1", "--steps", "450", "--seed", "3", "--out", str(tmp_path / "p.npz")]) == 0
    assert main(["collect", "--env", "Pendulum-v1", "--steps", "450", "--seed", "3", "--out", str(tmp_path / "p.h5")]) == 0
    a, b = Episodes(tmp_path / "p.npz"), Episodes(tmp_path / "p.h5")
    assert a.lengths.tolist() == b.lengths.tolist() == [200, 200, 50]
    assert b.meta["env_id"] == "Pendulum-v1" and b.meta["seed"] == 3
    for e in range(3):
        wa, wb = a.window(e, 0, int(a.lengths[e])), b.window(e, 0, int(b.lengths[e]))
        np.testing.assert_array_equal(wa["obs"], wb["obs"])
        np.testing.assert_array_equal(wa["action"], wb["action"])


def test_one_step_training_is_the_window_of_one_step(tmp_path):
    """K = 1 (the same spec at sizes K=1): every transition is one window, obs [B, 2, ...], action [B, 1, ...]."""
    pos = collect(tmp_path / "d.h5", episodes=3, steps=6, seed=2)
    ebm = ebmgraph.compile(EX / "dot_jepa.yaml", seed=0, sizes={"K": 1})
    w = spec_windows(ebm, tmp_path / "d.h5")
    assert w.K == 1 and len(w) == 3 * 6
    b = w.batch(np.arange(len(w)))
    assert b["obs"].shape == (18, 2, 16, 16, 1) and b["action"].shape == (18, 1, 2)
    np.testing.assert_array_equal(b["obs"][7, 1].numpy(), render(pos[1][2]))  # episode 1, step 1 -> frame 2
    assert set(ebm.energy(obs=b["obs"], action=b["action"]).terms) == {"D", "I"}


def test_windows_read_ahead_by_workers_train_exactly_as_windows_read_in_the_step(tmp_path):
    """``train --workers 1`` (a DataLoader process reads the next batches from the store) and ``--workers 0``
    (read in the step): the same batches in the same order, so the same trained parameters, bit for bit."""
    from safetensors.torch import load_file

    collect(tmp_path / "d.h5", episodes=6, steps=12, seed=1)
    for w in (0, 1):
        assert main(["train", str(EX / "dot_jepa.yaml"), "--data", str(tmp_path / "d.h5"), "--loss", "vicreg",
                     "--epochs", "2", "--batch", "16", "--workers", str(w), "--quiet", "--out", str(tmp_path / f"w{w}")]) == 0
    a, b = (load_file(tmp_path / f"w{w}" / "model.safetensors") for w in (0, 1))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = load_file(next((tmp_path / "w0").glob("model.safetensors")))  # a different seed would differ: the check can fail
    assert main(["train", str(EX / "dot_jepa.yaml"), "--data", str(tmp_path / "d.h5"), "--loss", "vicreg", "--seed", "1",
                 "--epochs", "2", "--batch", "16", "--workers", "1", "--quiet", "--out", str(tmp_path / "s1")]) == 0
    d = load_file(tmp_path / "s1" / "model.safetensors")
    assert not all(torch.equal(c[k], d[k]) for k in c)


def test_train_sets_a_spec_weight_and_a_size_from_the_command_line(tmp_path):
    """``--set w=0`` on a weight of the spec switches that term off (its energy is 0 in the log); ``--size K=1``
    trains one-step windows; both are kept in run.json."""
    import csv
    import json

    collect(tmp_path / "d.h5", episodes=4, steps=10, seed=3)
    spec = tmp_path / "w.yaml"
    spec.write_text((EX / "dot_jepa.yaml").read_text().replace("  I[t]: sq_dist(", "  I[t]: w_i*sq_dist(")
                    .replace("sizes: {K: 4}", "sizes: {K: 4}\nweights: {w_i: 1.0}"))
    assert main(["train", str(spec), "--data", str(tmp_path / "d.h5"), "--loss", "vicreg", "--epochs", "1",
                 "--batch", "8", "--set", "w_i=0", "--size", "K=1", "--quiet", "--out", str(tmp_path / "r")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))
    assert rows and all(float(r["E.I"]) == 0.0 for r in rows) and any(float(r["E.D"]) > 0 for r in rows)
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["size"] == {"K": 1} and run["opt"] == {"w_i": 0}
    assert len(rows) == 4 * 10 // 8  # K = 1: every step of the 4 episodes is a window
