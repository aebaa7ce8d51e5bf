"""`mcucoder prepare-data`, `train`, `export`: the model work (needs the [train] extra)."""
from __future__ import annotations

import json
import sys


def train(a):
    try:
        from ..training.train import TrainConfig
        from ..training.train import train as run_training
    except ModuleNotFoundError as e:
        sys.exit(f"training needs the [train] extra (torch, pytorch-msssim): {e}")
    cfg = TrainConfig(data=a.data, out=a.out, decoder=a.decoder, iterations=a.iterations, minutes=a.minutes,
                      batch=a.batch, lr=a.lr, mse_weight=a.mse_weight, heldout=a.heldout, seed=a.seed,
                      device=a.device, ckpt_every_s=a.ckpt_every, init=a.init,
                      full_k_prob=a.full_k_prob, warmup=a.warmup, encoder_model=a.decoder_only or "",
                      qat=a.qat, distill=a.distill or "")
    run_training(cfg)


def prepare_data(a):
    from ..training.data import prepare
    print(json.dumps(prepare(a.out, a.max_short, a.debian_root)))


def export(a):
    try:
        from ..training.export import export as export_model
    except ModuleNotFoundError as e:
        sys.exit(f"export needs the [train] extra (torch): {e}")
    export_model(a.checkpoint, a.data, a.out)
