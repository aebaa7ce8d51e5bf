"""The pipeline's node set and defaults: one source of truth for the launch file
(launch/pipeline.launch.py) and the one-process runner (`Pipeline`, behind
`mcucoder-ros pipeline`).  Importing this module does not import rclpy."""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import resources

NAMESPACE = "/mcucoder"
HOST_SOURCES = ("video", "images", "camera", "image_topic")      # encoder_node stands in for the MCU
# mcu_bridge_node reads the MCU: on a serial port, or the real firmware under QEMU
SERIAL_SOURCES = ("serial", "qemu-m7", "qemu-m33", "qemu-m3", "qemu-stm32f405", "qemu-m55")
QEMU_SOURCES = tuple(s for s in SERIAL_SOURCES if s.startswith("qemu-"))   # the firmware under QEMU as the MCU
SOURCES = HOST_SOURCES + SERIAL_SOURCES

ENCODER = ("encoder_node", "mcucoder_ros.nodes.encoder_node:EncoderNode")
BRIDGE = ("mcu_bridge_node", "mcucoder_ros.nodes.mcu_bridge_node:McuBridgeNode")
# (executable / node name, module) downstream of the source node, in data-flow order
DOWNSTREAM = (
    ("bitrate_controller_node", "mcucoder_ros.nodes.bitrate_controller_node:BitrateControllerNode"),
    ("decoder_node", "mcucoder_ros.nodes.decoder_node:DecoderNode"),
)
NODES = (ENCODER,) + DOWNSTREAM


LINK_EMULATOR = ("link_emulator_node", "mcucoder_ros.nodes.link_emulator_node:LinkEmulatorNode")
# with an emulated link the decoder reads what crossed it
DECODER_REMAP_WITH_LINK = {"latent_gated": "latent_link"}


# Robot and base station on two machines (docs/ros.md): the frames cross the network as
# LatentChunk trains; the base reports what arrived (delivery_report) back to the controller
NETWORK_SENDER = ("network_sender_node", "mcucoder_ros.nodes.network_sender_node:NetworkSenderNode")
NETWORK_RECEIVER = ("network_receiver_node", "mcucoder_ros.nodes.network_receiver_node:NetworkReceiverNode")
SPLITS = ("robot", "base")
# Frames are due one interval + this after capture on the robot half (the controller's
# deadline_slack_s; 0.05 on one machine).  Over a network a frame that uses the link well
# takes most of an interval on it, after the camera side's own time (capture to decision,
# 30-70 ms on a 2-core host): at 0.05 s the deadline, not the link, limited k, and the
# link was used at 0.6 where it was the limit (docs/ros.md).
NETWORK_DEADLINE_SLACK_S = 0.1


def split_nodes(source: str, side: str):
    """The robot's half (source, controller, network_sender_node) or the base's
    (network_receiver_node, decoder_node reading latent_link), in data-flow order."""
    if side == "robot":
        return (nodes_for(source)[0], DOWNSTREAM[0], NETWORK_SENDER)
    if side == "base":
        return (NETWORK_RECEIVER, DOWNSTREAM[1])
    raise ValueError(f"unknown half '{side}' (choose from {', '.join(SPLITS)})")


def nodes_for(source: str):
    return ((BRIDGE if source in SERIAL_SOURCES else ENCODER),) + DOWNSTREAM


def default_params_file() -> Path:
    """config/pipeline.yaml of the checkout, the colcon install or the venv."""
    return resources.config_file("pipeline.yaml")


def source_overrides(source: str, input_spec: str, loop: bool = False) -> dict[str, dict]:
    """Per-node parameters implied by the chosen source."""
    if source not in SOURCES:
        raise ValueError(f"unknown source '{source}' (choose from {', '.join(SOURCES)})")
    if source in SERIAL_SOURCES:
        return {"mcu_bridge_node": {"port": input_spec}}
    return {"encoder_node": {"source": source, "input": input_spec, "loop": loop}}


