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
stable window) carrying JPEG frames over the same link.  With --size WxH (the camera's
size; the clip resized to it) the resolution ladder too: ours_ladder (LadderController:
(scale, k)) and a JPEG rendition ladder over sizes and qualities (jpeg_size_ladder);
every quality is MS-SSIM at the camera's size.
"""
from __future__ import annotations

import math
from pathlib import Path

from tqdm import tqdm

from ..abr import STRATEGIES, Record, Strategy, abr_metrics, default_strategies, frame_bits
from ..codec import bitstream
from ..codec.geometry import IMAGE_SIZE, LATENT_CHANNELS, decimate, scales_for
from ..codec.images import upscale
from ..codec.inter import ReferenceState
from ..codec.jpeg import jpeg_roundtrip
from ..codec.metrics import ms_ssim
from ..control import JPEG_LADDER, BitrateController, ControllerConfig, JpegLadder, LadderController
from ..evaluation import collect_frames, write_json
from ..ladder import load_table
from ..link_emulation import LinkEmulator, Trace, TracePoint, first_chunk_bytes


class FrameBank:
    """Per source frame: chunk sizes, and decoded quality for any received channel set.
    size: the camera's size (the clip resized to it; default the paper's 224x224);
    ladder: also every frame at 1/2 and 1/4 of it (chunks, and JPEG renditions)."""

    def __init__(self, clip, encoder, decoder, max_frames=30, progress=True, size=(IMAGE_SIZE, IMAGE_SIZE),
                 ladder=False):
        self.size = tuple(size)
        self.frames = [f for _, f in collect_frames([clip], max_frames, self.size)]
        self.encoder, self.decoder = encoder, decoder
        self.shifts = scales_for(*self.size) if ladder else (0,)
        self.chunks, self._q, self.jpeg, self.symbols = [], {}, [], []
        self._pics, self._shown_q = {}, {}
        self.scaled = {s: [] for s in self.shifts if s}         # chunks at 1/2, 1/4
        for i, rgb in enumerate(tqdm(self.frames, desc="coding frames", unit="frame", disable=not progress)):
            self.symbols.append(encoder.symbols(rgb))
            self.chunks.append(encoder.code(self.symbols[-1], LATENT_CHANNELS, i, size=self.size).chunks)
            self.jpeg.append({(s, q): self._jpeg(rgb, q, s) for s in self.shifts for q in JPEG_LADDER})
            for s in self.scaled:
                self.scaled[s].append(encoder.encode(rgb, LATENT_CHANNELS, i, scale_shift=s).chunks)
        self.renditions = self._rendition_ladder()

    @staticmethod
    def _jpeg(rgb, q, shift=0):
        small = decimate(rgb, shift)
        data, out = jpeg_roundtrip(small, q)
        return len(data), ms_ssim(rgb, upscale(out, (rgb.shape[1], rgb.shape[0])))

    def _rendition_ladder(self) -> list:
        """JPEG renditions (scale, quality), cheapest first, each better on average than
        every cheaper one (the upper hull over the bank, as a DASH ladder is built)."""
        mean = {key: (sum(j[key][0] for j in self.jpeg) / len(self.jpeg),
                      sum(j[key][1] for j in self.jpeg) / len(self.jpeg)) for key in self.jpeg[0]}
        out = []
        for key in sorted(mean, key=lambda k: (mean[k][0], -mean[k][1])):
            if not out or mean[key][1] > mean[out[-1]][1]:
                out.append(key)
        return out

    @property
    def sized(self) -> bool:
        """Frames of another size than 224x224 (bitstream v3 and v4 headers)."""
        return self.size != (IMAGE_SIZE, IMAGE_SIZE)

    def sizes(self, i, shift=0):
        return [len(c) for c in (self.chunks[i] if shift == 0 else self.scaled[shift][i])]

    def picture(self, key):
        """The picture a receiver shows for key = ("mc", frame, channels, scale) or
        ("jpeg", frame, scale, quality), at the camera's size (the last 64 kept)."""
        if key not in self._pics:
            if key[0] == "mc":
                _, i, channels, shift = key
                chunks = self.chunks[i] if shift == 0 else self.scaled[shift][i]
                f = bitstream.Frame(self.encoder.model_id, 0, list(channels), [chunks[c] for c in channels],
                                    width=self.size[0], height=self.size[1], scale_shift=shift)
                pic = self.decoder.decode(f)
            else:
                _, i, shift, q = key
                pic = upscale(jpeg_roundtrip(decimate(self.frames[i], shift), q)[1], self.size)
            if len(self._pics) >= 64:
                self._pics.pop(next(iter(self._pics)))
            self._pics[key] = pic
        return self._pics[key]

    def displayed_quality(self, i, key) -> float:
        """MS-SSIM of what the viewer sees at frame i's time against frame i: the picture
        of `key` (frame i's own, or an earlier one still on screen; None: nothing yet)."""
        if key is None:
            return 0.0
        if key[1] == i:
            return self.quality(i, key[2], key[3]) if key[0] == "mc" else self.jpeg[i][(key[2], key[3])][1]
        k2 = (i, key)
        if k2 not in self._shown_q:
            self._shown_q[k2] = ms_ssim(self.frames[i], self.picture(key))
        return self._shown_q[k2]

    def quality(self, i, channels, shift=0) -> float:
        key = (i, tuple(channels), shift)
        if key not in self._q:
            chunks = self.chunks[i] if shift == 0 else self.scaled[shift][i]
            f = bitstream.Frame(self.encoder.model_id, 0, list(channels), [chunks[c] for c in channels],
                                width=self.size[0], height=self.size[1], scale_shift=shift)
            self._q[key] = ms_ssim(self.frames[i], self.decoder.decode(f)) if channels else 0.0
        return self._q[key]


