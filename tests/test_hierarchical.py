"""Two-level planning (§4.6–4.7, Figures 15–16): the level-2 model learned from trajectories, its exact
upper-level minimization (checked against Floyd–Warshall and against exhaustive enumeration of
abstract action sequences), the nested minimization of the two levels, and a toy maze end to end."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

import ebmgraph
from ebmgraph.errors import SpecError
from ebmgraph.infer.hierarchical import MOVES, AbstractGraph, minimize_two_level

# a U-shaped corridor on a unit grid; cells (1, 0) and (1, 1) are a wall the walk never enters
U_CELLS = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0)]

LOWER = """
name: lower_toy
index: {t: 0..T-1}
sizes: {T: 6}
variables:
  x: {observed: [2]}
  goal: {observed: [2]}
  a[t]: {action: [2], bounds: [-1, 1]}
modules:
  Step: scale(0.25, 0.25)
functions:
  s[0]: identity(x)
  s[t+1]: s[t] + Step(a[t])
energy:
  D[t]: sq_dist(s[t+1], goal)
"""


def walk(cells, per_cell=4, laps=2, rng=None):
    """Points (x = column, y = row) walking the cells back and forth, ``per_cell`` points in each."""
    rng = rng or np.random.default_rng(0)
    seq = (cells + cells[::-1][1:]) * laps
    pts = [np.array([c, r], float) + 0.1 * rng.standard_normal(2) for (r, c) in seq for _ in range(per_cell)]
    return np.stack(pts)


def floyd(g: AbstractGraph) -> np.ndarray:
    n = len(g.codes)
    d = np.full((n, n), np.inf)
    np.fill_diagonal(d, 0)
    for (i, j), w in zip(g.edges, g.lengths):
        d[i, j] = min(d[i, j], w)
    for k in range(n):
        d = np.minimum(d, d[:, k:k + 1] + d[k:k + 1, :])
    return d


def u_graph(**kw):
    s = walk(U_CELLS)
    return AbstractGraph.fit(s, np.zeros(len(s), int), unit=1.0, **kw)


def test_the_learned_graph_holds_exactly_the_moves_the_walk_made():
    g = u_graph()
    cells = {tuple(int(v) for v in c[::-1]) for c in g.codes}  # codes are (x, y) = (column, row)
    assert cells == set(U_CELLS)
    moves = {(tuple(g.codes[i][::-1]), tuple(g.codes[j][::-1])) for i, j in g.edges}
    want = {(a, b) for a, b in zip(U_CELLS, U_CELLS[1:])} | {(b, a) for a, b in zip(U_CELLS, U_CELLS[1:])}
    assert moves == want  # no move across the wall, none the walk did not make
    # Pred2: a move into the wall is blocked (the state stays), a move along the corridor is taken
    i00, i01 = (int(g.encode(np.array([[c, r]], float))[0]) for r, c in [(0, 0), (0, 1)])
    up = MOVES.index((0, 1))  # (dx, dy) = (0, +1): toward row 1, the wall
    right = MOVES.index((1, 0))
    assert g.predict(i00, up) == i00 and g.predict(i00, right) == i01


def test_the_upper_minimum_is_the_shortest_path_over_learned_moves():
    g = u_graph()
    d = floyd(g)
    for goal in range(len(g.codes)):
        np.testing.assert_allclose(g.values(goal), d[:, goal], rtol=1e-9)
    start, goal = (int(g.encode(np.array([[c, r]], float))[0]) for r, c in [(0, 0), (2, 0)])
    path = g.path(start, goal)
    assert [tuple(int(v) for v in g.codes[i][::-1]) for i in path] == U_CELLS  # around the wall, not through it
    assert g.values(goal)[start] > 5.0  # six moves of about one unit, not the straight-line 2


def test_the_upper_minimum_equals_exhaustive_search_over_abstract_actions():
    """On a random maze, enumerate every sequence of K abstract actions through Pred2: the least path
    length that ends at the goal equals the dynamic programme's value wherever the goal is K moves away."""
    rng = np.random.default_rng(1)
    free = [(r, c) for r in range(4) for c in range(4) if rng.random() < 0.75 or (r, c) == (0, 0)]
    # a random walk over free neighbours (8-connected) makes the data
    cur, seq = (0, 0), []
    for _ in range(3000):
        seq.append(cur)
        nb = [(cur[0] + dr, cur[1] + dc) for dc, dr in MOVES if (cur[0] + dr, cur[1] + dc) in free]
        cur = nb[rng.integers(len(nb))] if nb else cur
    s = np.array([[c, r] for r, c in seq], float)
    g = AbstractGraph.fit(s, np.zeros(len(s), int), unit=1.0)
    K = 3
    for start in range(len(g.codes)):
        best = {}  # goal -> least length of a sequence of K abstract actions that reaches it
        for a2 in itertools.product(range(len(MOVES)), repeat=K):
            i, length = start, 0.0
            for a in a2:
                j = g.predict(i, a)
                length += float(np.linalg.norm(g.centroids[j] - g.centroids[i]))
                i = j
                best[i] = min(best.get(i, np.inf), length)
        for goal in range(len(g.codes)):
            v = g.values(goal)[start]
            if goal in best:
                assert v <= best[goal] + 1e-9  # no sequence beats the dynamic programme
            if len(g.path(start, goal)) - 1 <= K and goal != start:  # the DP's path fits in K moves
                assert best[goal] == pytest.approx(v)


