"""`mcucoder encode`, `decode`, `eval`: one frame in or out, and the rate-distortion report."""
from __future__ import annotations

import sys
from pathlib import Path


def _load_codec(a):
    from ..codec.model import DecoderModel, EncoderModel
    return EncoderModel.load(a.model), DecoderModel.load(a.model, a.decoder, threads=a.threads)


def evaluate(a):
    from ..evaluation import evaluate as evaluate_rd
    from ..evaluation import evaluate_inter, h264_curve, parse_eval_size, plot, write_json
    size = parse_eval_size(getattr(a, "size", "224x224"))
    enc, dec = _load_codec(a)
    if getattr(a, "scales", False):
        return _evaluate_scales(a, enc, dec)
    res = evaluate_rd(a.paths, enc, dec, max_frames=a.max_frames, size=size)
    if size == "native":       # what the pipeline showed before: squashed to 224x224 and scaled back
        from ..evaluation import squashed_baseline
        res["squashed_224"] = squashed_baseline(a.paths, enc, dec, max_frames=a.max_frames)
    if a.inter:
        if enc.inter_coders is None:
            sys.exit("--inter: this model has no inter-frame tables (encoder_inter.npz); fit them with "
                     "`mcucoder fit-inter`")
        evaluate_inter(a.paths, enc, dec, res, max_frames=a.max_frames, size=size)
        res["h264"] = h264_curve(a.paths, a.max_frames, size=size)
        if res["h264"] is None:
            res.setdefault("notes", []).append("no H.264 reference: ffmpeg with libx264 is not installed")
    write_json(res, a.json)
    if a.plot:
        plot(res, a.plot)
    _print_rd(res)
    print(f"wrote {a.json}" + (f" and {a.plot}" if a.plot else ""))


def _evaluate_scales(a, enc, dec):
    from ..evaluation import collect_frames, write_json
    from ..ladder import evaluate_scales, plot_scales
    res = evaluate_scales(collect_frames(a.paths, a.max_frames, "native"), enc, dec)
    write_json(res, a.json)
    if a.plot:
        plot_scales(res, a.plot)
    t = res["table"]
    print(f"{res['photos']} frames at their own sizes ({', '.join(res['frame_sizes'][:6])}...); bpp from real "
          "bytes over the camera's pixels, MS-SSIM at the camera's size (bicubic up)")
    print("  scale " + " ".join(f"  k={k:<2d}       " for k in (1, 2, 4, 8, 12)))
    for sc, b, q in zip(t["scales"], t["bpp"], t["ms_ssim"]):
        print(f"  1/{sc:<3d} " + " ".join(f"{b[k - 1]:.3f} {q[k - 1]:.3f}  " for k in (1, 2, 4, 8, 12)))
    f = lambda v: "n/a" if v is None else f"{v:+.1f}%"  # noqa: E731
    print(f"ladder hull vs the camera's size alone, BD-rate (MS-SSIM): {f(res['bd_rate_hull_vs_full'])} overall, "
          f"{f(res['bd_rate_hull_vs_full_below_0.1bpp'])} below 0.1 bpp")
    lo = res["lowest_rate_640x480_10fps_bps"]
    print("lowest rate of a 640x480 camera at 10 frames/s (k = 1): " +
          ", ".join(f"{k}: {v / 1000:.1f} kbit/s" for k, v in lo.items()))
    print(f"wrote {a.json}" + (f" and {a.plot}" if a.plot else ""))


def _print_rd(res):
    from ..evaluation import _size_text
    how = "no resize" if res.get("frame_size") == "native" else "cv2.INTER_AREA"
    print(f"{res['frames']} frames at {_size_text(res)} ({how}); bpp from real bytes, JPEG at the same size")
    print("  k    bpp    PSNR  MS-SSIM")
    for p in res["mcucoder"]:
        print(f"  {p['k']:2d}  {p['bpp']:.3f}  {p['psnr']:5.2f}  {p['ms_ssim']:.4f}")
    print("  JPEG q  bpp    PSNR  MS-SSIM")
    for p in res["jpeg"]:
        print(f"  {p['quality']:6d}  {p['bpp']:.3f}  {p['psnr']:5.2f}  {p['ms_ssim']:.4f}")
    f = lambda v: "n/a" if v is None else f"{v:+.2f}%"  # noqa: E731
    print(f"BD-rate vs JPEG: MS-SSIM {f(res['bd_rate_ms_ssim'])}, PSNR {f(res['bd_rate_psnr'])}")
    sq = res.get("squashed_224")
    if sq:
        print(f"squashed to 224x224 and scaled back (as before pictures kept their size), k = {sq['k']}: "
              f"{sq['bpp']:.3f} bpp, PSNR {sq['psnr']:.2f}, MS-SSIM {sq['ms_ssim']:.4f}")
    if res.get("inter"):
        print("video mode (inter, lossless), bytes per frame against intra on the same frames:")
        for clip, c in res["inter_clips"].items():
            print(f"  {Path(clip).name} ({c['frames']} frames): " + ", ".join(
                f"k={k} {v['inter_bytes_per_frame']:.0f}/{v['intra_bytes_per_frame']:.0f} ({-100 * v['saving']:+.0f}%)"
                for k, v in c["per_k"].items() if k in (1, 4, 6, 8, 12)))
        print(f"BD-rate inter vs intra (MS-SSIM): {f(res['bd_rate_inter_vs_intra'])}")
    for n in res.get("notes", []):
        print("note:", n)


def encode(a):
    from ..codec import bitstream
    from ..codec.images import load_rgb
    from ..codec.model import EncoderModel
    enc = EncoderModel.load(a.model)
    frame = enc.encode(load_rgb(a.image), a.channels)
    data = bitstream.pack(frame)
    Path(a.output).write_bytes(data)
    print(f"{a.image} -> {a.output}: {len(data)} bytes, {a.channels} channels, "
          f"{len(data) * 8 / (frame.width * frame.height):.4f} bpp at its own size {frame.width}x{frame.height} "
          f"(bitstream v{frame.version})")


def decode(a):
    from ..codec import bitstream
    from ..codec.images import save_rgb
    from ..codec.model import DecoderModel
    try:
        data = Path(a.file).read_bytes()
    except OSError as e:
        sys.exit(f"cannot read {a.file}: {e.strerror}")
    dec = DecoderModel.load(a.model, a.decoder, threads=a.threads)
    frame = bitstream.unpack(data)
    save_rgb(a.output, dec.decode(frame))
    print(f"{a.file} -> {a.output}: channels {frame.channel_indices}")
