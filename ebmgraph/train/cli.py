"""``ebmgraph train SPEC --data NAME --loss NAME ...`` (and the same under ``torchrun``)."""
from __future__ import annotations

import json
import sys

from .losses_contrastive import ROWS

REGULARIZED = ("vicreg", "energy", "amortized")
LOSSES = tuple(ROWS) + REGULARIZED


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


def cmd_train(args) -> int:
    import ebmgraph

    from .data import get_dataset
    from .trainer import Trainer

    ebm = ebmgraph.compile(args.spec, seed=args.seed)
    data_kw = {"n": args.n} if args.n and args.data in ("moons", "spirals", "rings", "pendulum", "pendulum_sequences", "latent_modes") else {}
    if args.data in ("moons", "spirals", "rings") and args.y:
        data_kw["var"] = args.y  # the toy densities fill the variable the loss treats as y
    data = get_dataset(args.data, seed=args.seed, **data_kw)
    loss = build_loss(ebm, args.loss, y=args.y, options=_kv(args.opt))
    out = args.out or f"runs/{ebm.graph.name}-{args.loss}-s{args.seed}"
    try:
        t = Trainer(loss, data, epochs=args.epochs, batch=args.batch, lr=args.lr, seed=args.seed, out=out,
                    ckpt_every=args.ckpt_every, progress=not args.quiet)
    except ValueError as exc:  # bad input (data that do not fit the spec, a batch too large): no traceback
        print(f"ebmgraph train: error: {exc}", file=sys.stderr)
        return 2
    hist = t.fit(resume=args.resume)
    if t.rank == 0:
        last = hist["monitors"][-1] if hist["monitors"] else {}
        print(f"wrote {out}/model.safetensors; final loss {hist['loss'][-1]:.4g}" if hist["loss"] else f"{out}: nothing to do",
              file=sys.stderr)
        for k, v in last.items():
            if k.endswith((".std", ".rank")) or k == "gap":
                print(f"  {k} = {v:.4g}", file=sys.stderr)
    return 0


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a spec: contrastive (Table 1) or regularized (VICReg, §4.5) losses")
    p.add_argument("spec")
    p.add_argument("--data", required=True, help="moons | spirals | rings | digits | digits_views | pendulum | pendulum_sequences | latent_modes | FILE.npz")
    p.add_argument("--loss", required=True, choices=LOSSES)
    p.add_argument("--y", default="y", help="the variable contrastive samples replace (default y)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=128, help="global batch (split over torchrun processes)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=0, help="samples of a generated data set")
    p.add_argument("--out", help="run directory (default runs/NAME-LOSS-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt exactly where it stopped")
    p.add_argument("--ckpt-every", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument("--opt", action="append", metavar="KEY=VALUE", help="loss option, e.g. margin=2.0 sampler=uniform")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_train)
