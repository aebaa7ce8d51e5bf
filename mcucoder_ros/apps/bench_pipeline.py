"""`mcucoder-ros bench`: end-to-end throughput, latency and CPU per node.

Each node runs in its own process, as `ros2 launch` starts them (encoder on the
bundled clip, looped, at the requested rate, at 224x224 or the size asked for with
`--size WxH`: the encoder node's width and height, or `native`: the clip's own 352x288); this process subscribes to
image_decoded like any client and measures frames/s and capture-stamp ->
image_decoded latency; CPU per node comes from /proc (utime + stime).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from ..hostinfo import describe, host_info

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(seconds: float = 20.0, fps: float = 15.0, clip: str | None = None, warmup_s: float = 3.0,
        size=(224, 224)) -> dict:
    """size: (width, height) the encoder codes the clip at, or "native" (its own size)."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from ..msg import BitrateStatus, LatentChannels, ReceiverReport
    from ..pipeline import NAMESPACE, NODES, default_params_file
    from ..sources import default_clip

    clip = clip or str(default_clip())
    bindir = Path(sys.executable).parent
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    # a second parameters file under the same node key: ROS applies a node's own section
    # after "-p" rules (which are wildcards), so `-p fps:=...` would lose to pipeline.yaml
    tmpdir = tempfile.TemporaryDirectory(prefix="mcucoder-bench-")
    source_params = Path(tmpdir.name) / "source.yaml"
    sized = {} if size == "native" else {"width": int(size[0]), "height": int(size[1])}
    source_params.write_text(yaml.safe_dump({"/**/encoder_node": {"ros__parameters": {
        "source": "video", "input": clip, "loop": True, "fps": float(fps), **sized}}}))
    procs = {}
    for name, _ in NODES:
        args = [str(bindir / name), "--ros-args", "-r", f"__ns:={NAMESPACE}", "--params-file",
                str(default_params_file())]
        if name == "encoder_node":
            args += ["--params-file", str(source_params)]
        procs[name] = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("bench_probe", context=ctx)
    arrivals = []
    seen_sizes = set()

    def on_image(m):
        now = node.get_clock().now().nanoseconds * 1e-9
        arrivals.append((time.monotonic(), (now - m.header.stamp.sec - m.header.stamp.nanosec * 1e-9) * 1e3))
        seen_sizes.add((m.width, m.height))
    node.create_subscription(Image, f"{NAMESPACE}/image_decoded", on_image,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    seen = {"offered": 0, "report": None, "status": None}

    def on_latent(_m):
        seen["offered"] += 1
    node.create_subscription(LatentChannels, f"{NAMESPACE}/latent", on_latent, qos_profile_sensor_data)
    node.create_subscription(ReceiverReport, f"{NAMESPACE}/receiver_report",
                             lambda m: seen.__setitem__("report", m), 10)
    node.create_subscription(BitrateStatus, f"{NAMESPACE}/bitrate_status", lambda m: seen.__setitem__("status", m), 10)
    try:
        t_end = time.monotonic() + 30
        while not arrivals and time.monotonic() < t_end:
            _spin(node, ctx, 0.1)
        if not arrivals:
            raise RuntimeError("no decoded frames arrived within 30 s")
        _spin_for(node, ctx, warmup_s)
        arrivals.clear()
        before = {"offered": seen["offered"], "stale": _stale(seen), "skipped": _skipped(seen)}
        cpu0 = {n: _cpu_s(p.pid) for n, p in procs.items()}
        t0 = time.monotonic()
        _spin_for(node, ctx, seconds)
        dt = time.monotonic() - t0
        offered = seen["offered"] - before["offered"]
        stale, skipped = _stale(seen) - before["stale"], _skipped(seen) - before["skipped"]
        cpu = {n: (_cpu_s(p.pid) - cpu0[n]) / dt * 100 for n, p in procs.items()}
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        tmpdir.cleanup()
    lat = np.array([a[1] for a in arrivals])
    host = host_info()
    res = {"host": host, "cpu": host["cpu_model"], "frame_size": sorted(seen_sizes)[0] if seen_sizes else None,
           "requested_fps": fps,
           "seconds": round(dt, 2), "frames_offered": offered, "frames": len(arrivals),
           "frames_skipped_for_receiver": skipped, "frames_dropped_stale": stale,
           "receiver_max_fps": float(seen["report"].max_fps) if seen["report"] else None,
           "fps": len(arrivals) / dt, "latency_ms_p50": float(np.percentile(lat, 50)),
           "latency_ms_p95": float(np.percentile(lat, 95)), "latency_ms_max": float(lat.max()),
           "cpu_percent_per_node": {k: round(v, 1) for k, v in cpu.items()}, "cpu_count": os.cpu_count(),
           "mode": "one process per node (as ros2 launch)", "clip": clip}
    return res


def _stale(seen) -> int:
    return int(seen["report"].dropped_stale) if seen["report"] else 0


def _skipped(seen) -> int:
    return int(seen["status"].frames_skipped) if seen["status"] else 0


def _spin(node, ctx, t):
    from rclpy.executors import SingleThreadedExecutor
    ex = getattr(_spin, "ex", None)
    if ex is None:
        ex = _spin.ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
    ex.spin_once(timeout_sec=t)


def _spin_for(node, ctx, seconds):
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        _spin(node, ctx, 0.05)


def main(a) -> None:
    from ..evaluation import parse_eval_size
    print(f"host: {describe(host_info())}")
    res = run(a.seconds, a.fps, size=parse_eval_size(getattr(a, "size", None) or "224x224"))
    w, h = res["frame_size"] or ("?", "?")
    print(f"end to end at {w}x{h}: {res['fps']:.1f} frames/s delivered (requested {res['requested_fps']:.0f}, "
          f"encoded {res['frames_offered'] / res['seconds']:.1f}), latency capture->image_decoded "
          f"p50 {res['latency_ms_p50']:.0f} ms, p95 {res['latency_ms_p95']:.0f} ms")
    print(f"  frames skipped by the controller for the receiver {res['frames_skipped_for_receiver']}, dropped stale "
          f"at the decoder {res['frames_dropped_stale']}; receiver reports max {res['receiver_max_fps'] or 0:.1f} "
          "frames/s")
    for n, c in res["cpu_percent_per_node"].items():
        print(f"  CPU {n:26s} {c:5.1f} % of one core")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=2))
        print(f"wrote {a.json}")
