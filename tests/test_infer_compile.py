"""``compile=True`` (issue 14): the torch.compile'd planning iterations compute what the eager ones do.

One UCT simulation of the batched MCTS and one CEM / MPPI iteration can run through
``torch.compile``; the compiled code is built once per model and sizes. MCTS's simulation also runs as an
AOTInductor package kept on disk (``compile="aot"``, and by default once it pays: ebmgraph/infer/aot.py).
These tests compare with the eager path on the same seeds (not timed: speed is in BENCHMARKS.md,
``ebmgraph bench planners``). Each compiles a small problem once (seconds on a CPU).
"""
from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

import ebmgraph
from ebmgraph.infer import MCTS, aot, mcts, minimize
from ebmgraph.infer.core import Problem, compiled_planners
from ebmgraph.infer.sampling import cem

from test_infer_mcts_batched import _critic
from test_infer_mcts_strength import potts, problems

PLAN = """
name: plan
index: {t: 0..T-1}
sizes: {T: 3}
variables:
  x: {observed: [3]}
  a[t]: {action: [1], bounds: [-2, 2]}
modules:
  Enc: mlp(3, 8, 3)
  Pred: mlp(4, 16, 3, act=tanh, residual=true)
  C: fixed(quadratic(3))
functions:
  s[0]: Enc(x)
  s[t+1]: Pred(s[t], a[t])
energy:
  cost[t]: C(s[t+1])
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """AOT packages under a fresh folder (never the user's ~/.cache), and that folder."""
    monkeypatch.setenv(aot.ENV, str(tmp_path))
    return tmp_path


def test_mcts_compiled_simulation_makes_the_eager_choices():
    L, K = 4, 3
    ebm = potts(L, K)
    x = problems(5, L, K, seed=21)
    torch._dynamo.reset()
    counters.clear()
    a = MCTS(ebm, {"x": x}, ["z"], c=0.8, seed=6, compile=True)
    b = MCTS(ebm, {"x": x}, ["z"], c=0.8, seed=6, compile=False)
    ra, rb = a.search(40), b.search(40)
    assert torch.equal(ra.values["z"], rb.values["z"])
    torch.testing.assert_close(ra.energy, rb.energy)
    assert torch.equal(ra.info["root_visits"], rb.info["root_visits"])
    assert torch.equal(a.tree.size, b.tree.size)
    assert ra.info["runs"] == {"eager": 0, "compiled": 40}
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1
    # a second search on the same model reuses the compiled simulation (no further graph)
    c = MCTS(ebm, {"x": x}, ["z"], c=0.8, seed=6, compile=True)
    assert torch.equal(c.search(40).values["z"], rb.values["z"])
    assert counters["stats"]["unique_graphs"] == graphs


def test_mcts_aot_simulation_makes_the_eager_choices(cache):
    """compile="aot" (torch.export + AOTInductor): the tree updated in place through the C++ runner gives the
    eager search's tree and choices, over two searches on one tree (the second continues the first)."""
    L, K = 4, 3
    ebm = potts(L, K)
    x = problems(5, L, K, seed=21)
    a = MCTS(ebm, {"x": x}, ["z"], c=0.8, seed=6, compile="aot")
    b = MCTS(ebm, {"x": x}, ["z"], c=0.8, seed=6, compile=False)
    for _ in range(2):
        ra, rb = a.search(30), b.search(30)
        assert torch.equal(ra.values["z"], rb.values["z"])
        torch.testing.assert_close(ra.energy, rb.energy)
        assert torch.equal(ra.info["root_visits"], rb.info["root_visits"])
        assert torch.equal(a.tree.size, b.tree.size)
        torch.testing.assert_close(a.tree.value_sum, b.tree.value_sum, rtol=1e-12, atol=1e-12)
    assert len(list((cache / "aot").glob("*.pt2"))) == 1  # one package for these sizes, reused by the second search
    # observed tensors that are views (strided, broadcast) are read as the eager search reads them
    big = problems(5, L, K, seed=22)
    for view in (torch.cat([big, big], 1)[:, ::2], big[:1].expand_as(big)):
        r_aot = MCTS(ebm, {"x": view}, ["z"], c=0.8, seed=6, compile="aot").search(30)
        r_eager = MCTS(ebm, {"x": view.contiguous()}, ["z"], c=0.8, seed=6, compile=False).search(30)
        assert torch.equal(r_aot.info["root_visits"], r_eager.info["root_visits"])
    # the model's state is an input of the runner, not baked in: a change between searches is seen
    before = MCTS(ebm, {"x": x}, ["z"], c=0.8, seed=6, compile=False).search(30).info["root_visits"]
    with torch.no_grad():
        ebm.weight_lam.mul_(4.0)  # the pairwise term's weight (a buffer; this model has no parameters)
    ra = MCTS(ebm, {"x": x}, ["z"], c=0.8, seed=6, compile="aot").search(30)
    rb = MCTS(ebm, {"x": x}, ["z"], c=0.8, seed=6, compile=False).search(30)
    assert not torch.equal(rb.info["root_visits"], before)  # the change matters to the search
    assert torch.equal(ra.info["root_visits"], rb.info["root_visits"]) and torch.equal(ra.values["z"], rb.values["z"])
    assert len(list((cache / "aot").glob("*.pt2"))) == 1
    with pytest.raises(ebmgraph.SpecError, match="aot"):
        MCTS(ebm, {"x": x}, ["z"], compile="aot", critic=_critic)
    with pytest.raises(ebmgraph.SpecError, match="compile="):
        MCTS(ebm, {"x": x}, ["z"], compile="fast")


REUSE = """
import json, sys, torch
sys.path.insert(0, {tests!r})
from ebmgraph.infer import MCTS
from test_mcts_state import chain
torch.set_num_threads({threads})  # a package's key holds the thread count it is built for: the parent's
x = torch.randn(3, 4, generator=torch.Generator().manual_seed(5)).double()
r = MCTS(chain(6, 3), {{"x": x}}, ["a"], seed=2).search(40)
print(json.dumps([r.info["runs"]["compiled"], r.info["root_visits"].long().flatten().tolist(),
                  r.values["a"].flatten().tolist()]))
"""


def test_mcts_by_default_builds_once_announces_it_and_a_second_process_reuses_it(cache, monkeypatch, capfd):
    """The default (compile="auto") on a step-wise spec: a build is announced in one line on stderr and kept
    on disk; another search in this process and a new process load it with no line; all make the eager
    search's choices; a small search with nothing built stays eager and writes nothing."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from test_mcts_state import chain

    aot.source_digest.cache_clear()  # the library's sources as they are now (part of every package's key)
    ebm = chain(6, 3)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(5)).double()
    small = MCTS(ebm, {"x": x}, ["a"], seed=2).search(20)
    assert small.info["runs"] == {"eager": 20, "compiled": 0} and not (cache / "aot").exists()
    eager = MCTS(ebm, {"x": x}, ["a"], seed=2, compile=False).search(40)
    capfd.readouterr()
    monkeypatch.setattr(mcts, "AUTO_BUILD_AFTER", 0)  # build at once
    first = MCTS(ebm, {"x": x}, ["a"], seed=2).search(40)
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("ebmgraph:")]
    assert len(lines) == 1 and "compiling the MCTS simulation (B=3, L=6, K=3" in lines[0], lines
    assert first.info["runs"] == {"eager": 0, "compiled": 40} and len(list((cache / "aot").glob("*.pt2"))) == 1
    for r in (first, MCTS(ebm, {"x": x}, ["a"], seed=2).search(40)):
        assert torch.equal(r.values["a"], eager.values["a"]) and torch.equal(r.info["root_visits"],
                                                                              eager.info["root_visits"])
    assert not [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("ebmgraph:")]
    env = {**__import__("os").environ, aot.ENV: str(cache)}
    out = subprocess.run([sys.executable, "-c", REUSE.format(tests=str(Path(__file__).parent),
                                                                   threads=torch.get_num_threads())], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    if aot.source_digest.__wrapped__() != aot.source_digest():  # another package is right: the key changed
        pytest.skip("ebmgraph's source files changed while this test ran")
    assert "ebmgraph: compiling" not in out.stderr
    compiled, visits, values = json.loads(out.stdout.strip().splitlines()[-1])
    assert compiled == 40 and visits == eager.info["root_visits"].long().flatten().tolist()
    assert values == eager.values["a"].flatten().tolist()


def test_mcts_by_default_builds_once_its_eager_simulations_would_have_paid_for_it(cache, monkeypatch):
    """compile="auto" counts each configuration's eager simulations in this process and builds its package
    when they reach AUTO_BUILD_AFTER (the build replaced here by the eager function, so nothing compiles);
    another batch size is another configuration; policies run eagerly whatever the count."""
    from test_mcts_state import chain

    built = []

    def fake_package(self, example, key):
        built.append((self.B, key))
        return lambda *args: self._eager(*args)

    monkeypatch.setattr(mcts.MCTS, "_package", fake_package)
    monkeypatch.setattr(mcts, "AUTO_BUILD_AFTER", 50)
    ebm = chain(4, 2)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(1)).double()
    runs = [MCTS(ebm, {"x": x}, ["a"], seed=s).search(20).info["runs"] for s in range(3)]
    assert runs == [{"eager": 20, "compiled": 0}, {"eager": 20, "compiled": 0}, {"eager": 0, "compiled": 20}]
    assert [b for b, _ in built] == [3]
    assert MCTS(ebm, {"x": x[:2]}, ["a"]).search(20).info["runs"] == {"eager": 20, "compiled": 0}
    assert MCTS(ebm, {"x": x}, ["a"], seed=5).search(60).info["runs"]["compiled"] == 60  # the count is kept
    policy = MCTS(ebm, {"x": x}, ["a"], policy=lambda obs, prefix, depth: torch.ones(3, 2)).search(60)
    assert policy.info["runs"] == {"eager": 60, "compiled": 0} and len(built) == 2


def test_aot_packages_are_keyed_by_what_they_were_built_from_and_a_damaged_one_is_rebuilt(tmp_path, monkeypatch,
                                                                                           capfd):
    """Where packages live ($EBMGRAPH_CACHE_DIR, else $XDG_CACHE_HOME/ebmgraph, else ~/.cache/ebmgraph); a key
    that changes with the inputs' signature, the options and the thread count; and a file on disk that is not a
    package (a truncated copy) is reported in one line and rebuilt, with the right results."""
    import os
    from pathlib import Path

    monkeypatch.delenv(aot.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert aot.cache_dir() == tmp_path / "xdg" / "ebmgraph"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert aot.cache_dir() == Path.home() / ".cache" / "ebmgraph"
    monkeypatch.setenv(aot.ENV, str(tmp_path / "mine"))
    assert aot.cache_dir() == tmp_path / "mine"
    x = torch.arange(6.0)
    key = aot.digest(("toy", aot.signature((x,))), {})
    assert key != aot.digest(("toy", aot.signature((x.view(2, 3),))), {})
    assert key != aot.digest(("toy", aot.signature((x,))), {"size_asserts": False})
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert key != aot.digest(("toy", aot.signature((x,))), {})
    finally:
        torch.set_num_threads(threads)

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(3.0))

        def forward(self, x):
            x.mul_(self.w)  # written in place, as the MCTS simulation writes its tree
            return (x + 1.0,)

    toy = Toy()
    path = aot.package_path(key)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 not a package")
    capfd.readouterr()
    run = aot.load_or_build(toy, (x,), key, {}, what="a toy", expected_s=1)
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("ebmgraph:")]
    assert len(err) == 2 and err[0].startswith(f"ebmgraph: rebuilding {path}") and "compiling a toy" in err[1], err
    y = torch.arange(6.0)
    out = run(y, *aot.live_state(toy))
    assert torch.equal(y, torch.arange(6.0) * 3) and torch.equal(out[0], y + 1)
    with torch.no_grad():
        toy.w.fill_(2.0)  # the weights are inputs: the new value is read
    y = torch.arange(6.0)
    run(y, *aot.live_state(toy))
    assert torch.equal(y, torch.arange(6.0) * 2)
    assert os.path.getsize(path) > 1000  # the rebuilt package replaced the damaged file


def test_mcts_compiled_stored_state_simulation_with_a_critic_makes_the_eager_choices():
    """A step-wise spec compiled with a critic reading the stored state and prefix energy: same tree,
    choices and energies as the eager search (and a search without the critic chooses differently)."""
    from test_mcts_state import chain

    L, K = 5, 3
    ebm = chain(L, K)
    C = ebm.mods["C"]
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(31)).double()

    def critic(obs, prefix, depth, state, energy):
        return -(energy + (L - depth).double() * C(state).reshape(-1))

    a = MCTS(ebm, {"x": x}, ["a"], c=0.8, seed=4, critic=critic, compile=True)
    b = MCTS(ebm, {"x": x}, ["a"], c=0.8, seed=4, critic=critic, compile=False)
    ra, rb = a.search(60), b.search(60)
    assert a.stepwise is not None
    assert torch.equal(ra.values["a"], rb.values["a"])
    torch.testing.assert_close(ra.energy, rb.energy)
    assert torch.equal(ra.info["root_visits"], rb.info["root_visits"])
    torch.testing.assert_close(a.tree.value_sum, b.tree.value_sum, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.tree.state, b.tree.state, rtol=1e-12, atol=1e-12)
    blind = MCTS(ebm, {"x": x}, ["a"], c=0.8, seed=4, compile=False)
    blind.search(60)
    assert not torch.equal(blind.tree.value_sum, b.tree.value_sum)


def test_mcts_compile_refuses_what_it_does_not_compile():
    ebm = potts(4, 3)
    x = problems(2, 4, 3, seed=0)
    with pytest.raises(ebmgraph.SpecError, match="compile=True"):
        MCTS(ebm, {"x": x}, ["z"], compile=True, policy=lambda obs, prefix, depth: torch.ones(2, 3))


@pytest.mark.parametrize("method,kw", [("cem", {"elite_frac": 0.2}), ("mppi", {"temperature": 0.5})])
def test_sampling_compiled_iteration_matches_eager(method, kw):
    ebm = ebmgraph.compile(PLAN, seed=3)
    x = torch.tensor([[0.8, -0.3, 0.5], [0.1, 0.4, -0.9]])
    common = dict(samples=64, iters=4, sigma=1.0, seed=2, **kw)
    e = minimize(ebm, {"x": x}, over=["a"], method=method, **common)
    c = minimize(ebm, {"x": x}, over=["a"], method=method, compile=True, **common)
    torch.testing.assert_close(c.values["a"], e.values["a"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(c.energy, e.energy, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(c.trace, e.trace, rtol=1e-4, atol=1e-5)
    again = minimize(ebm, {"x": x}, over=["a"], method=method, compile=True, **common)
    assert torch.equal(again.values["a"], c.values["a"])
    assert len(compiled_planners(ebm)) == 2  # the iteration and the last mean's scorer, each built once, reused


def test_sampling_compile_refuses_a_wrapped_objective():
    ebm = ebmgraph.compile(PLAN, seed=3)
    prob = Problem(ebm, {"x": torch.zeros(1, 3)}, ["a"])
    prob.objective_fn = lambda values, k: prob.evaluate(values, k).total * 2.0
    with pytest.raises(ebmgraph.SpecError, match="compile=True"):
        cem(prob, samples=8, iters=1, compile=True)


def _population_minima(elite_reuse, seed):
    """The lowest energy of each CEM iteration's candidates (recorded through an objective wrapper)."""
    ebm = ebmgraph.compile(PLAN, seed=3)
    prob = Problem(ebm, {"x": torch.tensor([[0.8, -0.3, 0.5]])}, ["a"])
    mins = []

    def objective(values, k):
        e = prob.evaluate(values, k).total
        mins.append(float(e.min()))
        return e

    prob.objective_fn = objective
    prob.report_fn = lambda values: (values, *(lambda o: (o.total, dict(o.terms)))(prob.evaluate(values)))
    cem(prob, samples=12, iters=12, elite_frac=0.25, momentum=0.0, sigma=1.5, elite_reuse=elite_reuse,
        final_mean=False, generator=torch.Generator().manual_seed(seed))
    return mins


def test_cem_elite_reuse_rescoring_the_best_makes_each_population_no_worse():
    """With elites carried over (iCEM), each iteration's candidates include the last iteration's best,
    so the population minimum never rises; without reuse it does on this small, noisy population."""
    rises_without = 0
    for seed in range(4):
        with_reuse = _population_minima(0.34, seed)
        assert len(with_reuse) == 12
        assert all(b <= a + 1e-6 for a, b in zip(with_reuse, with_reuse[1:])), with_reuse
        without = _population_minima(0.0, seed)
        rises_without += sum(b > a + 1e-6 for a, b in zip(without, without[1:]))
    assert rises_without > 0  # the property is not automatic


def test_few_output_maps_compile_to_the_same_values(monkeypatch):
    """layers.linear / layers.matmul take a multiply-sum form under torch.compile on the CPU when the map is
    small (fused by inductor instead of an extern matmul): the fused form is taken where it should be, and
    compiled and eager agree, values and gradients, on both sides of the threshold and with a forward hook
    on a layer that would otherwise be fused (hooked layers are called as they are)."""
    from ebmgraph import layers
    from ebmgraph.layers import MLP, Quadratic

    seen = []
    real = layers._fusable

    def spy(x, n_in, n_out):
        out = real(x, n_in, n_out)
        seen.append((n_in, n_out, out))
        return out

    monkeypatch.setattr(layers, "_fusable", spy)
    torch.manual_seed(0)
    for widths, hook in (([4, 32, 3], False), ([4, 16, 12], False), ([4, 32, 3], True)):
        net, quad = MLP(widths, act="tanh", residual=False), Quadratic(widths[-1])
        with torch.no_grad():
            quad.L.add_(0.3 * torch.randn_like(quad.L))
        if hook:  # the read-out's output doubled: the hook must run compiled too
            net.net[2].register_forward_hook(lambda mod, args, out: 2.0 * out)

        def f(x):
            return quad(net(x))

        x = torch.randn(64, 4, requires_grad=True)
        eager = f(x)
        (g_eager,) = torch.autograd.grad(eager.sum(), x)
        torch._dynamo.reset()
        compiled = torch.compile(f, dynamic=False)(x)
        (g_comp,) = torch.autograd.grad(compiled.sum(), x)
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(g_comp, g_eager, rtol=1e-4, atol=1e-5)
    assert (32, 3, True) in seen and (3, 3, True) in seen  # read-out and quadratic fused
    assert (4, 32, False) in seen and (16, 12, False) in seen and (12, 12, False) in seen


def test_compiled_planners_each_get_their_own_recompile_budget():
    """compiled_once gives every key its own code object: Dynamo's recompile limit (8 per code object) would
    otherwise make the 9th configuration built by one closure factory run eagerly, without a word."""
    from torch._dynamo.utils import counters

    from ebmgraph.infer.core import compiled_once

    class Holder:
        pass

    def make(k):
        def step(x):
            return x * k + 1.0
        return step

    torch._dynamo.reset()
    counters.clear()
    h, x = Holder(), torch.randn(3)
    for k in range(10):
        torch.testing.assert_close(compiled_once(h, ("t", k), lambda k=k: make(k))(x), x * k + 1.0)
    assert counters["stats"]["unique_graphs"] == 10
