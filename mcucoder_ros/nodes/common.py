"""Shared node plumbing: parameters with descriptors, QoS, diagnostics, message <-> codec."""
from __future__ import annotations

import math
import time
from array import array

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from ..codec import bitstream
from ..codec.images import ImageError
from ..msg import LatentChannels

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


class ParamSpec:
    """A declared parameter: default, one-line description, range or choices, runtime-settable."""

    def __init__(self, default, description, *, range=None, choices=None, read_only=False):  # noqa: A002
        self.default, self.description = default, description
        self.range, self.choices, self.read_only = range, choices, read_only

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.range is not None:
            lo, hi = self.range
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
            else:
                d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        return d

    def check(self, name, value) -> str | None:
        if self.choices and value not in self.choices:
            return f"parameter '{name}' must be one of {self.choices}, got {value!r}"
        if self.range is not None and not isinstance(value, bool) and isinstance(value, (int, float)):
            lo, hi = self.range
            if not (lo <= value <= hi) or (isinstance(value, float) and math.isnan(value)):
                return f"parameter '{name}' must be within [{lo}, {hi}], got {value!r}"
        return None


class McuNode(Node):
    """Base node: declares PARAMS, validates every change, publishes /diagnostics at 1 Hz."""

    PARAMS: dict[str, ParamSpec] = {}

    def __init__(self, name: str, **kwargs):
        super().__init__(name, **kwargs)
        self.counters: dict[str, float] = {}
        self.p = {}
        for pname, spec in self.PARAMS.items():
            value = self.declare_parameter(pname, spec.default, spec.descriptor()).value
            err = spec.check(pname, value)
            if err:
                raise ValueError(err)          # invalid start-up parameter: refuse clearly
            self.p[pname] = value
        self.add_on_set_parameters_callback(self._on_set)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)

    def _on_set(self, params) -> SetParametersResult:
        for prm in params:
            spec = self.PARAMS.get(prm.name)
            if spec is None:
                continue
            if spec.read_only:
                return SetParametersResult(successful=False, reason=f"parameter '{prm.name}' is read-only")
            err = spec.check(prm.name, prm.value)
            if err:
                return SetParametersResult(successful=False, reason=err)
        for prm in params:
            if prm.name in self.PARAMS:
                self.p[prm.name] = prm.value
                self.on_parameter_changed(prm.name, prm.value)
        return SetParametersResult(successful=True)

    def on_parameter_changed(self, name, value):
        pass

    def summary(self) -> str:
        """The counters in one line, logged when the node stops."""
        return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.counters.items()) \
            or "nothing counted"

    def when_subscribed(self, publisher, action, what: str, settle_s: float = 0.3) -> None:
        """Run `action()` once, when `publisher` has a subscriber and has had one for
        `settle_s` (the subscriber's side of the match may lag ours, and a best-effort
        sample sent before it is lost).  Sources hold their first frame, and relays
        their input, until the stream has somewhere to go: with every relay doing the
        same, a source waits for the whole chain, so no frame of a clip is lost at start.
        With the node's `wait_for_subscriber` parameter false, `action()` runs at once."""
        if not self.p.get("wait_for_subscriber", True):
            action()
            return
        since = [None]

        def poll():
            if publisher.get_subscription_count() == 0:
                since[0] = None
                return
            now = time.monotonic()
            since[0] = since[0] or now
            if now - since[0] >= settle_s:
                self.destroy_timer(timer)
                self.get_logger().info(f"{publisher.topic_name} has a subscriber: {what}")
                action()

        self.get_logger().info(f"waiting for a subscriber on {publisher.topic_name} before {what}")
        timer = self.create_timer(0.05, poll)

    def count(self, key: str, n: float = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def diagnostics(self) -> tuple[int, str, dict]:
        return DiagnosticStatus.OK, "running", {}

    def _publish_diagnostics(self) -> None:
        level, message, values = self.diagnostics()
        values = {**self.counters, **values}
        st = DiagnosticStatus(level=level, name=f"{self.get_namespace().rstrip('/')}/{self.get_name()}",
                              message=message, hardware_id="mcucoder",
                              values=[KeyValue(key=k, value=f"{v:.4g}" if isinstance(v, float) else str(v))
                                      for k, v in values.items()])
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(arr)

    def qos(self, prefix: str = "qos") -> QoSProfile:
        """Sensor-data QoS by default; `<prefix>_reliability` / `<prefix>_depth` override it."""
        rel = self.p.get(f"{prefix}_reliability", "best_effort")
        depth = int(self.p.get(f"{prefix}_depth", qos_profile_sensor_data.depth))
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=RELIABILITY[rel],
                          durability=qos_profile_sensor_data.durability)


