"""Hierarchical planning as nested minimization (§4.6–4.7, Figures 15 and 16).

Two levels of representation and prediction. Level 1 is a compiled spec: its state ``s[t]``, its
predictor and its energy toward a *sub-goal* (an observed variable of the lower spec). Level 2
is an :class:`AbstractGraph` learned from trajectories:

- ``Enc2``: a level-1 state, pooled over ``pool`` steps in training (temporal pooling, §4.6),
  quantized on a grid of side ``unit`` over chosen features (the abstract state is the cell), or
  into ``clusters`` k-means clusters of them (the abstract state is the nearest centre): the grid
  reads a low-dimensional state such as xy, the clusters a wider learned representation.
- ``Pred2(s2, a2)``: on the grid, the abstract action ``a2`` is a move to one of the 8 neighbouring
  cells; the predicted next abstract state is that cell when the move was seen in the data, else
  ``s2`` itself (the move is blocked). With clusters, ``a2`` picks one of the clusters the data
  moved to from ``s2``. Nothing about the environment is given: walls are what the data never
  crossed.
- The upper energy of a sequence ``a2[0..K-1]`` is the length of the path it predicts (the
  distance between the cells' level-1 centroids) plus ``C2(s2[K], goal2)``, zero at the goal's cell
  and infinite elsewhere. Its exact minimum over all sequences is dynamic programming: a shortest
  path (Dijkstra) from the goal's cell, cached per goal.

The upper level's first predicted state ``s2[1]`` becomes the lower level's sub-goal: the centroid
(in level-1 space) of that cell, or the goal itself once the next cell is the goal's. Two ways
to minimize the two levels (Figure 16):

- ``top_down``: minimize the upper energy over ``a2``, then the lower over ``a`` given its sub-goal.
- ``joint``: minimize ``E2(a2) + weight · E1(a | a2)`` over the pair: for each of the
  ``candidates`` best first abstract actions, minimize the lower energy with that sub-goal; the
  pair with the least total wins (``candidates`` times the lower compute).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import SpecError
from .core import MinimizeResult

# the abstract actions a2: moves to the 8 neighbouring cells (row, column offsets on the grid)
MOVES = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))
FORMAT = "ebmgraph.abstract_graph/1"


@dataclass
class AbstractGraph:
    """Level 2 learned from trajectories: abstract states (grid cells or k-means clusters), their
    level-1 centroids and the moves between them the data showed (§4.6, Figure 15: Enc2 with
    temporal pooling, Pred2).

    Attributes:
        unit: the grid's side, in level-1 units (0 with clusters).
        pool: steps averaged into one level-2 state when fitting (temporal pooling).
        dims: the level-1 features the grid reads.
        codes: ``[N, len(dims)]`` integer grid coordinates of the abstract states seen (clusters:
            ``[N, 1]``, the cluster's number).
        centroids: ``[N, D]`` the mean level-1 state of each.
        edges: ``[E, 2]`` observed moves ``i -> j`` (indices into ``codes``).
        counts: ``[E]`` how often each was seen.
        clusters: the number of k-means clusters (0: the grid).
    """

    unit: float
    pool: int
    dims: tuple
    codes: np.ndarray
    centroids: np.ndarray
    edges: np.ndarray
    counts: np.ndarray
    meta: dict = field(default_factory=dict)
    clusters: int = 0

    def __post_init__(self):
        self._index = {tuple(int(v) for v in c): i for i, c in enumerate(self.codes)}
        self._values: dict[int, np.ndarray] = {}
        # one adjacency for Pred2 and the ranking: out[i] = [(edge index, j), ...]
        self._outs = [[] for _ in range(len(self.codes))]
        for k, (i, j) in enumerate(self.edges):
            self._outs[int(i)].append((k, int(j)))
        self._next = [sorted({j for _, j in o}) for o in self._outs]  # Pred2's choices with clusters, in number order
        d = self.centroids[self.edges[:, 1]] - self.centroids[self.edges[:, 0]] if len(self.edges) else np.zeros((0, 1))
        self.lengths = np.linalg.norm(d, axis=1)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, states, episode, *, unit: float = 0.0, clusters: int = 0, pool: int = 1, dims=(0, 1),
            min_count: int = 1, seed: int = 0, meta: dict | None = None) -> "AbstractGraph":
        """Learn level 2 from level-1 states ``[N, D]`` in time order, ``episode`` ``[N]`` their episode ids.

        Consecutive windows of ``pool`` steps (inside one episode) are averaged and quantized — on the
        grid of side ``unit``, or into ``clusters`` k-means clusters (scikit-learn, ``seed``); a move
        between the abstract states of consecutive windows is an edge, kept when seen ``min_count``
        times. On the grid only moves to the 8 neighbouring cells are kept (a window that jumps
        further is dropped).
        """
        s = np.asarray(states, np.float64)
        ep = np.asarray(episode)
        if s.ndim != 2 or len(s) != len(ep):
            raise ValueError(f"states must be [N, D] with one episode id each; got {s.shape} and {ep.shape}")
        if (unit > 0) == (clusters > 0) or unit < 0 or clusters < 0:
            raise ValueError(f"give one quantizer: a grid unit > 0 or a number of clusters > 0; got unit {unit}, "
                             f"clusters {clusters}")
        if pool < 1 or min_count < 1:
            raise ValueError(f"pool and min_count must be >= 1; got {pool}, {min_count}")
        dims = tuple(int(d) for d in dims)
        if any(not 0 <= d < s.shape[1] for d in dims):
            raise ValueError(f"dims {dims} outside the {s.shape[1]} level-1 features")
        pooled, pep = [], []
        for e in np.unique(ep):
            x = s[ep == e]
            m = len(x) // pool
            if m:
                pooled.append(x[:m * pool].reshape(m, pool, -1).mean(1))
                pep.append(np.full(m, e))
        if not pooled:
            raise ValueError(f"no episode has {pool} steps to pool")
        p, pe = np.concatenate(pooled), np.concatenate(pep)
        if clusters:
            if len(p) < clusters:
                raise ValueError(f"{clusters} clusters need at least as many pooled states; got {len(p)}")
            from sklearn.cluster import KMeans

            km = KMeans(n_clusters=int(clusters), n_init=4, random_state=int(seed)).fit(p[:, dims])
            used, inv = np.unique(km.labels_, return_inverse=True)  # drop clusters left empty
            codes = np.arange(len(used), dtype=np.int64)[:, None]
        else:
            cells = np.floor(p[:, dims] / unit + 0.5).astype(np.int64)
            codes, inv = np.unique(cells, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        cent = np.stack([p[inv == i].mean(0) for i in range(len(codes))])
        same = pe[1:] == pe[:-1]
        a, b = inv[:-1][same], inv[1:][same]
        if clusters:
            keep = a != b
        else:
            step = np.abs(codes[b] - codes[a]).max(1) if len(a) else np.zeros(0, np.int64)
            keep = step == 1
        pairs, cnt = (np.unique(np.stack([a[keep], b[keep]], 1), axis=0, return_counts=True) if keep.any()
                      else (np.zeros((0, 2), np.int64), np.zeros(0, np.int64)))
        ok = cnt >= min_count
        return cls(float(unit), int(pool), dims, codes, cent, pairs[ok].astype(np.int64), cnt[ok].astype(np.int64),
                   dict(meta or {}), int(clusters))

    # ------------------------------------------------------------------ level 2
    def encode(self, s) -> np.ndarray:
        """``Enc2``: the abstract state (index) of level-1 states ``[B, D]``; a cell never seen maps to
        the seen cell with the nearest centroid."""
        s = np.asarray(s, np.float64).reshape(-1, self.centroids.shape[1])
        if self.clusters:  # the nearest centre, in the features the clusters read
            return self._nearest(s, list(self.dims))
        cells = np.floor(s[:, self.dims] / self.unit + 0.5).astype(np.int64)
        out = np.array([self._index.get(tuple(int(v) for v in c), -1) for c in cells], np.int64)
        unseen = out < 0
        if unseen.any():
            out[unseen] = self._nearest(s[unseen], slice(None))
        return out

    def _nearest(self, s: np.ndarray, dims) -> np.ndarray:
        """The abstract state whose level-1 centroid is nearest each row of ``s``, over ``dims``."""
        return ((s[:, None, dims] - self.centroids[None, :, dims]) ** 2).sum(-1).argmin(1).astype(np.int64)

    def predict(self, i: int, a2: int) -> int:
        """``Pred2(s2, a2)``: the neighbour in direction ``MOVES[a2]`` when that move was seen, else ``s2``
        (clusters: the ``a2``-th of the clusters the data moved to from ``s2``, in number order)."""
        if self.clusters:
            outs = self._next[i]
            return outs[a2] if 0 <= a2 < len(outs) else i
        target = tuple(int(v) for v in self.codes[i][:2] + np.asarray(MOVES[a2])[:len(self.dims)])
        j = self._index.get(target)
        return j if j is not None and any(jj == j for _, jj in self._outs[i]) else i

    def values(self, goal: int) -> np.ndarray:
        """The upper energy's minimum from every abstract state to ``goal`` (inf where unreachable):
        exact dynamic programming over all abstract action sequences (Dijkstra)."""
        if goal not in self._values:
            import networkx as nx

            g = nx.DiGraph()
            g.add_nodes_from(range(len(self.codes)))
            g.add_weighted_edges_from((int(j), int(i), float(w)) for (i, j), w in zip(self.edges, self.lengths))
            dist = nx.single_source_dijkstra_path_length(g, int(goal))  # on the reversed edges: cost to reach goal
            v = np.full(len(self.codes), np.inf)
            for k, d in dist.items():
                v[k] = d
            self._values[goal] = v
        return self._values[goal]

    def ranked(self, i: int, goal: int) -> list[tuple[int, float]]:
        """The first abstract moves from ``i``, best first: ``[(next state, upper energy), ...]``."""
        if i == goal:
            return [(i, 0.0)]
        v = self.values(goal)
        opts = [(j, float(self.lengths[k] + v[j])) for k, j in self._outs[i]]
        opts = [o for o in opts if math.isfinite(o[1])]
        return sorted(opts, key=lambda o: o[1]) or [(i, float(v[i]))]

    def path(self, i: int, goal: int, limit: int = 10_000) -> list[int]:
        """The minimizing sequence of abstract states from ``i`` to ``goal`` (``[i]`` when unreachable)."""
        out = [int(i)]
        while out[-1] != goal and len(out) < limit:
            j, e = self.ranked(out[-1], goal)[0]
            if j == out[-1] or not math.isfinite(e):
                break
            out.append(j)
        return out

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Arrays as safetensors with the settings as metadata (loading runs no code)."""
        from safetensors.numpy import save

        from ..util import atomic_write_bytes

        meta = {"format": FORMAT, "unit": repr(self.unit), "pool": str(self.pool), "dims": json.dumps(list(self.dims)),
                "meta": json.dumps(self.meta), "clusters": str(self.clusters)}
        atomic_write_bytes(path, save({"codes": self.codes, "centroids": self.centroids, "edges": self.edges,
                                       "counts": self.counts}, metadata=meta))

    @classmethod
    def load(cls, path) -> "AbstractGraph":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                arrays = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # a missing file, or not safetensors
            raise SpecError(f"{path}: not an abstract graph ({type(exc).__name__}: {exc})") from None
        if meta.get("format") != FORMAT or set(arrays) != {"codes", "centroids", "edges", "counts"}:
            raise SpecError(f"{path}: not an abstract graph (format {meta.get('format')!r}, arrays {sorted(arrays)}); "
                            f"make one with ebmgraph fit-upper")
        return cls(float(meta["unit"]), int(meta["pool"]), tuple(json.loads(meta["dims"])), arrays["codes"],
                   arrays["centroids"], arrays["edges"], arrays["counts"], json.loads(meta.get("meta", "{}")),
                   int(meta.get("clusters", "0")))

    def summary(self) -> dict:
        return {"abstract_states": int(len(self.codes)), "moves": int(len(self.edges)), "unit": self.unit,
                "clusters": self.clusters, "pool": self.pool, "dims": list(self.dims)}


def level1(ebm, observed: dict, state: str) -> torch.Tensor:
    """``state`` (or ``state[0]``) in level-1 space: an observed variable, or a function of the observed
    ones such as ``s[0]: Enc1(x)`` or ``g: Enc1(goal)``."""
    if state in observed:
        return observed[state]
    node = (state, 0)
    if node not in ebm.checked.elements or ebm.graph.var(state) is not None:
        raise SpecError(f"{ebm.graph.name} has no function {state} (or {state}[0]) in level-1 space for the upper "
                        f"level to read")
    label = f"{state}[0]" if state in ebm.checked.lengths else state
    with torch.no_grad():
        return ebm.evaluate(observed, outputs=[label], validate=False)[label]


def minimize_two_level(upper: AbstractGraph, ebm, observed: dict, over, *, goal: str = "goal",
                       subgoal: str | None = None, state: str = "s", mode: str = "top_down", candidates: int = 3,
                       weight: float = 1.0, method: str = "mppi", generator=None, **settings) -> MinimizeResult:
    """Plan two levels (Figure 16): the upper level picks abstract actions toward ``observed[goal]``,
    its first predicted state is the sub-goal ``observed[subgoal]`` of the lower spec ``ebm``, which
    is minimized over ``over`` by ``method``.

    Args:
        upper: the level-2 model.
        ebm: the lower level's compiled spec (its energy reads the sub-goal variable).
        observed: the lower spec's observed values ``[1, ...]``; ``observed[goal]`` is the final goal in
            level-1 space.
        goal, subgoal: the final goal in level-1 space — an observed variable, or a function of the
            lower spec such as ``g: Enc(image(goal))`` — and the observed variable receiving the
            sub-goal (default: the goal's variable).
        state: the level-1 state the upper level encodes (``s`` reads ``s[0]``).
        mode: ``top_down`` or ``joint`` (see the module's docstring).
        candidates, weight: ``joint`` only: the first abstract actions tried, and the lower energy's weight.

    Returns:
        the lower level's :class:`MinimizeResult`; ``info`` adds ``subgoal`` ``[1, D]``, ``upper_path`` (the
        abstract states to the goal), ``upper_energy`` and, for ``joint``, each candidate's totals.
    """
    from .api import minimize

    if mode not in ("top_down", "joint"):
        raise SpecError(f"mode must be top_down or joint, not {mode!r}")
    if goal not in observed and ebm.graph.var(goal) is not None:
        raise SpecError(f"the upper level plans toward observed[{goal!r}], which is not given (a maze's goal comes "
                        f"from the reset: --from-info goal=goal)")
    subgoal = subgoal or goal
    if ebm.graph.var(subgoal) is None:
        raise SpecError(f"{ebm.graph.name} has no variable {subgoal} to receive the sub-goal")
    s1 = level1(ebm, observed, state)
    if s1.shape[0] != 1:
        raise SpecError(f"two-level planning plans one problem at a time; got a batch of {s1.shape[0]}")
    g1 = level1(ebm, observed, goal)  # an observed goal, or a function of one (g: Enc(goal_image))
    here = int(upper.encode(s1.detach().cpu().numpy())[0])
    target = int(upper.encode(g1.detach().cpu().numpy())[0])
    opts = upper.ranked(here, target)
    if mode == "top_down":
        opts = opts[:1]
    else:
        opts = opts[:max(1, int(candidates))]

    def sub_for(j: int) -> torch.Tensor:
        if j == target or here == target:
            return g1
        c = torch.as_tensor(upper.centroids[j], dtype=g1.dtype, device=g1.device)[None]
        return c.reshape(g1.shape)

    best, table = None, []
    for j, e2 in opts:
        sub = sub_for(j)
        r = minimize(ebm, {**observed, subgoal: sub}, over=over, method=method, generator=generator, **settings)
        total = e2 + weight * float(r.energy[0])
        table.append({"next": j, "upper_energy": e2, "lower_energy": float(r.energy[0]), "total": total})
        if best is None or total < best[0]:
            best = (total, r, sub, j, e2)
    _, r, sub, j, e2 = best
    info = dict(r.info, subgoal=sub.detach(), upper_next=j, upper_energy=e2, upper_path=upper.path(here, target),
                mode=mode)
    if mode == "joint":
        info["candidates"] = table
    return MinimizeResult(r.values, r.energy, r.terms, r.trace, f"{mode}+{r.method}", info)


__all__ = ["AbstractGraph", "MOVES", "minimize_two_level"]