def test_temporal_pooling_averages_windows_before_quantizing():
    s = np.array([[0.0, 0], [0.9, 0], [1.2, 0], [1.3, 0], [2.0, 0], [2.2, 0]])
    g1 = AbstractGraph.fit(s, np.zeros(6, int), unit=1.0, pool=1)
    g2 = AbstractGraph.fit(s, np.zeros(6, int), unit=1.0, pool=2)
    assert len(g1.codes) == 3
    # pooled pairs: 0.45, 1.25, 2.1 -> cells 0, 1, 2 with those centroids
    np.testing.assert_allclose(sorted(g2.centroids[:, 0]), [0.45, 1.25, 2.1])
    # episodes are never pooled or linked across their boundary
    g3 = AbstractGraph.fit(s, np.array([0, 0, 0, 1, 1, 1]), unit=1.0, pool=1)
    linked = {(int(g3.codes[i][0]), int(g3.codes[j][0])) for i, j in g3.edges}
    assert (1, 1) not in linked and linked == {(0, 1), (1, 2)}


def test_save_and_load_round_trip_and_refuse_other_files(tmp_path):
    g = u_graph(pool=2)
    g.save(tmp_path / "g.safetensors")
    h = AbstractGraph.load(tmp_path / "g.safetensors")
    for k in ("codes", "centroids", "edges", "counts"):
        np.testing.assert_array_equal(getattr(g, k), getattr(h, k))
    assert (h.unit, h.pool, h.dims) == (g.unit, g.pool, g.dims)
    ebm = ebmgraph.compile(ebmgraph.loads(LOWER))
    ebm.save(tmp_path / "w.safetensors")
    with pytest.raises(SpecError, match="not an abstract graph"):
        AbstractGraph.load(tmp_path / "w.safetensors")
    (tmp_path / "junk").write_bytes(b"\x80\x04junk")
    with pytest.raises(SpecError, match="not an abstract graph"):
        AbstractGraph.load(tmp_path / "junk")
    with pytest.raises(ValueError, match="give one quantizer"):
        AbstractGraph.fit(np.zeros((4, 2)), np.zeros(4), unit=0)
    with pytest.raises(ValueError, match="give one quantizer"):
        AbstractGraph.fit(np.zeros((4, 2)), np.zeros(4), unit=1.0, clusters=3)
    c = AbstractGraph.fit(walk(U_CELLS), np.zeros(len(walk(U_CELLS)), int), clusters=7, dims=(0, 1))
    c.save(tmp_path / "c.safetensors")
    d = AbstractGraph.load(tmp_path / "c.safetensors")
    assert d.clusters == 7 and d.unit == 0
    np.testing.assert_array_equal(d.encode(walk(U_CELLS)), c.encode(walk(U_CELLS)))