WAIT_PARAM = {
    "wait_for_subscriber": ParamSpec(True, "hold the stream until its output topic has a subscriber, so that no "
                                     "frame is lost while the nodes downstream start (false: start at once)",
                                     read_only=True),
}

QOS_PARAMS = {
    "qos_reliability": ParamSpec("best_effort", "QoS reliability of the stream topics", choices=list(RELIABILITY),
                                 read_only=True),
    "qos_depth": ParamSpec(5, "QoS history depth of the stream topics", range=(1, 100), read_only=True),
}


# --- message <-> codec -------------------------------------------------------------------

def frame_to_msg(frame: bitstream.Frame, stamp, frame_id: str) -> LatentChannels:
    m = LatentChannels()
    m.header.stamp = stamp
    m.header.frame_id = frame_id
    m.sequence = frame.sequence
    m.model_id = frame.model_id
    m.bitstream_version = frame.version
    m.num_channels, m.latent_height, m.latent_width = frame.num_channels, frame.latent_height, frame.latent_width
    # array.array: the generated setters check plain sequences element by element (slow)
    m.channel_indices = array("B", frame.channel_indices)
    m.chunk_lengths = array("H", frame.chunk_lengths)
    m.payload = array("B", frame.payload)
    if frame.version != bitstream.VERSION and any(frame.reference_deltas):
        m.reference_deltas = array("B", frame.reference_deltas)
    m.width, m.height, m.scale_shift = frame.width, frame.height, frame.scale_shift
    return m


def msg_to_frame(m: LatentChannels) -> bitstream.Frame:
    """Checked conversion; raises BitstreamError on inconsistent fields."""
    return bitstream.from_message(m)


def gate(m: LatentChannels, k: int) -> LatentChannels:
    """The same message with only channels < k (chunks copied byte for byte)."""
    idx = list(m.channel_indices)
    lens = list(m.chunk_lengths)
    keep = sum(1 for c in idx if c < k)
    out = LatentChannels()
    out.header = m.header
    out.sequence, out.model_id, out.bitstream_version = m.sequence, m.model_id, m.bitstream_version
    out.num_channels, out.latent_height, out.latent_width = m.num_channels, m.latent_height, m.latent_width
    out.width, out.height, out.scale_shift = m.width, m.height, m.scale_shift
    out.channel_indices = array("B", idx[:keep])
    out.chunk_lengths = array("H", lens[:keep])
    out.payload = m.payload[:sum(lens[:keep])]
    refs = list(m.reference_deltas)[:keep]
    if any(refs):
        out.reference_deltas = array("B", refs)
    elif m.bitstream_version < bitstream.VERSION_SIZED:    # 224x224, the kept chunks all intra: a v1 frame
        out.bitstream_version = bitstream.VERSION
    return out


