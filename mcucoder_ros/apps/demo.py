"""`make demo`: the pipeline on the bundled clip, at the clip's own size (352x288), while
a bandwidth trace is published on `link_quality`; writes a side-by-side video, a plot
and summary.json."""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from ..codec.metrics import ms_ssim
from ..evaluation import iter_video
from ..link_emulation import Trace, TracePoint
from ..sources import default_clip

# seconds from start -> available bandwidth (bit/s): ample, then a third of full quality, then recovery
# 10 frames/s: a low-power camera's rate, and what a 2-core host without AVX-512 decodes
# at the clip's own 352x288 beside the encoder in one process (at 15 frames/s such a host
# skipped 40 % of the frames for the receiver)
DEMO_FPS = 10.0
DEFAULT_TRACE = Trace([TracePoint(0.0, 2_000_000.0), TracePoint(2.0, 200_000.0), TracePoint(4.0, 400_000.0)], "demo")


def make_observer(trace, record):
    """A node that publishes the trace on link_quality and records what comes out."""
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from ..msg import BitrateStatus, LatentChannels, LinkQuality
    from ..nodes.common import message_bytes, stamp_to_s

    def make(context):
        node = Node("demo_observer", namespace="/mcucoder", context=context)
        pub = node.create_publisher(LinkQuality, "link_quality", 10)
        t0 = time.monotonic()

        def tick():
            m = LinkQuality(bandwidth_bps=trace.at(time.monotonic() - t0).bandwidth_bps, packet_loss=float("nan"),
                            round_trip_time_s=float("nan"), rssi_dbm=float("nan"))
            m.header.stamp = node.get_clock().now().to_msg()
            pub.publish(m)
        tick()
        node.create_timer(0.05, tick)

        def on_gated(m):
            record["gated"][stamp_to_s(m.header.stamp)] = (m.sequence, message_bytes(m), len(m.channel_indices),
                                                           time.monotonic() - t0, 1 << m.scale_shift)

        def on_status(m):
            record["status"][m.sequence] = (m.channels, m.available_bps, m.sent_bps)

        def on_image(m):
            now = node.get_clock().now().nanoseconds * 1e-9
            s = stamp_to_s(m.header.stamp)
            img = np.frombuffer(m.data, np.uint8).reshape(m.height, m.width, 3).copy()
            record["decoded"][s] = (img, (now - s) * 1000.0, m.encoding, m.width, m.height)

        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(LatentChannels, "latent_gated", on_gated, qos_profile_sensor_data)
        node.create_subscription(BitrateStatus, "bitrate_status", on_status, 10)
        node.create_subscription(Image, "image_decoded", on_image, qos)
        return node
    return make


def main(a) -> dict:
    return run_demo(a.input, a.out, a.trace, a.params)


