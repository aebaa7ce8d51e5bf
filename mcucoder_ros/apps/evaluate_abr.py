"""`mcucoder-ros evaluate-abr`: adaptive bitrate through an emulated link, per strategy.

Frames of a real clip (224x224, cycled) are captured at --fps; each strategy decides
what to send; the LinkEmulator (the same code as link_emulator_node) serialises every
frame at the trace's bandwidth (FIFO: a late frame delays the next) and drops chunks
by the trace's loss ratio. Time is simulated, so runs are deterministic and fast;
bytes and qualities are real: every frame is coded by the shipped codec (JPEG by
OpenCV) and decoded from the chunks that arrive.

Strategies: ours (BitrateController, with LinkQuality = the trace's bandwidth, or with
the delivery estimator only), fixed k = 12, fixed k = 6, and a JPEG quality ladder
controlled like abr_image_transport (target bitrate x0.7 on instability, x1.5 after a
stable window) carrying JPEG frames over the same link.
"""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from ..abr import HEADER, STRATEGIES, Record, Strategy, abr_metrics, frame_bits
from ..codec import bitstream
from ..codec.geometry import IMAGE_SIZE, LATENT_CHANNELS
from ..codec.inter import ReferenceState
from ..codec.jpeg import jpeg_roundtrip
from ..codec.metrics import ms_ssim
from ..control import JPEG_LADDER, BitrateController, ControllerConfig, JpegLadder
from ..evaluation import collect_frames, write_json
from ..link_emulation import LinkEmulator, Trace, TracePoint


class FrameBank:
    """Per source frame: chunk sizes, and decoded quality for any received channel set."""

    def __init__(self, clip, encoder, decoder, max_frames=30, progress=True):
        self.frames = [f for _, f in collect_frames([clip], max_frames)]
        self.encoder, self.decoder = encoder, decoder
        self.chunks, self._q, self.jpeg, self.symbols = [], {}, [], []
        for i, rgb in enumerate(tqdm(self.frames, desc="coding frames", unit="frame", disable=not progress)):
            self.symbols.append(encoder.symbols(rgb))
            self.chunks.append(encoder.code(self.symbols[-1], LATENT_CHANNELS, i).chunks)
            self.jpeg.append({q: self._jpeg(rgb, q) for q in JPEG_LADDER})

    @staticmethod
    def _jpeg(rgb, q):
        data, out = jpeg_roundtrip(rgb, q)
        return len(data), ms_ssim(rgb, out)

    def sizes(self, i):
        return [len(c) for c in self.chunks[i]]

    def quality(self, i, channels) -> float:
        key = (i, tuple(channels))
        if key not in self._q:
            f = bitstream.Frame(self.encoder.model_id, 0, list(channels), [self.chunks[i][c] for c in channels])
            self._q[key] = ms_ssim(self.frames[i], self.decoder.decode(f)) if channels else 0.0
        return self._q[key]


