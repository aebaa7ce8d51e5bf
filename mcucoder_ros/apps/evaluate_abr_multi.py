"""`mcucoder-ros evaluate-abr --cameras N`: several cameras on one emulated link, simulated time.

N cameras capture at --fps each, staggered evenly within a frame interval, and share one
LinkEmulator (one FIFO at the trace's bandwidth). Camera i shows bundled clip i mod 2
(fixed camera, moving camera), starting 7 x i frames in, so no two show the same
picture. Camera 0 weighs --front-weight (2 by default), the others 1. Strategies:

  shared       SharedLinkController: one estimate and queue for the link, the bits
               split by `allocate` (minimums, then the channel that buys the most
               weighted MS-SSIM per bit)
  equal        the same controller, the link split equally
  independent  one BitrateController per camera, each believing it owns the link (what
               N separate pipelines do): shown, not asserted, to overrun it

Metrics per camera (control-free: the same abr_metrics as one camera), and in total:
weighted on time and MS-SSIM (by camera weight), link use, mean k per camera.
"""
from __future__ import annotations

import heapq
import math
from pathlib import Path

from ..abr import Record, Strategy, abr_metrics, frame_bits
from ..codec.geometry import IMAGE_SIZE, LATENT_CHANNELS
from ..control import CameraSpec, ControllerConfig, SharedLinkController
from ..link_emulation import LinkEmulator, Trace, first_chunk_bytes

SHARING = ("shared", "equal", "independent")
CLIPS = ("traffic", "pan")


