"""decoder_node: LatentChannels -> sensor_msgs/Image (rgb8) through onnxruntime.

image_decoded has the picture's own size (the camera's, carried by the frame), or the
size `output_width` / `output_height` ask for.  Missing channels are zero-filled.
Malformed messages are logged, counted and dropped.  The output keeps the capture stamp and frame_id of the source.

Latency stays bounded when frames come faster than they can be decoded: the
subscription only keeps the newest frame, a worker thread decodes whatever is newest
when it is free, and a frame replaced before its turn is dropped and counted
(`dropped_stale`).  After each frame a ReceiverReport tells the bitrate controller
how many frames per second this receiver can show, so that the link does not carry
frames that would be dropped here.

Video mode (bitstream v2): the node keeps the symbols it decoded for the last 255
frames; an inter chunk decodes against its reference from there, or, when that is
missing, the channel counts as lost (zero-filled, `lost_references`) and a refresh is
requested (at most once a second).  The ReceiverReport's `channels_decoded` is the
acknowledgement the camera predicts from.
"""
from __future__ import annotations

import threading
import time
from array import array
from collections import deque

import numpy as np
from rclpy.qos import HistoryPolicy, QoSProfile
from sensor_msgs.msg import CameraInfo, Image

from ..camera_info import load_calibration, scale_calibration
from ..codec.bitstream import BitstreamError
from ..codec.entropy import EntropyError
from ..codec.images import fit_size, resize_to, upscale
from ..codec.inter import ReceivedReferences
from ..codec.model import PROVIDERS, DecoderModel, ModelError
from ..msg import LatentChannels, ReceiverReport
from .common import (
    QOS_PARAMS,
    RELIABILITY,
    WAIT_PARAM,
    McuNode,
    ParamSpec,
    RateMeter,
    msg_to_frame,
    rgb_to_image,
    run_node,
)


