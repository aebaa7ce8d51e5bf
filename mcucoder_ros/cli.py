"""`mcucoder` command line: train, export, eval, bench, encode, decode."""
from __future__ import annotations

import argparse
import sys


def _app(module: str, fn: str):
    """The application behind a subcommand, imported only when it runs."""
    def call(a):
        import importlib
        return getattr(importlib.import_module(f"mcucoder_ros.apps.{module}"), fn)(a)
    return call


def _model_args(p, decoder=True):
    p.add_argument("--model", default=None, help="model folder (default: models/default or $MCUCODER_MODEL_DIR)")
    if decoder:
        p.add_argument("--decoder", default=None,
                       help="decoder of the model folder (decoder_NAME.onnx), e.g. fast_int8 or fast "
                            "(default: the model's preferred one, fast_int8 where shipped)")
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
    t.add_argument("--qat", action="store_true",
                   help="with --decoder-only: quantisation-aware training of the INT8 decoder (docs/training.md)")
    t.add_argument("--distill", metavar="CHECKPOINT", default=None,
                   help="with --decoder-only: learn the output of this checkpoint's decoder (e.g. the FP32 one "
                        "for --qat) instead of the photo")
    t.add_argument("--decoder-only", metavar="MODEL_DIR", default=None,
                   help="train only the decoder, on the exact INT8 latents of the exported encoder in "
                        "MODEL_DIR (firmware, model id and bitstreams stay as they are)")
    t.add_argument("--ckpt-every", type=float, default=120.0, help="seconds between checkpoints")
    t.set_defaults(func=_app("model_tools", "train"))

    d = sub.add_parser("prepare-data", help="copy the offline training photos into one portable folder")
    d.add_argument("--out", default=".traindata")
    d.add_argument("--max-short", type=int, default=896)
    d.add_argument("--debian-root", default="data/debian")
    d.set_defaults(func=_app("model_tools", "prepare_data"))
    h = sub.add_parser("heldout", help="write the held-out photos (never trained on; mvtb-data, scikit-image) into a "
                       "folder, at their own size or 224x224")
    h.add_argument("--out", default="heldout/native")
    h.add_argument("--size", choices=["native", "224x224"], default="native")
    h.add_argument("--debian-root", default="data/debian")
    h.set_defaults(func=_app("model_tools", "heldout"))
    pc = sub.add_parser("pan-clip", help="write a synthetic moving-camera clip: a window panning across a photo "
                        "(MJPG AVI), e.g. a held-out photo at a camera's size")
    pc.add_argument("photo")
    pc.add_argument("--out", required=True, help="output .avi")
    pc.add_argument("--size", default="640x480", metavar="WxH")
    pc.add_argument("--frames", type=int, default=60)
    pc.add_argument("--fps", type=float, default=15.0)
    pc.set_defaults(func=_app("model_tools", "pan_clip"))
    t = sub.add_parser("ladder-table", help="measure the resolution ladder's table (MS-SSIM and bpp per scale and k, "
                       "at the camera's size) on held-out photos and write it into the model's export.json")
    t.add_argument("paths", nargs="*", default=["heldout/native"],
                   help="photos at their own sizes (default: heldout/native, from `mcucoder heldout`)")
    _model_args(t)
    t.set_defaults(func=_app("model_tools", "ladder_table"))
    e = sub.add_parser("export", help="quantise a checkpoint and write a model folder (needs torch)")
    e.add_argument("checkpoint", help="weights.pt / checkpoint.pt from `mcucoder train`")
    e.add_argument("data", nargs="+", help="training photos (calibration and entropy tables)")
    e.add_argument("--out", default="models/default")
    e.set_defaults(func=_app("model_tools", "export"))

    f = sub.add_parser("fit-inter", help="fit a model's inter-frame coding tables on video (writes encoder_inter.npz)")
    f.add_argument("videos", nargs="*", help="real video clips (consecutive frames)")
    f.add_argument("--pan-photos", nargs="*", default=[], help="photos to pan across as synthetic moving-camera clips")
    f.add_argument("--pan-frames", type=int, default=30, help="frames per synthetic pan")
    f.add_argument("--skip", type=int, default=0, help="skip the first frames of each video (held out for tests)")
    f.add_argument("--max-frames", type=int, default=300, help="frames per video")
    f.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    f.set_defaults(func=_app("model_tools", "fit_inter"))

    v = sub.add_parser("eval", help="rate-distortion of MCUCoder (k=1..12) against OpenCV JPEG")
    v.add_argument("paths", nargs="+", help="image files, folders of images, video files")
    v.add_argument("--json", required=True, help="output JSON")
    v.add_argument("--plot", help="output PNG with both RD curves")
    v.add_argument("--max-frames", type=int, default=None)
    v.add_argument("--inter", action="store_true", help="also code each path as a video sequence (inter-frame, "
                   "lossless) and compare with intra; adds H.264 where ffmpeg has libx264")
    v.add_argument("--size", default="224x224", metavar="native|WxH",
                   help="frame size: 224x224 (default, the paper's protocol: every frame resized, cv2.INTER_AREA), "
                        "native (each photo or video at its own size; larger than 1920x1088: scaled down to fit), or "
                        "WxH; JPEG codes the same frames at the same size")
    v.add_argument("--scales", action="store_true",
                   help="the resolution ladder: RD of each picture scale (1, 1/2, 1/4) at the camera's size, their "
                        "upper hull and its BD-rate against the camera's size alone (frames at their own size)")
    _model_args(v)
    v.set_defaults(func=_app("codec_tools", "evaluate"))

    b = sub.add_parser("bench", help="encoder/decoder frames per second and peak memory")
    b.add_argument("--json", required=True)
    b.add_argument("--seconds", type=float, default=3.0, help="time per measurement (split over 3 interleaved rounds)")
    b.add_argument("--model", default=None)
    b.add_argument("--threads", type=int, default=0)
    b.add_argument("--size", nargs="+", default=["224x224"], metavar="WxH",
                   help="frame sizes to measure, one table row each (default 224x224), e.g. 224x224 320x240 640x480")
    b.set_defaults(func=_app("bench_codec", "main"))

    c = sub.add_parser("encode", help="encode one image into an MCUCoder frame file")
    c.add_argument("image")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--channels", type=int, default=12, choices=range(0, 13), metavar="K",
                   help="number of channels to send, 0..12 (default 12)")
    _model_args(c, decoder=False)
    c.set_defaults(func=_app("codec_tools", "encode"))

    g = sub.add_parser("decode-bag", help="decode the latents of a rosbag2 bag (MCAP or sqlite3) into a video, "
                       "frames and timestamps; no ROS needed")
    g.add_argument("bag", help="rosbag2 bag folder (or .mcap / .db3 file)")
    g.add_argument("-o", "--output", required=True, help="video file to write (mp4)")
    g.add_argument("--frames", default=None, metavar="DIR", help="also write every frame as PNG into DIR")
    g.add_argument("--timestamps", default=None, metavar="CSV", help="also write index, sequence, stamps per frame")
    g.add_argument("--channels", type=int, default=None, metavar="K", help="decode only the first K channels")
    g.add_argument("--topic", default=None, help="latent topic (default: the bag's first LatentChannels topic)")
    g.add_argument("--decoder", default=None, help="decoder of the model folder (default: the preferred one)")
    g.set_defaults(func=_app("bag_tools", "decode_bag_main"))

    z = sub.add_parser("bag-sizes", help="MB per minute of recording: latents vs raw images vs JPEG (real bags)")
    z.add_argument("--out", default="out/bag-sizes", help="folder for the bags written")
    z.add_argument("--input", default=None, help="video (default: the bundled clip)")
    z.add_argument("--seconds", type=float, default=60.0)
    z.add_argument("--json", default=None)
    z.set_defaults(func=_app("bag_tools", "bag_sizes_main"))

    x = sub.add_parser("decode", help="decode an MCUCoder frame file into an image")
    x.add_argument("file")
    x.add_argument("-o", "--output", required=True)
    _model_args(x)
    x.set_defaults(func=_app("codec_tools", "decode"))
    return p


def main(argv=None):
    from .codec.bitstream import BitstreamError
    from .codec.entropy import EntropyError
    from .codec.images import ImageError
    from .codec.model import ModelError

    a = build_parser().parse_args(argv)
    try:
        a.func(a)
    except (BitstreamError, EntropyError, ImageError, ModelError, RuntimeError, ValueError, FileNotFoundError) as e:
        sys.exit(f"mcucoder {a.cmd}: error: {e}")


if __name__ == "__main__":
    main()
