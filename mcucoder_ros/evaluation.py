"""Rate-distortion evaluation of MCUCoder against M-JPEG, on 224x224 frames (the
paper's protocol: every frame resized with cv2.INTER_AREA) or at the frames' own size
(`size="native"`), or at any WxH; JPEG always codes the same frames at the same size.

bpp always counts the real bytes of the coded frame (the whole bitstream frame,
header included; the whole JPEG file), divided by the frame's pixels.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .codec import bitstream
from .codec.geometry import IMAGE_SIZE, LATENT_CHANNELS, MAX_LONG_SIDE, MAX_SHORT_SIDE, parse_size
from .codec.images import ImageError, load_rgb, resize_224, resize_to
from .codec.jpeg import DEFAULT_QUALITIES, jpeg_roundtrip
from .codec.metrics import ms_ssim, ms_ssim_db, psnr

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}
VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"}
PIXELS = IMAGE_SIZE * IMAGE_SIZE
PAPER_SIZE = (IMAGE_SIZE, IMAGE_SIZE)


def parse_eval_size(text: str):
    """'native' (each frame at its own size) or 'WxH' -> "native" or (W, H)."""
    return "native" if str(text).lower() == "native" else parse_size(text)


def size_label(size) -> str:
    return "own size" if size == "native" else f"{size[0]}x{size[1]}"


def prepare_frame(rgb: np.ndarray, size=PAPER_SIZE) -> np.ndarray:
    """A frame as evaluated: 224x224 exactly as the paper (cv2.INTER_AREA), any WxH
    (INTER_AREA when shrinking), or "native": its own size, scaled down (aspect kept)
    only if it is larger than the codec's 1920x1088."""
    if size == "native":
        h, w = rgb.shape[:2]
        f = min(1.0, MAX_LONG_SIDE / max(w, h), MAX_SHORT_SIDE / min(w, h))
        return rgb if f == 1.0 else resize_to(rgb, (int(w * f), int(h * f)))
    if tuple(size) == PAPER_SIZE:
        return resize_224(rgb)
    return resize_to(rgb, tuple(size))


def iter_video(path: str, max_frames: int | None = None):
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageError(f"cannot open video: {path}")
    n = 0
    try:
        while max_frames is None or n < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            n += 1
            yield f"{Path(path).name}#{n - 1}", np.ascontiguousarray(bgr[..., ::-1])
    finally:
        cap.release()
    if n == 0:
        raise ImageError(f"no frames could be read from video: {path}")


def squashed_baseline(paths, encoder, decoder, max_frames=None, k: int = LATENT_CHANNELS, progress=True) -> dict:
    """What the pipeline showed before pictures kept their size: each frame squashed to
    224x224 (cv2.INTER_AREA, aspect ignored), coded with k channels, decoded and scaled
    back to the frame's own size (cv2.INTER_CUBIC), against the frame at its own size."""
    frames = collect_frames(paths, max_frames, "native")
    ms, ps, bpp = [], [], []
    for i, (_name, rgb) in enumerate(tqdm(frames, desc="squashed", unit="frame", disable=not progress)):
        data = bitstream.pack(encoder.encode(resize_224(rgb), k, i))
        out = cv2.resize(decoder.decode(bitstream.unpack(data)), (rgb.shape[1], rgb.shape[0]),
                         interpolation=cv2.INTER_CUBIC)
        ms.append(ms_ssim(rgb, out))
        ps.append(psnr(rgb, out))
        bpp.append(len(data) * 8 / (rgb.shape[0] * rgb.shape[1]))
    return {"k": k, "frames": len(frames), "bpp": float(np.mean(bpp)), "psnr": float(np.mean(ps)),
            "ms_ssim": float(np.mean(ms)), "how": "224x224 (cv2.INTER_AREA, aspect ignored), decoded, scaled back "
                                                  "to the frame's size (cv2.INTER_CUBIC)"}


def _prepared(name: str, rgb: np.ndarray, size) -> tuple[str, np.ndarray]:
    out = prepare_frame(rgb, size)
    if size == "native" and out.shape != rgb.shape:
        name = f"{name} (scaled down from {rgb.shape[1]}x{rgb.shape[0]} to {out.shape[1]}x{out.shape[0]})"
    return name, out


