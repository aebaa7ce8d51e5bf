"""`mcucoder-ros bench --cameras N`: several cameras into one receiver, per camera and in all.

By default the cameras are MCUs: a replay node publishes each camera's pre-encoded
latents (the bundled clips, coded once by the shipped encoder at all 12 channels, cut
to the budget the controller sends back) on <camera>/latent at the camera rate, so the
host does what it does in the field: gate, entropy-decode, reconstruct.  `--host-encode`
runs one encoder_node per camera instead (the host stands in for the MCUs too).
Each ROS node runs in its own process, as `ros2 launch` starts them: one
bitrate_controller_node for all cameras, then, in the same run, the decoding done two
ways for the same length of time: one batched decoder_node for all cameras, and one
decoder_node per camera (what N single-camera pipelines do).  This process subscribes
to every <camera>/image_decoded like any client: frames/s and capture -> image_decoded
latency per camera, CPU per process from /proc.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from ..hostinfo import describe, host_info
from .bench_pipeline import _cpu_s

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
CLIPS = ("traffic", "pan")


def _replay_frames(n_cam: int, max_frames: int = 30) -> list[list]:
    """Per camera, bitstream Frames of its clip at 12 channels (camera i: clip i mod 2, from 7 i frames in)."""
    from ..codec.model import EncoderModel
    from ..evaluation import collect_frames
    from ..resources import data_path
    enc = EncoderModel.load()
    coded = {c: [enc.encode(f, 12) for _, f in collect_frames([data_path(f"clips/{c}.mp4")], max_frames)]
             for c in CLIPS[:n_cam]}
    out = []
    for i in range(n_cam):
        fr = coded[CLIPS[i % len(CLIPS)]]
        out.append(fr[(7 * i) % len(fr):] + fr[:(7 * i) % len(fr)])
    return out


def _make_replay(context, namespace, names, frames, fps):
    """One node standing in for N MCUs: each camera's latents at fps (staggered), cut to its budget."""
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from std_msgs.msg import UInt8

    from ..msg import LatentChannels
    from ..nodes.common import frame_to_msg, gate

    class Replay(Node):
        def __init__(self):
            super().__init__("mcu_replay", namespace=namespace, context=context)
            self.pubs = {n: self.create_publisher(LatentChannels, f"{n}/latent", qos_profile_sensor_data)
                         for n in names}
            self.budget = dict.fromkeys(names, 12)
            self.seq = dict.fromkeys(names, 0)
            for n in names:
                self.create_subscription(UInt8, f"{n}/channel_budget",
                                         lambda m, n=n: self.budget.__setitem__(n, max(1, min(12, m.data))), 10)
            self.send_timers = []

        def start(self, rate=fps):
            for i, n in enumerate(names):
                time.sleep(1.0 / rate / len(names))
                self._send(n, i)
                self.send_timers.append(self.create_timer(1.0 / rate, lambda n=n, i=i: self._send(n, i)))

        def set_rate(self, rate):
            self.stop()
            self.send_timers = []
            self.start(rate)

        def stop(self):
            for t in self.send_timers:
                t.cancel()
                self.destroy_timer(t)

        def _send(self, n, i):
            f = frames[i][self.seq[n] % len(frames[i])]
            f.sequence = self.seq[n] % 2**32
            m = frame_to_msg(f, self.get_clock().now().to_msg(), n)
            self.pubs[n].publish(gate(m, self.budget[n]))
            self.seq[n] += 1
    return Replay()


