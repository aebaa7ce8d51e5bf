"""`mcucoder-ros evaluate-abr --live`: every strategy through the real ROS graph, in real time.

The simulated evaluation (evaluate_abr.py) runs the same controller and link code in simulated
time; this mode runs the nodes themselves over DDS, one strategy after the other, for
the whole trace:

  harness --image_raw--> encoder_node --latent--> bitrate_controller_node --latent_gated-->
      link_emulator_node --latent_link--> decoder_node --image_decoded--> harness

and for the JPEG baseline

  harness --image_raw--> jpeg ladder sender --compressed (sensor_msgs/CompressedImage)-->
      link_emulator_node (carry: compressed_image) --compressed_link--> harness (decodes)

The harness publishes the clip's frames at --fps with capture stamps, and measures on
the receive side: on time = the frame's first chunks left the emulated link within one
frame interval + 50 ms of capture; stalls = gaps over two frame intervals between shown
frames (`image_decoded`, or the decoded JPEG); MS-SSIM of every shown frame against its
source; utilisation = bits of the delivered frames over what the trace offered.
Metrics are computed by the same function as in the simulated mode.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")   # DDS stays on this machine

from ..abr import STRATEGIES, Record, abr_metrics, default_strategies  # noqa: E402
from ..codec.geometry import IMAGE_SIZE  # noqa: E402
from ..codec.metrics import ms_ssim  # noqa: E402
from ..control import JPEG_LADDER, JpegLadder  # noqa: E402
from ..link_emulation import Trace  # noqa: E402

DISCOVERY_TIMEOUT_S = 20.0
DRAIN_S = 1.5


def _key(stamp) -> tuple[int, int]:
    return stamp.sec, stamp.nanosec


def _make_harness(frames, fps, jpeg: bool, namespace: str, camera: str = ""):
    """camera: one camera of several (topics <camera>/image_raw, ...)."""
    pre = f"{camera}/" if camera else ""
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image

    from ..msg import BitrateStatus, LatentChannels
    from ..nodes.common import message_bytes

    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

    class Harness(Node):
        """Publishes the source frames and records what the receive side shows."""

        def __init__(self, context):
            super().__init__(f"abr_harness_{camera}" if camera else "abr_harness", namespace=namespace,
                             context=context)
            self.interval = 1.0 / fps
            self.pub = self.create_publisher(Image, pre + "image_raw", reliable)
            self.captured = []            # (stamp key, t, frame index)
            self.sent = {}                # stamp key -> (level, bytes)
            self.link_arrival = {}        # stamp key -> t of arrival with >= 1 chunk
            self.shown = {}               # stamp key -> (t, rgb)
            self.t0 = None
            self.timer = None
            self.levels = {}              # JPEG: stamp key -> quality (filled by the sender)
            if jpeg:
                self.create_subscription(CompressedImage, "compressed", self._on_jpeg_sent, reliable)
                self.create_subscription(CompressedImage, "compressed_link", self._on_jpeg_arrived,
                                         qos_profile_sensor_data)
            else:
                self.create_subscription(LatentChannels, pre + "latent_gated", self._on_sent,
                                         qos_profile_sensor_data)
                self.create_subscription(LatentChannels, pre + "latent_link", self._on_link, qos_profile_sensor_data)
                self.create_subscription(Image, pre + "image_decoded", self._on_decoded, reliable)
                self.create_subscription(BitrateStatus, pre + "bitrate_status", self._on_status, 10)
            self.estimate = {"t": [], "available_bps": [], "delivery_bps": [], "target_bps": []}
            self.scale_by_stamp = {}      # stamp key -> the picture scale its frame was coded at

        def now(self) -> float:
            return time.monotonic() - self.t0

        def start(self):
            self.t0 = time.monotonic()
            self._tick()
            self.timer = self.create_timer(self.interval, self._tick)

        def stop(self):
            if self.timer is not None:
                self.timer.cancel()

        def _tick(self):
            i = len(self.captured)
            fi = i % len(frames)
            h, w = frames[fi].shape[:2]
            m = Image(height=h, width=w, encoding="rgb8", step=w * 3, data=frames[fi].tobytes())
            m.header.stamp = self.get_clock().now().to_msg()
            m.header.frame_id = camera or "abr_eval"
            self.captured.append((_key(m.header.stamp), self.now(), fi))
            self.pub.publish(m)

        def _on_sent(self, m):
            self.sent[_key(m.header.stamp)] = (len(m.channel_indices), message_bytes(m))

        def _on_link(self, m):
            if len(m.channel_indices):
                self.link_arrival.setdefault(_key(m.header.stamp), self.now())

        def _on_status(self, m):
            self.scale_by_stamp[_key(m.header.stamp)] = max(1, int(m.frame_scale))
            if self.t0 is None:
                return
            for key, v in (("t", self.now()), ("available_bps", m.available_bps),
                           ("delivery_bps", m.delivery_estimate_bps), ("target_bps", m.target_bps)):
                self.estimate[key].append(float(v))

        def _on_decoded(self, m):
            rgb = np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.step)[:, :m.width * 3]
            self.shown[_key(m.header.stamp)] = (self.now(), rgb.reshape(m.height, m.width, 3).copy())

        def _on_jpeg_sent(self, m):
            self.sent[_key(m.header.stamp)] = (0, len(m.data))

        def _on_jpeg_arrived(self, m):
            import cv2
            k = _key(m.header.stamp)
            self.link_arrival.setdefault(k, self.now())
            bgr = cv2.imdecode(np.frombuffer(bytes(m.data), np.uint8), cv2.IMREAD_COLOR)
            if bgr is not None:
                self.shown[k] = (self.now(), np.ascontiguousarray(bgr[..., ::-1]))

        def scales(self) -> list[int]:
            """Per captured frame, the scale it was coded at (1, 2, 4), from bitrate_status."""
            return [self.scale_by_stamp.get(k, 1) for k, _, _ in self.captured]

        def records(self) -> list[Record]:
            recs = []
            for k, t, fi in self.captured:
                level, nbytes = self.sent.get(k, (0, 0))
                level = self.levels.get(k, level)
                arrival = self.link_arrival.get(k)
                shown = self.shown.get(k)
                q = ms_ssim(frames[fi], shown[1]) if shown and shown[1].shape == frames[fi].shape else 0.0
                recs.append(Record(t, level, nbytes * 8, shown[0] if shown else math.inf,
                                   arrival is not None and arrival <= t + self.interval + 0.05, q))
            return recs

        def matched(self) -> bool:
            ns = namespace.rstrip("/") + ("/" + camera if camera else "")
            if jpeg:
                need = {f"{ns}/image_raw": 1, f"{ns}/compressed": 2, f"{ns}/compressed_link": 1,
                        f"{ns}/delivery_report": 1}
            else:
                need = {f"{ns}/image_raw": 1, f"{ns}/latent": 1, f"{ns}/latent_gated": 2,
                        f"{ns}/latent_link": 2, f"{ns}/image_decoded": 1}
            return all(self.count_subscribers(t) >= n for t, n in need.items())

    return Harness


def _make_jpeg_sender(fps, namespace: str, harness):
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from ..codec.jpeg import jpeg_encode
    from ..msg import DeliveryReport
    from ..nodes.common import stamp_to_s

    class JpegLadderSender(Node):
        """The JPEG baseline's camera side: every frame at the ladder quality that fits."""

        def __init__(self, context):
            super().__init__("jpeg_ladder_sender", namespace=namespace, context=context)
            self.interval = 1.0 / fps
            self.ladder = JpegLadder(fps)
            reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self.pub = self.create_publisher(CompressedImage, "compressed", reliable)
            self.create_subscription(Image, "image_raw", self._on_image, reliable)
            self.create_subscription(DeliveryReport, "delivery_report", self._on_report, 10)

        def start(self):
            self.ladder.changed = self._now()

        def _now(self) -> float:
            return self.get_clock().now().nanoseconds * 1e-9

        def _on_image(self, m):
            rgb = np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width, 3)
            coded = {q: jpeg_encode(rgb, q) for q in JPEG_LADDER}
            q = self.ladder.choose(self._now(), {q: len(b) for q, b in coded.items()})
            harness.levels[_key(m.header.stamp)] = q
            self.pub.publish(CompressedImage(header=m.header, format="jpeg", data=coded[q]))

        def _on_report(self, r):
            if r.partial:
                return
            cap = stamp_to_s(r.header.stamp)
            late = self._now() > cap + self.interval + 0.05     # the report comes at delivery
            self.ladder.on_report(cap, stamp_to_s(r.link_start), stamp_to_s(r.link_end), late)

    return JpegLadderSender