def collect_frames(paths, max_frames: int | None = None, size=PAPER_SIZE) -> list[tuple[str, np.ndarray]]:
    """Images, folders of images and videos -> [(name, RGB uint8)], 224x224 by default
    (see prepare_frame for the other sizes)."""
    frames = []
    for p in map(Path, paths):
        if not p.exists():
            raise ImageError(f"no such file or folder: {p}")
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS) if p.is_dir() else [p]
        for f in files:
            if f.suffix.lower() in VIDEO_EXTS:
                left = None if max_frames is None else max_frames - len(frames)
                frames += [_prepared(n, im, size) for n, im in iter_video(f, left)]
            else:
                frames.append(_prepared(f.name, load_rgb(f), size))
            if max_frames is not None and len(frames) >= max_frames:
                return frames[:max_frames]
    if not frames:
        raise ImageError(f"no images or videos found in {list(map(str, paths))}")
    return frames


def _bd(r1, d1, r2, d2, name, notes):
    """BD-rate of curve 2 against anchor curve 1 (pchip); None if they do not overlap."""
    import bjontegaard as bd

    lo, hi = max(min(d1), min(d2)), min(max(d1), max(d2))
    if hi <= lo:
        notes.append(f"{name}: the RD curves do not overlap in quality; BD-rate undefined")
        return None
    overlap = (hi - lo) / (max(d1) - min(d1))
    if overlap < 0.5:
        notes.append(f"{name}: curves overlap on only {overlap:.0%} of JPEG's quality range")
    with warnings.catch_warnings():   # the package warns on partial overlap; we report it in notes
        warnings.simplefilter("ignore")
        return float(bd.bd_rate(r1, d1, r2, d2, method="pchip", require_matching_points=False))


def _monotone(rates, dists):
    """Points sorted by rate with strictly increasing quality (what BD integration needs)."""
    pts = sorted(zip(rates, dists))
    out = []
    for r, d in pts:
        if not out or d > out[-1][1]:
            out.append((r, d))
    return [p[0] for p in out], [p[1] for p in out]


def evaluate(paths, encoder, decoder, max_frames=None, qualities=DEFAULT_QUALITIES, progress=True,
             size=PAPER_SIZE) -> dict:
    """RD of MCUCoder (k = 1..12) and OpenCV JPEG on the same frames at the same size:
    224x224 (the paper's protocol), "native" (each frame's own size) or (W, H).  Means
    over frames of bpp (each frame's bytes over its own pixels), PSNR and MS-SSIM."""
    frames = collect_frames(paths, max_frames, size)
    ks = range(1, LATENT_CHANNELS + 1)
    acc = {k: [] for k in ks}
    jacc = {q: [] for q in qualities}
    for i, (_name, rgb) in enumerate(tqdm(frames, desc="eval", unit="frame", disable=not progress)):
        pixels = rgb.shape[0] * rgb.shape[1]
        latent = encoder.latent(rgb)
        sym = encoder.quantizer.quantize(latent)
        chunks = [encoder.coders[c].encode(sym[c]) for c in range(LATENT_CHANNELS)]
        for k in ks:   # the first k chunks are exactly what encode(rgb, k) produces
            frame = bitstream.Frame(encoder.model_id, i, list(range(k)), chunks[:k], width=rgb.shape[1],
                                    height=rgb.shape[0])
            data = bitstream.pack(frame)
            out = decoder.decode(bitstream.unpack(data))
            acc[k].append((len(data) * 8 / pixels, psnr(rgb, out), ms_ssim(rgb, out)))
        for q in qualities:
            data, out = jpeg_roundtrip(rgb, q)
            jacc[q].append((len(data) * 8 / pixels, psnr(rgb, out), ms_ssim(rgb, out)))

    def row(vals):
        a = np.array(vals)
        return {"bpp": float(a[:, 0].mean()), "psnr": float(a[:, 1].mean()), "ms_ssim": float(a[:, 2].mean()),
                "ms_ssim_db": ms_ssim_db(float(a[:, 2].mean()))}

    mc = [{"k": k, **row(acc[k])} for k in ks]
    jp = [{"quality": q, **row(jacc[q])} for q in qualities]
    notes = []
    sizes = sorted({(f.shape[1], f.shape[0]) for _, f in frames})
    res = {"frames": len(frames), "frame_size": "native" if size == "native" else list(size),
           "frame_sizes": [list(s) for s in sizes],
           "resize": "none (own size)" if size == "native" else "cv2.INTER_AREA",
           "model_id": f"{encoder.model_id:#010x}", "decoder": str(getattr(decoder, "onnx_path", "")),
           "mcucoder": mc, "jpeg": jp}
    for metric, key in (("ms_ssim", "ms_ssim_db"), ("psnr", "psnr")):
        jr, jd = _monotone([p["bpp"] for p in jp], [p[key] for p in jp])
        mr, md = _monotone([p["bpp"] for p in mc], [p[key] for p in mc])
        res[f"bd_rate_{metric}"] = _bd(jr, jd, mr, md, metric, notes)
    if size == "native":
        big = [n for n, _ in frames if "scaled down from" in n]
        if big:
            notes.append(f"{len(big)} frame(s) larger than {MAX_LONG_SIDE}x{MAX_SHORT_SIDE} were scaled down to fit "
                         f"(aspect kept): {'; '.join(big[:5])}")
    res["notes"] = notes
    return res


