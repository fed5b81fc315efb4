"""``ebmgraph train SPEC --data NAME --loss NAME ...`` (and the same under ``torchrun``).

A run's settings are saved in ``OUT/run.json`` when it starts. ``--resume`` takes every
setting from there, so the README's short resume line (no ``--epochs``, ``--batch``...)
continues the run it names; a flag given on the command line that contradicts the saved
settings is refused, because the resumed run could no longer end where the uninterrupted
one would. The one exception is a larger ``--epochs``: a run to E epochs is exactly the
first E epochs of a longer one (data order and draws depend only on seed, epoch and step),
so a finished or killed run may be extended.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from ..cliargs import MODULE_HELP, count, load_modules, parse_sizes, positive, print_errors
from .checkpoint import read_state
from .losses_contrastive import ROWS

REGULARIZED = ("vicreg", "energy", "amortized")
LOSSES = tuple(ROWS) + REGULARIZED
# settings that decide a run's result, with the defaults of a new run; flags default to None so that
# an explicit flag can be told from an absent one when resuming
DEFAULTS = {"data": None, "loss": None, "y": "y", "epochs": 10, "batch": 128, "lr": 1e-3, "schedule": "constant",
            "seed": 0, "n": 0, "stride": 1,
            "opt": {}, "size": {}}
RUN_FILE = "run.json"
_GENERATED = ("moons", "spirals", "rings", "pendulum", "pendulum_sequences", "latent_modes")


def build_loss(ebm, name: str, *, y: str = "y", options: dict | None = None):
    """A loss module by name: a Table 1 row, ``vicreg`` (the spec's regularizers), ``energy``
    (the data energy alone) or ``amortized`` (Fig. 19–20)."""
    from .losses_contrastive import Contrastive
    from .losses_regularized import Amortized, Regularized

    kw = dict(options or {})
    if name in ROWS:
        return Contrastive(ebm, name, y=y, **kw)
    if name == "vicreg":
        return Regularized(ebm, y=y, **kw)
    if name == "energy":
        return Regularized(ebm, y=y, use_regularizers=False, **kw)
    if name == "amortized":
        return Amortized(ebm, y=y, **kw)
    raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")


def _kv(items):
    out = {}
    for it in items or []:
        k, _, v = it.partition("=")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _spec_hash(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:  # compile() says what is wrong with the path
        return None


def saved_settings(out: str | os.PathLike) -> dict | None:
    """The settings a run in ``out`` was started with (``run.json``; for a run started from Python,
    what its checkpoint records), or None when ``out`` holds no run."""
    out = Path(out)
    if (out / RUN_FILE).exists():
        return json.loads((out / RUN_FILE).read_text())
    state = read_state(out / "ckpt")
    if state is not None:
        return dict(state.get("config") or {k: state[k] for k in ("epochs", "batch", "seed") if k in state})
    return None


def resolve_settings(args, saved: dict | None) -> dict:
    """The run's settings: the saved ones when resuming, overridden only by explicit flags that agree.

    Raises:
        ValueError: an explicit flag contradicts the saved run, or ``--data``/``--loss`` are missing.
    """
    given = {k: getattr(args, k) for k in DEFAULTS}
    given["opt"] = _kv(args.opt) if args.opt else None
    given["size"] = parse_sizes(args.size) if args.size else None
    if saved is None:
        cfg = {k: (v if v is not None else DEFAULTS[k]) for k, v in given.items()}
    else:
        cfg = {k: saved.get(k, DEFAULTS[k]) for k in DEFAULTS}
        clash = []
        for k, v in given.items():
            if v is None or k not in saved or v == saved[k]:
                continue
            if k == "epochs" and v > saved[k] and saved.get("schedule", "constant") == "constant":
                continue  # extending a run: its first epochs are the saved run's (a cosine decay would change)
            if k == "size":
                clash.append(f"--size {v} (the run was started with sizes {saved[k]})")
            elif k == "opt":
                was = " ".join(f"--opt {a}={json.dumps(b)}" for a, b in saved[k].items()) or "no --opt"
                clash.append(f"{' '.join('--opt ' + o for o in args.opt)} (the run was started with {was})")
            else:
                clash.append(f"{_flag(k)} {v} (the run was started with {_flag(k)} {saved[k]})")
        if clash:
            raise ValueError(f"cannot resume {args.out}: " + "; ".join(clash) + ". Leave these flags out to "
                             "continue the run as it was started, or train into a new --out")
        if given["epochs"] is not None:
            cfg["epochs"] = given["epochs"]
    if cfg["epochs"] < 1:  # after the resume check, which names a smaller --epochs as a contradiction
        raise ValueError(f"argument --epochs: must be a positive integer, got {cfg['epochs']}")
    missing = [_flag(k) for k in ("data", "loss") if not cfg[k]]
    if missing:
        raise ValueError(f"{' and '.join(missing)} required" + (f" ({args.out} holds no run to resume)"
                                                               if args.resume else ""))
    if cfg["loss"] not in LOSSES:
        raise ValueError(f"unknown loss {cfg['loss']!r}; known: {', '.join(LOSSES)}")
    return cfg


def cmd_train(args) -> int:
    import ebmgraph

    from ..util import atomic_write_text, check_writable
    from .data import get_dataset
    from .episodes import is_episode_source, spec_windows
    from .trainer import Trainer

    rank0 = int(os.environ.get("RANK", "0")) == 0
    if args.out is None:
        if args.loss is None:
            print("ebmgraph train: error: --loss required (or --out naming the run to resume)", file=sys.stderr)
            return 2
        seed = args.seed if args.seed is not None else DEFAULTS["seed"]
        args.out = f"runs/{ebmgraph.load(args.spec).name}-{args.loss}-s{seed}"
    out = args.out
    saved = saved_settings(out) if args.resume else None
    try:
        check_writable(Path(out) / RUN_FILE)  # a run folder that cannot be written fails now, named
        cfg = resolve_settings(args, saved)
        spec_hash = _spec_hash(args.spec)
        if saved is not None and None not in (saved.get("spec_sha256"), spec_hash) and saved["spec_sha256"] != spec_hash:
            raise ValueError(f"cannot resume {out}: {args.spec} changed since the run was started "
                             f"(train into a new --out)")
    except (ValueError, OSError) as exc:
        print(f"ebmgraph train: error: {exc}", file=sys.stderr)
        return 2
    if args.resume and saved is None:
        print(f"{out}: no run to resume; starting a new one", file=sys.stderr)
    try:
        ebm = ebmgraph.compile(args.spec, seed=cfg["seed"], modules=load_modules(args.module), sizes=cfg["size"] or None)
    except ebmgraph.SpecError as exc:
        print_errors(exc)
        return 1
    data_kw = {"n": cfg["n"]} if cfg["n"] and cfg["data"] in _GENERATED else {}
    if cfg["data"] in ("moons", "spirals", "rings") and cfg["y"]:
        data_kw["var"] = cfg["y"]  # the toy densities fill the variable the loss treats as y
    ckpt_every = args.ckpt_every if args.ckpt_every is not None else (saved or {}).get("ckpt_every", 0)
    record = dict(cfg, spec=str(args.spec), spec_sha256=spec_hash, ckpt_every=ckpt_every)
    try:
        if is_episode_source(ebm, cfg["data"]):  # windows of K steps cut inside episodes (K from the spec)
            data = spec_windows(ebm, cfg["data"], stride=cfg["stride"])
        else:
            data = get_dataset(cfg["data"], seed=cfg["seed"], **data_kw)
        # a --set key that names a weight of the spec sets that weight (as plan's --set does); the rest are the loss's
        wset = {k: v for k, v in cfg["opt"].items() if k in ebm.weights()}
        if wset:
            ebm.set_weights(**wset)
        loss = build_loss(ebm, cfg["loss"], y=cfg["y"], options={k: v for k, v in cfg["opt"].items() if k not in wset})
        t = Trainer(loss, data, epochs=cfg["epochs"], batch=cfg["batch"], lr=cfg["lr"], schedule=cfg["schedule"],
                    seed=cfg["seed"], out=out,
                    ckpt_every=ckpt_every, progress=not args.quiet, config=record,
                    workers=_workers(args.workers, cfg["data"], data))
        if t.rank == 0 and rank0:
            Path(out).mkdir(parents=True, exist_ok=True)
            atomic_write_text(Path(out) / RUN_FILE, json.dumps(record, indent=1) + "\n")
        total = cfg["epochs"] * t.steps_per_epoch
        hist = t.fit(resume=args.resume)
    except (ValueError, KeyError, OSError) as exc:  # bad input (data that do not fit the spec, a missing or
        # corrupt file ...): one line, no traceback
        print(f"ebmgraph train: error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    if t.rank == 0:
        start, ran = hist["start_step"], len(hist["loss"])
        if args.resume and saved is not None:
            print(f"resumed {out} at step {start} of {total} (epoch {start // t.steps_per_epoch} of "
                  f"{cfg['epochs']}); ran {ran} steps", file=sys.stderr)
        if ran:
            print(f"wrote {out}/model.safetensors; final loss {hist['loss'][-1]:.4g}", file=sys.stderr)
        else:
            print(f"{out}: already complete at step {start} of {total} ({cfg['epochs']} epochs); nothing to do "
                  f"(a larger --epochs trains further)", file=sys.stderr)
        last = hist["monitors"][-1] if hist["monitors"] else {}
        for k, v in last.items():
            if k.endswith((".std", ".rank")) or k == "gap":
                print(f"  {k} = {v:.4g}", file=sys.stderr)
    return 0


def _workers(asked: int | None, source: str, data) -> int:
    """``--workers``: as asked (>= 0), else 1 for windows read from a ``.h5`` store, 0 otherwise."""
    if asked is not None:
        if asked < 0:
            raise ValueError(f"--workers must be >= 0, got {asked}")
        return asked
    return int(getattr(data, "streamed", False) and str(source).endswith(".h5"))


def register_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a spec: contrastive (Table 1) or regularized (VICReg, §4.5) losses",
        description="Train a spec. With --resume every setting comes from OUT/run.json (the run as it was "
                    "started); a flag that contradicts it is refused, except a larger --epochs (train further).")
    p.add_argument("spec")
    p.add_argument("--data", help="moons | spirals | rings | digits | digits_views | pendulum | "
                                  "pendulum_sequences | latent_modes | FILE.npz | FILE.h5 (episodes from collect: a "
                                  "spec whose observed inputs are arrays obs[u], action[t] trains on windows of the "
                                  "K steps they declare) (required unless resuming)")
    p.add_argument("--loss", choices=LOSSES, help="the loss (required unless resuming)")
    p.add_argument("--y", help="the variable contrastive samples replace (default y)")
    p.add_argument("--epochs", type=int, help=f"default {DEFAULTS['epochs']}")  # checked in resolve_settings
    p.add_argument("--batch", type=count(),
                   help=f"global batch, split over torchrun processes (default {DEFAULTS['batch']})")
    p.add_argument("--lr", type=positive, help=f"default {DEFAULTS['lr']}")
    p.add_argument("--schedule", choices=("constant", "cosine"),
                   help="learning rate over the run: constant (default) or a cosine decay to 0")
    p.add_argument("--seed", type=int, help=f"default {DEFAULTS['seed']}")
    p.add_argument("--n", type=count(), help="samples of a generated data set (default: the set's own)")
    p.add_argument("--size", action="append", metavar="NAME=INT",
                   help="a size of the spec (K=1: windows of one step), as plan --size")
    p.add_argument("--stride", type=count(), help="episodes: steps between consecutive windows' starts (default 1)")
    p.add_argument("--workers", type=int, default=None,
                   help="episodes: processes that read the next batches from the store while the step computes "
                        "(a torch DataLoader; default 1 for a .h5 store, 0 reads in the step; the batches are the "
                        "same either way)")
    p.add_argument("--out", help="run directory (default runs/NAME-LOSS-sSEED)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT exactly where it stopped, with the settings it was started with")
    p.add_argument("--ckpt-every", type=count(0), help="also checkpoint every N steps (default: end of each epoch)")
    p.add_argument("--set", "--opt", dest="opt", action="append", metavar="KEY=VALUE",
                   help="a loss setting, e.g. margin=2.0 sampler=uniform var_weight=16, or a weight of the spec "
                        "(w_idm=0) (as every verb's --set; "
                        "--opt: the former name)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--module", action="append", metavar="NAME=PKG.MOD:ATTR", help=MODULE_HELP)
    p.set_defaults(fn=cmd_train)
