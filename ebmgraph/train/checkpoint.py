"""Checkpoints without pickle: weights and optimizer tensors as safetensors, the rest as JSON.

Files are step-stamped and ``state.json`` (written last, atomically) names the pair that
belongs together, so a run killed at any instant resumes from a consistent checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load, save

from ..util import atomic_write_bytes, atomic_write_text


def _optim_split(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = opt.state_dict()
    tensors = {}
    for i, st in sd["state"].items():
        for k, v in st.items():
            t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
            tensors[f"state.{i}.{k}"] = t.detach().contiguous().cpu()
    return tensors, sd["param_groups"]


def _optim_join(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        _, i, k = key.split(".", 2)
        state.setdefault(int(i), {})[k] = t
    return {"state": state, "param_groups": groups}


def save_checkpoint(dirpath: str | Path, module: torch.nn.Module, opt: torch.optim.Optimizer, state: dict) -> Path:
    """Write ``weights-G.safetensors``, ``optim-G.safetensors`` and then ``state.json``; drop older pairs."""
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    gs = int(state["global_step"])
    wname, oname = f"weights-{gs:09d}.safetensors", f"optim-{gs:09d}.safetensors"
    sd = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    atomic_write_bytes(d / wname, save(sd))
    tens, groups = _optim_split(opt)
    atomic_write_bytes(d / oname, save(tens))
    full = dict(state, weights=wname, optim=oname, param_groups=groups,
                rng_torch=torch.get_rng_state().tolist())
    atomic_write_text(d / "state.json", json.dumps(full))
    # only now is the previous pair unused; a write killed before this line left it named in state.json.
    # Also drop what a killed write left: a newer pair state.json never named, and temporary files.
    for p in [*d.glob("weights-*.safetensors"), *d.glob("optim-*.safetensors"), *d.glob(".*.tmp")]:
        if p.name not in (wname, oname):
            p.unlink(missing_ok=True)
    return d / "state.json"


def read_state(dirpath: str | Path) -> dict | None:
    """The JSON state of the checkpoint in ``dirpath`` without loading any tensor (None when there is none)."""
    p = Path(dirpath) / "state.json"
    return json.loads(p.read_text()) if p.exists() else None


def load_checkpoint(dirpath: str | Path, module: torch.nn.Module, opt: torch.optim.Optimizer | None) -> dict | None:
    """Restore weights, optimizer and RNG from ``dirpath/state.json``; None when there is none."""
    d = Path(dirpath)
    state = read_state(d)
    if state is None:
        return None
    module.load_state_dict(load((d / state["weights"]).read_bytes()))
    if opt is not None:
        opt.load_state_dict(_optim_join(load((d / state["optim"]).read_bytes()), state["param_groups"]))
    torch.set_rng_state(torch.tensor(state["rng_torch"], dtype=torch.uint8))
    return state