class DecoderNode(McuNode):
    PARAMS = {
        "output_width": ParamSpec(0, "resize decoded frames to this width (0: the picture's own size; with "
                                  "output_height 0, the height follows the aspect ratio)", range=(0, 4096)),
        "output_height": ParamSpec(0, "resize decoded frames to this height (0: the picture's own size; with "
                                   "output_width 0, the width follows the aspect ratio)", range=(0, 4096)),
        "threads": ParamSpec(2, "onnxruntime threads (0: all cores)", range=(0, 64), read_only=True),
        "decoder": ParamSpec("", "decoder of the model folder, decoder_<name>.onnx: fast_int8, fast, ... "
                             "(empty: the model's preferred one)", read_only=True),
        "providers": ParamSpec(["cpu"], "onnxruntime execution providers in order of preference: "
                               + ", ".join(PROVIDERS) + " (unavailable ones fall back to cpu with a warning)",
                               read_only=True),
        "model_dir": ParamSpec("", "model folder (empty: the shipped default model)", read_only=True),
        "camera_info_url": ParamSpec("", "calibration YAML (camera_calibration's format; file:// URL or path) of "
                                     "the camera: published on camera_info, as it is when image_decoded has the "
                                     "calibrated size, scaled to image_decoded's size otherwise (empty: none)",
                                     read_only=True),
        "output_reliability": ParamSpec("reliable", "QoS reliability of image_decoded (rviz subscribes reliable)",
                                        choices=["best_effort", "reliable"], read_only=True),
        "output_depth": ParamSpec(10, "QoS depth of image_decoded", range=(1, 100), read_only=True),
        "cameras": ParamSpec([""], "several cameras, one decoder: <name>/latent_gated in, <name>/image_decoded "
                             "and <name>/camera_info out; the newest frame of each camera waiting is decoded "
                             "together, one run per core (empty: one camera, unprefixed topics)", read_only=True),
        "camera_info_urls": ParamSpec([""], "several cameras: camera_info_url of each camera in `cameras`",
                                      read_only=True),
        "input_topic": ParamSpec("latent_gated", "the stream to decode (latent_link behind an emulated link)",
                                 read_only=True),
        "drop_stale": ParamSpec(True, "live: a waiting frame with a newer one behind it is dropped once it has "
                                "waited stale_after_ms (at most 8 waiting); false: every frame in order, for "
                                "replays (at most 1000 waiting)", read_only=True),
        "max_batch": ParamSpec(1, "several cameras: frames decoded together at most, the longest waiting "
                               "first (1: one at a time, on every core; 0: one of every camera waiting, side by "
                               "side, one per core). Measured on 2 cores (docs/ros.md): one at a time showed as "
                               "many frames or more, with p95 latency 30-70 ms lower",
                               range=(0, 64), read_only=True),
        "stale_after_ms": ParamSpec(100.0, "drop_stale: how long a frame may wait behind a newer one before it is "
                                    "dropped (a short hiccup of the computer then costs no frame)",
                                    range=(0.0, 10000.0)),
        **WAIT_PARAM,
        **QOS_PARAMS,
    }

    def __init__(self, **kwargs):
        super().__init__("decoder_node", **kwargs)
        self.model = DecoderModel.load(self.p["model_dir"] or None, self.p["decoder"] or None, self.p["threads"],
                                       list(self.p["providers"]))
        if self.model.provider_note:
            self.get_logger().warning(self.model.provider_note)
        self.get_logger().info(f"decoder {self.model.name} on {', '.join(self.model.providers)} "
                               f"(graph: {self.model.graph})")
        self.out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.p["output_depth"],
                                  reliability=RELIABILITY[self.p["output_reliability"]])
        names = [c for c in self.p["cameras"] if c]          # [""]: ROS has no typed empty list
        if names:
            urls = list(self.p["camera_info_urls"])
            if urls == [""]:
                urls = [""] * len(names)
            if len(urls) != len(names):
                raise ValueError(f"camera_info_urls has {len(urls)} values for {len(names)} cameras")
        else:
            names, urls = [""], [self.p["camera_info_url"]]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.rate = RateMeter()
        self.latency_ms: list[float] = []
        self.decode_ms = 0.0
        self.decode_ms_avg = 0.0
        self._recent_ms: deque[float] = deque(maxlen=25)
        self._recent_fps: deque[float] = deque(maxlen=25)     # frames / s of each recent batch
        self.batch_sizes: list[int] = []
        self.last_error = ""
        self.counters["dropped_stale"] = 0
        self.counters["lost_references"] = 0
        self.lanes = [_Lane(self, n, u) for n, u in zip(names, urls)]
        # onnxruntime's first run of a size allocates and plans, which would otherwise make
        # the first frame slow and its followers stale: 224x224 (the firmware's) now, any
        # other size when its first frame comes
        self.model.warm_up(len(self.lanes))
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="decoder_node.decode", daemon=True)
        self._worker.start()

    def _work(self):
        """Decode thread: the frames waiting (the newest of each camera), decoded together."""
        while not self._stop.is_set():
            if not self._wake.wait(timeout=0.1):
                continue
            with self._lock:
                for ln in self.lanes:
                    ln.drop_stale()
                waiting = sorted((ln for ln in self.lanes if ln.pending), key=lambda ln: ln.pending[0][0])
                if self.p["max_batch"]:
                    waiting = waiting[:self.p["max_batch"]]
                batch = [(ln, ln.pending.popleft()[1]) for ln in waiting]
                if not any(ln.pending for ln in self.lanes):
                    self._wake.clear()
            if batch:
                try:
                    self._decode(batch)
                except Exception as e:   # noqa: BLE001 - the node must survive any one frame
                    self.count("errors")
                    self.last_error = f"{type(e).__name__}: {e}"
                    self.get_logger().error(f"frames {[m.sequence for _, m in batch]}: {self.last_error}",
                                            throttle_duration_sec=2.0)

    def _decode(self, batch):
        t0 = time.perf_counter()
        good, latents = [], []
        for lane, msg in batch:
            try:
                frame = msg_to_frame(msg)
                latents.append(self.model.latent(frame, lane.references))
                good.append((lane, msg, frame))
            except (BitstreamError, EntropyError, ModelError, ValueError) as e:
                self.count("malformed")
                lane.counters["malformed"] += 1
                self.last_error = str(e)
                self.get_logger().warning(f"dropped frame {msg.sequence}{lane.of}: {e}", throttle_duration_sec=2.0)
        if not good:
            return
        tw = time.perf_counter()
        for size in {f.coded_size for _, _, f in good}:
            self.model.warm_up(len(self.lanes), size)          # once per size
        warm_s = time.perf_counter() - tw
        images = self.model.reconstruct_frames(latents, [f.coded_size for _, _, f in good])
        # a frame coded at a lower rung of the ladder is shown at the camera's size
        images = [upscale(rgb, f.size) for (_, _, f), rgb in zip(good, images)]
        self.decode_ms = (time.perf_counter() - t0 - warm_s) * 1000
        # the capacity reported upstream (max_fps) is the median of the recent decodes: one
        # slow decode (a new size's session, another process taking the core) must not make
        # the cameras skip frames the receiver could have shown
        self._recent_ms.append(self.decode_ms)
        self._recent_fps.append(len(good) * 1000.0 / max(self.decode_ms, 1e-3))
        self.decode_ms_avg = float(np.median(self._recent_ms))
        self.batch_sizes = (self.batch_sizes + [len(good)])[-200:]
        now = self.get_clock().now().nanoseconds * 1e-9
        for (lane, msg, frame), rgb in zip(good, images):
            lane.publish(msg, frame, rgb, now)

    @property
    def max_fps(self) -> float:
        """Frames/s this receiver can decode and show, all its cameras together: decodes
        back to back, at the median frames/s of the recent batches."""
        if len(self._recent_fps) < 5:
            return 0.0          # unknown until a few frames are decoded: the first ones are slower
        return float(np.median(self._recent_fps))

    def camera_share_fps(self) -> float:
        """Each camera's part of max_fps: split evenly among the cameras that sent a frame
        in the last 2 s (a controller of several cameras sums the parts and splits the
        whole by its weights and the cameras' own rates)."""
        now = time.monotonic()
        active = sum(1 for ln in self.lanes if now - ln.last_arrival <= 2.0)
        return self.max_fps / max(1, active)

    def camera_counters(self) -> dict[str, dict]:
        return {ln.name: dict(ln.counters) for ln in self.lanes}

    def camera_timing(self) -> dict[str, dict]:
        """Per camera: latency p50/p95 (capture -> shown, ms) and frames/s shown, over the
        last 3,000 frames."""
        out = {}
        for ln in self.lanes:
            lat, at = list(ln.latency_ms), list(ln.shown_at)
            fps = (len(at) - 1) / (at[-1] - at[0]) if len(at) > 1 and at[-1] > at[0] else 0.0
            out[ln.name] = {"latency_ms_p50": float(np.percentile(lat, 50)) if lat else float("nan"),
                            "latency_ms_p95": float(np.percentile(lat, 95)) if lat else float("nan"),
                            "fps": fps}
        return out

    def destroy_node(self):
        if hasattr(self, "_worker"):         # absent when __init__ failed (no model, bad parameter)
            self._stop.set()
            self._wake.set()
            if self._worker.is_alive() and threading.current_thread() is not self._worker:
                self._worker.join(timeout=5.0)
            # the last pictures reach reliable subscribers (rviz, a recorder) before the
            # publisher goes: at most a second
            from rclpy.duration import Duration
            for lane in self.lanes:
                try:
                    lane.pub.wait_for_all_acked(Duration(seconds=1.0))
                except Exception:   # noqa: BLE001 - shutting down: never fail here
                    pass
        return super().destroy_node()

    def diagnostics(self):
        lat = np.percentile(self.latency_ms, [50, 95]) if self.latency_ms else [float("nan")] * 2
        level = 1 if self.counters.get("malformed") or self.counters.get("errors") else 0
        values = {"fps": self.rate.rate, "decode_ms": self.decode_ms, "max_fps": self.max_fps,
                  "latency_p50_ms": float(lat[0]), "latency_p95_ms": float(lat[1]), "decoder": self.model.name,
                  "providers": ",".join(self.model.providers), "graph": self.model.graph}
        if len(self.lanes) > 1:
            values["mean_batch"] = float(np.mean(self.batch_sizes)) if self.batch_sizes else 0.0
            for ln in self.lanes:
                values.update({f"{ln.name}.{k}": v for k, v in ln.counters.items()})
        return level, self.last_error or "running", values