def simulate(strategy: Strategy, bank: FrameBank, trace: Trace, fps: float, duration: float | None = None,
             cfg: ControllerConfig | None = None, displayed: bool = False) -> dict:
    """displayed: also the quality the viewer sees at every frame time (a frame not on
    time leaves the last one on screen, compared against the frame it stands in for)."""
    T = duration or trace.duration
    interval = 1.0 / fps
    link = LinkEmulator(trace, seed=1)
    n = int(T * fps)
    cfg = cfg or ControllerConfig(default_interval_s=interval)
    if strategy.ladder and strategy.kind == "ours":
        table = load_table()
        if table is None:
            raise SystemExit("the model has no ladder table (export.json 'ladder'): run `mcucoder ladder-table`")
        ctrl = LadderController(table, cfg, shifts=bank.shifts)
    else:
        ctrl = BitrateController(cfg)
    scale, scales = 0, []       # the scale the source codes at (the controller's request, one frame later)
    keys = []                   # per frame: what the receiver shows for it (None: not on time)
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
            if strategy.ladder:     # renditions by rank: size and quality together
                rank = ladder.choose(t, {r: bank.jpeg[fi][key][0] for r, key in enumerate(bank.renditions)})
                scale, q = bank.renditions[rank]
                level = 16 * scale + rank + 1
            else:
                scale, q = 0, ladder.choose(t, {q: bank.jpeg[fi][(0, q)][0] for q in JPEG_LADDER})
                level = q
            scales.append(1 << scale)
            nbytes, quality = bank.jpeg[fi][(scale, q)]
            key = ("jpeg", fi, scale, q)
            d = link.send(t, nbytes, 1)
            ms = quality if d.kept else 0.0
            bits = nbytes * 8
        else:
            inter = False
            if refs is not None:       # inter chunk sizes, from this frame's acknowledged references
                coded = bank.encoder.code(bank.symbols[fi], budget, i, references=refs)
                sizes, inter = [len(c) for c in coded.chunks], coded.version == 2
            else:
                sizes = bank.sizes(fi, scale) if scale else bank.sizes(fi)
            scales.append(1 << scale)
            if strategy.kind == "ours":
                if strategy.link_monitor:
                    p = trace.at(t)
                    ctrl.on_link_quality(p.bandwidth_bps, t, 2 * p.delay_ms / 1000)  # as link_emulator_node
                if strategy.ladder:
                    dec = ctrl.decide(sizes[:budget], t, t, scale_shift=scale)
                else:
                    dec = ctrl.decide(sizes[:budget], t, t)
                level, budget = dec.channels, dec.budget
                est_t.append(t)
                est_avail.append(dec.available_bps)
                est_delivery.append(ctrl.estimator.rate())
                frame_scale = scale
                if strategy.ladder:
                    scale = dec.scale_shift
                if level == 0:         # not sent: it could not arrive in time (or an outage)
                    recs.append(Record(t, 0, 0, float("inf"), False, 0.0))
                    keys.append(None)
                    continue
            else:
                level = strategy.k
                frame_scale = 0
            sized = getattr(bank, "sized", False)      # a bank of another size than 224x224
            bits = frame_bits(sizes[:level], inter, sized)
            first = first_chunk_bytes(bits // 8, sizes[:level])
            if strategy.kind == "ours":
                ctrl.on_sent(i, bits, t, 8 * first or math.nan)
            d = link.send(t, bits // 8, level, first)
            if d.first_end == d.first_end:     # a progress report once the first chunk crossed
                pending.append((d.first_end + (d.delivered - d.end),
                                (i, first * 8, d.start, d.first_end, t, False, level, int(0 in d.kept), True)))
            # inter coding is lossless, so a received channel set shows its intra picture
            ms = bank.quality(fi, d.kept, frame_scale) if frame_scale else bank.quality(fi, d.kept)
            key = ("mc", fi, tuple(d.kept), frame_scale)
            if strategy.ladder:
                level += 16 * frame_scale          # a change of either is a switch
            if refs is not None:       # the receiver acknowledges what it decoded, one way later
                acks.append((d.delivered + (d.delivered - d.end), i, list(d.kept)))
        late = d.delivered > t + interval + 0.05
        n_sent = 1 if strategy.kind == "jpeg" else level
        pending.append((d.delivered, (i, bits, d.start, d.end, t, late, n_sent, len(d.kept), False)))
        recs.append(Record(t, level, bits, d.delivered, not late and len(d.kept) > 0, ms))
        keys.append(key if recs[-1].on_time else None)
    m = abr_metrics(strategy, recs, trace, T, interval, scales if strategy.ladder else None)
    if displayed:
        on_screen, shown = None, []
        for i, key in enumerate(keys):
            on_screen = key or on_screen
            shown.append(bank.displayed_quality(i % len(bank.frames), on_screen))
        m["displayed_ms_ssim"] = float(sum(shown) / len(shown)) if shown else 0.0
        m["series"]["displayed_ms_ssim"] = shown
    if est_t:       # what the controller believed: the bandwidth it planned with, and the delivery estimate
        m["series"]["estimate"] = {"t": est_t, "available_bps": est_avail, "delivery_bps": est_delivery}
    return m


def evaluate(trace_path, clip, encoder, decoder, fps=10.0, max_frames=30, strategies=None, progress=True,
             bank: FrameBank | None = None, size=(IMAGE_SIZE, IMAGE_SIZE)) -> dict:
    trace = Trace.load(trace_path)
    names = list(strategies or default_strategies(bank.size if bank else size))
    bank = bank or FrameBank(clip, encoder, decoder, max_frames, progress, size,
                             ladder=any(STRATEGIES[n].ladder for n in names))
    out = {"trace": {"name": trace.name, "path": str(trace_path), "duration_s": trace.duration,
                     "points": [p.__dict__ for p in trace.points]},
           "fps": fps, "frame_size": list(bank.size), "clip": str(clip), "frames_in_bank": len(bank.frames),
           "strategies": {}}
    for name in names:
        out["strategies"][name] = simulate(STRATEGIES[name], bank, trace, fps, displayed=bank.sized)
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
        if "scale" in s:        # the resolution ladder: the picture scale over time
            c = b.twinx()
            c.step(s["t"], [int(v).bit_length() - 1 for v in s["scale"]], where="post", color="tab:purple", lw=0.8)
            c.set_yticks([0, 1, 2], ["1", "1/2", "1/4"], fontsize=7)
            c.set_ylim(2.3, -0.3)
            c.set_ylabel("scale", fontsize=7, color="tab:purple")
        late = [t for t, ok in zip(s["t"], s["on_time"]) if not ok]
        b.plot(late, [0.55] * len(late), "r|", ms=6, label="late")
        b.set_ylim(0.5, 1.0)
        b.set_xlabel("time (s)")
        b.set_ylabel("MS-SSIM")
        m = res["strategies"][name]
        b.set_title(f"on time {m['on_time_ratio']:.2f}, util {m['utilization']:.2f}", fontsize=8)
    w, h = res.get("frame_size", [IMAGE_SIZE, IMAGE_SIZE])
    fig.suptitle(f"trace {res['trace']['name']} at {res['fps']:.0f} frames/s ({w}x{h})")
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
    w, h = res.get("frame_size", [IMAGE_SIZE, IMAGE_SIZE])
    print(f"trace {res['trace']['name']} ({res['trace']['duration_s']:.0f} s) at {res['fps']:.0f} frames/s, "
          f"{w}x{h}, {'live ROS graph' if live else 'simulated time'}, clip {Path(res['clip']).name}")
    print(f"{'strategy':28s} {'on_time':>8s} {'stalls':>7s} {'MS-SSIM':>8s} {'shown':>7s} {'util':>6s} "
          f"{'switches':>9s} {'per s':>6s} {'scale sw':>8s}")
    for n, m in res["strategies"].items():
        sw = m.get("scale_switches")
        print(f"{n:28s} {m['on_time_ratio']:8.3f} {m['stall_count']:7d} {m['mean_ms_ssim']:8.4f} "
              f"{m.get('displayed_ms_ssim', float('nan')):7.4f} {m['utilization']:6.2f} {m['k_switches']:9d} "
              f"{m.get('switches_per_s', float('nan')):6.2f} {'' if sw is None else sw:>8}")
    if "displayed_ms_ssim" in next(iter(res["strategies"].values()), {}):
        print("  MS-SSIM: of the frames delivered; shown: of what the viewer sees at every frame time (a frame "
              "not on time leaves the last one on screen, measured against the frame it stands in for)")


def main(a) -> None:
    from ..codec.geometry import parse_size
    from ..codec.model import DecoderModel, EncoderModel
    from ..sources import default_clip
    clip = a.input or default_clip()
    size = parse_size(getattr(a, "size", "224x224"))
    results, bank = [], None
    for trace_path in a.trace:          # every trace readable before minutes of coding frames
        Trace.load(trace_path)
    for trace_path in a.trace:
        if a.live:
            from .evaluate_abr_live import evaluate_live
            res = evaluate_live(trace_path, clip, a.fps, a.max_frames, a.strategies, a.duration, size=size)
        else:
            if bank is None:
                names = a.strategies or default_strategies(size)
                bank = FrameBank(clip, EncoderModel.load(), DecoderModel.load(threads=2), a.max_frames, size=size,
                                 ladder=any(STRATEGIES[n].ladder for n in names))
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
