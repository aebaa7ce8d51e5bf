"""`mcucoder-ros demo --cameras N`: N cameras on one emulated link, one controller and
one batched decoder; writes a grid video (each camera: source | decoded, with its k and
share of the link), a plot of each camera's share over time and summary.json."""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from ..codec.geometry import IMAGE_SIZE
from ..codec.images import resize_224
from ..codec.metrics import ms_ssim
from ..link_emulation import Trace, TracePoint
from ..pipeline import CameraConfig, load_cameras
from ..resources import config_file
from ..sources import FrameSource

FPS = 10.0
# one link for all: ample, then short (below every camera's full quality), then back
DEMO_TRACE = Trace([TracePoint(0.0, 600_000.0, 0.0, 20.0), TracePoint(3.0, 150_000.0, 0.0, 20.0),
                    TracePoint(6.0, 350_000.0, 0.0, 20.0), TracePoint(9.0, 350_000.0, 0.0, 20.0)], "demo_cameras")


def demo_cameras(n: int) -> list[CameraConfig]:
    """The first n cameras of config/cameras.yaml (more: its cameras again, renamed), played once."""
    base = load_cameras(config_file("cameras.yaml"))
    cams = []
    for i in range(n):
        c = base[i % len(base)]
        name = c.name if i < len(base) else f"{c.name}{i // len(base) + 1}"
        cams.append(CameraConfig(name, c.source, c.input, c.weight, c.min_channels, c.camera_info_url, loop=False))
    return cams


def _observer(cams, record):
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from ..msg import BitrateStatus
    from ..nodes.common import stamp_to_s

    def make(context):
        node = Node("demo_observer", namespace="/mcucoder", context=context)
        t0 = time.monotonic()
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for c in cams:
            def on_status(m, n=c.name):
                record[n]["status"].append((time.monotonic() - t0, m.sequence, m.channels, m.target_bps,
                                            m.available_bps, m.sent_bps, stamp_to_s(m.header.stamp)))

            def on_image(m, n=c.name):
                img = np.frombuffer(m.data, np.uint8).reshape(m.height, m.width, 3).copy()
                record[n]["decoded"][stamp_to_s(m.header.stamp)] = (img, time.monotonic() - t0)
            node.create_subscription(BitrateStatus, f"{c.name}/bitrate_status", on_status, 10)
            node.create_subscription(Image, f"{c.name}/image_decoded", on_image, qos)
        return node
    return make


def main(a) -> dict:
    return run_demo_cameras(a.cameras, a.out if a.out != "out/demo" else "out/demo_cameras", a.params)


def run_demo_cameras(n: int, out="out/demo_cameras", params=None) -> dict:
    from ..pipeline import Pipeline
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cams = demo_cameras(n)
    trace_csv = out / "link.csv"
    trace_csv.write_text("t,bandwidth_bps,loss,delay_ms\n" + "".join(
        f"{p.t},{p.bandwidth_bps},{p.loss},{p.delay_ms}\n" for p in DEMO_TRACE.points))
    record = {c.name: {"status": [], "decoded": {}} for c in cams}
    p = Pipeline("video", "", params, trace=trace_csv, cameras=cams, extra_nodes=[_observer(cams, record)],
                 overrides={"encoder_node": {"fps": FPS}})
    try:
        p.run(timeout_s=DEMO_TRACE.duration + 5)
        frames_in = p.frames_in_by_camera()
    finally:
        p.shutdown()
    # each camera's source frames, as its encoder read them (sequence = frame index)
    sources = {}
    for c in cams:
        src, frames = FrameSource(c.source, c.input), []
        while len(frames) < frames_in[c.name] and (f := src.next()) is not None:
            frames.append(resize_224(f))
        src.close()
        sources[c.name] = frames
    grid = _grid_video(cams, sources, record, out / "grid.mp4")
    summary = {"cameras": {}, "link": [{"t": q.t, "bandwidth_bps": q.bandwidth_bps} for q in DEMO_TRACE.points],
               "fps_per_camera": FPS, "frame_size": [IMAGE_SIZE, IMAGE_SIZE]}
    for c in cams:
        ss = grid[c.name]
        sent = [s for s in record[c.name]["status"] if s[2] > 0]
        summary["cameras"][c.name] = {
            "source": c.source, "input": c.input, "weight": c.weight, "min_channels": c.min_channels,
            "frames_in": frames_in[c.name], "frames_sent": len(sent), "frames_decoded": len(ss),
            "mean_k": float(np.mean([s[2] for s in sent])) if sent else None,
            "mean_ms_ssim": float(np.mean(ss)) if ss else None}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _plot_shares(cams, record, out / "shares.png")
    for name, s in summary["cameras"].items():
        print(f"{name} (weight {s['weight']:g}): {s['frames_in']} frames in, {s['frames_sent']} sent, "
              f"{s['frames_decoded']} decoded, mean k {s['mean_k'] or 0:.2f}, "
              f"mean MS-SSIM {s['mean_ms_ssim'] or 0:.4f}")
    print(f"wrote {out / 'grid.mp4'}, {out / 'shares.png'} and {out / 'summary.json'}")
    if not any(s["frames_decoded"] for s in summary["cameras"].values()):
        raise RuntimeError("the demo decoded no frames: see the node logs above")
    return summary