def _embed(xy, D=6, seed=0):
    """xy mapped into D dimensions by a fixed random rotation (a wider representation of the same place)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((D, D)))
    return np.concatenate([xy, np.zeros((len(xy), D - 2))], 1) @ q.T


def test_clusters_of_a_wider_representation_learn_the_same_corridor_as_the_grid():
    """k-means in a 6-D embedding of the U-walk: one cluster per cell, the walk's moves and no move
    across the wall; the upper minimum is the shortest path (Floyd-Warshall) and goes around."""
    xy = walk(U_CELLS, per_cell=8)
    g = AbstractGraph.fit(_embed(xy), np.zeros(len(xy), int), clusters=len(U_CELLS), dims=tuple(range(6)))
    cells = [tuple(int(v) for v in np.round(xy[g.encode(_embed(xy)) == i].mean(0))[::-1]) for i in range(len(g.codes))]
    assert sorted(cells) == sorted(U_CELLS)  # each cluster is one cell
    moves = {(cells[i], cells[j]) for i, j in g.edges}
    want = {(a, b) for a, b in zip(U_CELLS, U_CELLS[1:])} | {(b, a) for a, b in zip(U_CELLS, U_CELLS[1:])}
    assert moves == want
    d = floyd(g)
    for goal in range(len(g.codes)):
        np.testing.assert_allclose(g.values(goal), d[:, goal], rtol=1e-9)
    start, goal = cells.index((0, 0)), cells.index((2, 0))
    assert [cells[i] for i in g.path(start, goal)] == U_CELLS
    # Pred2 with clusters: a2 picks one of the clusters the data moved to, in number order; past them, stay
    outs = sorted({int(j) for i, j in g.edges if i == start})
    assert [g.predict(start, a) for a in range(len(outs) + 1)] == outs + [start]


def test_two_levels_set_the_lower_sub_goal_around_the_wall():
    g = u_graph()
    ebm = ebmgraph.compile(ebmgraph.loads(LOWER))
    x = torch.tensor([[0.0, 0.0]])
    goal = torch.tensor([[0.0, 2.0]])  # cell (2, 0): straight up is the wall
    r = minimize_two_level(g, ebm, {"x": x, "goal": goal}, ["a"], method="mppi", samples=64, iters=3, seed=0)
    nxt = int(g.encode(np.array([[1.0, 0.0]]))[0])  # the corridor's next cell, (0, 1)
    assert r.info["upper_next"] == nxt
    np.testing.assert_allclose(r.info["subgoal"].numpy()[0], g.centroids[nxt], atol=1e-6)
    assert len(r.info["upper_path"]) == 7
    # the lower plan heads for the sub-goal: its last state is nearer the sub-goal than the start is
    with torch.no_grad():
        s = x + 0.25 * r.values["a"][0].sum(0)
    assert torch.linalg.norm(s - r.info["subgoal"]) < torch.linalg.norm(x - r.info["subgoal"])
    # at the goal's cell the sub-goal is the goal itself
    r2 = minimize_two_level(g, ebm, {"x": goal + 0.05, "goal": goal}, ["a"], method="mppi", samples=16, iters=1)
    torch.testing.assert_close(r2.info["subgoal"], goal)


def test_joint_minimizes_the_sum_over_candidates_and_equals_top_down_without_the_lower_term():
    g = u_graph()
    ebm = ebmgraph.compile(ebmgraph.loads(LOWER))
    obs = {"x": torch.tensor([[2.0, 0.0]]), "goal": torch.tensor([[2.0, 2.0]])}  # the corner (0, 2): two ways
    # from (0, 2) the corridor goes left (away) or up (toward (2, 2)); both are candidates
    j = minimize_two_level(g, ebm, obs, ["a"], mode="joint", candidates=8, method="mppi", samples=32, iters=2)
    tab = j.info["candidates"]
    assert len(tab) == 2
    assert min(t["total"] for t in tab) == pytest.approx(j.info["upper_energy"] + float(j.energy[0]), rel=1e-5)
    for t in tab:
        assert t["total"] == pytest.approx(t["upper_energy"] + t["lower_energy"])
    t0 = minimize_two_level(g, ebm, obs, ["a"], mode="top_down", method="mppi", samples=32, iters=2)
    j0 = minimize_two_level(g, ebm, obs, ["a"], mode="joint", weight=0.0, candidates=8, method="mppi", samples=32,
                            iters=2)
    assert t0.info["upper_next"] == j0.info["upper_next"]
    with pytest.raises(SpecError, match="mode must be"):
        minimize_two_level(g, ebm, obs, ["a"], mode="sideways")
    with pytest.raises(SpecError, match="not given"):
        minimize_two_level(g, ebm, {"x": obs["x"]}, ["a"])


MEDIUM = "pointmaze-medium-navigate-v0"


def test_a_toy_maze_end_to_end_two_levels_pass_the_wall_a_flat_plan_stalls_at(tmp_path, capsys):
    """Collect navigate data, learn the upper level, plan medium's task 3 ((8, 16) to (4, 12), behind a wall
    where a flat 10-step wall-blind plan stalls, tests/test_maze.py) with two levels: reached."""
    pytest.importorskip("ogbench")
    from ebmgraph.cli import main
    from tests.test_maze import KNOWN

    data = tmp_path / "d.npz"
    assert main(["collect", MEDIUM, "--steps", "6000", "--policy", "oracle", "--seed", "0", "--out", str(data),
                 "--quiet"]) == 0
    up = tmp_path / "upper.safetensors"
    assert main(["fit-upper", str(data), "--unit", "4", "--pool", "5", "--out", str(up)]) == 0
    assert "abstract states" in capsys.readouterr().out and (tmp_path / "upper.png").stat().st_size > 1000
    spec = tmp_path / "known.yaml"
    spec.write_text(KNOWN)
    rc = main(["plan", str(spec), "--env", MEDIUM, "--from-info", "goal=goal", "--reset", "task_id=3",
               "--method", "mppi", "--set", "samples=32", "--episodes", "1", "--max-steps", "300", "--no-frames",
               "--quiet", "--json", "--out", str(tmp_path / "run"), "--upper", str(up)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0, summary
    assert summary["successes"] == 1 and summary["lengths"][0] < 300
    assert summary["upper"]["abstract_states"] >= 20 and summary["upper"]["mode"] == "top_down"
    assert (tmp_path / "run" / "maze_paths.png").stat().st_size > 1000
    # the same with k-means clusters of the level-1 state in place of the grid (fit-upper --clusters)
    km = tmp_path / "upper_km.safetensors"
    assert main(["fit-upper", str(data), "--clusters", "30", "--dims", "all", "--pool", "5", "--min-count", "2",
                 "--out", str(km)]) == 0
    assert "30 k-means clusters" in capsys.readouterr().out
    rc = main(["plan", str(spec), "--env", MEDIUM, "--from-info", "goal=goal", "--reset", "task_id=3",
               "--method", "mppi", "--set", "samples=32", "--episodes", "1", "--max-steps", "300", "--no-frames",
               "--quiet", "--json", "--out", str(tmp_path / "run_km"), "--upper", str(km)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and summary["successes"] == 1, summary
    with pytest.raises(SystemExit):  # a quantizer is required: --unit or --clusters
        main(["fit-upper", str(data), "--out", str(km)])
    assert "one of the arguments --unit --clusters is required" in capsys.readouterr().err


def test_the_goal_may_be_a_function_of_the_lower_spec_and_the_sub_goal_its_own_variable():
    """As when planning from pixels: the upper level reads g = Enc(goal) and writes the observed sub."""
    spec = LOWER.replace("  goal: {observed: [2]}\n", "  goal: {observed: [2]}\n  sub: {observed: [2]}\n")
    spec = spec.replace("  s[0]: identity(x)\n", "  s[0]: identity(x)\n  g: identity(goal)\n")
    spec = spec.replace("sq_dist(s[t+1], goal)", "sq_dist(s[t+1], sub)")
    ebm = ebmgraph.compile(ebmgraph.loads(spec))
    g = u_graph()
    obs = {"x": torch.tensor([[0.0, 0.0]]), "goal": torch.tensor([[0.0, 2.0]]), "sub": torch.zeros(1, 2)}
    r = minimize_two_level(g, ebm, obs, ["a"], goal="g", subgoal="sub", method="mppi", samples=16, iters=1)
    nxt = int(g.encode(np.array([[1.0, 0.0]]))[0])
    assert r.info["upper_next"] == nxt
    with pytest.raises(SpecError, match="no function nope"):
        minimize_two_level(g, ebm, obs, ["a"], goal="nope", subgoal="sub")


def test_image_module_is_channels_first_in_unit_range():
    x = torch.randint(0, 256, (2, 4, 5, 3), dtype=torch.uint8)
    ebm = ebmgraph.compile(ebmgraph.loads("""
name: img
variables:
  x: {observed: [4, 5, 3]}
  y: {observed: [3, 4, 5]}
functions:
  v: image(x)
energy:
  D: sq_dist(v, y)
"""))
    from ebmgraph.train import values

    v = values(ebm, ["v"], x=x)["v"]
    torch.testing.assert_close(v, x.permute(0, 3, 1, 2).to(v.dtype) / 255)
    with pytest.raises(SpecError, match="image reads an"):
        ebmgraph.compile(ebmgraph.loads("""
name: img2
variables:
  x: {observed: [4]}
functions:
  v: image(x)
energy:
  D: sq_dist(v)
"""))