def run_demo(clip=None, out="out/demo", trace_csv=None, params=None) -> dict:
    from ..pipeline import Pipeline

    trace = Trace.load(trace_csv) if trace_csv else DEFAULT_TRACE     # a bad trace fails before anything is made
    clip = Path(clip) if clip else default_clip()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"gated": {}, "status": {}, "decoded": {}}
    p = Pipeline("video", str(clip), params, extra_nodes=[make_observer(trace, record)],
                 overrides={"encoder_node": {"fps": DEMO_FPS}})
    try:
        p.run()
        frames_in = p.encoder.seq
    finally:
        p.shutdown()

    sources = [f for _, f in iter_video(clip, frames_in)]       # the pipeline codes the clip at its own size
    height, width = sources[0].shape[:2] if sources else (0, 0)
    pixels = max(1, width * height)
    from ..codec.model import EncoderModel
    encoder = EncoderModel.load()

    def channel_bytes(rgb):
        return [len(c) for c in encoder.encode(rgb, 12).chunks]

    rows = []
    for stamp, (seq, nbytes, k, t, scale) in sorted(record["gated"].items(), key=lambda kv: kv[1][0]):
        dec = record["decoded"].get(stamp)
        st = record["status"].get(seq, (k, float("nan"), float("nan")))
        row = {"sequence": seq, "stamp": stamp, "t": t, "k": k, "scale": scale, "bytes": nbytes,
               "bpp": nbytes * 8 / pixels,
               "available_bps": st[1], "sent_bps": st[2], "decoded": dec is not None}
        if seq < len(sources):     # what every channel would cost (the camera codes only k + 1 of them)
            row["channel_bytes"] = channel_bytes(sources[seq])
        if dec is not None and seq < len(sources):
            row["ms_ssim"] = ms_ssim(sources[seq], dec[0])
            row["latency_ms"] = dec[1]
        rows.append(row)

    # side-by-side video: source | decoded, with k and bitrate drawn on
    zoom = 2 if height <= 300 else 1
    vw = cv2.VideoWriter(str(out / "side_by_side.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), DEMO_FPS,
                         (2 * zoom * width, zoom * height))
    for r in rows:
        dec = record["decoded"].get(r["stamp"])
        if dec is None or r["sequence"] >= len(sources):
            continue
        pair = np.hstack([sources[r["sequence"]], dec[0]])
        pair = cv2.resize(pair, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)[..., ::-1].copy()
        at = f" at 1/{r['scale']}" if r["scale"] > 1 else ""      # the resolution ladder's scale
        label = (f"k={r['k']}{at}  sent {r['bytes'] * 8 * DEMO_FPS / 1000:.0f} kbit/s  "
                 f"link {r['available_bps'] / 1000:.0f} kbit/s")
        cv2.putText(pair, "source", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        cv2.putText(pair, "decoded", (zoom * width + 8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        cv2.putText(pair, label, (zoom * width + 8, 44), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
        vw.write(pair)
    vw.release()

    decoded = [r for r in rows if "ms_ssim" in r]
    lat = [r["latency_ms"] for r in decoded]
    summary = {
        "clip": str(clip), "frame_size": [width, height], "frames_in": frames_in,
        "frames_decoded": len(decoded), "mean_bpp": float(np.mean([r["bpp"] for r in decoded])) if decoded else None,
        "mean_ms_ssim": float(np.mean([r["ms_ssim"] for r in decoded])) if decoded else None,
        "latency_ms_p50": float(np.percentile(lat, 50)) if lat else None,
        "latency_ms_p95": float(np.percentile(lat, 95)) if lat else None,
        "trace": [{"t": p.t, "bandwidth_bps": p.bandwidth_bps} for p in trace.points],
        "link_utilisation": link_utilisation(rows, trace, DEMO_FPS),
        "frames": rows,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _plot(rows, out / "bitrate.png")
    if not decoded:
        raise RuntimeError("the demo decoded no frames: see the node logs above")
    print(f"demo: {clip.name} at its own size {width}x{height} (no resize): {frames_in} frames in, "
          f"{len(decoded)} decoded, mean {summary['mean_bpp']:.3f} bpp, "
          f"mean MS-SSIM {summary['mean_ms_ssim']:.4f}, latency p50 {summary['latency_ms_p50']:.0f} ms "
          f"p95 {summary['latency_ms_p95']:.0f} ms")
    if not summary["link_utilisation"]:
        print("  link use: no trace segment holds frames from 1 s after its change (the report needs steps "
              "of over a second)")
    for seg in summary["link_utilisation"]:
        u = "n/a" if seg["utilisation"] is None else f"{seg['utilisation']:.2f}"
        print(f"  link {seg['bandwidth_bps'] / 1000:.0f} kbit/s from {seg['window_s'][0]:.1f} s to "
              f"{seg['window_s'][1]:.1f} s: sent {seg['sent_bps'] / 1000:.0f} kbit/s, utilisation {u} "
              f"(limited by {seg['limited_by']}; k {'/'.join(map(str, seg['k_used']))})")
    print(f"wrote {out / 'side_by_side.mp4'}, {out / 'bitrate.png'} and {out / 'summary.json'}")
    return summary


def link_utilisation(rows, trace, fps: float, settle_s: float = 1.0, headroom: float = 0.9) -> list[dict]:
    """Per trace segment, from settle_s after its change to the next one: the bitrate
    sent over the bandwidth offered.  A segment is limited by "k=12" when every channel
    would fit the controller's target (headroom x bandwidth), else by the link.
    `k_used`: the channel levels the frames of the window carried."""
    from ..control import BitrateController
    out = []
    pts = trace.points
    end = max((r["t"] for r in rows), default=0.0) + 1 / fps      # the clip may end before the trace
    for i, p in enumerate(pts):
        t0, bw = p.t, p.bandwidth_bps
        t1 = min(pts[i + 1].t, end) if i + 1 < len(pts) else end
        w0 = t0 + settle_s
        win = [r for r in rows if w0 <= r["t"] < t1]
        if t1 - w0 < 2 / fps or not win:
            continue
        sent = sum(r["bytes"] for r in win) * 8 / (t1 - w0)      # skipped frames send nothing
        sizes = [r["channel_bytes"] for r in win if r.get("channel_bytes")]
        cost = [[BitrateController.stream_bytes(c[:k]) * 8 for k in range(1, 13)] for c in sizes]
        full_bps = sum(c[-1] for c in cost) * fps / len(cost) if cost else float("nan")
        out.append({"t": t0, "bandwidth_bps": bw, "window_s": [w0, t1], "frames": len(win), "sent_bps": sent,
                    "all_channels_bps": full_bps, "utilisation": sent / bw,
                    "k_used": sorted({r["k"] for r in win}),
                    "limited_by": "k=12" if full_bps <= headroom * bw else "link"})
    return out


def _plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] for r in rows]
    fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(9, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1]})
    a1.step(t, [r["available_bps"] / 1000 for r in rows], where="post", label="available bandwidth")
    # bits sent over the last second (frames skipped send nothing, so a per-frame rate
    # would overstate what the link carried when frames are skipped)
    sent = [sum(q["bytes"] for q in rows if r["t"] - 1.0 < q["t"] <= r["t"]) * 8 / 1000 for r in rows]
    a1.plot(t, sent, ".-", label="sent bitrate (last second)")
    a1.set_ylabel("kbit/s")
    a1.legend()
    a1.grid(alpha=0.3)
    ax = a2.twinx()
    a2.plot([r["t"] for r in rows if "ms_ssim" in r], [r["ms_ssim"] for r in rows if "ms_ssim" in r], "g.-")
    ax.step(t, [r["k"] for r in rows], "k--", where="post", alpha=0.5)
    a2.set_ylabel("MS-SSIM (green)")
    ax.set_ylabel("channels k (dashed)")
    a2.grid(alpha=0.3)
    # the resolution ladder: the picture coded at 1, 1/2 or 1/4 of the camera's size
    a3.step(t, [r.get("scale", 1).bit_length() - 1 for r in rows], color="tab:purple", where="post")
    a3.set_yticks([0, 1, 2], ["1", "1/2", "1/4"])
    a3.set_ylim(2.4, -0.4)
    a3.set_ylabel("picture scale")
    a3.set_xlabel("time (s)")
    a3.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
