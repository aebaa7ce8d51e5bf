"""The pipeline's node set and defaults: one source of truth for the launch file
(launch/pipeline.launch.py) and the one-process runner (`Pipeline`, behind
`mcucoder-ros pipeline`).  Importing this module does not import rclpy."""
from __future__ import annotations

import os
import time
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


def load_class(spec: str):
    mod, cls = spec.split(":")
    import importlib
    return getattr(importlib.import_module(mod), cls)


class Pipeline:
    """The nodes of NODES (or of the chosen source) in one process, one executor:
    the runner behind `mcucoder-ros pipeline`, the demo and the live evaluations."""

    def __init__(self, source, input_spec, params_file=None, loop=False, namespace=None, extra_nodes=(),
                 overrides=None, trace=None, link_monitor=True):
        import rclpy
        from rclpy.parameter import Parameter

        params_file = str(params_file or default_params_file())
        if not os.path.exists(params_file):
            raise FileNotFoundError(f"parameters file not found: {params_file}")
        self.context = rclpy.Context()
        rclpy.init(args=["--ros-args", "--params-file", params_file], context=self.context)
        per_node = source_overrides(source, input_spec, loop)
        # the runner is the decoder's consumer (it counts what was decoded): no viewer to wait for
        per_node["decoder_node"] = {"wait_for_subscriber": False}
        for node, vals in (overrides or {}).items():
            per_node.setdefault(node, {}).update(vals)
        self.nodes = {}
        self.source_name = nodes_for(source)[0][0]
        specs = list(nodes_for(source))
        if trace:
            specs.insert(len(specs) - 1, LINK_EMULATOR)
            per_node.setdefault("link_emulator_node", {}).update(trace=str(trace), act_as_link_monitor=link_monitor)
        try:
            # consumers first: a source that starts streaming at once (QEMU, a serial MCU) must not
            # publish into a decoder that is still loading its model
            for name, spec in reversed(specs):
                ov = [Parameter(k, value=v) for k, v in per_node.get(name, {}).items()]
                remap = DECODER_REMAP_WITH_LINK if trace and name == "decoder_node" else {}
                cli = ["--ros-args"] + [a for k, v in remap.items() for a in ("-r", f"{k}:={v}")] if remap else None
                self.nodes[name] = load_class(spec)(namespace=namespace or NAMESPACE, parameter_overrides=ov,
                                                      context=self.context, cli_args=cli)
            for make in extra_nodes:
                n = make(self.context)
                self.nodes[n.get_name()] = n
        except Exception:
            self.shutdown()
            raise
        from .nodes.common import make_executor
        self.executor = make_executor(self.context)
        for n in self.nodes.values():
            self.executor.add_node(n)

    @property
    def encoder(self):
        return self.nodes[self.source_name]

    @property
    def frames_in(self) -> int:
        src = self.encoder
        return src.seq if hasattr(src, "seq") else src.frames_published

    def run(self, drain_s: float = 2.0, timeout_s: float | None = None, source_done=None):
        """Spin until the input is exhausted and the last frames have passed the decoder.
        `source_done()` says when a serial source has ended (default: the encoder's flag)."""
        t0 = time.monotonic()
        dec = self.nodes["decoder_node"]
        done_fn = source_done or (lambda: getattr(self.encoder, "finished", False))
        last_in, last_change = -1, time.monotonic()
        while self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            if timeout_s and now - t0 > timeout_s:
                break
            if self.frames_in != last_in:        # frames may still be arriving (a slow serial link)
                last_in, last_change = self.frames_in, now
            if done_fn():
                c = dec.counters
                handled = c.get("frames", 0) + c.get("malformed", 0) + c.get("dropped_stale", 0)
                skipped = self.nodes["bitrate_controller_node"].counters.get("frames_skipped", 0)
                caught_up = handled + skipped >= self.frames_in
                quiet = now - last_change
                if (caught_up and (not hasattr(self.encoder, "frames_published") or quiet > 0.5)) \
                        or quiet > drain_s:
                    break

    def shutdown(self):
        import rclpy
        for n in getattr(self, "nodes", {}).values():
            n.destroy_node()
        if hasattr(self, "executor"):
            self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)