def size_overrides(source: str, width: int = 0, height: int = 0, scale: float = 0.0) -> dict[str, dict]:
    """Per-node parameters for the coded picture size: host sources code frames at their
    own size unless width / height / scale ask for another (aspect kept when only one
    side is given, as image_proc's resize).  A qemu-* source takes the size itself (its
    emulated camera streams at it: QemuCamera's width / height / scale); a real device
    (serial) codes the size of its own camera configuration: a size asked of it here is
    an error."""
    if not (width or height or scale):
        return {}
    if width < 0 or height < 0 or scale < 0:
        raise ValueError(f"width, height and scale must not be negative (got {width}, {height}, {scale})")
    if source.startswith("qemu-"):
        return {}
    if source in SERIAL_SOURCES:
        raise ValueError(f"source {source}: the device codes the picture size of its own camera configuration; "
                         "width, height and scale apply to host and qemu-* sources")
    return {"encoder_node": {"width": int(width), "height": int(height), "scale": float(scale)}}


@dataclass
class CameraConfig:
    """One camera of a multi-camera graph: its nodes and topics live under
    /mcucoder/<name>; `weight` and `min_channels` steer its share of the link."""
    name: str
    source: str
    input: str = ""
    weight: float = 1.0
    min_channels: int = 1
    camera_info_url: str = ""
    loop: bool = True
    width: int = 0            # the size this camera's frames are coded at (0: its own; see size_overrides)
    height: int = 0
    scale: float = 0.0

    def check(self, where: str) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.name):
            raise ValueError(f"{where}: camera name '{self.name}' is not a ROS name token (letters, digits, _)")
        if self.source not in SOURCES:
            raise ValueError(f"{where}: camera {self.name}: unknown source '{self.source}' "
                             f"(choose from {', '.join(SOURCES)})")
        if not (self.weight > 0):
            raise ValueError(f"{where}: camera {self.name}: weight must be > 0, not {self.weight}")
        if not 1 <= self.min_channels <= 12:
            raise ValueError(f"{where}: camera {self.name}: min_channels must be 1..12, not {self.min_channels}")
        try:
            size_overrides(self.source, self.width, self.height, self.scale)
        except ValueError as e:
            raise ValueError(f"{where}: camera {self.name}: {e}") from None

    def overrides(self, node: str, input_spec: str | None = None) -> dict:
        """The source node's parameters for this camera: source, input, loop, frame_id, size."""
        return {**source_overrides(self.source, self.input if input_spec is None else input_spec, self.loop)[node],
                **size_overrides(self.source, self.width, self.height, self.scale).get(node, {}),
                "frame_id": self.name}


CAMERA_KEYS = ("weight", "min_channels", "camera_info_url", "loop", "width", "height", "scale")


def _resolve_input(spec: str, base: Path | None) -> str:
    """A relative input: next to the cameras file, else the bundled data (clips/...)."""
    if not spec or os.path.isabs(spec) or spec.isdigit() or "://" in spec or spec.startswith("/dev/"):
        return spec
    for cand in ([base / spec] if base else []) + [Path(spec)]:
        if cand.exists():
            return str(cand.resolve())
    try:
        return str(resources.data_path(spec))
    except FileNotFoundError:
        return spec                 # the node says what is missing


def _camera(d: dict, where: str, base: Path | None) -> CameraConfig:
    unknown = set(d) - {"name", "source", "input", *CAMERA_KEYS}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: name, source, input, "
                         f"{', '.join(CAMERA_KEYS)})")
    if "name" not in d or "source" not in d:
        raise ValueError(f"{where}: a camera needs a name and a source")
    try:
        cam = CameraConfig(name=str(d["name"]), source=str(d["source"]),
                           input=_resolve_input(str(d.get("input", "") or ""), base),
                           weight=float(d.get("weight", 1.0)), min_channels=int(d.get("min_channels", 1)),
                           camera_info_url=str(d.get("camera_info_url", "") or ""),
                           loop=str(d.get("loop", True)).lower() in ("true", "1", "yes"),
                           width=int(d.get("width", 0) or 0), height=int(d.get("height", 0) or 0),
                           scale=float(d.get("scale", 0) or 0))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None
    cam.check(where)
    return cam


def _checked(cams: list[CameraConfig], where: str) -> list[CameraConfig]:
    if not cams:
        raise ValueError(f"{where}: no camera")
    names = [c.name for c in cams]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{where}: camera name(s) used twice: {', '.join(dup)}")
    return cams


