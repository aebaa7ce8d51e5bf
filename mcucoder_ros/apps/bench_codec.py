"""`mcucoder bench`: throughput at 224x224 (or the sizes asked for, one row each), batch 1,
and peak memory (figures printed)."""
from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from ..codec import bitstream
from ..codec.entropy import c_decoder_built as entropy_c_built
from ..codec.geometry import IMAGE_SIZE, LATENT_CHANNELS, LATENT_SIZE
from ..codec.model import DECODER_FILE, DecoderModel, EncoderModel, default_model_dir, shipped_decoders
from ..hostinfo import describe, host_info


def _rate(fn, seconds: float) -> float:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _paper_decoder_onnx(path: str) -> bool:
    """Export the paper's decoder (random weights: speed only) if torch is installed."""
    try:
        import torch

        from ..training.models import PaperDecoder
    except ModuleNotFoundError:
        return False
    m = PaperDecoder().eval()
    torch.onnx.export(m, torch.zeros(1, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE), path, input_names=["latent"],
                      output_names=["image"], opset_version=17, dynamo=False)
    return True


def run_bench(model_dir=None, seconds: float = 3.0, threads: int = 0, rounds: int = 3,
              sizes=((IMAGE_SIZE, IMAGE_SIZE),)) -> dict:
    """Every shipped decoder is measured in the same run, in interleaved rounds (the
    median of each is kept), so that their ratios hold even when the host's speed
    drifts; the default decoder's figures are also the top-level ones.  With several
    `sizes` (width, height), the first is measured in full (top-level keys) and every
    size gets a row of `sizes_table`, measured in the same interleaved rounds."""
    d = model_dir or default_model_dir()
    sizes = [tuple(s) for s in sizes]
    frame = _sample_frame(sizes[0])
    enc = EncoderModel.load(d)
    host = host_info()
    print(f"host: {describe(host)}")
    res = {"host": host, "cpu": host["cpu_model"], "cpu_count": host["cpu_count"],
           "frame_size": list(sizes[0]), "batch": 1, "onnxruntime_threads": threads or "default"}
    res["int8_encoder_fps"] = _rate(lambda: enc.latent(frame), seconds)
    res["encoder_fps"] = _rate(lambda: bitstream.pack(enc.encode(frame, LATENT_CHANNELS)), seconds)
    print(f"INT8 encoder (numpy reference): {res['int8_encoder_fps']:.1f} frames/s; "
          f"with quantisation + rANS + bitstream: {res['encoder_fps']:.1f} frames/s")
    data = bitstream.pack(enc.encode(frame, LATENT_CHANNELS))
    names = shipped_decoders(d)
    decs = {n: DecoderModel.load(d, n, threads) for n in names}
    default = names[0]
    latent = decs[default].latent(bitstream.unpack(data))
    res["entropy_decode_fps"] = _rate(lambda: decs[default].latent(bitstream.unpack(data)), seconds)
    print(f"entropy decoding (rANS, {'C' if entropy_c_built() else 'pure Python: C extension not built'}): "
          f"{res['entropy_decode_fps']:.0f} frames/s")
    # a decoder that runs rewritten (channels-last) is also measured as shipped, to show what the rewrite gives
    shipped = {n: DecoderModel.load(d, n, threads, cpu_rewrite=False) for n in names if decs[n].graph != "as shipped"}
    runs = {n: {"network_fps": [], "decode_fps": [], "as_shipped_network_fps": []} for n in names}
    for _ in range(rounds):
        for n, dec in decs.items():
            runs[n]["network_fps"].append(_rate(lambda dec=dec: dec.reconstruct(latent), seconds / rounds))
            runs[n]["decode_fps"].append(_rate(lambda dec=dec: dec.decode(bitstream.unpack(data)), seconds / rounds))
            if n in shipped:
                runs[n]["as_shipped_network_fps"].append(
                    _rate(lambda dec=shipped[n]: dec.reconstruct(latent), seconds / rounds))
    res["architectures"] = {}
    for n in names:
        a = {k: float(np.median(v)) for k, v in runs[n].items() if v}
        a.update(onnx=str(decs[n].onnx_path), onnx_bytes=decs[n].onnx_path.stat().st_size, graph=decs[n].graph)
        res["architectures"][n] = a
        extra = (f"; as shipped (QDQ graph) network {a['as_shipped_network_fps']:.1f} frames/s"
                 if "as_shipped_network_fps" in a else "")
        print(f"decoder {n:10s}: network {a['network_fps']:.1f} frames/s, full decode (rANS + network) "
              f"{a['decode_fps']:.1f} frames/s [{a['graph']}]{extra}")
    res["default_decoder"] = default
    res["decoder_fps"] = res["architectures"][default]["decode_fps"]
    res["decoder_network_fps"] = res["architectures"][default]["network_fps"]
    if default != "fast" and "fast" in res["architectures"]:
        res["decoder_speedup_vs_fast_fp32"] = res["decoder_fps"] / res["architectures"]["fast"]["decode_fps"]
        print(f"default decoder {default}: {res['decoder_speedup_vs_fast_fp32']:.2f}x the FP32 fast decoder "
              "(full decode, same run)")
    res["peak_rss_mb"] = _peak_rss_mb()
    print(f"peak resident memory (encoder + {len(names)} decoders, this process): {res['peak_rss_mb']:.0f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        paper = os.path.join(d, DECODER_FILE.format(arch="paper"))
        note = "shipped weights"
        if not os.path.exists(paper):
            paper = os.path.join(tmp, "decoder_paper.onnx")
            note = "random weights (speed only; no trained paper decoder is shipped)"
            if not _paper_decoder_onnx(paper):
                paper = None
        if paper:
            pdec = DecoderModel(enc.arrays, paper, threads)
            fps = _rate(lambda: pdec.reconstruct(latent), max(1.0, seconds / 2))
            res["architectures"]["paper"] = {"network_fps": fps, "note": note}
            print(f"paper decoder (N=196): network {fps:.2f} frames/s ({note})")
        else:
            res["architectures"]["paper"] = {"network_fps": None, "note": "torch not installed: cannot export it"}
    if len(sizes) > 1:
        res["sizes_table"] = size_table(enc, decs, sizes, seconds, rounds)
    return res


def size_table(enc, decs: dict, sizes, seconds: float, rounds: int) -> list[dict]:
    """Per size: encoder and full decode (rANS + network, bitstream -> RGB of that size)
    frames/s of every decoder, k = 12, interleaved rounds over sizes and decoders (medians)."""
    data = {s: bitstream.pack(enc.encode(_sample_frame(s), LATENT_CHANNELS)) for s in sizes}
    for s in sizes:
        for dec in decs.values():
            dec.warm_up(1, s)
    runs = {(s, n): [] for s in sizes for n in decs}
    for _ in range(rounds):
        for s in sizes:
            for n, dec in decs.items():
                runs[(s, n)].append(_rate(lambda dec=dec, s=s: dec.decode(bitstream.unpack(data[s])), seconds / rounds))
    rows = []
    print("size        bytes(k=12)  encoder f/s  " + "  ".join(f"{n + ' f/s':>14s}" for n in decs))
    for s in sizes:
        fr = _sample_frame(s)
        row = {"size": list(s), "pixels": s[0] * s[1], "bytes_k12": len(data[s]),
               "encoder_fps": _rate(lambda fr=fr: bitstream.pack(enc.encode(fr, LATENT_CHANNELS)), seconds / rounds),
               "decode_fps": {n: float(np.median(runs[(s, n)])) for n in decs}}
        rows.append(row)
        print(f"{s[0]:4d}x{s[1]:<4d}  {row['bytes_k12']:11d}  {row['encoder_fps']:11.1f}  "
              + "  ".join(f"{row['decode_fps'][n]:14.1f}" for n in decs))
    return rows


def _sample_frame(size=(IMAGE_SIZE, IMAGE_SIZE)) -> np.ndarray:
    """A real photo so that rANS timings reflect real latents: the bundled sample at
    224x224; another size: a larger held-out photo (scikit-image's coffee, where
    installed, else the bundled clip's first frame) resized to it."""
    from ..codec.images import load_rgb, resize_224, resize_to
    from ..codec.vectors import sample_frames

    w, h = size
    if (w, h) == (IMAGE_SIZE, IMAGE_SIZE):
        frames = sample_frames()
        if frames:
            return resize_224(load_rgb(frames[0]))
        return np.random.default_rng(0).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    src = None
    try:
        from importlib.resources import files
        p = files("skimage") / "data" / "coffee.png"
        if p.is_file():
            src = load_rgb(str(p))
    except ModuleNotFoundError:
        pass
    if src is None:
        try:
            from ..evaluation import iter_video
            from ..sources import default_clip
            src = next(iter(iter_video(str(default_clip()), 1)))[1]
        except Exception:        # noqa: BLE001 - no bundled data: noise
            return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return resize_to(src, (w, h))


def main(a):
    from ..codec.geometry import parse_size
    sizes = [parse_size(s) for s in getattr(a, "size", None) or ["224x224"]]
    res = run_bench(a.model, seconds=a.seconds, threads=a.threads, sizes=sizes)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=2))
    print(f"wrote {a.json}")
