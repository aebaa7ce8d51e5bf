"""`mcucoder` command line: train, export, eval, bench, encode, decode."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_train(a):
    try:
        from .training.train import TrainConfig, train
    except ModuleNotFoundError as e:
        sys.exit(f"training needs the [train] extra (torch, pytorch-msssim): {e}")
    cfg = TrainConfig(data=a.data, out=a.out, decoder=a.decoder, iterations=a.iterations, minutes=a.minutes,
                      batch=a.batch, lr=a.lr, mse_weight=a.mse_weight, heldout=a.heldout, seed=a.seed,
                      device=a.device, ckpt_every_s=a.ckpt_every, init=a.init,
                      full_k_prob=a.full_k_prob, warmup=a.warmup, encoder_model=a.decoder_only or "")
    train(cfg)


def _cmd_prepare_data(a):
    from .training.data import prepare
    print(json.dumps(prepare(a.out, a.max_short, a.debian_root)))


def _cmd_export(a):
    try:
        from .training.export import export
    except ModuleNotFoundError as e:
        sys.exit(f"export needs the [train] extra (torch): {e}")
    export(a.checkpoint, a.data, a.out)


def _load_codec(a):
    from .codec.model import DecoderModel, EncoderModel
    return EncoderModel.load(a.model), DecoderModel.load(a.model, a.decoder, threads=a.threads)


def _cmd_eval(a):
    from .evaluation import evaluate, plot, write_json
    enc, dec = _load_codec(a)
    res = evaluate(a.paths, enc, dec, max_frames=a.max_frames)
    write_json(res, a.json)
    if a.plot:
        plot(res, a.plot)
    _print_rd(res)
    print(f"wrote {a.json}" + (f" and {a.plot}" if a.plot else ""))


def _print_rd(res):
    print(f"{res['frames']} frames at 224x224 (cv2.INTER_AREA); bpp from real bytes")
    print("  k    bpp    PSNR  MS-SSIM")
    for p in res["mcucoder"]:
        print(f"  {p['k']:2d}  {p['bpp']:.3f}  {p['psnr']:5.2f}  {p['ms_ssim']:.4f}")
    print("  JPEG q  bpp    PSNR  MS-SSIM")
    for p in res["jpeg"]:
        print(f"  {p['quality']:6d}  {p['bpp']:.3f}  {p['psnr']:5.2f}  {p['ms_ssim']:.4f}")
    f = lambda v: "n/a" if v is None else f"{v:+.2f}%"  # noqa: E731
    print(f"BD-rate vs JPEG: MS-SSIM {f(res['bd_rate_ms_ssim'])}, PSNR {f(res['bd_rate_psnr'])}")
    for n in res.get("notes", []):
        print("note:", n)


def _cmd_bench(a):
    from .bench import run_bench
    res = run_bench(a.model, seconds=a.seconds, threads=a.threads)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=2))
    print(f"wrote {a.json}")


def _cmd_encode(a):
    from .codec import bitstream
    from .codec.images import load_rgb
    from .codec.model import EncoderModel
    enc = EncoderModel.load(a.model)
    frame = enc.encode(load_rgb(a.image), a.channels)
    data = bitstream.pack(frame)
    Path(a.output).write_bytes(data)
    print(f"{a.image} -> {a.output}: {len(data)} bytes, {a.channels} channels, "
          f"{len(data) * 8 / (224 * 224):.4f} bpp at 224x224")


def _cmd_decode(a):
    from .codec import bitstream
    from .codec.images import save_rgb
    from .codec.model import DecoderModel
    try:
        data = Path(a.file).read_bytes()
    except OSError as e:
        sys.exit(f"cannot read {a.file}: {e.strerror}")
    dec = DecoderModel.load(a.model, a.decoder, threads=a.threads)
    frame = bitstream.unpack(data)
    save_rgb(a.output, dec.decode(frame))
    print(f"{a.file} -> {a.output}: channels {frame.channel_indices}")


def _model_args(p, decoder=True):
    p.add_argument("--model", default=None, help="model folder (default: models/default or $MCUCODER_MODEL_DIR)")
    if decoder:
        p.add_argument("--decoder", default="fast", help="decoder architecture file to use (default: fast)")
        p.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: all cores)")


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
    t.add_argument("--decoder-only", metavar="MODEL_DIR", default=None,
                   help="train only the decoder, on the exact INT8 latents of the exported encoder in "
                        "MODEL_DIR (firmware, model id and bitstreams stay as they are)")
    t.add_argument("--ckpt-every", type=float, default=120.0, help="seconds between checkpoints")
    t.set_defaults(func=_cmd_train)

    d = sub.add_parser("prepare-data", help="copy the offline training photos into one portable folder")
    d.add_argument("--out", default=".traindata")
    d.add_argument("--max-short", type=int, default=896)
    d.add_argument("--debian-root", default="data/debian")
    d.set_defaults(func=_cmd_prepare_data)
    e = sub.add_parser("export", help="quantise a checkpoint and write a model folder (needs torch)")
    e.add_argument("checkpoint", help="weights.pt / checkpoint.pt from `mcucoder train`")
    e.add_argument("data", nargs="+", help="training photos (calibration and entropy tables)")
    e.add_argument("--out", default="models/default")
    e.set_defaults(func=_cmd_export)

    v = sub.add_parser("eval", help="rate-distortion of MCUCoder (k=1..12) against OpenCV JPEG")
    v.add_argument("paths", nargs="+", help="image files, folders of images, video files")
    v.add_argument("--json", required=True, help="output JSON")
    v.add_argument("--plot", help="output PNG with both RD curves")
    v.add_argument("--max-frames", type=int, default=None)
    _model_args(v)
    v.set_defaults(func=_cmd_eval)

    b = sub.add_parser("bench", help="encoder/decoder frames per second and peak memory")
    b.add_argument("--json", required=True)
    b.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    b.add_argument("--model", default=None)
    b.add_argument("--threads", type=int, default=0)
    b.set_defaults(func=_cmd_bench)

    c = sub.add_parser("encode", help="encode one image into an MCUCoder frame file")
    c.add_argument("image")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--channels", type=int, default=12, choices=range(0, 13), metavar="K",
                   help="number of channels to send, 0..12 (default 12)")
    _model_args(c, decoder=False)
    c.set_defaults(func=_cmd_encode)

    x = sub.add_parser("decode", help="decode an MCUCoder frame file into an image")
    x.add_argument("file")
    x.add_argument("-o", "--output", required=True)
    _model_args(x)
    x.set_defaults(func=_cmd_decode)
    return p


def main(argv=None):
    from .codec.bitstream import BitstreamError
    from .codec.entropy import EntropyError
    from .codec.images import ImageError
    from .codec.model import ModelError

    a = build_parser().parse_args(argv)
    try:
        a.func(a)
    except (BitstreamError, EntropyError, ImageError, ModelError) as e:
        sys.exit(f"mcucoder {a.cmd}: error: {e}")


if __name__ == "__main__":
    main()