def load_cameras(path) -> list[CameraConfig]:
    """config/cameras.yaml's format: `cameras:` a list of {name, source, input, weight,
    min_channels, camera_info_url, loop}.  The launch file and the runner both read it here."""
    import yaml
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ValueError(f"cannot read cameras file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"cameras file {path} is not valid YAML: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cameras"), list):
        raise ValueError(f"{path}: expected 'cameras:' followed by a list of cameras")
    cams = []
    for i, d in enumerate(doc["cameras"]):
        if not isinstance(d, dict):
            raise ValueError(f"{path}: camera {i + 1} is not a mapping")
        cams.append(_camera(d, f"{path}: camera {i + 1}", path.parent))
    return _checked(cams, str(path))


def parse_camera_option(text: str) -> CameraConfig:
    """--camera NAME=SOURCE[:INPUT][,weight=W][,min_channels=M][,camera_info_url=U][,width=W][,height=H][,scale=S]"""
    keys = "|".join(CAMERA_KEYS)
    m = re.fullmatch(rf"([^=]+)=([a-z0-9_-]+)(?::(.*?))?((?:,(?:{keys})=[^,]*)*)", text)
    if not m:
        raise ValueError(f"--camera {text}: expected NAME=SOURCE[:INPUT][,weight=W][,min_channels=M]")
    d = {"name": m.group(1), "source": m.group(2), "input": m.group(3) or ""}
    d.update(kv.split("=", 1) for kv in m.group(4).split(",")[1:])
    return _camera(d, f"--camera {text}", None)


def parse_camera_options(texts: list[str]) -> list[CameraConfig]:
    return _checked([parse_camera_option(t) for t in texts], "--camera")


def load_class(spec: str):
    mod, cls = spec.split(":")
    import importlib
    return getattr(importlib.import_module(mod), cls)


class Pipeline:
    """The nodes of NODES (or of the chosen source) in one process, one executor:
    the runner behind `mcucoder-ros pipeline`, the demo and the live evaluations.
    With `cameras` (CameraConfig list; their inputs already serial ports for serial and
    qemu sources) one source node per camera runs under <namespace>/<name>, and one
    controller, link emulator and decoder serve them all."""

    def __init__(self, source, input_spec, params_file=None, loop=False, namespace=None, extra_nodes=(),
                 overrides=None, trace=None, link_monitor=True, cameras=None):
        import rclpy
        from rclpy.parameter import Parameter

        params_file = str(params_file or default_params_file())
        if not os.path.exists(params_file):
            raise FileNotFoundError(f"parameters file not found: {params_file}")
        self.context = rclpy.Context()
        rclpy.init(args=["--ros-args", "--params-file", params_file], context=self.context)
        ns = namespace or NAMESPACE
        # (key in self.nodes, (node name, class), namespace, parameter overrides), data-flow order
        plan = []
        if cameras:
            for cam in cameras:
                src = BRIDGE if cam.source in SERIAL_SOURCES else ENCODER
                ov = cam.overrides(src[0])
                plan.append((f"{cam.name}/{src[0]}", src, f"{ns.rstrip('/')}/{cam.name}", ov))
            names = [c.name for c in cameras]
            multi = {"bitrate_controller_node": {"cameras": names, "camera_weights": [float(c.weight) for c in cameras],
                                                 "camera_min_channels": [int(c.min_channels) for c in cameras]},
                     "link_emulator_node": {"cameras": names},
                     "decoder_node": {"cameras": names, "camera_info_urls": [c.camera_info_url for c in cameras],
                                      "input_topic": "latent_link" if trace else "latent_gated"}}
        else:
            src = nodes_for(source)[0]
            plan.append((src[0], src, ns, source_overrides(source, input_spec, loop)[src[0]]))
            multi = {}
        downstream = list(DOWNSTREAM)
        if trace:
            downstream.insert(len(downstream) - 1, LINK_EMULATOR)
        for spec in downstream:
            plan.append((spec[0], spec, ns, dict(multi.get(spec[0], {}))))
        # the runner is the decoder's consumer (it counts what was decoded): no viewer to wait for
        plan[-1][3]["wait_for_subscriber"] = False
        if trace:
            next(p for p in plan if p[0] == LINK_EMULATOR[0])[3].update(trace=str(trace),
                                                                        act_as_link_monitor=link_monitor)
        for _, (name, _), _, ov in plan:
            ov.update((overrides or {}).get(name, {}))
        self.nodes = {}
        self.sources = {}
        try:
            # consumers first: a source that starts streaming at once (QEMU, a serial MCU) must not
            # publish into a decoder that is still loading its model
            for key, (name, spec), node_ns, ov in reversed(plan):
                params = [Parameter(k, value=v) for k, v in ov.items()]
                remap = DECODER_REMAP_WITH_LINK if trace and name == "decoder_node" and not cameras else {}
                cli = ["--ros-args"] + [a for k, v in remap.items() for a in ("-r", f"{k}:={v}")] if remap else None
                self.nodes[key] = load_class(spec)(namespace=node_ns, parameter_overrides=params,
                                                     context=self.context, cli_args=cli)
                if name in (ENCODER[0], BRIDGE[0]):
                    self.sources[key.split("/")[0] if cameras else ""] = self.nodes[key]
            for make in extra_nodes:
                n = make(self.context)
                self.nodes[n.get_name()] = n
        except Exception:
            self.shutdown()
            raise
        self.source_name = plan[0][0]
        from .nodes.common import make_executor
        self.executor = make_executor(self.context)
        for n in self.nodes.values():
            self.executor.add_node(n)

    @property
    def encoder(self):
        return self.nodes[self.source_name]

    @staticmethod
    def _frames_of(src) -> int:
        """Frames the source published (an encoder's sequence numbers less the frames it
        skipped for the receiver before encoding)."""
        if hasattr(src, "seq"):
            return src.seq - src.counters.get("frames_skipped_receiver", 0)
        return src.frames_published

    @property
    def frames_in(self) -> int:
        return sum(self._frames_of(s) for s in self.sources.values())

    def frames_in_by_camera(self) -> dict[str, int]:
        return {name: self._frames_of(s) for name, s in self.sources.items()}

    def run(self, drain_s: float = 2.0, timeout_s: float | None = None, source_done=None):
        """Spin until the input is exhausted and the last frames have passed the decoder.
        `source_done()` says when a serial source has ended (default: the encoder's flag).
        At `timeout_s` host cameras stop reading and the frames in flight get `drain_s` to
        arrive, so a timed run accounts for every frame; a serial source just stops."""
        t0 = time.monotonic()
        dec = self.nodes["decoder_node"]
        done_fn = source_done or (lambda: all(getattr(s, "finished", False) for s in self.sources.values()))
        last_in, last_change = None, time.monotonic()
        stopped = False
        while self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            if timeout_s and now - t0 > timeout_s:
                if not all(hasattr(s, "stop_reading") for s in self.sources.values()) \
                        or now - t0 > timeout_s + drain_s:
                    break
                if not stopped:        # stop the cameras, then let their last frames arrive
                    for s in self.sources.values():
                        s.stop_reading()
                    stopped = True
            c = dec.counters
            handled = c.get("frames", 0) + c.get("malformed", 0) + c.get("dropped_stale", 0)
            if (self.frames_in, handled) != last_in:   # frames still arriving (a slow serial link) or decoding
                last_in, last_change = (self.frames_in, handled), now
            if done_fn():
                ctrl = self.nodes["bitrate_controller_node"].counters
                skipped = ctrl.get("frames_skipped", 0) + ctrl.get("frames_skipped_link", 0)
                caught_up = handled + skipped >= self.frames_in
                quiet = now - last_change
                if (caught_up and (not hasattr(self.encoder, "frames_published") or quiet > 0.5)) \
                        or quiet > drain_s:
                    break

    def shutdown(self):
        import rclpy
        for n in getattr(self, "nodes", {}).values():
            if hasattr(n, "summary"):       # where every frame went, as each node counted it
                n.get_logger().info(f"stopping: {n.summary()}")
            n.destroy_node()
        if hasattr(self, "executor"):
            self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)