class _NodeThreads:
    """Each node spun by its own executor in its own thread, as if in its own process
    (a decode must not hold up the link emulator's delivery timer); the codec work
    (onnxruntime, numpy) releases the GIL."""

    def __init__(self, context, nodes):
        import threading

        from ..nodes.common import make_executor
        self.context, self.stop_flag = context, threading.Event()
        self.executors = []
        for n in nodes:
            ex = make_executor(context)
            ex.add_node(n)
            self.executors.append(ex)
        self.threads = [threading.Thread(target=self._spin, args=(ex,), daemon=True) for ex in self.executors]
        for t in self.threads:
            t.start()

    def _spin(self, ex):
        while not self.stop_flag.is_set() and self.context.ok():
            ex.spin_once(timeout_sec=0.05)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=5)
        for ex in self.executors:
            ex.shutdown()


def run_strategy(name: str, trace_path, frames, fps: float, duration: float | None = None,
                 namespace: str = "/abr_eval") -> dict:
    """One strategy, live, for the trace's duration (or `duration` seconds)."""
    import rclpy
    from rclpy.parameter import Parameter

    strat = STRATEGIES[name]
    trace = Trace.load(trace_path)
    T = duration or trace.duration
    jpeg = strat.kind == "jpeg"
    Harness = _make_harness(frames, fps, jpeg, namespace)
    holder = {}

    def harness_node(context):
        holder["h"] = Harness(context)
        return holder["h"]

    pipeline = None
    if jpeg:
        from ..nodes.link_emulator_node import LinkEmulatorNode
        context = rclpy.Context()
        rclpy.init(context=context)
        h = harness_node(context)
        sender = _make_jpeg_sender(fps, namespace, h)(context)
        link = LinkEmulatorNode(namespace=namespace, context=context, parameter_overrides=[
            Parameter("trace", value=str(trace_path)), Parameter("carry", value="compressed_image"),
            Parameter("act_as_link_monitor", value=False)])
        nodes = [h, sender, link]
    else:
        from ..pipeline import Pipeline
        over = {"encoder_node": {"qos_reliability": "reliable", "frame_id": "abr_eval"},
                # channels only unless the strategy is the resolution ladder (as simulated)
                "bitrate_controller_node": {"ladder": strat.ladder}}
        if strat.kind == "fixed":
            # every frame at k, late or not, as in simulated time (no skipping)
            over["bitrate_controller_node"].update(min_channels=strat.k, max_channels=strat.k, skip_late_s=10.0)
            over["encoder_node"]["channel_budget"] = strat.k
        if strat.video:                   # acknowledgements flow back through the controller
            over["encoder_node"]["video_mode"] = True
        pipeline = Pipeline("image_topic", "", namespace=namespace, overrides=over, trace=trace_path,
                            link_monitor=strat.link_monitor, extra_nodes=[harness_node])
        context = pipeline.context
        nodes = list(pipeline.nodes.values())
        for n in nodes:
            pipeline.executor.remove_node(n)
        h, link, sender = holder["h"], pipeline.nodes["link_emulator_node"], None
    threads = _NodeThreads(context, nodes)
    try:
        t_wait = time.monotonic()
        while not h.matched():
            time.sleep(0.05)
            if time.monotonic() - t_wait > DISCOVERY_TIMEOUT_S:
                raise RuntimeError(f"{name}: the ROS graph did not connect within {DISCOVERY_TIMEOUT_S:.0f} s")
        time.sleep(0.5)
        link.restart()
        if sender:
            sender.start()
        h.start()
        while h.now() < T:
            time.sleep(0.02)
        h.stop()
        time.sleep(DRAIN_S)
    finally:
        threads.stop()
        if pipeline:
            pipeline.shutdown()
        else:
            for n in nodes:
                n.destroy_node()
            rclpy.try_shutdown(context=context)
    recs = h.records()
    res = abr_metrics(strat, recs, trace, T, 1.0 / fps, h.scales() if strat.ladder else None)
    res["frames_shown"] = len(h.shown)
    if not jpeg:
        res["series"]["estimate"] = h.estimate
    return res


def evaluate_live(trace_path, clip, fps=10.0, max_frames=30, strategies=None, duration=None,
                  progress=True, size=(IMAGE_SIZE, IMAGE_SIZE)) -> dict:
    from tqdm import tqdm

    from ..evaluation import collect_frames
    names = list(strategies or default_strategies(size, live=True))
    for name in names:              # before minutes of live runs
        if STRATEGIES[name].kind == "jpeg" and STRATEGIES[name].ladder:
            raise SystemExit(f"{name}: the JPEG size ladder is evaluated in simulated time only (leave out --live)")
    trace = Trace.load(trace_path)
    frames = [f for _, f in collect_frames([clip], max_frames, tuple(size))]
    out = {"mode": "live", "trace": {"name": trace.name, "path": str(trace_path), "duration_s": trace.duration,
                                     "points": [p.__dict__ for p in trace.points]},
           "fps": fps, "frame_size": list(size), "clip": str(clip), "frames_in_bank": len(frames),
           "strategies": {}}
    for name in tqdm(names, desc=f"live runs ({duration or trace.duration:.0f} s each)", unit="strategy",
                     disable=not progress):
        out["strategies"][name] = run_strategy(name, trace_path, frames, fps, duration)
    return out