def simulate_cameras(sharing: str, banks: list, trace: Trace, fps: float, weights: list[float],
                     gains: list[float], duration: float | None = None, link_reports: bool = True) -> dict:
    T = duration or trace.duration
    n_cam = len(weights)
    interval = 1.0 / fps
    names = [f"cam{i}" for i in range(n_cam)]
    ctrl = SharedLinkController([CameraSpec(n, weight=w) for n, w in zip(names, weights)], gains,
                                ControllerConfig(default_interval_s=interval), strategy=sharing)
    link = LinkEmulator(trace, seed=1)
    events = []                 # (time, order, kind, data): captures and reports in time order
    for i in range(n_cam):
        for j in range(int(T * fps)):
            heapq.heappush(events, (j * interval + i * interval / n_cam, 1, "frame", (i, j)))
    budgets = [LATENT_CHANNELS] * n_cam
    recs = [[] for _ in range(n_cam)]
    shares = [[] for _ in range(n_cam)]
    sent_total = 0.0
    while events:
        t, _, kind, data = heapq.heappop(events)
        if kind == "report":
            *rep, partial = data
            ctrl.on_delivery_report(*rep, t, partial)
            continue
        i, j = data
        bank = banks[i % len(banks)]
        fi = (j + 7 * i) % len(bank.frames)
        if link_reports:
            p = trace.at(t)
            ctrl.on_link_quality(p.bandwidth_bps, t, 2 * p.delay_ms / 1000)
        sizes = bank.sizes(fi)
        d = ctrl.decide(names[i], sizes[:budgets[i]], t, t)
        budgets[i] = d.budget
        shares[i].append((t, ctrl.shares.get(names[i], float("nan"))))
        if d.channels == 0:
            recs[i].append(Record(t, 0, 0, float("inf"), False, 0.0))
            continue
        level = d.channels
        bits = frame_bits(sizes[:level])
        first = first_chunk_bytes(bits // 8, sizes[:level])
        ctrl.on_sent(names[i], j, bits, t, 8 * first or math.nan)
        dl = link.send(t, bits // 8, level, first)
        sent_total += bits
        back = dl.delivered - dl.end
        if dl.first_end == dl.first_end:
            heapq.heappush(events, (dl.first_end + back, 0, "report",
                                    (names[i], j, first * 8, dl.start, dl.first_end, level, int(0 in dl.kept), True)))
        heapq.heappush(events, (dl.delivered, 0, "report",
                                (names[i], j, bits, dl.start, dl.end, level, len(dl.kept), False)))
        late = dl.delivered > t + interval + 0.05
        recs[i].append(Record(t, level, bits, dl.delivered, not late and len(dl.kept) > 0,
                              bank.quality(fi, dl.kept)))
    per = {}
    for i, n in enumerate(names):
        m = abr_metrics(Strategy(sharing, "ours"), recs[i], trace, T, interval)
        m["weight"] = weights[i]
        m["clip"] = CLIPS[i % len(CLIPS)]
        sent = [r for r in recs[i] if r.level > 0]
        m["mean_k"] = sum(r.level for r in sent) / max(1, len(sent))
        m["frames_sent"] = len(sent)
        m["on_time_sent"] = sum(r.on_time for r in sent) / max(1, len(sent))   # of the frames forwarded
        m["sent_fps"] = len(sent) / T
        m["series"]["share_bps"] = [s for _, s in shares[i]]
        per[n] = m
    wsum = sum(weights)
    return {"cameras": per,
            "total": {"on_time_weighted": sum(per[n]["on_time_ratio"] * w for n, w in zip(names, weights)) / wsum,
                      "on_time_min": min(m["on_time_ratio"] for m in per.values()),
                      "on_time_sent_min": min(m["on_time_sent"] for m in per.values()),
                      "ms_ssim_weighted": sum(per[n]["mean_ms_ssim"] * w for n, w in zip(names, weights)) / wsum,
                      "utilization": sent_total / max(1.0, trace.available_bits(0.0, T)),
                      "stalls": sum(m["stall_count"] for m in per.values())}}


def make_banks(max_frames: int = 30, progress: bool = True) -> list:
    """The bundled clips, coded and decoded at every k once (evaluate_abr.FrameBank)."""
    from ..codec.model import DecoderModel, EncoderModel
    from ..resources import data_path
    from .evaluate_abr import FrameBank
    enc, dec = EncoderModel.load(), DecoderModel.load(threads=2)
    return [FrameBank(data_path(f"clips/{c}.mp4"), enc, dec, max_frames, progress) for c in CLIPS]


def evaluate_cameras(trace_path, n_cam: int, fps: float = 10.0, max_frames: int = 30, sharing=None,
                     front_weight: float = 2.0, progress: bool = True, banks=None) -> dict:
    from ..codec.model import model_channel_gains
    trace = Trace.load(trace_path)
    banks = banks or make_banks(max_frames, progress)
    weights = [front_weight] + [1.0] * (n_cam - 1)
    gains = model_channel_gains()
    out = {"mode": "simulated", "trace": {"name": trace.name, "path": str(trace_path), "duration_s": trace.duration,
                                          "points": [p.__dict__ for p in trace.points]},
           "fps": fps, "frame_size": [IMAGE_SIZE, IMAGE_SIZE], "cameras": n_cam, "weights": weights,
           "clips": [CLIPS[i % len(CLIPS)] for i in range(n_cam)], "sharing": {}}
    for s in sharing or SHARING:
        out["sharing"][s] = simulate_cameras(s, banks, trace, fps, weights, gains)
    return out


def _print(res: dict) -> None:
    print(f"trace {res['trace']['name']} ({res['trace']['duration_s']:.0f} s), {res['cameras']} cameras at "
          f"{res['fps']:g} frames/s each, weights {res['weights']}, {res.get('mode', 'simulated')}")
    print(f"{'sharing':12s} {'camera':7s} {'weight':>6s} {'on_time':>8s} {'of_sent':>8s} {'sent_fps':>8s} "
          f"{'mean_k':>7s} {'MS-SSIM':>8s}")
    for s, r in res["sharing"].items():
        for n, m in r["cameras"].items():
            print(f"{s:12s} {n:7s} {m['weight']:6.1f} {m['on_time_ratio']:8.3f} {m['on_time_sent']:8.3f} "
                  f"{m['sent_fps']:8.2f} {m['mean_k']:7.2f} {m['mean_ms_ssim']:8.4f}")
        t = r["total"]
        print(f"{s:12s} {'total':7s} {'':6s} {t['on_time_weighted']:8.3f} {'':8s} {'':8s} {'':7s} "
              f"{t['ms_ssim_weighted']:8.4f}   link use {t['utilization']:.2f}, stalls {t['stalls']}")


def plot_shares(res: dict, path: str) -> None:
    """Each camera's share of the link over time, per sharing strategy, under the trace."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = res["sharing"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 2.6 * len(runs)), sharex=True, squeeze=False)
    pts = res["trace"]["points"]
    for ax, (s, r) in zip(axes[:, 0], runs.items()):
        ax.step([p["t"] for p in pts], [p["bandwidth_bps"] / 1000 for p in pts], where="post", color="k",
                lw=1, label="link")
        for n, m in r["cameras"].items():
            se = m["series"]
            ax.plot(se["t"], [b / 1000 for b in se["sent_bps"]], lw=0.8,
                    label=f"{n} (weight {m['weight']:g}): sent, mean k {m['mean_k']:.1f}")
        ax.set_ylabel("kbit/s")
        ax.set_title(f"{s}: link use {r['total']['utilization']:.2f}, on time (weighted) "
                     f"{r['total']['on_time_weighted']:.3f}", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(a) -> None:
    from ..evaluation import write_json
    results = []
    banks = make_banks(a.max_frames)
    for trace_path in a.trace:
        res = evaluate_cameras(trace_path, a.cameras, a.fps, a.max_frames, a.sharing, a.front_weight, banks=banks)
        _print(res)
        results.append(res)
        if a.plot:
            p = Path(a.plot)
            plot_shares(res, str(p if len(a.trace) == 1 else p.with_name(f"{p.stem}_{res['trace']['name']}{p.suffix}")))
    write_json(results[0] if len(results) == 1 else {"runs": results}, a.json)
    print(f"wrote {a.json}" + (f" and {a.plot}" if a.plot else ""))
