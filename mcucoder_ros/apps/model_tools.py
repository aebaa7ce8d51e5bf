"""`mcucoder prepare-data`, `train`, `export`: the model work (needs the [train] extra)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


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


def heldout(a):
    from ..training.photos import write_heldout
    written = write_heldout(a.out, a.debian_root, native=a.size == "native")
    if not written:
        sys.exit("no held-out photos found (pip install mvtb-data scikit-image, or the [train] extra)")
    print(f"wrote {len(written)} held-out photos ({'own size' if a.size == 'native' else '224x224'}) to {a.out}")


def pan_clip(a):
    import cv2

    from ..codec.geometry import parse_size
    from ..codec.images import load_rgb
    from ..sources import pan_frames
    size = parse_size(a.size)
    frames = pan_frames(load_rgb(a.photo), a.frames, size=size)
    w = cv2.VideoWriter(str(a.out), cv2.VideoWriter_fourcc(*"MJPG"), a.fps, size)
    if not w.isOpened():
        sys.exit(f"cannot write {a.out} (an .avi path is needed for MJPG)")
    for f in frames:
        w.write(f[..., ::-1])
    w.release()
    print(f"wrote {a.out}: {a.frames} frames at {size[0]}x{size[1]}, a synthetic pan across {Path(a.photo).name}")


def ladder_table(a):
    from ..codec.model import DecoderModel, EncoderModel, default_model_dir
    from ..evaluation import collect_frames
    from ..ladder import hull, measure, rungs_of, write_table
    model_dir = a.model or default_model_dir()
    enc, dec = EncoderModel.load(model_dir), DecoderModel.load(model_dir, a.decoder, threads=a.threads)
    photos = collect_frames(a.paths, None, "native")
    table = measure(photos, enc, dec)
    path = write_table(table, model_dir)
    print(f"{len(photos)} photos at their own sizes; the ladder's rungs (upper hull):")
    for r in hull(rungs_of(table)):
        print(f"  {r.label:12s} {r.bpp:.4f} bpp  MS-SSIM {r.ms_ssim:.4f}")
    print(f"wrote the table into {path}")


def export(a):
    try:
        from ..training.export import export as export_model
    except ModuleNotFoundError as e:
        sys.exit(f"export needs the [train] extra (torch): {e}")
    export_model(a.checkpoint, a.data, a.out)


def fit_inter(a):
    """Fit the inter-frame tables (codec/inter.py) of a model on video: real clips
    (frames from --skip on, so a test clip cut from the same video stays unseen) and
    synthetic pans across photos; writes <model>/encoder_inter.npz and the firmware's
    encoder_inter.h."""
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from ..codec.c_header import write_inter_c_header
    from ..codec.images import load_rgb
    from ..codec.inter import TEMPORAL_THRESHOLDS, fit_inter_tables
    from ..codec.model import INTER_FILE, EncoderModel, default_model_dir
    from ..evaluation import iter_video
    from ..sources import pan_frames
    model_dir = Path(a.model or default_model_dir())
    enc = EncoderModel.load(model_dir)
    clips, names = [], []
    for v in a.videos:
        frames = [f for i, (_, f) in enumerate(iter_video(v, a.skip + a.max_frames)) if i >= a.skip]
        clips.append(frames)
        names.append(f"{Path(v).name} frames {a.skip}..{a.skip + len(frames) - 1}")
    for p in a.pan_photos:
        clips.append(pan_frames(load_rgb(p), a.pan_frames))
        names.append(f"pan across {Path(p).name}, {a.pan_frames} frames")
    if not clips:
        raise SystemExit("fit-inter needs at least one video or --pan-photos")
    total = sum(len(c) for c in clips)
    with tqdm(total=total, desc="symbols", unit="frame") as bar:
        seqs = []
        for c in clips:
            seqs.append(np.stack([enc.symbols(f) for f in c]))
            bar.update(len(c))
    freqs = fit_inter_tables(seqs, enc.edges)
    out = model_dir / INTER_FILE
    np.savez(out, model_id=np.uint32(enc.model_id), freqs=freqs.astype(np.uint16),
             thresholds=np.asarray(TEMPORAL_THRESHOLDS, np.int32), fitted_on=np.asarray(names))
    write_inter_c_header(enc.model_id, freqs, TEMPORAL_THRESHOLDS, model_dir / "encoder_inter.h")
    print(f"wrote {out} and encoder_inter.h: inter tables for model {enc.model_id:#010x} from {total} frames of "
          f"{len(clips)} clips")