def _stats(arrivals, dt):
    lat = np.array(arrivals) if arrivals else np.array([np.nan])
    return {"fps": len(arrivals) / dt, "latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p95": float(np.percentile(lat, 95)), "frames": len(arrivals)}


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(n_cam: int = 4, fps: float = 10.0, seconds: float = 20.0, host_encode: bool = False,
        warmup_s: float = 4.0, progress=print, soak_s: float = 0.0, saturate_fps: float = 30.0,
        size: tuple[int, int] = (224, 224), modes: tuple[str, ...] = ("batched", "per_camera")) -> dict:
    """soak_s: instead of the comparison, the batched decoder alone for this long, with
    every process's RSS sampled every 10 s and every frame accounted for."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from ..msg import BitrateStatus, ReceiverReport
    from ..pipeline import NAMESPACE, default_params_file
    from ..sources import default_clip

    names = [f"cam{i}" for i in range(n_cam)]
    bindir = Path(sys.executable).parent
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    tmp = tempfile.TemporaryDirectory(prefix="mcucoder-bench-")
    multi = Path(tmp.name) / "multi.yaml"
    multi.write_text(yaml.safe_dump({
        "/**/bitrate_controller_node": {"ros__parameters": {"cameras": list(names)}},
        "/**/decoder_node": {"ros__parameters": {"cameras": list(names)}}}))     # copies: no YAML aliases
    single = Path(tmp.name) / "single.yaml"
    clip = str(default_clip())
    single.write_text(yaml.safe_dump({"/**/encoder_node": {"ros__parameters": {
        "source": "video", "input": clip, "loop": True, "fps": float(fps), "width": int(size[0]),
        "height": int(size[1])}}}))
    frames = None if host_encode else _replay_frames(n_cam)

    logs = {}

    def node_proc(name, ns, *params):
        args = [str(bindir / name), "--ros-args", "-r", f"__ns:={ns}", "--params-file", str(default_params_file())]
        for p in params:
            args += ["--params-file", str(p)]
        log = Path(tmp.name) / f"{ns.strip('/').replace('/', '_')}_{name}.log"
        proc = subprocess.Popen(args, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        logs[proc.pid] = log
        return proc

    def check_alive():
        for k, p in procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{k} exited with status {p.returncode}:\n{logs[p.pid].read_text()[-2000:]}")

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("bench_probe", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    arrivals = {n: [] for n in names}
    recording = threading.Event()

    def on_image(m, n):
        if recording.is_set():
            now = node.get_clock().now().nanoseconds * 1e-9
            arrivals[n].append((now - m.header.stamp.sec - m.header.stamp.nanosec * 1e-9) * 1e3)
        else:
            arrivals[n].append(None)
    rel = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    last = {n: {"stale": 0, "skipped": 0, "decoded": 0} for n in names}   # counters since the start

    seqs = {n: [] for n in names}          # sequences the controller saw while recording

    def on_report(m, n):
        last[n]["stale"] = int(m.dropped_stale)

    def on_status(m, n):
        last[n]["skipped"] = int(m.frames_skipped)
        if recording.is_set():
            seqs[n].append(int(m.sequence))

    def on_any_image(m, n):
        last[n]["decoded"] += 1
        on_image(m, n)
    for n in names:
        node.create_subscription(Image, f"{NAMESPACE}/{n}/image_decoded", lambda m, n=n: on_any_image(m, n), rel)
        node.create_subscription(ReceiverReport, f"{NAMESPACE}/{n}/receiver_report",
                                 lambda m, n=n: on_report(m, n), 10)
        node.create_subscription(BitrateStatus, f"{NAMESPACE}/{n}/bitrate_status", lambda m, n=n: on_status(m, n),
                                 10)
    replay = None
    if not host_encode:
        replay = _make_replay(ctx, NAMESPACE, names, frames, fps)
        ex.add_node(replay)

    def spin_for(s):
        t0 = time.monotonic()
        while time.monotonic() - t0 < s:
            ex.spin_once(timeout_sec=0.01)

    procs = {"bitrate_controller_node": node_proc("bitrate_controller_node", NAMESPACE, multi)}
    if host_encode:
        for n in names:
            procs[f"{n}/encoder_node"] = node_proc("encoder_node", f"{NAMESPACE}/{n}", single)
    results = {}
    try:
        started = False
        for mode in (("batched",) if soak_s else modes):
            dec = ({"decoder_node (all cameras)": node_proc("decoder_node", NAMESPACE, multi)} if mode == "batched"
                   else {f"{n}/decoder_node": node_proc("decoder_node", f"{NAMESPACE}/{n}") for n in names})
            procs.update(dec)
            recording.clear()
            for a in arrivals.values():
                a.clear()
            t_end = time.monotonic() + 60
            while time.monotonic() < t_end and not all(arrivals.values()):
                check_alive()
                if replay is not None and not started and replay.count_subscribers(f"{NAMESPACE}/{names[-1]}/latent"):
                    spin_for(0.5)
                    replay.start()
                    started = True
                spin_for(0.1)
            if not all(arrivals.values()):
                missing = [n for n, a in arrivals.items() if not a]
                raise RuntimeError(f"{mode}: no decoded frames of {', '.join(missing)} within 60 s")
            spin_for(warmup_s)
            for a in arrivals.values():
                a.clear()
            for q in seqs.values():
                q.clear()
            at_start = {n: dict(c) for n, c in last.items()}
            recording.set()
            cpu0 = {k: _cpu_s(p.pid) for k, p in procs.items()}
            self_cpu0 = time.process_time()
            t0 = time.monotonic()
            rss = []
            if soak_s:
                from tqdm import tqdm
                bar = tqdm(total=int(soak_s), desc="soak", unit="s")
                while time.monotonic() - t0 < soak_s:
                    rss.append({"t": round(time.monotonic() - t0, 1),
                                **{k: round(_rss_mb(p.pid), 2) for k, p in procs.items()}})
                    spin_for(10.0)
                    bar.n = int(min(soak_s, time.monotonic() - t0))
                    bar.refresh()
                bar.close()
            else:
                spin_for(seconds)
            dt = time.monotonic() - t0
            recording.clear()
            cpu = {k: round((_cpu_s(p.pid) - cpu0[k]) / dt * 100, 1) for k, p in procs.items()}
            cpu["this process (probe" + (", MCU replay)" if replay else ")")] = \
                round((time.process_time() - self_cpu0) / dt * 100, 1)
            per = {n: _stats([a for a in arrivals[n] if a is not None], dt) for n in names}
            for n in names:
                # where each camera's frames went in the window: captured (its sequence numbers,
                # with those its encoder skipped before encoding), skipped by the controller,
                # dropped stale at the decoder
                captured = max(seqs[n]) - min(seqs[n]) + 1 if seqs[n] else 0
                stale = last[n]["stale"] - at_start[n]["stale"]
                per[n].update({"captured": captured, "came_to_controller": len(seqs[n]),
                               "skipped_at_source": captured - len(seqs[n]),
                               "skipped_by_controller": last[n]["skipped"] - at_start[n]["skipped"],
                               "dropped_stale": stale, "stale_ratio": stale / captured if captured else float("nan")})
            results[mode] = {"cameras": per, "total_fps": sum(p["fps"] for p in per.values()),
                             "latency_ms_p95_max": max(p["latency_ms_p95"] for p in per.values()),
                             "cpu_percent_per_process": cpu, "seconds": round(dt, 2)}
            results[mode]["rss_mb_per_process"] = {k: round(_rss_mb(p.pid), 1) for k, p in procs.items()}
            progress(_line(mode, results[mode]))
            if replay is not None and not soak_s and saturate_fps > fps:
                # throughput: more frames than the receiver can decode; what comes out is its capacity
                replay.set_rate(saturate_fps)
                spin_for(2.0)
                n0, t0 = sum(len(a) for a in arrivals.values()), time.monotonic()
                recording.set()
                spin_for(max(5.0, seconds / 2))
                thr = (sum(len(a) for a in arrivals.values()) - n0) / (time.monotonic() - t0)
                recording.clear()
                results[mode]["throughput_fps"] = thr
                results[mode]["throughput_offered_fps"] = saturate_fps * n_cam
                progress(f"  {mode:10s}: throughput {thr:.1f} frames/s decoded in all with "
                         f"{saturate_fps * n_cam:.0f} offered")
                replay.set_rate(fps)
            if soak_s:
                results[mode]["rss_mb"] = rss
                replay.stop()
                spin_for(3.0)                   # the last frames through
                results[mode]["accounting"] = {n: {"published": replay.seq[n], **last[n],
                                                   "unaccounted": replay.seq[n] - sum(last[n].values())}
                                               for n in names}
            for k, p in dec.items():
                p.terminate()
                p.wait(10)
                del procs[k]
            spin_for(1.0)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for nd in (node, replay):
            if nd is not None:
                nd.destroy_node()
        ex.shutdown()
        rclpy.try_shutdown(context=ctx)
        tmp.cleanup()
    host = host_info()
    return {"host": host, "cpu": host["cpu_model"], "cpu_count": os.cpu_count(),
            "frame_size": list(size) if any(size) else "native",
            "cameras": n_cam, "requested_fps_per_camera": fps, "offered_fps": n_cam * fps,
            "sources": "host encoders (encoder_node per camera)" if host_encode else
            "pre-encoded latents replayed at the camera rate, as MCUs deliver them",
            "modes": results, "throughput_batched_over_per_camera":
            results["batched"]["throughput_fps"] / max(1e-9, results["per_camera"]["throughput_fps"])
            if "throughput_fps" in results.get("per_camera", {}) else None}


def _line(mode, r) -> str:
    per = ", ".join(f"{n} {c['fps']:.1f}/s p50 {c['latency_ms_p50']:.0f} p95 {c['latency_ms_p95']:.0f} ms"
                    + (f" (of {c['captured']} captured: {c['skipped_at_source']} skipped at the source, "
                       f"{c['skipped_by_controller']} by the controller, {c['dropped_stale']} stale)"
                       if c.get("captured") else "")
                    for n, c in r["cameras"].items())
    return f"  {mode:10s}: {r['total_fps']:.1f} frames/s in all; {per}"


def main(a) -> None:
    print(f"host: {describe(host_info())}")
    src = "host encoders" if a.host_encode else "pre-encoded latents replayed at the camera rate, as MCUs deliver them"
    size = (0, 0) if a.size == "native" else tuple(int(x) for x in a.size.lower().split("x"))
    if not a.host_encode and size != (224, 224):
        raise ValueError("--size with --cameras needs --host-encode (the replayed MCU latents are 224x224)")
    shown = "the clip's own size" if size == (0, 0) else f"{size[0]}x{size[1]}"
    print(f"{a.cameras} cameras at {a.fps:g} frames/s each into one receiver, {shown}; sources: {src}")
    soak_s = 60.0 * (a.soak_minutes or 0)
    if soak_s and a.host_encode:
        raise ValueError("--soak-minutes replays MCU latents: without --host-encode")
    res = run(a.cameras, a.fps, a.seconds, a.host_encode, soak_s=soak_s, size=size)
    if soak_s:
        r = res["modes"]["batched"]
        rss = r["rss_mb"]
        after = [x for x in rss if x["t"] >= 60.0] or rss
        growth = {k: max(x[k] for x in after) - after[0][k] for k in after[0] if k != "t"}
        r["rss_growth_after_first_minute_mb"] = growth
        for k, g in growth.items():
            print(f"  RSS {k:34s} {after[0][k]:7.1f} MB at {after[0]['t']:.0f} s, grew {g:+.2f} MB after")
        for n, acc in r["accounting"].items():
            print(f"  {n}: {acc['published']} frames published, {acc['decoded']} decoded, {acc['stale']} dropped "
                  f"stale, {acc['skipped']} skipped by the controller: {acc['unaccounted']} unaccounted")
    elif res["throughput_batched_over_per_camera"]:
        print(f"throughput, batched decoder / one decoder per camera: {res['throughput_batched_over_per_camera']:.2f}x")
    for mode, r in res["modes"].items():
        print(f"  {mode:10s} RSS " + ", ".join(f"{k} {v:.0f} MB" for k, v in r["rss_mb_per_process"].items()))
    for mode, r in res["modes"].items():
        for k, c in r["cpu_percent_per_process"].items():
            print(f"  {mode:10s} CPU {k:34s} {c:5.1f} % of one core")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=2))
        print(f"wrote {a.json}")