def message_bytes(m: LatentChannels) -> int:
    """Bytes this frame costs on a link: the bitstream frame it stands for."""
    if m.bitstream_version >= bitstream.VERSION_SIZED:
        version = m.bitstream_version
    else:
        version = bitstream.VERSION_INTER if len(m.reference_deltas) else bitstream.VERSION
    return bitstream.header_bytes(version, len(m.chunk_lengths)) + len(m.payload)


ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}
# what camera drivers publish beyond those, converted as cv_bridge converts them to rgb8
# (OpenCV's codes; cv_bridge's Bayer names are OpenCV's shifted by one position)
_CVT = {"yuv422": (2, "COLOR_YUV2RGB_UYVY"), "uyvy": (2, "COLOR_YUV2RGB_UYVY"),
        "yuv422_yuy2": (2, "COLOR_YUV2RGB_YUYV"), "yuyv": (2, "COLOR_YUV2RGB_YUYV"),
        "bayer_rggb8": (1, "COLOR_BayerBG2RGB"), "bayer_bggr8": (1, "COLOR_BayerRG2RGB"),
        "bayer_gbrg8": (1, "COLOR_BayerGR2RGB"), "bayer_grbg8": (1, "COLOR_BayerGB2RGB")}
_WIDE = {"mono16": 1, "16uc1": 1, "rgb16": 3, "bgr16": 3, "rgba16": 4, "bgra16": 4}
SUPPORTED_ENCODINGS = sorted(set(ENCODINGS) | set(_CVT) | set(_WIDE))


def _cv_bridge():
    """cv_bridge's CvBridge where it is installed (a ROS install), else None."""
    if not hasattr(_cv_bridge, "bridge"):
        try:
            from cv_bridge import CvBridge
            _cv_bridge.bridge = CvBridge()
        except Exception:          # noqa: BLE001 - not installed, or built against another numpy
            _cv_bridge.bridge = None
    return _cv_bridge.bridge