def simulate(strategy: Strategy, bank: FrameBank, trace: Trace, fps: float, duration: float | None = None,
             cfg: ControllerConfig | None = None) -> dict:
    T = duration or trace.duration
    interval = 1.0 / fps
    link = LinkEmulator(trace, seed=1)
    n = int(T * fps)
    ctrl = BitrateController(cfg or ControllerConfig(default_interval_s=interval))
    pending = []               # (delivered time, report) not yet known to the sender
    budget = LATENT_CHANNELS
    ladder = JpegLadder(fps)
    recs, est_t, est_avail, est_delivery = [], [], [], []
    # video mode: the camera's references, and acknowledgements on their way back
    refs = ReferenceState() if strategy.video else None
    acks = []                  # (arrival time, sequence, channels decoded)
    for i in range(n):
        t = i * interval
        fi = i % len(bank.frames)
        arrived = [r for r in pending if r[0] <= t]
        pending = [r for r in pending if r[0] > t]
        for a in [a for a in acks if a[0] <= t]:
            refs.acknowledge(a[1], a[2])
        acks = [a for a in acks if a[0] > t]
        for arrival, rep in sorted(arrived, key=lambda r: r[0]):
            seq, bits, start, end, cap, late, n_sent, n_kept, partial = rep
            ctrl.on_delivery_report(seq, bits, start, end, n_sent, n_kept, arrival, partial)
            if not partial:
                ladder.on_report(cap, start, end, late)
        if strategy.kind == "jpeg":
            if link.free_at - t > interval:            # the sender's own queue is backing up
                ladder.on_backlog(t)
            level = ladder.choose(t, {q: v[0] for q, v in bank.jpeg[fi].items()})
            nbytes, quality = bank.jpeg[fi][level]
            d = link.send(t, nbytes, 1)
            ms = quality if d.kept else 0.0
            bits = nbytes * 8
        else:
            inter = False
            if refs is not None:       # inter chunk sizes, from this frame's acknowledged references
                coded = bank.encoder.code(bank.symbols[fi], budget, i, references=refs)
                sizes, inter = [len(c) for c in coded.chunks], coded.version == 2
            else:
                sizes = bank.sizes(fi)
            if strategy.kind == "ours":
                if strategy.link_monitor:
                    p = trace.at(t)
                    ctrl.on_link_quality(p.bandwidth_bps, t, 2 * p.delay_ms / 1000)  # as link_emulator_node
                dec = ctrl.decide(sizes[:budget], t, t)
                level, budget = dec.channels, dec.budget
                est_t.append(t)
                est_avail.append(dec.available_bps)
                est_delivery.append(ctrl.estimator.rate())
                if level == 0:         # not sent: it could not arrive in time (or an outage)
                    recs.append(Record(t, 0, 0, float("inf"), False, 0.0))
                    continue
            else:
                level = strategy.k
            bits = frame_bits(sizes[:level], inter)
            if strategy.kind == "ours":
                ctrl.on_sent(i, bits, t)
            entry = frame_bits([0], inter) // 8 - HEADER
            first = frame_bits(sizes[:1], inter) // 8 + entry * (level - 1) if level > 1 else 0   # table + chunk 0
            d = link.send(t, bits // 8, level, first)
            if d.first_end == d.first_end:     # a progress report once the first chunk crossed
                pending.append((d.first_end + (d.delivered - d.end),
                                (i, first * 8, d.start, d.first_end, t, False, level, int(0 in d.kept), True)))
            # inter coding is lossless, so a received channel set shows its intra picture
            ms = bank.quality(fi, d.kept)
            if refs is not None:       # the receiver acknowledges what it decoded, one way later
                acks.append((d.delivered + (d.delivered - d.end), i, list(d.kept)))
        late = d.delivered > t + interval + 0.05
        n_sent = 1 if strategy.kind == "jpeg" else level
        pending.append((d.delivered, (i, bits, d.start, d.end, t, late, n_sent, len(d.kept), False)))
        recs.append(Record(t, level, bits, d.delivered, not late and len(d.kept) > 0, ms))
    m = abr_metrics(strategy, recs, trace, T, interval)
    if est_t:       # what the controller believed: the bandwidth it planned with, and the delivery estimate
        m["series"]["estimate"] = {"t": est_t, "available_bps": est_avail, "delivery_bps": est_delivery}
    return m


def evaluate(trace_path, clip, encoder, decoder, fps=10.0, max_frames=30, strategies=None, progress=True,
             bank: FrameBank | None = None) -> dict:
    trace = Trace.load(trace_path)
    bank = bank or FrameBank(clip, encoder, decoder, max_frames, progress)
    out = {"trace": {"name": trace.name, "path": str(trace_path), "duration_s": trace.duration,
                     "points": [p.__dict__ for p in trace.points]},
           "fps": fps, "frame_size": [IMAGE_SIZE, IMAGE_SIZE], "clip": str(clip), "frames_in_bank": len(bank.frames),
           "strategies": {}}
    for name in strategies or STRATEGIES:
        out["strategies"][name] = simulate(STRATEGIES[name], bank, trace, fps)
    return out


def plot(res: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["strategies"])
    fig, axes = plt.subplots(2, len(names), figsize=(3.6 * len(names), 5.5), sharex=True, squeeze=False)
    pts = res["trace"]["points"]
    tt = [p["t"] for p in pts]
    bw = [p["bandwidth_bps"] / 1000 for p in pts]
    for j, name in enumerate(names):
        s = res["strategies"][name]["series"]
        a, b = axes[0][j], axes[1][j]
        a.step(tt, bw, where="post", label="available")
        a.plot(s["t"], [v / 1000 for v in s["sent_bps"]], lw=0.8, label="sent")
        a.set_title(name, fontsize=9)
        a.set_ylabel("kbit/s")
        a.legend(fontsize=7)
        b.plot(s["t"], s["ms_ssim"], "g.", ms=2)
        late = [t for t, ok in zip(s["t"], s["on_time"]) if not ok]
        b.plot(late, [0.55] * len(late), "r|", ms=6, label="late")
        b.set_ylim(0.5, 1.0)
        b.set_xlabel("time (s)")
        b.set_ylabel("MS-SSIM")
        m = res["strategies"][name]
        b.set_title(f"on time {m['on_time_ratio']:.2f}, util {m['utilization']:.2f}", fontsize=8)
    fig.suptitle(f"trace {res['trace']['name']} at {res['fps']:.0f} frames/s (224x224)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


ESTIMATED_BY = ("ours_no_link_quality", "ours", "ours_video")   # whose estimate the estimate plot shows


def estimate_error(res: dict, name: str) -> float:
    """Median |delivery estimate - trace bandwidth| / bandwidth over the decisions where the link carried anything."""
    import numpy as np
    e = res["strategies"][name]["series"].get("estimate")
    if not e:
        return float("nan")
    trace = Trace([TracePoint(**p) for p in res["trace"]["points"]])
    errs = [abs(v - trace.at(t).bandwidth_bps) / trace.at(t).bandwidth_bps for t, v in zip(e["t"], e["delivery_bps"])
            if trace.at(t).bandwidth_bps > 0 and v == v]
    return float(np.median(errs)) if errs else float("nan")


def plot_estimates(results: list[dict], path: str) -> None:
    """The delivery-report estimate against the trace's bandwidth, one panel per trace."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 2.6 * rows), squeeze=False)
    for ax, res in zip(axes.flat, results):
        name = next((s for s in ESTIMATED_BY if res["strategies"].get(s, {}).get("series", {}).get("estimate")), None)
        pts = res["trace"]["points"]
        ax.step([p["t"] for p in pts], [p["bandwidth_bps"] / 1000 for p in pts], where="post", color="k", lw=1,
                label="link (trace)")
        if name:
            e = res["strategies"][name]["series"]["estimate"]
            ax.plot(e["t"], [v / 1000 for v in e["delivery_bps"]], lw=1, color="tab:orange",
                    label=f"estimate from delivery reports ({name})")
            s = res["strategies"][name]["series"]
            ax.plot(s["t"], [v / 1000 for v in s["sent_bps"]], lw=0.6, color="tab:blue", alpha=0.6, label="sent")
            ax.set_title(f"{res['trace']['name']}: median error {estimate_error(res, name):.1%}", fontsize=9)
        ax.set_ylabel("kbit/s")
        ax.set_xlabel("time (s)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper right")
    mode = "live ROS graph" if results[0].get("mode") == "live" else "simulated time"
    fig.suptitle(f"Rate estimated from delivery reports vs the link, {mode}, {results[0]['fps']:.0f} frames/s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _print(res: dict, live: bool) -> None:
    print(f"trace {res['trace']['name']} ({res['trace']['duration_s']:.0f} s) at {res['fps']:.0f} frames/s, "
          f"224x224, {'live ROS graph' if live else 'simulated time'}, clip {Path(res['clip']).name}")
    print(f"{'strategy':22s} {'on_time':>8s} {'stalls':>7s} {'MS-SSIM':>8s} {'util':>6s} {'switches':>9s} "
          f"{'per s':>6s}")
    for n, m in res["strategies"].items():
        print(f"{n:22s} {m['on_time_ratio']:8.3f} {m['stall_count']:7d} {m['mean_ms_ssim']:8.4f} "
              f"{m['utilization']:6.2f} {m['k_switches']:9d} {m.get('switches_per_s', float('nan')):6.2f}")


def main(a) -> None:
    from ..codec.model import DecoderModel, EncoderModel
    from ..sources import default_clip
    clip = a.input or default_clip()
    results, bank = [], None
    for trace_path in a.trace:
        if a.live:
            from .evaluate_abr_live import evaluate_live
            res = evaluate_live(trace_path, clip, a.fps, a.max_frames, a.strategies, a.duration)
        else:
            if bank is None:
                bank = FrameBank(clip, EncoderModel.load(), DecoderModel.load(threads=2), a.max_frames)
            res = evaluate(trace_path, clip, None, None, a.fps, a.max_frames, a.strategies, bank=bank)
        _print(res, a.live)
        results.append(res)
        if a.plot:
            p = Path(a.plot)
            plot(res, str(p if len(a.trace) == 1 else p.with_name(f"{p.stem}_{res['trace']['name']}{p.suffix}")))
    write_json(results[0] if len(results) == 1 else {"runs": results}, a.json)
    if a.estimate_plot:
        plot_estimates(results, a.estimate_plot)
    print(f"wrote {a.json}" + "".join(f" and {p}" for p in (a.plot, a.estimate_plot) if p))