def _grid_video(cams, sources, record, path) -> dict:
    """One row per camera (source | decoded), one video frame per frame interval; each
    row shows that camera's newest decoded frame at that time.  Returns MS-SSIM per camera."""
    scale = 1
    W, H = 2 * IMAGE_SIZE * scale, IMAGE_SIZE * scale
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H * len(cams)))
    scores = {c.name: [] for c in cams}
    timelines = {}
    for c in cams:
        # a decoded frame carries its capture stamp, and so does the controller's status for it
        seq_of = {s[6]: s for s in record[c.name]["status"] if s[2] > 0}
        dec = sorted(record[c.name]["decoded"].items())
        tl = []
        for stamp, (img, t) in dec:
            s = seq_of.get(stamp)
            if s is None or s[1] >= len(sources[c.name]):
                continue
            src = sources[c.name][s[1]]
            scores[c.name].append(ms_ssim(src, img))
            tl.append((t, src, img, s))
        timelines[c.name] = tl
    t_end = max((tl[-1][0] for tl in timelines.values() if tl), default=0.0)
    t = 0.0
    while t <= t_end:
        rows = []
        for c in cams:
            shown = [x for x in timelines[c.name] if x[0] <= t]
            if shown:
                _, src, img, s = shown[-1]
                row = np.hstack([src, img])[..., ::-1].copy()
                label = f"{c.name} (w {c.weight:g}): k={s[2]}  share {s[3] / 1000:.0f} of {s[4] / 1000:.0f} kbit/s"
            else:
                row = np.zeros((IMAGE_SIZE, 2 * IMAGE_SIZE, 3), np.uint8)
                label = f"{c.name}: waiting"
            cv2.putText(row, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 0), 1)
            rows.append(row)
        vw.write(np.vstack(rows))
        t += 1.0 / FPS
    vw.release()
    return scores


def _plot_shares(cams, record, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    pts = DEMO_TRACE.points
    a1.step([p.t for p in pts], [p.bandwidth_bps / 1000 for p in pts], where="post", color="k", label="link")
    for c in cams:
        st = record[c.name]["status"]
        a1.plot([s[0] for s in st], [s[3] / 1000 for s in st], lw=1, label=f"{c.name} share (weight {c.weight:g})")
        a2.step([s[0] for s in st], [s[2] for s in st], where="post", lw=1, label=c.name)
    a1.set_ylabel("kbit/s")
    a1.legend(fontsize=8)
    a1.set_title("each camera's share of the link (the controller's target for it)", fontsize=9)
    a2.set_ylabel("channels k sent (0: frame skipped)")
    a2.set_xlabel("time (s)")
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
