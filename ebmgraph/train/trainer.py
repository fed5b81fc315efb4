"""One trainer for every loss: seeded data order, progress, metrics, collapse monitors,
atomic checkpoints, exact resume, and data parallelism under ``torchrun``.

Determinism: the data order of an epoch is a function of (seed, epoch), and every random
draw of a step (augmentations, contrastive samples) comes from a generator seeded by
(seed, epoch, step, rank). A run resumed from a checkpoint therefore replays exactly the
steps an uninterrupted run would have taken.

Data parallel: under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` set) each rank takes
its contiguous share of every global batch and gradients are averaged with all-reduce
(gloo on CPU, nccl on CUDA); only rank 0 writes.
"""
from __future__ import annotations

import atexit
import csv
import io
import math
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from .. import ir
from ..util import atomic_write_text, progress
from .order import epoch_order, shard, step_generator
from .checkpoint import load_checkpoint, save_checkpoint
from .monitors import collapse_report, energy_gap


def _dist_info(device: torch.device) -> tuple[int, int]:
    """(rank, world) under torchrun: nccl when the model is on CUDA (one GPU per process), else gloo.

    A group this function starts is closed by :func:`_close_group` at interpreter exit."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # torch.distributed.nn.functional binds ``group=group.WORLD`` as default arguments when first
        # imported. Imported after the group exists (the first torch.optim optimizer pulls it in through
        # torch._dynamo; VICReg's all_gather too), its ten functions keep the group alive, and
        # _close_group's destroy_process_group() then joins none of gloo's threads. A gloo worker that
        # releases its last finished work late (a barrier holding the last all-reduces, which hold
        # tensors whose Python objects C++ owns) then takes the GIL after the interpreter began to
        # finalize; CPython ends such a thread with pthread_exit, whose unwinding through a noexcept
        # destructor calls std::terminate: "terminate called without an active exception", SIGABRT.
        # Imported here, first, the defaults are None and the group dies in _close_group.
        import torch.distributed.nn.functional  # noqa: F401
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        _GROUP["clean_exit"] = True
        atexit.register(_close_group)
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# whether the ranks may meet at a last barrier when the process leaves: False once fit() raised here,
# since the other ranks may be inside a collective this rank will never join
_GROUP = {"clean_exit": True}


def _close_group() -> None:
    """At exit, close the group this module started, while the interpreter is still whole: every rank
    meets at a barrier (skipped after an error here, when a peer may be stuck in a collective: closing
    the sockets makes its collective fail instead of waiting), then the group is destroyed, which joins
    gloo's worker and socket threads, so none of them touches Python during finalization."""
    if dist.is_available() and dist.is_initialized():
        # after an uncaught error, its traceback (sys.last_value) keeps the frames of the collective that
        # failed, whose locals hold the group: clear them, or destroying the group would free nothing
        _clear_frames(getattr(sys, "last_value", None))
        try:
            if _GROUP["clean_exit"]:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def _clear_frames(exc: BaseException | None) -> None:
    """Drop the locals of every finished frame in ``exc``'s traceback and in those it chains to."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)
        todo += [e.__cause__, e.__context__]


def _step_of(row: dict) -> float:
    """A metrics row's global step; a row cut short by a kill mid-write counts as past every checkpoint."""
    if None in row.values() or None in row:
        return float("inf")
    try:
        return float(row["global_step"])
    except (KeyError, TypeError, ValueError):
        return float("inf")


class _CSV:
    """Rows appended to a CSV; on resume, rows past the checkpoint are dropped."""

    def __init__(self, path: Path | None, keep_upto: int | None):
        self.path, self.fields, self.f = path, None, None
        if path is None:
            return
        rows = []
        if keep_upto is not None and path.exists():
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if _step_of(r) <= keep_upto]
        if rows:
            self.fields = list(rows[0].keys())
            buf = io.StringIO()
            w = csv.DictWriter(buf, self.fields)
            w.writeheader()
            w.writerows(rows)
            atomic_write_text(path, buf.getvalue())
        elif path.exists():
            path.unlink()

    def write(self, row: dict) -> None:
        if self.path is None:
            return
        if self.fields is None:
            self.fields = list(row.keys())
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


