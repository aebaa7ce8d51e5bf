"""`mcucoder-ros bench-two-hosts`: robot and base station in two network namespaces,
through a real bottleneck that follows a link trace.

    robot netns: mcucoder-ros pipeline --split robot   (video source, controller, network sender)
         veth 192.0.2.1 --tbf (rate from the trace, `tc qdisc change`)--> veth 192.0.2.2
    base netns:  mcucoder-ros pipeline --split base    (network receiver, decoder)

Nothing else carries the link's state: the controller sees only the base's delivery
reports.  Each half records what it saw of every frame (--record); the two records are
joined by capture stamp (the namespaces share one clock).  Per run: every frame shown,
skipped by the controller (reported in bitrate_status), dropped stale by the decoder
(reported in receiver_report) or unaccounted; on time (the whole frame at the base
within one frame interval + 50 ms of capture, the live evaluation's rule) over frames
sent and over all; latency capture -> shown (p50, p95); the longest gap between shown
frames, overall and in the 5 s after each step down; link use per trace segment: the
stream's bytes (bitstream) and the bottleneck's own (tc: DDS, UDP and IP headers
included) over what the rate allowed.  Needs root (ip netns); see mcucoder_ros/netns.py.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np

from ..abr import STRATEGIES, Record, abr_metrics
from ..link_emulation import Trace, TracePoint
from ..netns import TraceFollower, TwoHosts, available, dds_environment, loss_available
from ..pipeline import NETWORK_DEADLINE_SLACK_S

DEMO_STEPS = [(0.0, 2_000_000.0), (4.0, 200_000.0), (12.0, 400_000.0)]   # the demo's steps, longer segments
ON_TIME_SLACK_S = 0.05
START_TIMEOUT_S = 60.0


def demo_trace(duration: float = 20.0) -> Trace:
    pts = [TracePoint(t, bw) for t, bw in DEMO_STEPS if t < duration]
    return Trace(pts + [TracePoint(duration, pts[-1].bandwidth_bps)], "demo_steps")


def _cli() -> list[str]:
    """The installed `mcucoder-ros` beside this Python (so a checkout's work in progress in
    the current directory is not what runs), else the module."""
    exe = os.path.join(os.path.dirname(sys.executable), "mcucoder-ros")
    return [exe] if os.access(exe, os.X_OK) else [sys.executable, "-m", "mcucoder_ros.ros_cli"]


def run_once(trace: Trace, *, reliability: str = "best_effort", clock_offset: float = 0.0, fps: float = 10.0,
             deadline_slack: float = NETWORK_DEADLINE_SLACK_S,
             width: int = 224, height: int = 224, clip: str | None = None, domain_id: int = 87,
             workdir: str = "out/two_hosts", queue_s: float = 0.5, tag: str = "run", params: str | None = None) -> dict:
    """One run of the trace through two namespaces; returns its figures."""
    from .. import resources
    os.makedirs(workdir, exist_ok=True)
    clip = clip or str(resources.data_path("clips/traffic.mp4"))
    T = trace.duration
    rec = {s: os.path.abspath(os.path.join(workdir, f"{tag}_{s}.json")) for s in ("robot", "base")}
    logs = {s: open(os.path.join(workdir, f"{tag}_{s}.log"), "w") for s in ("robot", "base")}
    env = {**os.environ, **dds_environment(domain_id), "PYTHONUNBUFFERED": "1"}
    common = ["--network-reliability", reliability] + (["--params", params] if params else [])
    procs = {}
    with TwoHosts(f"mcr{os.getpid() % 10000}{tag[:2]}", queue_s=queue_s) as hosts:
        hosts.set_rate(trace.points[0].bandwidth_bps)
        try:
            procs["base"] = subprocess.Popen(
                hosts.exec_prefix("base") + _cli() + ["pipeline", "--split", "base", "--record", rec["base"],
                                                      "--clock-offset", str(clock_offset)] + common,
                env=env, stdout=logs["base"], stderr=subprocess.STDOUT)
            procs["robot"] = subprocess.Popen(
                hosts.exec_prefix("robot") + _cli() + [
                    "pipeline", "--split", "robot", "--source", "video", "--input", clip, "--loop",
                    "--width", str(width), "--height", str(height), "--fps", str(fps), "--record", rec["robot"],
                    "--deadline-slack", str(deadline_slack)]
                + common, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            started = threading.Event()

            def pump():        # the robot's output to its log; the trace starts with its first frame
                for line in procs["robot"].stdout:
                    logs["robot"].write(line)
                    if "has a subscriber: reading frames" in line:     # the whole chain is up
                        started.set()
            threading.Thread(target=pump, daemon=True).start()
            if not started.wait(START_TIMEOUT_S):
                raise RuntimeError(f"{tag}: the robot found no base station within {START_TIMEOUT_S:.0f} s "
                                   f"(logs in {workdir})")
            follower = TraceFollower(hosts, trace)
            t0 = time.time()
            follower.start()
            time.sleep(T)
            procs["robot"].send_signal(2)          # stop the camera; the frames in flight cross
            procs["robot"].wait(timeout=30)
            stats_end = follower.stop()
            time.sleep(0.5)
            procs["base"].send_signal(2)
            procs["base"].wait(timeout=30)
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for f in logs.values():
                f.close()
    robot, base = (json.load(open(rec[s])) for s in ("robot", "base"))
    res = figures(trace, robot, base, t0, fps, deadline_slack)
    res["link_steps"] = follower.steps + [{"t": T, "stats": stats_end}]
    res["wire_use"] = _wire_use(trace, res["link_steps"])
    ws = res["wire_use"]
    cap = sum(w["rate_bps"] * (w["t1"] - w["t0"]) for w in ws)
    res["wire_use_overall"] = sum(w["use"] * w["rate_bps"] * (w["t1"] - w["t0"]) for w in ws) / cap if cap else 0.0
    res.update({"reliability": reliability, "clock_offset_s": clock_offset, "size": [width, height]})
    return res


def figures(trace: Trace, robot: dict, base: dict, t0: float, fps: float,
            deadline_slack: float = ON_TIME_SLACK_S) -> dict:
    """On time: arrived by the deadline the robot's controller planned for (one interval
    + its deadline slack after capture); the share by interval + 50 ms is given beside."""
    interval = 1.0 / fps
    T = trace.duration
    status = {f"{f['stamp']:.9f}": f for f in robot["frames"]}
    recs, lat, sent_frames, on_sent, on_sent_50 = [], [], 0, 0, 0
    est = {"t": [], "estimate_bps": []}
    for key, f in sorted(status.items(), key=lambda kv: kv[1]["stamp"]):
        t = f["stamp"] - t0
        shown = base["shown"].get(key)
        arrived = base["arrived"].get(key)
        on_time = arrived is not None and arrived[0] <= f["stamp"] + interval + deadline_slack
        if f["channels"] > 0:
            sent_frames += 1
            on_sent += on_time
            on_sent_50 += arrived is not None and arrived[0] <= f["stamp"] + interval + ON_TIME_SLACK_S
        if shown is not None:
            lat.append(shown - f["stamp"])
        bits = robot["sent"].get(key, 0) * 8
        recs.append(Record(t, f["channels"], bits, (shown - t0) if shown else math.inf, on_time, 0.0))
        est["t"].append(f["t"] - t0)
        est["estimate_bps"].append(f["estimate_bps"])
    m = abr_metrics(STRATEGIES["ours_no_link_quality"], recs, trace, T, interval)
    m.pop("mean_ms_ssim")
    m["series"].pop("ms_ssim")
    m["series"]["estimate"] = est
    dec, ctrl = base["counters"].get("decoder_node", {}), robot["counters"].get("bitrate_controller_node", {})
    enc = robot["counters"].get("encoder_node", {})
    skipped = sum(1 for f in status.values() if f["channels"] == 0)
    shown_n = sum(1 for k in status if k in base["shown"])
    stale = int(dec.get("dropped_stale", 0))
    shown_t = sorted(v - t0 for v in base["shown"].values())
    gaps = np.diff(shown_t) if len(shown_t) > 1 else np.array([T])
    downs = [b.t for a, b in zip(trace.points, trace.points[1:]) if b.bandwidth_bps < a.bandwidth_bps]
    after_down = []
    for td in downs:
        ts = [t for t in shown_t if td - 1.0 <= t <= td + 5.0]
        after_down.append(float(max(np.diff(ts))) if len(ts) > 1 else 5.0)
    m.update({
        "frames_encoded": int(enc.get("frames", 0)), "frames_seen_by_controller": len(status),
        "frames_shown": shown_n, "frames_skipped": skipped, "frames_dropped_stale": stale,
        "frames_unaccounted": len(status) - shown_n - skipped - stale,
        "frames_sent": sent_frames, "on_time_of_sent": on_sent / max(1, sent_frames),
        "deadline_slack_s": deadline_slack, "on_time_of_sent_50ms": on_sent_50 / max(1, sent_frames),
        "latency_ms_p50": float(np.percentile(lat, 50) * 1000) if lat else math.nan,
        "latency_ms_p95": float(np.percentile(lat, 95) * 1000) if lat else math.nan,
        "max_gap_s": float(gaps.max()) if len(gaps) else T,
        "max_gap_after_step_down_s": after_down,
        "segments": _segments(trace, recs, robot, t0),
        "controller": ctrl, "receiver": base["counters"].get("network_receiver_node", {}), "decoder": dec,
    })
    return m


def _segments(trace: Trace, recs: list[Record], robot: dict, t0: float, settle_s: float = 1.0) -> list[dict]:
    """Per trace segment (after settle_s): the stream's bits over what the link allowed, mean k."""
    out = []
    for a, b in zip(trace.points, trace.points[1:]):
        lo, hi = a.t + settle_s, b.t
        if hi <= lo:
            continue
        rs = [r for r in recs if lo <= r.t < hi]
        bits = sum(r.bits for r in rs)
        ks = [r.level for r in rs if r.level > 0]
        out.append({"t0": a.t, "t1": b.t, "rate_bps": a.bandwidth_bps, "use": bits / (a.bandwidth_bps * (hi - lo)),
                    "mean_k": float(np.mean(ks)) if ks else 0.0, "max_k_share": ks.count(12) / max(1, len(ks)),
                    "link_limited": bool(ks) and ks.count(12) / len(ks) < 0.5})
    return out


