"""`mcucoder` command line: train, export, eval, bench, encode, decode."""
from __future__ import annotations

import argparse
import json
import sys


def _cmd_train(a):
    try:
        from .training.train import TrainConfig, train
    except ModuleNotFoundError as e:
        sys.exit(f"training needs the [train] extra (torch, pytorch-msssim): {e}")
    cfg = TrainConfig(data=a.data, out=a.out, decoder=a.decoder, iterations=a.iterations, minutes=a.minutes,
                      batch=a.batch, lr=a.lr, mse_weight=a.mse_weight, heldout=a.heldout, seed=a.seed,
                      device=a.device, ckpt_every_s=a.ckpt_every, init=a.init,
                      full_k_prob=a.full_k_prob, warmup=a.warmup)
    train(cfg)


def _cmd_prepare_data(a):
    from .training.data import prepare
    print(json.dumps(prepare(a.out, a.max_short, a.debian_root)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcucoder", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train encoder + decoder (needs torch)")
    t.add_argument("data", nargs="+", help="image files or folders of training photos")
    t.add_argument("--out", default="runs/default", help="run folder (checkpoint.pt, weights.pt)")
    t.add_argument("--decoder", choices=["fast", "paper"], default="fast")
    t.add_argument("--iterations", type=int, default=100_000)
    t.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget (0: none)")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--mse-weight", type=float, default=1.0)
    t.add_argument("--heldout", default="", help="npz of 224x224 validation frames")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--init", default="", help="start from weights.pt with a fresh schedule")
    t.add_argument("--full-k-prob", type=float, default=0.0, help="share of samples keeping all channels")
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--ckpt-every", type=float, default=120.0, help="seconds between checkpoints")
    t.set_defaults(func=_cmd_train)

    d = sub.add_parser("prepare-data", help="copy the offline training photos into one portable folder")
    d.add_argument("--out", default=".traindata")
    d.add_argument("--max-short", type=int, default=896)
    d.add_argument("--debian-root", default="data/debian")
    d.set_defaults(func=_cmd_prepare_data)
    return p


def main(argv=None):
    a = build_parser().parse_args(argv)
    a.func(a)


if __name__ == "__main__":
    main()