def declared_shapes(ebm) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes of a compiled spec's continuous inputs (observed variables and actions)
    ``{name: shape}``; a discrete variable takes integers ``[B]`` or one-hot ``[B, K]`` and is left out."""
    return {v.name: tuple(ebm.var_shape(v.name)) for v in ebm.variables
            if v.role != "latent" and not isinstance(v.domain, ir.Discrete)}


class _Rows(torch.utils.data.Dataset):
    """Batch ``i`` of an epoch: ``data.batch(rows[i])`` (what a DataLoader worker reads)."""

    def __init__(self, data, rows):
        self.data, self.rows = data, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.data.batch(self.rows[i])


class Trainer:
    """Train a loss module (``loss(batch, gen) -> LossOut``) on a :class:`~ebmgraph.train.data.Dataset`.

    Args:
        loss: a loss from :mod:`ebmgraph.train` (holds the compiled energy as ``loss.ebm``).
        data: the training set; its tensors' names are the spec's observed variables.
        epochs, batch, lr, seed: the usual; ``batch`` is the global batch (split over ranks).
        out: run directory (``metrics.csv``, ``monitors.csv``, ``ckpt/``, ``model.safetensors``);
            None keeps everything in memory.
        ckpt_every: also checkpoint every this many steps (0: at the end of each epoch only).
        monitor_batch: samples used by the per-epoch collapse monitors.
        callbacks: ``fn(trainer, epoch, step)`` called after every step.
        progress: show a progress bar (rank 0 only; about ten lines when stderr is not a terminal).
        weight_decay: AdamW weight decay.
        schedule: ``"constant"`` lr, or ``"cosine"``: lr·½(1 + cos(π·step/steps)) over the whole run
            (a function of the global step, so a resumed run follows it exactly).
        log_every: write a metrics row every this many steps.
        config: JSON-able settings of the run (the command line's), saved in every checkpoint.

    Example:
        >>> import ebmgraph
        >>> from ebmgraph.train import Trainer, Contrastive, get_dataset
        >>> ebm = ebmgraph.compile("examples/specs/train_moons.yaml", seed=0)
        >>> t = Trainer(Contrastive(ebm, "hinge"), get_dataset("moons", n=256), epochs=1, batch=64, progress=False)
        >>> len(t.fit()["loss"])
        4
    """

    def __init__(self, loss, data, *, epochs: int = 10, batch: int = 128, lr: float = 1e-3, seed: int = 0,
                 out: str | os.PathLike | None = None, ckpt_every: int = 0, monitor_batch: int = 512,
                 callbacks: list[Callable] | None = None, progress: bool = True, weight_decay: float = 0.0,
                 schedule: str = "constant",
                 log_every: int = 1, config: dict | None = None, workers: int = 0):
        self.loss, self.data = loss, data
        self.workers = int(workers)
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.epochs, self.batch, self.lr, self.seed = epochs, batch, lr, seed
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
        self.schedule = schedule
        self.out = Path(out) if out is not None else None
        self.ckpt_every, self.monitor_batch = ckpt_every, monitor_batch
        self.callbacks = list(callbacks or [])
        self.progress, self.log_every = progress, log_every
        self.config = dict(config or {})
        device = loss.ebm.device
        if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            loss.to(device)
        self.rank, self.world = _dist_info(device)
        self._batches = None
        # built-in data come flat (digits [N, 64]); a spec may declare images [1, 8, 8]
        self.data = data = data.with_shapes(declared_shapes(loss.ebm))
        if batch % self.world:
            raise ValueError(f"global batch {batch} must be divisible by the number of processes {self.world}")
        if len(data) < batch:
            raise ValueError(f"data set has {len(data)} samples, fewer than one batch of {batch}")
        if hasattr(loss, "prepare"):
            loss.prepare(data)
        if self.world > 1:  # same start on every rank
            for t in list(loss.parameters()) + list(loss.buffers()):
                dist.broadcast(t.data, 0)
        self.opt = torch.optim.AdamW([p for p in loss.parameters() if p.requires_grad], lr=lr,
                                     weight_decay=weight_decay)
        self.history: dict[str, list] = {"loss": [], "monitors": []}
        self.epoch = self.step = self.global_step = 0
        # [first, last] global step of each process that trained this run, oldest first: proof that a
        # resumed process started at the checkpoint and ran only the rest
        self.segments: list[list[int]] = []
        self._segment_start = 0

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data) // self.batch

    # ------------------------------------------------------------------ state
    def _state(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "global_step": self.global_step, "seed": self.seed,
                "batch": self.batch, "world": self.world, "epochs": self.epochs, "config": self.config,
                "segments": self.segments + [[self._segment_start, self.global_step]]}

    def save(self) -> None:
        """Checkpoint now (rank 0 writes)."""
        if self.out is not None and self.rank == 0:
            save_checkpoint(self.out / "ckpt", self.loss, self.opt, self._state())

    def _monitor_batch(self) -> dict:
        n = min(self.monitor_batch, len(self.data))
        idx = epoch_order(len(self.data), self.seed, 10**6)[:n]
        return self.data.batch(idx, step_generator(self.seed, 10**6, 0))

    def monitor(self) -> dict[str, float]:
        """Collapse monitors and the energy gap on a fixed held batch."""
        b = self._monitor_batch()
        rep = collapse_report(self.loss.ebm, b)
        try:
            rep.update(energy_gap(self.loss, b, step_generator(self.seed, 10**6, 1)))
        except (NotImplementedError, ValueError):
            pass
        return rep

    # ------------------------------------------------------------------ loop
    def fit(self, *, resume: bool = False) -> dict[str, list]:
        """Run to ``epochs``; with ``resume`` continue from ``out/ckpt`` if a checkpoint is there.

        Returns:
            ``{"loss": [loss of each step this call ran], "monitors": [per-epoch monitors],
            "start_step": the global step this call started from, "seconds": [wall time]}``.
        """
        try:
            return self._fit(resume)
        except BaseException:
            if self.world > 1:  # the other ranks may wait in a collective this rank left: no last barrier
                _GROUP["clean_exit"] = False
            raise

    def _fit(self, resume: bool) -> dict[str, list]:
        st = self._resume() if resume and self.out is not None else None
        writer = self.rank == 0 and self.out is not None
        if writer:
            self.out.mkdir(parents=True, exist_ok=True)
        keep = self.global_step if st is not None else None
        self._segment_start = self.history["start_step"] = self.global_step
        logs = {"metrics": _CSV(self.out / "metrics.csv" if writer else None, keep),
                "monitors": _CSV(self.out / "monitors.csv" if writer else None, keep), "tb": None}
        if writer:
            try:
                from torch.utils.tensorboard import SummaryWriter
                logs["tb"] = SummaryWriter(str(self.out / "tb"))
            except Exception:  # tensorboard not installed
                pass
        spe = self.steps_per_epoch
        # a live bar on a terminal, about ten lines in a log (ebmgraph.util.progress)
        bar = progress(total=self.epochs * spe, initial=self.global_step, desc=f"train {self.loss.ebm.graph.name}",
                       disable=not (self.progress and self.rank == 0), leave=True)
        self.loss.train()
        t0 = time.time()
        try:
            while self.epoch < self.epochs:
                perm = epoch_order(len(self.data), self.seed, self.epoch)
                self._batches = self._loader(perm)
                while self.step < spe:
                    row = self._step(perm, logs)
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in row.items()
                                     if k not in ("epoch", "step", "global_step")}, refresh=False)
                    if self.ckpt_every and self.global_step % self.ckpt_every == 0 and self.step < spe:
                        self.save()
                    for cb in self.callbacks:
                        cb(self, self.epoch, self.step)
                self._end_epoch(logs)
        finally:  # a stopped run (SIGTERM, Ctrl-C) ends its bar before the message that says so
            bar.close()
            if logs["tb"] is not None:
                logs["tb"].close()
        if writer:
            self.loss.ebm.save(self.out / "model.safetensors")
        if self.world > 1:  # every rank leaves together, after rank 0 has written the model
            dist.barrier()
        self.history["seconds"] = [time.time() - t0]
        return self.history

    def _loader(self, perm: torch.Tensor):
        """The rest of this epoch's batches read ahead by ``workers`` processes (a torch DataLoader), for data
        read from disk (``data.streamed``: an episode store's windows); None: read in the step. The batches
        are the ones the step would read (same rows, same order: reading draws no random numbers)."""
        if not self.workers or not getattr(self.data, "streamed", False):
            return None
        from torch.utils.data import DataLoader

        rows = [shard(perm[s * self.batch:(s + 1) * self.batch], self.rank, self.world)
                for s in range(self.step, self.steps_per_epoch)]
        return iter(DataLoader(_Rows(self.data, rows), batch_size=None, num_workers=self.workers,
                               prefetch_factor=4, multiprocessing_context="fork" if os.name == "posix" else None))

    def _resume(self) -> dict | None:
        """Restore the checkpoint in ``out/ckpt`` (if any) after checking that it was made with these settings."""
        st = load_checkpoint(self.out / "ckpt", self.loss, self.opt)
        if st is None:
            return None
        changed = {k: (st[k], v) for k, v in (("batch", self.batch), ("seed", self.seed), ("world", self.world))
                   if st.get(k) != v}
        if changed:
            raise ValueError("cannot resume exactly with different settings: " + ", ".join(
                f"{k} was {a}, now {b}" for k, (a, b) in changed.items()))
        lr_ckpt = self.opt.param_groups[0]["lr"]
        if lr_ckpt != self.lr and self.schedule == "constant":
            warnings.warn(f"resuming with the checkpoint's lr {lr_ckpt} (lr {self.lr} ignored)")
        self.epoch, self.step, self.global_step = st["epoch"], st["step"], st["global_step"]
        self.segments = [list(seg) for seg in st.get("segments", [])]
        return st

    def _step(self, perm: torch.Tensor, logs: dict) -> dict:
        """One optimizer step on this rank's share of the step's batch (gradients averaged over ranks);
        returns the logged row."""
        spe = self.steps_per_epoch
        idx = shard(perm[self.step * self.batch:(self.step + 1) * self.batch], self.rank, self.world)
        gen = step_generator(self.seed, self.epoch, self.step, self.rank)
        raw = next(self._batches) if self._batches is not None else self.data.batch(idx, gen)
        batch = {k: v.to(self.loss.ebm.device) for k, v in raw.items()}
        out = self.loss(batch, gen)
        self.opt.zero_grad(set_to_none=False)
        out.loss.backward()
        lv = out.loss.detach().clone()
        if self.world > 1:
            for p in self.loss.parameters():
                if p.requires_grad:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    dist.all_reduce(p.grad)
                    p.grad /= self.world
            dist.all_reduce(lv)
            lv /= self.world
        if self.schedule == "cosine":
            frac = self.global_step / max(1, self.epochs * spe)
            for group in self.opt.param_groups:
                group["lr"] = self.lr * 0.5 * (1.0 + math.cos(math.pi * frac))
        self.opt.step()
        self.step += 1
        self.global_step += 1
        row = {"epoch": self.epoch, "step": self.step, "global_step": self.global_step, "loss": float(lv), **out.stats}
        if out.e_pos is not None:
            row["E_pos"] = float(out.e_pos.mean())
        if out.e_neg is not None:
            row["E_neg"] = float(out.e_neg.mean())
        if self.global_step % self.log_every == 0:
            row.update(self.loss.term_stats(batch) if hasattr(self.loss, "term_stats") else {})
            logs["metrics"].write(row)
            if logs["tb"] is not None:
                for k, v in row.items():
                    if k not in ("epoch", "step", "global_step"):
                        logs["tb"].add_scalar(k, v, self.global_step)
        self.history["loss"].append(float(lv))
        return row

    def _end_epoch(self, logs: dict) -> None:
        """The epoch's monitors (rank 0) and a checkpoint."""
        self.epoch += 1
        self.step = 0
        if self.rank == 0:
            m = {"epoch": self.epoch, "global_step": self.global_step, **self.monitor()}
            self.history["monitors"].append(m)
            logs["monitors"].write(m)
            if logs["tb"] is not None:
                for k, v in m.items():
                    logs["tb"].add_scalar("monitor/" + k, v, self.global_step)
        self.save()