def _wire_use(trace: Trace, steps: list[dict]) -> list[dict]:
    """The bottleneck's bytes per segment (headers included) over what its rate allowed."""
    out = []
    for a, b in zip(steps, steps[1:]):
        if "bytes" in a.get("stats", {}) and "bytes" in b.get("stats", {}) and b["t"] > a["t"] and a["rate_bps"] > 0:
            rate = a["rate_bps"]
            out.append({"t0": a["t"], "t1": b["t"], "rate_bps": rate,
                        "use": (b["stats"]["bytes"] - a["stats"]["bytes"]) * 8 / (rate * (b["t"] - a["t"])),
                        "dropped_packets": b["stats"].get("dropped", 0) - a["stats"].get("dropped", 0)})
    return out


def plot(res: dict, path: str) -> None:
    """evaluate-abr's layout: per run, link and sent bitrate (with the estimate) above, k and late frames below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["runs"])
    fig, axes = plt.subplots(2, len(names), figsize=(3.8 * len(names), 5.5), sharex=True, squeeze=False)
    pts = res["trace"]["points"]
    for j, name in enumerate(names):
        m = res["runs"][name]
        s = m["series"]
        a, b = axes[0][j], axes[1][j]
        a.step([p["t"] for p in pts], [p["bandwidth_bps"] / 1000 for p in pts], where="post", label="link (tbf)")
        a.plot(s["t"], [v / 1000 for v in s["sent_bps"]], lw=0.8, label="sent")
        e = s["estimate"]
        a.plot(e["t"], [v / 1000 if v == v else np.nan for v in e["estimate_bps"]], lw=0.8, label="estimate")
        a.set_yscale("log")
        a.set_title(name, fontsize=9)
        a.set_ylabel("kbit/s")
        a.legend(fontsize=7)
        b.plot(s["t"], s["level"], "g.", ms=3)
        late = [t for t, ok, k in zip(s["t"], s["on_time"], s["level"]) if not ok and k > 0]
        b.plot(late, [0.3] * len(late), "r|", ms=8, label="late")
        b.set_ylim(0, 12.5)
        b.set_ylabel("k (0: skipped)")
        b.set_xlabel("time (s)")
        b.set_title(f"on time {m['on_time_of_sent']:.2f}, p95 {m['latency_ms_p95']:.0f} ms", fontsize=8)
    fig.suptitle(f"two namespaces, tbf bottleneck: trace {res['trace']['name']}, {res['fps']:.0f} frames/s "
                 f"({res['size'][0]}x{res['size'][1]})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(a) -> dict:
    ok, why = available()
    if not ok:
        raise RuntimeError(f"two-host benchmark not possible here: {why}")
    if a.trace and any(p.loss > 0 for p in Trace.load(a.trace).points):
        ok, why = loss_available()
        if not ok:
            raise RuntimeError(f"the trace {a.trace} has packet loss, which cannot be made here: {why}")
    trace = Trace.load(a.trace) if a.trace else demo_trace(a.duration or 20.0)
    if a.duration and a.trace:
        trace = Trace([p for p in trace.points if p.t < a.duration] + [TracePoint(a.duration, trace.at(a.duration)
                                                                                   .bandwidth_bps)], trace.name)
    load = os.getloadavg()
    out = {"trace": {"name": trace.name, "points": [p.__dict__ for p in trace.points]}, "fps": a.fps,
           "size": [a.width, a.height], "load_before": load, "cpu": _cpu(), "runs": {}}
    for rel in a.reliability:
        for off in a.clock_offset:
            name = rel + (f" {off:+g} s" if off else "")
            print(f"run {name} ({trace.duration:.0f} s) ...", flush=True)
            out["runs"][name] = run_once(trace, reliability=rel, clock_offset=off, fps=a.fps,
                                         deadline_slack=a.deadline_slack, width=a.width,
                                         height=a.height, clip=a.input, workdir=a.workdir,
                                         tag=f"{rel[:2]}{'p' if off > 0 else 'm' if off < 0 else '0'}")
            _print(name, out["runs"][name])
    out["load_after"] = os.getloadavg()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    if a.plot:
        plot(out, a.plot)
    return out


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return ""


def _print(name: str, m: dict) -> None:
    gaps = m["max_gap_after_step_down_s"]
    downs = ", ".join(f"{g:.2f}" for g in gaps) if len(gaps) <= 4 else f"at most {max(gaps):.2f}"
    if len(m.get("wire_use", [])) <= 6:
        segs = ", ".join(f"{s['rate_bps'] / 1000:.0f}k: use {s['use']:.2f} k {s['mean_k']:.1f}" for s in m["segments"])
        wire = ", ".join(f"{w['rate_bps'] / 1000:.0f}k {w['use']:.2f}" for w in m.get("wire_use", []))
    else:       # a trace of many steps: the whole run
        segs = f"use {m['utilization']:.2f}"
        wire = f"{m.get('wire_use_overall', 0.0):.2f}"
    print(f"  {name}: shown {m['frames_shown']}/{m['frames_seen_by_controller']}, skipped {m['frames_skipped']}, "
          f"stale {m['frames_dropped_stale']}, unaccounted {m['frames_unaccounted']}; "
          f"on time {m['on_time_of_sent']:.3f} of sent ({m['on_time_ratio']:.3f} of all; by interval + 50 ms "
          f"{m['on_time_of_sent_50ms']:.3f}); "
          f"latency p50 {m['latency_ms_p50']:.0f} ms, p95 "
          f"{m['latency_ms_p95']:.0f} ms; longest gap {m['max_gap_s']:.2f} s (after step downs {downs} s); "
          f"{segs}; the bottleneck's use, headers included: {wire}", flush=True)