def code_sequence(frames, encoder, channels: int, references=None) -> list:
    """Code consecutive frames in video mode over a loss-free link: every frame is
    acknowledged as soon as it is sent, as a receiver one frame away would.  Returns
    the Frames (bitstream v2 where a channel is coded against its reference)."""
    from .codec.inter import ReferenceState
    state = references if references is not None else ReferenceState()
    out = []
    for i, rgb in enumerate(frames):
        f = encoder.encode(rgb, channels, i, references=state)
        state.acknowledge(i, f.channel_indices)
        out.append(f)
    return out


def evaluate_inter(paths, encoder, decoder, res: dict, max_frames=None, progress=True, size=PAPER_SIZE) -> dict:
    """Adds video-mode keys to an `evaluate` result: each path is coded as one sequence.
    Inter coding is lossless on the symbols, so each frame decodes to the picture its
    intra coding gives at the same k: the decoder checks that symbol for symbol, and
    the quality figures are the intra ones; only the rates differ."""
    from .codec.inter import ReceivedReferences
    clips = {}
    ks = range(1, LATENT_CHANNELS + 1)
    inter_bits = {k: [] for k in ks}
    intra_bits = {k: [] for k in ks}
    for p in tqdm(paths, desc="inter", unit="clip", disable=not progress):
        frames = [f for _, f in collect_frames([p], max_frames, size)]
        px = frames[0].shape[0] * frames[0].shape[1] if frames else PIXELS
        intra_syms = [encoder.symbols(f) for f in frames]
        per_k = {}
        for k in ks:
            coded = code_sequence(frames, encoder, k)
            store = ReceivedReferences()
            for f, sym in zip(coded, intra_syms):
                got = decoder.symbols(bitstream.unpack(bitstream.pack(f)), store)
                if f.extra.get("lost_channels") or any(not np.array_equal(got[c], sym[c]) for c in range(k)):
                    raise RuntimeError(f"inter decoding of {p} frame {f.sequence} at k={k} differs from intra")
            inter_b = [len(bitstream.pack(f)) for f in coded]
            intra_b = [len(bitstream.pack(encoder.encode(f, k, i))) for i, f in enumerate(frames)]
            inter_bits[k] += [8 * b / px for b in inter_b]           # bits per pixel of each frame
            intra_bits[k] += [8 * b / px for b in intra_b]
            per_k[k] = {"intra_bytes_per_frame": float(np.mean(intra_b)),
                        "inter_bytes_per_frame": float(np.mean(inter_b)),
                        "saving": 1 - float(np.sum(inter_b)) / float(np.sum(intra_b))}
        clips[str(p)] = {"frames": len(frames), "per_k": per_k}
    intra_rows = {r["k"]: r for r in res["mcucoder"]}
    res["inter"] = [{"k": k, "bpp": float(np.mean(inter_bits[k])), "psnr": intra_rows[k]["psnr"],
                     "ms_ssim": intra_rows[k]["ms_ssim"], "ms_ssim_db": intra_rows[k]["ms_ssim_db"],
                     "intra_bpp_same_frames": float(np.mean(intra_bits[k])),
                     "saving_vs_intra": 1 - float(np.sum(inter_bits[k])) / float(np.sum(intra_bits[k]))} for k in ks]
    res["inter_clips"] = clips
    notes = res.setdefault("notes", [])
    ir = [p["intra_bpp_same_frames"] for p in res["inter"]]
    r2 = [p["bpp"] for p in res["inter"]]
    d = [p["ms_ssim_db"] for p in res["inter"]]
    res["bd_rate_inter_vs_intra"] = _bd(*_monotone(ir, d), *_monotone(r2, d), "inter vs intra", notes)
    return res