def image_to_rgb(msg: Image, use_cv_bridge: bool = True) -> np.ndarray:
    """sensor_msgs/Image -> HxWx3 uint8 RGB, as cv_bridge's imgmsg_to_cv2(msg, "rgb8")
    gives it: through cv_bridge where installed, else through the same OpenCV
    conversions (colour, Bayer, YUV 4:2:2; 16-bit scaled by 255/65535).  An encoding
    neither takes: ImageError naming it."""
    enc = msg.encoding.lower()
    bridge = _cv_bridge() if use_cv_bridge else None
    if bridge is not None:
        try:
            return np.ascontiguousarray(bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
        except Exception as e:      # noqa: BLE001 - CvBridgeError, or a message it cannot read
            raise ImageError(f"cannot convert image encoding '{msg.encoding}' to rgb8 (cv_bridge: {e})") from None
    if enc in ENCODINGS:
        ch, elem = ENCODINGS[enc], 1
    elif enc in _CVT:
        ch, elem = _CVT[enc][0], 1
    elif enc in _WIDE:
        ch, elem = _WIDE[enc], 2
    else:
        raise ImageError(f"unsupported image encoding '{msg.encoding}' (this node takes "
                         f"{', '.join(SUPPORTED_ENCODINGS)}; or publish sensor_msgs/CompressedImage)")
    row = msg.width * ch * elem
    if msg.width == 0 or msg.height == 0 or msg.step < row or len(msg.data) < msg.step * msg.height:
        raise ImageError(f"inconsistent Image: {msg.width}x{msg.height} step {msg.step} with {len(msg.data)} bytes")
    buf = np.frombuffer(msg.data, np.uint8, count=msg.step * msg.height).reshape(msg.height, msg.step)[:, :row]
    if enc in _CVT:
        if enc.startswith("yuv") or enc in ("uyvy", "yuyv"):
            if msg.width % 2:
                raise ImageError(f"{msg.encoding} image of odd width {msg.width}")
            img = np.ascontiguousarray(buf).reshape(msg.height, msg.width, 2)
        else:
            img = np.ascontiguousarray(buf)
        return np.ascontiguousarray(cv2.cvtColor(img, getattr(cv2, _CVT[enc][1])))
    if elem == 2:
        wide = np.ascontiguousarray(buf).view(">u2" if msg.is_bigendian else "<u2").reshape(msg.height, msg.width, ch)
        img = np.clip(np.rint(wide.astype(np.float32) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    else:
        img = buf.reshape(msg.height, msg.width, ch)
    if ch == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if enc.startswith("bgr"):
        return np.ascontiguousarray(img[..., 2::-1])
    return np.ascontiguousarray(img[..., :3])


def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG: image_transport's `compressed`) -> RGB."""
    fmt = (msg.format or "").lower()
    if "compresseddepth" in fmt:
        raise ImageError(f"unsupported CompressedImage format '{msg.format}' (a depth image; this node takes colour "
                         "or grey JPEG and PNG)")
    img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"cannot decode CompressedImage of format '{msg.format}' ({len(msg.data)} bytes)")
    return np.ascontiguousarray(img[..., ::-1])


def rgb_to_image(rgb: np.ndarray, stamp, frame_id: str) -> Image:
    m = Image()
    m.header.stamp = stamp
    m.header.frame_id = frame_id
    m.height, m.width = rgb.shape[:2]
    m.encoding = "rgb8"
    m.is_bigendian = 0
    m.step = m.width * 3
    m.data = array("B", np.ascontiguousarray(rgb, np.uint8).tobytes())
    return m


def stamp_to_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class RateMeter:
    """Events per second over a sliding window (for diagnostics)."""

    def __init__(self, window_s: float = 2.0):
        self.window, self.t = window_s, []

    def tick(self, now: float | None = None):
        now = time.monotonic() if now is None else now
        self.t.append(now)
        while self.t and now - self.t[0] > self.window:
            self.t.pop(0)

    @property
    def rate(self) -> float:
        return (len(self.t) - 1) / (self.t[-1] - self.t[0]) if len(self.t) > 1 and self.t[-1] > self.t[0] else 0.0


def make_executor(context):
    """rclpy's EventsExecutor where available: the wait-set executors spend more CPU on
    bookkeeping than the codec does at 15 frames/s (measured: 154 vs 60 ms CPU/frame)."""
    try:
        from rclpy.experimental import EventsExecutor
        return EventsExecutor(context=context)
    except ImportError:
        from rclpy.executors import SingleThreadedExecutor
        return SingleThreadedExecutor(context=context)


def run_node(cls, args=None):
    """Entry point of a node executable (`ros2 run`, `ros2 launch`).

    A node that cannot configure itself (bad parameter, no model, unreadable input) logs
    one error line and exits with status 2.  SIGINT and SIGTERM (Ctrl-C, or ros2 launch
    stopping its processes) only set a flag: the loop ends, worker threads stop and the
    node is destroyed before its context, so nothing publishes into a dead context and no
    exception crosses the C++ executor (which would abort the process)."""
    import os
    import signal
    import threading
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.exceptions import InvalidParameterValueException
    from rclpy.signals import SignalHandlerOptions

    from ..codec.model import ModelError
    from ..resources import ResourceNotFound

    stop = threading.Event()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    name = cls.__module__.rpartition(".")[2]
    try:
        node = cls()
    except (ValueError, ImageError, ModelError, ResourceNotFound, InvalidParameterValueException) as e:
        rclpy.logging.get_logger(name).error(f"cannot start: {e}")
        rclpy.try_shutdown()
        raise SystemExit(2) from None
    executor = make_executor(node.context)
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok(context=node.context):
            executor.spin_once(timeout_sec=0.1)
    finally:
        # Ctrl-C reaches every process of its group and ros2 launch sends its own SIGINT
        # after it: a second one during interpreter exit (when Python restores the default
        # handlers) would kill the node with -2; the watchdog below bounds the shutdown
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        node.get_logger().info(f"stopping: {node.summary()}")
        # a node whose work is done must not hang its launch (ros2 launch escalates 5 s
        # after SIGINT): if destroying it, the executor or DDS do not let go within 4.5 s
        # (seen once at full load), say so and leave
        done = threading.Event()

        def watchdog():
            if not done.wait(4.5):
                import sys
                sys.stderr.write(f"{name}: shutdown did not finish within 4.5 s; exiting anyway\n")
                sys.stderr.flush()
                os._exit(0)
        threading.Thread(target=watchdog, daemon=True).start()
        node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
        done.set()