def main(args=None):
    run_node(DecoderNode, args)


class _Lane:
    """One camera's topics and state in the decoder (topics prefixed by its name; the
    single camera's lane has today's names)."""

    def __init__(self, node: DecoderNode, name: str, camera_info_url: str):
        self.node, self.name = node, name
        self.of = f" of camera {name}" if name else ""
        pre = f"{name}/" if name else ""
        self.counters = {"frames": 0, "dropped_stale": 0, "malformed": 0}
        self.last_arrival = -1e9
        self.latency_ms: deque[float] = deque(maxlen=3000)    # capture -> shown, this camera's
        self.shown_at: deque[float] = deque(maxlen=3000)
        self.pub = node.create_publisher(Image, pre + "image_decoded", node.out_qos)
        self.report_pub = node.create_publisher(ReceiverReport, pre + "receiver_report", 10)
        self.calibration = None
        if camera_info_url:
            self.calibration = load_calibration(camera_info_url)
            self.info_pub = node.create_publisher(CameraInfo, pre + "camera_info", node.out_qos)
        else:
            node.get_logger().info(f"camera_info_url not set{' for camera ' + name if name else ''}: no camera_info "
                                   "is published")
        self.references = ReceivedReferences()
        self._last_refresh_request = -1e9
        self._info_cache = None
        # (arrival, message); live: a few, dropped by age behind newer ones (drop_stale)
        self.pending: deque[tuple[float, LatentChannels]] = deque(maxlen=8 if node.p["drop_stale"] else 1000)
        # like every relay: frames are taken in once image_decoded has a subscriber (a viewer that
        # joins late in DDS discovery would otherwise miss the first second of a clip)
        node.when_subscribed(self.pub, lambda: node.create_subscription(
            LatentChannels, pre + node.p["input_topic"], self._on_latent, node.qos()), "decoding frames")

    def _on_latent(self, msg: LatentChannels):
        """Executor thread: queue the frame; the worker decodes the waiting ones when free."""
        node = self.node
        self.last_arrival = time.monotonic()
        with node._lock:
            if len(self.pending) == self.pending.maxlen:
                self._count_stale()              # the oldest waiting frame is replaced
            self.pending.append((self.last_arrival, msg))
        node._wake.set()

    def drop_stale(self) -> None:
        """Worker, under the lock: drop waiting frames that have a newer one behind them
        and have waited stale_after_ms (live: showing them would only delay the newer)."""
        node = self.node
        if not node.p["drop_stale"]:
            return
        limit = node.p["stale_after_ms"] / 1000.0
        now = time.monotonic()
        while len(self.pending) > 1 and now - self.pending[0][0] >= limit:
            self.pending.popleft()
            self._count_stale()

    def _count_stale(self) -> None:
        self.node.count("dropped_stale")
        self.counters["dropped_stale"] += 1

    def publish(self, msg: LatentChannels, frame, rgb: np.ndarray, now: float) -> None:
        node = self.node
        w, h = node.p["output_width"], node.p["output_height"]
        if w or h:
            rgb = resize_to(rgb, fit_size(rgb.shape[1], rgb.shape[0], w, h))
        self.pub.publish(rgb_to_image(rgb, msg.header.stamp, msg.header.frame_id))
        if self.calibration:
            self.info_pub.publish(self._camera_info(rgb.shape[1], rgb.shape[0], msg.header))
        age_ms = (now - msg.header.stamp.sec - msg.header.stamp.nanosec * 1e-9) * 1e3
        node.latency_ms = (node.latency_ms + [age_ms])[-200:]
        self.latency_ms.append(age_ms)
        self.shown_at.append(time.monotonic())
        node.count("frames")
        self.counters["frames"] += 1
        node.count("channels_missing", msg.num_channels - len(msg.channel_indices))
        node.rate.tick()
        lost = frame.extra.get("lost_channels", [])
        refresh = False
        if lost:
            node.count("lost_references", len(lost))
            refresh = time.monotonic() - self._last_refresh_request >= 1.0     # rate-limited
            self._last_refresh_request = time.monotonic() if refresh else self._last_refresh_request
        rep = ReceiverReport(sequence=msg.sequence, decode_ms=float(node.decode_ms),
                             max_fps=float(node.camera_share_fps()), dropped_stale=int(self.counters["dropped_stale"]),
                             lost_references=int(node.counters["lost_references"]), refresh_request=refresh)
        rep.header = msg.header
        rep.channels_decoded = array("B", [c for c in frame.channel_indices if c not in lost])
        self.report_pub.publish(rep)

    def _camera_info(self, width: int, height: int, header) -> CameraInfo:
        if self._info_cache is None or self._info_cache[0] != (width, height):
            c = self.calibration          # as it is at the calibrated size
            if (c["width"], c["height"]) != (width, height):
                c = scale_calibration(c, width, height)
                cal_aspect, aspect = self.calibration["width"] / self.calibration["height"], width / height
                if abs(cal_aspect - aspect) > 0.01 * aspect:
                    self.node.get_logger().warning(
                        f"camera_info{self.of}: the calibration is for {self.calibration['width']}x"
                        f"{self.calibration['height']}, the pictures are {width}x{height} (another aspect ratio): "
                        "scaled per axis, as image_proc's resize does; check the calibration matches this camera")
            self._info_cache = ((width, height), CameraInfo(
                width=width, height=height, distortion_model=c["distortion_model"], d=c["D"], k=c["K"], r=c["R"],
                p=c["P"]))
        info = self._info_cache[1]
        info.header = header
        return info