def h264_curve(paths, max_frames=None, crfs=(18, 23, 28, 33, 38, 43, 48), size=PAPER_SIZE) -> list | None:
    """H.264 reference (ffmpeg's libx264: ultrafast, zerolatency, no B-frames) on the
    same frames at the same size; bytes of the raw elementary stream.  None without ffmpeg."""
    import shutil
    import subprocess
    import tempfile
    if not shutil.which("ffmpeg"):
        return None
    clips = [np.stack([f for _, f in collect_frames([p], max_frames, size)]) for p in paths]
    rows = []
    for crf in crfs:
        bits, ps, ms, n = 0.0, [], [], 0
        for frames in clips:
            fh, fw = frames.shape[1:3]
            if fw % 2 or fh % 2:            # yuv420p needs even sides
                frames = np.ascontiguousarray(frames[:, :fh - fh % 2, :fw - fw % 2])
                fh, fw = frames.shape[1:3]
            with tempfile.TemporaryDirectory() as tmp:
                stream = Path(tmp) / "clip.h264"
                enc = subprocess.run(["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                                      "-s", f"{fw}x{fh}", "-r", "15", "-i", "-", "-c:v", "libx264", "-preset",
                                      "ultrafast", "-tune", "zerolatency", "-bf", "0", "-crf", str(crf),
                                      "-pix_fmt", "yuv420p", str(stream)],
                                     input=frames.tobytes(), capture_output=True)
                if enc.returncode != 0:
                    return None        # an ffmpeg without libx264
                dec = subprocess.run(["ffmpeg", "-v", "error", "-i", str(stream), "-f", "rawvideo", "-pix_fmt", "rgb24",
                                      "-"], capture_output=True, check=True).stdout
                out = np.frombuffer(dec, np.uint8).reshape(-1, fh, fw, 3)[:len(frames)]
                bits += 8 * stream.stat().st_size / (fw * fh)
                ps += [psnr(a, b) for a, b in zip(frames, out)]
                ms += [ms_ssim(a, b) for a, b in zip(frames, out)]
                n += len(frames)
        m = float(np.mean(ms))
        rows.append({"crf": crf, "bpp": bits / n, "psnr": float(np.mean(ps)), "ms_ssim": m,
                     "ms_ssim_db": ms_ssim_db(m)})
    return rows


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "ms_ssim_db", "MS-SSIM (dB)"), (axes[1], "psnr", "PSNR (dB)")):
        ax.plot([p["bpp"] for p in res["mcucoder"]], [p[key] for p in res["mcucoder"]], "o-",
                label="MCUCoder (k=1..12)")
        ax.plot([p["bpp"] for p in res["jpeg"]], [p[key] for p in res["jpeg"]], "s--", label="OpenCV JPEG")
        if res.get("inter"):
            ax.plot([p["bpp"] for p in res["inter"]], [p[key] for p in res["inter"]], "^-",
                    label="MCUCoder video mode (inter, lossless)")
        if res.get("h264"):
            ax.plot([p["bpp"] for p in res["h264"]], [p[key] for p in res["h264"]], "d:",
                    label="H.264 (x264 zerolatency, reference)")
        for p in res["mcucoder"]:
            ax.annotate(str(p["k"]), (p["bpp"], p[key]), fontsize=7, xytext=(2, -8), textcoords="offset points")
        ax.set_xlim(0, min(max(p["bpp"] for p in res["jpeg"]), 2.5 * max(p["bpp"] for p in res["mcucoder"])) * 1.02)
        ax.set_xlabel(f"bits per pixel (real bytes, {_size_text(res)})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    bd1, bd2 = res.get("bd_rate_ms_ssim"), res.get("bd_rate_psnr")
    fmt = lambda v: "n/a" if v is None else f"{v:+.1f}%"  # noqa: E731
    title = f"{res['frames']} frames at {_size_text(res)} - BD-rate vs JPEG: MS-SSIM {fmt(bd1)}, PSNR {fmt(bd2)}"
    if res.get("inter"):
        title += f"; inter vs intra {fmt(res.get('bd_rate_inter_vs_intra'))}"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _size_text(res: dict) -> str:
    fs = res.get("frame_size", [IMAGE_SIZE, IMAGE_SIZE])
    if fs == "native":
        sizes = res.get("frame_sizes") or []
        return "their own sizes" + (f" ({sizes[0][0]}x{sizes[0][1]} to {sizes[-1][0]}x{sizes[-1][1]})"
                                    if len(sizes) > 1 else f" ({sizes[0][0]}x{sizes[0][1]})" if sizes else "")
    return f"{fs[0]}x{fs[1]}"


def _finite(o):
    """NaN/inf -> None, so the JSON stays standard; floats to 7 significant digits."""
    if isinstance(o, float):
        return float(f"{o:.7g}") if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def write_json(res: dict, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(res), indent=2, allow_nan=False)
    # lists of plain values (time series) on one line each: a third of the size, still diffable
    text = re.sub(r'\[\s+([^\[\]{}"]*?)\s+\]', lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    Path(path).write_text(text)
