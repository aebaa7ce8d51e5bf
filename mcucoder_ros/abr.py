"""Adaptive-bitrate evaluation: the strategies compared and what is measured of them.

Shared by the simulated evaluation (apps/evaluate_abr.py) and the live one over the
ROS graph (apps/evaluate_abr_live.py), so that both report the same metrics.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .codec import bitstream
from .codec.geometry import IMAGE_SIZE, LATENT_CHANNELS

HEADER = bitstream.HEADER.size
ENTRY = bitstream.CHUNK_ENTRY.size


@dataclass
class Record:
    t: float
    level: int                 # k, or JPEG quality
    bits: int
    delivered: float
    on_time: bool
    ms_ssim: float


@dataclass
class Strategy:
    name: str
    kind: str                  # "ours", "fixed", "jpeg"; video: code against acknowledged references
    k: int = LATENT_CHANNELS
    link_monitor: bool = True
    video: bool = False
    ladder: bool = False       # the resolution ladder: (scale, k) for ours, renditions for jpeg


def frame_bits(sizes, inter: bool = False, sized: bool = False):
    """Bits of a frame with these chunk sizes (inter: a version 2 chunk table; sized: a
    version 3 or 4 frame, any size other than 224x224)."""
    if sized:
        return (bitstream.HEADER_V3.size + sum(bitstream.CHUNK_ENTRY_V2.size + s for s in sizes)) * 8
    entry = bitstream.CHUNK_ENTRY_V2.size if inter else ENTRY
    return (HEADER + sum(entry + s for s in sizes)) * 8


STRATEGIES = {
    "ours": Strategy("ours", "ours", link_monitor=True),
    "ours_no_link_quality": Strategy("ours_no_link_quality", "ours", link_monitor=False),
    "ours_video": Strategy("ours_video", "ours", video=True),
    "fixed_k12": Strategy("fixed_k12", "fixed", k=12),
    "fixed_k6": Strategy("fixed_k6", "fixed", k=6),
    "jpeg_ladder": Strategy("jpeg_ladder", "jpeg"),
}
DEFAULT_STRATEGIES = tuple(STRATEGIES)
# the resolution ladder (evaluate-abr --size WxH): ours picks (scale, k); the JPEG baseline
# changes size and quality along a rendition ladder, as a DASH ladder would
LADDER_STRATEGIES = {
    "ours_ladder": Strategy("ours_ladder", "ours", ladder=True),
    "ours_ladder_no_link_quality": Strategy("ours_ladder_no_link_quality", "ours", link_monitor=False, ladder=True),
    "jpeg_size_ladder": Strategy("jpeg_size_ladder", "jpeg", ladder=True),
}
STRATEGIES.update(LADDER_STRATEGIES)


def default_strategies(size, live: bool = False) -> list[str]:
    """All strategies; at a camera size other than 224x224 the resolution ladder's too
    (live: less the JPEG size ladder, which is evaluated in simulated time only)."""
    extra = list(LADDER_STRATEGIES) if tuple(size) != (IMAGE_SIZE, IMAGE_SIZE) else []
    names = list(DEFAULT_STRATEGIES) + extra
    return [n for n in names if not (live and STRATEGIES[n].kind == "jpeg" and STRATEGIES[n].ladder)]


def abr_metrics(strategy, recs, trace, T, interval, scales=None) -> dict:
    """scales: per record, the picture scale shown (1, 2, 4), for ladder strategies."""
    delivered = sorted(r.delivered for r in recs if r.delivered <= T + 1.0)
    gaps = np.diff([0.0] + delivered) if delivered else np.array([T])
    sent = sum(r.bits for r in recs if r.delivered <= T)
    levels = [r.level for r in recs]
    sent_levels = [v for v in levels if v > 0]     # a frame not sent is no change of the quality shown
    shown = [r.ms_ssim for r in recs if r.delivered <= T + 1.0]
    extra = {}
    if scales is not None:
        sent_scales = [s for s, r in zip(scales, recs) if r.level > 0]
        extra = {"scale_switches": int(sum(a != b for a, b in zip(sent_scales, sent_scales[1:]))),
                 "scale_share": {str(s): sent_scales.count(s) / max(1, len(sent_scales)) for s in (1, 2, 4)}}
    return {
        **extra,
        "on_time_ratio": sum(r.on_time for r in recs) / len(recs),
        "stall_count": int(np.sum(gaps > 2 * interval)),
        "mean_ms_ssim": float(np.mean(shown)) if shown else 0.0,
        "utilization": sent / max(1.0, trace.available_bits(0.0, T)),
        "k_switches": int(sum(a != b for a, b in zip(levels, levels[1:]))),
        "switches_per_s": sum(a != b for a, b in zip(sent_levels, sent_levels[1:])) / max(T, 1e-9),
        "frames": len(recs), "frames_delivered": len(delivered),
        "series": {"t": [r.t for r in recs], "level": levels, "sent_bps": [r.bits / interval for r in recs],
                   "ms_ssim": [r.ms_ssim for r in recs], "on_time": [r.on_time for r in recs],
                   **({"scale": list(scales)} if scales is not None else {})},
    }
