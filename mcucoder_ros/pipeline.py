"""The pipeline's node set and defaults: one source of truth for the launch file
(launch/pipeline.launch.py) and the one-process runner (`mcucoder-ros pipeline`)."""
from __future__ import annotations

import sys
from pathlib import Path

NAMESPACE = "/mcucoder"
HOST_SOURCES = ("video", "images", "camera", "image_topic")      # encoder_node stands in for the MCU
SERIAL_SOURCES = ("serial", "qemu-m7", "qemu-m33")              # mcu_bridge_node reads the MCU
SOURCES = HOST_SOURCES + SERIAL_SOURCES

ENCODER = ("encoder_node", "mcucoder_ros.nodes.encoder_node:EncoderNode")
BRIDGE = ("mcu_bridge_node", "mcucoder_ros.nodes.mcu_bridge_node:McuBridgeNode")
# (executable / node name, module) in start order, after the source node
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
    for d in (Path(__file__).resolve().parents[1] / "config",
              Path(sys.prefix) / "share" / "mcucoder_ros" / "config"):
        if (d / "pipeline.yaml").exists():
            return d / "pipeline.yaml"
    raise FileNotFoundError("config/pipeline.yaml not found")


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
