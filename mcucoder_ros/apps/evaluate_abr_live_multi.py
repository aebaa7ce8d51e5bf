"""`mcucoder-ros evaluate-abr --cameras N --live`: several cameras on one emulated link
through the real ROS nodes, in real time.

One harness node per camera publishes its clip on <camera>/image_raw at --fps (the
cameras staggered evenly within a frame interval) and records what its camera's
decoded topic shows; N encoder_nodes (image_topic source, one per camera namespace),
one bitrate_controller_node with `cameras` (its `sharing` parameter: shared, equal or
independent), one link_emulator_node (one FIFO for all cameras) and one batched
decoder_node.  Metrics per camera as in simulated time (evaluate_abr_multi), from the
same abr_metrics.
"""
from __future__ import annotations

import time

from ..abr import STRATEGIES, abr_metrics
from ..codec.geometry import IMAGE_SIZE
from ..link_emulation import Trace
from .evaluate_abr_live import DISCOVERY_TIMEOUT_S, DRAIN_S, _make_harness, _NodeThreads
from .evaluate_abr_multi import CLIPS, SHARING, _print, plot_shares


def run_sharing(sharing: str, trace_path, frames_by_camera: list, weights: list[float], fps: float,
                duration: float | None = None, namespace: str = "/abr_eval") -> dict:
    from ..pipeline import CameraConfig, Pipeline
    trace = Trace.load(trace_path)
    T = duration or trace.duration
    names = [f"cam{i}" for i in range(len(weights))]
    harnesses = {}

    def harness(name, frames):
        def make(context):
            harnesses[name] = _make_harness(frames, fps, False, namespace, camera=name)(context)
            return harnesses[name]
        return make

    cams = [CameraConfig(n, "image_topic", "", w, 1) for n, w in zip(names, weights)]
    over = {"encoder_node": {"qos_reliability": "reliable"}, "bitrate_controller_node": {"sharing": sharing}}
    pipeline = Pipeline("image_topic", "", namespace=namespace, overrides=over, trace=trace_path, cameras=cams,
                        extra_nodes=[harness(n, f) for n, f in zip(names, frames_by_camera)])
    nodes = list(pipeline.nodes.values())
    for n in nodes:
        pipeline.executor.remove_node(n)
    link = pipeline.nodes["link_emulator_node"]
    threads = _NodeThreads(pipeline.context, nodes)
    try:
        t_wait = time.monotonic()
        while not all(h.matched() for h in harnesses.values()):
            time.sleep(0.05)
            if time.monotonic() - t_wait > DISCOVERY_TIMEOUT_S:
                raise RuntimeError(f"{sharing}: the ROS graph did not connect within {DISCOVERY_TIMEOUT_S:.0f} s")
        time.sleep(0.5)
        link.restart()
        for i, n in enumerate(names):           # staggered within one frame interval
            if i:
                time.sleep(1.0 / fps / len(names))
            harnesses[n].start()
        h0 = harnesses[names[0]]
        while h0.now() < T:
            time.sleep(0.02)
        for h in harnesses.values():
            h.stop()
        time.sleep(DRAIN_S)
    finally:
        threads.stop()
        decoder = pipeline.nodes["decoder_node"]
        batches = list(decoder.batch_sizes)
        pipeline.shutdown()
    per, sent_bits = {}, 0.0
    strat = STRATEGIES["ours"]
    for i, n in enumerate(names):
        recs = harnesses[n].records()
        m = abr_metrics(strat, recs, trace, T, 1.0 / fps)
        sent = [r for r in recs if r.level > 0]
        sent_bits += sum(r.bits for r in sent)
        m.update(weight=weights[i], clip=CLIPS[i % len(CLIPS)], frames_sent=len(sent),
                 mean_k=sum(r.level for r in sent) / max(1, len(sent)),
                 on_time_sent=sum(r.on_time for r in sent) / max(1, len(sent)), sent_fps=len(sent) / T)
        m["series"]["share_bps"] = harnesses[n].estimate["target_bps"]
        per[n] = m
    wsum = sum(weights)
    return {"cameras": per, "decoder_mean_batch": sum(batches) / max(1, len(batches)),
            "total": {"on_time_weighted": sum(per[n]["on_time_ratio"] * w for n, w in zip(names, weights)) / wsum,
                      "on_time_min": min(m["on_time_ratio"] for m in per.values()),
                      "on_time_sent_min": min(m["on_time_sent"] for m in per.values()),
                      "ms_ssim_weighted": sum(per[n]["mean_ms_ssim"] * w for n, w in zip(names, weights)) / wsum,
                      "utilization": sent_bits / max(1.0, trace.available_bits(0.0, T)),
                      "stalls": sum(m["stall_count"] for m in per.values())}}


def evaluate_cameras_live(trace_path, n_cam: int, fps: float = 10.0, max_frames: int = 30, sharing=None,
                          front_weight: float = 2.0, duration: float | None = None, progress: bool = True) -> dict:
    from tqdm import tqdm

    from ..evaluation import collect_frames
    from ..resources import data_path
    trace = Trace.load(trace_path)
    clips = [collect_frames([data_path(f"clips/{c}.mp4")], max_frames) for c in CLIPS]
    # camera i: clip i mod 2, from 7 x i frames in (as in simulated time)
    frames = []
    for i in range(n_cam):
        fr = [f for _, f in clips[i % len(clips)]]
        frames.append(fr[(7 * i) % len(fr):] + fr[:(7 * i) % len(fr)])
    weights = [front_weight] + [1.0] * (n_cam - 1)
    out = {"mode": "live", "trace": {"name": trace.name, "path": str(trace_path), "duration_s": trace.duration,
                                     "points": [p.__dict__ for p in trace.points]},
           "fps": fps, "frame_size": [IMAGE_SIZE, IMAGE_SIZE], "cameras": n_cam, "weights": weights,
           "clips": [CLIPS[i % len(CLIPS)] for i in range(n_cam)], "sharing": {}}
    for s in tqdm(list(sharing or SHARING), desc=f"live runs ({duration or trace.duration:.0f} s each)",
                  unit="strategy", disable=not progress):
        out["sharing"][s] = run_sharing(s, trace_path, frames, weights, fps, duration)
    return out


def main(a) -> None:
    from pathlib import Path

    from ..evaluation import write_json
    results = []
    for trace_path in a.trace:
        res = evaluate_cameras_live(trace_path, a.cameras, a.fps, a.max_frames, a.sharing, a.front_weight,
                                    a.duration)
        _print(res)
        results.append(res)
        if a.plot:
            p = Path(a.plot)
            plot_shares(res, str(p if len(a.trace) == 1 else p.with_name(f"{p.stem}_{res['trace']['name']}{p.suffix}")))
    write_json(results[0] if len(results) == 1 else {"runs": results}, a.json)
    print(f"wrote {a.json}" + (f" and {a.plot}" if a.plot else ""))
