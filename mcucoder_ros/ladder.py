"""The resolution ladder: the picture size as a second rate dimension beside the channels.

A camera picture is coded at 1, 1/2 or 1/4 of its size (geometry.decimate) with k of its
12 channels, and the receiver shows it back at the camera's size (bicubic).  Each
(scale, k) is a rung.  Quality per rung is a property of the model, measured once on
held-out photos at their own sizes (`measure`, written to the model's export.json as
"ladder" by the exporter or by `mcucoder ladder-table`); the controller ranks the
rungs by it and by the chunk sizes it sees (control.LadderPlanner).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .codec import bitstream
from .codec.geometry import LATENT_CHANNELS, SCALE_SHIFTS, scales_for

TABLE_KEY = "ladder"


@dataclass(frozen=True)
class Rung:
    scale_shift: int        # coded at 1 / 2^scale_shift of the camera's size
    k: int                  # channels
    bpp: float              # bits per camera pixel (header included), on the held-out photos
    ms_ssim: float          # at the camera's size, on the held-out photos

    @property
    def label(self) -> str:
        return f"1/{1 << self.scale_shift} k={self.k}" if self.scale_shift else f"k={self.k}"


def measure(photos, encoder, decoder, shifts=SCALE_SHIFTS, progress=True) -> dict:
    """Per scale and k: mean bpp (real bytes over the camera's pixels) and mean MS-SSIM
    at the camera's size, over `photos` [(name, rgb)] coded at their own sizes."""
    from tqdm import tqdm  # evaluation only: the nodes import this module for load_table

    from .codec.metrics import ms_ssim
    acc = {s: {k: [] for k in range(1, LATENT_CHANNELS + 1)} for s in shifts}
    for _name, rgb in tqdm(photos, desc="ladder", unit="photo", disable=not progress):
        h, w = rgb.shape[:2]
        for s in shifts:
            if s not in scales_for(w, h):
                continue
            full = encoder.encode(rgb, LATENT_CHANNELS, scale_shift=s)
            for k in range(1, LATENT_CHANNELS + 1):
                f = bitstream.Frame(full.model_id, 0, list(range(k)), full.chunks[:k], width=w, height=h,
                                    scale_shift=s)
                data = bitstream.pack(f)
                acc[s][k].append((len(data) * 8 / (w * h), ms_ssim(rgb, decoder.decode(f))))
    table = {"scales": [1 << s for s in shifts], "k": list(range(1, LATENT_CHANNELS + 1)),
             "bpp": [], "ms_ssim": [], "photos": len(photos), "upscale": "bicubic (cv2.INTER_CUBIC)",
             "model_id": f"{encoder.model_id:#010x}"}
    for s in shifts:
        rows = [np.array(acc[s][k]) for k in table["k"]]
        table["bpp"].append([float(r[:, 0].mean()) for r in rows])
        table["ms_ssim"].append([float(r[:, 1].mean()) for r in rows])
    return table


def rungs_of(table: dict) -> list[Rung]:
    return [Rung(int(np.log2(sc)), k, float(b), float(q))
            for sc, bs, qs in zip(table["scales"], table["bpp"], table["ms_ssim"])
            for k, b, q in zip(table["k"], bs, qs)]


def hull(rungs: list[Rung]) -> list[Rung]:
    """The rungs worth sending: sorted by rate, each better than every cheaper one (the
    upper envelope; a rung another beats at a lower rate is never chosen)."""
    out: list[Rung] = []
    for r in sorted(rungs, key=lambda r: (r.bpp, -r.ms_ssim)):
        if not out or r.ms_ssim > out[-1].ms_ssim:
            out.append(r)
    return out


def load_table(model_dir=None) -> dict | None:
    """The model's ladder table (export.json "ladder"), or None if it has none."""
    from .codec.model import default_model_dir
    path = Path(model_dir or default_model_dir()) / "export.json"
    try:
        return json.loads(path.read_text()).get(TABLE_KEY)
    except (OSError, ValueError):
        return None


def write_table(table: dict, model_dir) -> Path:
    path = Path(model_dir) / "export.json"
    meta = json.loads(path.read_text()) if path.exists() else {}
    meta[TABLE_KEY] = table
    path.write_text(json.dumps(meta, indent=2))
    return path


def _bd_rate(anchor: list[Rung], test: list[Rung]) -> float | None:
    """BD-rate (MS-SSIM, pchip) of `test` against `anchor`, in %; None without overlap."""
    from .codec.metrics import ms_ssim_db
    from .evaluation import _bd, _monotone
    ar, ad = _monotone([r.bpp for r in anchor], [ms_ssim_db(r.ms_ssim) for r in anchor])
    tr, td = _monotone([r.bpp for r in test], [ms_ssim_db(r.ms_ssim) for r in test])
    if len(ar) < 2 or len(tr) < 2:
        return None
    return _bd(ar, ad, tr, td, "ladder", [])


def lowest_rate_bps(photos, encoder, size=(640, 480), fps: float = 10.0, shifts=SCALE_SHIFTS) -> dict:
    """The lowest rate a camera of `size` can send at `fps`: mean bytes of a k = 1 frame
    (header included) of each photo resized to `size`, per scale, in bit/s."""
    import cv2
    out = {}
    for s in shifts:
        sizes = [len(bitstream.pack(encoder.encode(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), 1,
                                                   scale_shift=s))) for _, rgb in photos]
        out[f"1/{1 << s}"] = float(np.mean(sizes)) * 8 * fps
    return out


def evaluate_scales(photos, encoder, decoder, progress=True) -> dict:
    """`mcucoder eval --scales`: the RD curve of each scale at the camera's size, their
    upper hull, the hull's BD-rate against the camera's size alone (over all rates, and
    below 0.1 bpp where the ladder matters), and the lowest rate of a 640x480 camera at
    10 frames/s with and without the ladder."""
    table = measure(photos, encoder, decoder, progress=progress)
    rungs = rungs_of(table)
    full = [r for r in rungs if r.scale_shift == 0]
    top = hull(rungs)
    low = 0.1
    res = {"photos": len(photos), "frame_sizes": sorted({f"{rgb.shape[1]}x{rgb.shape[0]}" for _, rgb in photos}),
           "table": table, "hull": [r.__dict__ | {"label": r.label} for r in top],
           "bd_rate_hull_vs_full": _bd_rate(full, top),
           "bd_rate_hull_vs_full_below_0.1bpp": _bd_rate([r for r in full if r.bpp <= low] +
                                                        [min((r for r in full if r.bpp > low), key=lambda r: r.bpp)],
                                                        [r for r in top if r.bpp <= low]),
           "lowest_rate_640x480_10fps_bps": lowest_rate_bps(photos, encoder)}
    return res


def plot_scales(res: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = res["table"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for sc, b, q in zip(t["scales"], t["bpp"], t["ms_ssim"]):
        ax.plot(b, q, "o-", ms=3, label=f"coded at 1/{sc}" if sc > 1 else "camera's size")
    h = res["hull"]
    ax.plot([r["bpp"] for r in h], [r["ms_ssim"] for r in h], "k--", lw=1, label="ladder (upper hull)")
    ax.set_xscale("log")
    ax.set_xlabel("bits per camera pixel (real bytes)")
    ax.set_ylabel("MS-SSIM at the camera's size")
    ax.set_title(f"Resolution ladder: {res['photos']} held-out photos at their own sizes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
