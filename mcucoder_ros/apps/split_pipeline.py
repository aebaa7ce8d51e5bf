"""`mcucoder-ros pipeline --split robot|base`: one half of the pipeline, for a robot and a
base station on two machines (docs/ros.md "Robot and base station").

  robot:  source (encoder_node or mcu_bridge_node) -> bitrate_controller_node -> network_sender_node
              ==== latent_chunks (LatentChunk trains) ====>      <==== delivery_report, receiver_report ====
  base:   network_receiver_node -> latent_link -> decoder_node -> image_decoded

Each half runs its nodes in one process.  With `--record FILE` it writes what it saw
of every frame as JSON when it stops (the two-host benchmark joins the two files).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

from ..chunking import PART_OVERHEAD_BYTES
from ..pipeline import (
    NAMESPACE,
    NETWORK_DEADLINE_SLACK_S,
    SERIAL_SOURCES,
    default_params_file,
    load_class,
    size_overrides,
    source_overrides,
    split_nodes,
)

DRAIN_S = 1.5


def discovery_note() -> str | None:
    """A line for the user when DDS cannot reach another machine with these settings."""
    rng = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "")
    if rng in ("LOCALHOST", "OFF", "") and not os.environ.get("ROS_STATIC_PEERS"):
        return (f"ROS_AUTOMATIC_DISCOVERY_RANGE={rng or 'LOCALHOST'} and no ROS_STATIC_PEERS: the other half on "
                "another machine will not be found. Export ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET (same subnet) or "
                "ROS_STATIC_PEERS=<the other machine's address>, and the same ROS_DOMAIN_ID on both.")
    return None


NETWORK_NODES = ("network_sender_node", "network_receiver_node")


def network_domain(requested: int | None = None) -> int:
    """The DDS domain of the topics that cross: as asked, else ROS_DOMAIN_ID + 1 (the
    half's own graph stays on ROS_DOMAIN_ID, where rviz and other nodes find it)."""
    if requested is not None:
        return requested
    own = int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
    return own + 1 if own < 101 else own - 1      # 0..101: Fast DDS's ports stay below Linux's ephemeral range


def _contexts(params_file: str, whole_graph: bool = False, net_domain: int | None = None):
    """(this half's graph, the network's): two DDS participants.  The half's own nodes
    discover only this machine (LOCALHOST) in ROS_DOMAIN_ID; the network sender's or
    receiver's helper node alone is in the network's domain (`network_domain`), with the
    environment's discovery settings, so only the topics that cross are announced across
    the link (a second context of the same domain on one machine would find the first,
    and the relays would loop).  whole_graph: one context for all, every endpoint visible
    on the network (None for the second)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    def init(env: dict | None, domain: int | None = None):
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})       # rcl reads the discovery settings when a context starts
        try:
            ctx = rclpy.Context()
            rclpy.init(args=["--ros-args", "--params-file", params_file], context=ctx, domain_id=domain,
                       signal_handler_options=SignalHandlerOptions.NO)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return ctx
    if whole_graph:
        return init(None), None
    local = init({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_STATIC_PEERS": ""})
    return local, init(None, network_domain(net_domain))


def _stamp(s) -> float:
    return s.sec + s.nanosec * 1e-9


def _observer(side: str, namespace: str, context, log: dict, sender=None):
    """Records every frame this half sees (for --record): robot: the controller's decision
    and the bytes sent; base: arrival of the whole frame and when it was shown."""
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from ..msg import BitrateStatus, LatentChannels
    from ..nodes.common import message_bytes
    node = Node(f"split_{side}_observer", namespace=namespace, context=context)
    now = time.time

    if side == "robot":
        def on_status(m):
            log["frames"].append({"seq": m.sequence, "stamp": _stamp(m.header.stamp), "t": now(),
                                  "channels": m.channels, "available_bps": m.available_bps,
                                  "estimate_bps": m.delivery_estimate_bps, "source": m.estimate_source})

        def on_gated(m):
            log["sent"][f"{_stamp(m.header.stamp):.9f}"] = message_bytes(m)
        node.create_subscription(BitrateStatus, "bitrate_status", on_status, 100)

        def watch_gated():
            # only once the sender takes frames: the controller starts at its first subscriber
            if any(s.topic_name.endswith("/latent_gated") for s in sender.subscriptions):
                node.destroy_timer(timer)
                node.create_subscription(LatentChannels, "latent_gated", on_gated, qos_profile_sensor_data)
        timer = node.create_timer(0.02, watch_gated)
    else:
        def on_link(m):
            log["arrived"][f"{_stamp(m.header.stamp):.9f}"] = [now(), len(m.channel_indices), m.sequence]

        def on_image(m):
            log["shown"][f"{_stamp(m.header.stamp):.9f}"] = now()
        node.create_subscription(LatentChannels, "latent_link", on_link, qos_profile_sensor_data)
        node.create_subscription(Image, "image_decoded", on_image,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    return node


def run(a) -> None:
    """a: the parsed `mcucoder-ros pipeline` arguments, with a.split 'robot' or 'base'."""
    import rclpy
    from rclpy.parameter import Parameter

    side = a.split
    if getattr(a, "cameras", None) or getattr(a, "camera", None) or a.trace or a.serial_trace:
        raise ValueError("--split runs one camera over a real network: no --cameras, --camera, --trace or "
                         "--serial-trace (the network is the link)")
    if side == "robot" and a.source.startswith("qemu-"):
        raise ValueError("--split robot takes host sources and serial (a camera MCU), not qemu-*")
    note = discovery_note()
    if note:
        print(f"mcucoder-ros: note: {note}", file=sys.stderr)
    params_file = str(a.params or default_params_file())
    if not os.path.exists(params_file):
        raise FileNotFoundError(f"parameters file not found: {params_file}")
    ns = a.namespace or NAMESPACE
    over: dict[str, dict] = {}
    if side == "robot":
        over = {k: dict(v) for k, v in source_overrides(a.source, a.input, a.loop).items()}
        for k, v in size_overrides(a.source, a.width, a.height, a.scale).items():
            over.setdefault(k, {}).update(v)
        if getattr(a, "video_mode", False):
            src_node = "mcu_bridge_node" if a.source in SERIAL_SOURCES else "encoder_node"
            over.setdefault(src_node, {})["video_mode"] = True
        if getattr(a, "fps", None):
            over.setdefault("encoder_node", {})["fps"] = float(a.fps)
        slack = getattr(a, "deadline_slack", None)
        ctl = over.setdefault("bitrate_controller_node", {})
        ctl["deadline_slack_s"] = float(NETWORK_DEADLINE_SLACK_S if slack is None else slack)
        # the frames go as parts (network_sender_node): their headers are link time too
        ctl["packet_overhead_bytes"] = float(PART_OVERHEAD_BYTES)
    else:
        # the runner shows nothing itself: the decoder starts without waiting for a viewer
        over["decoder_node"] = {"input_topic": "latent_link", "wait_for_subscriber": False}
        over["network_receiver_node"] = {"report_clock_offset_s": float(getattr(a, "clock_offset", 0.0) or 0.0)}
    if getattr(a, "network_reliability", None):
        for n in ("network_sender_node", "network_receiver_node"):
            over.setdefault(n, {})["network_reliability"] = a.network_reliability

    stop = threading.Event()
    context, net_context = _contexts(params_file, whole_graph=getattr(a, "whole_graph", False),
                                     net_domain=getattr(a, "network_domain", None))
    drain = threading.Event()       # the robot: a first Ctrl-C stops the camera and lets its last frames cross

    def on_signal(*_):
        if side == "robot" and not drain.is_set():
            drain.set()
        else:
            stop.set()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    nodes = {}
    log = {"side": side, "frames": [], "sent": {}, "arrived": {}, "shown": {}}
    from ..nodes.common import make_executor
    executor = make_executor(context)
    try:
        for name, spec in reversed(split_nodes(a.source, side)):     # consumers first
            params = [Parameter(k, value=v) for k, v in over.get(name, {}).items()]
            extra = {"network_context": net_context} if name in NETWORK_NODES and net_context else {}
            nodes[name] = load_class(spec)(namespace=ns, parameter_overrides=params, context=context, **extra)
        if a.record:
            nodes["observer"] = _observer(side, ns, context, log, nodes.get("network_sender_node"))
        for n in nodes.values():
            executor.add_node(n)
        print(f"mcucoder-ros: {side} half up: {', '.join(n for n in nodes if n != 'observer')} under {ns} "
              f"(ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')}, this machine only; "
              + (f"the topics that cross in domain {net_context.get_domain_id()})" if net_context is not None
                 else "every node on the network)"), flush=True)
        src = nodes.get("encoder_node") or nodes.get("mcu_bridge_node")
        t0, stopped_at = time.monotonic(), None
        while not stop.is_set() and context.ok():
            executor.spin_once(timeout_sec=0.05)
            now = time.monotonic()
            if src is None:
                continue
            over_time = (a.duration and now - t0 > a.duration) or drain.is_set()
            if stopped_at is None and (over_time or getattr(src, "finished", False)):
                if hasattr(src, "stop_reading"):
                    src.stop_reading()
                stopped_at = now            # the frames in flight get DRAIN_S to arrive
            if stopped_at is not None and now - stopped_at > DRAIN_S:
                break
            if over_time and not hasattr(src, "stop_reading"):
                break
    finally:
        counters = {name: dict(getattr(n, "counters", {})) for name, n in nodes.items()}
        for n in nodes.values():
            if hasattr(n, "summary"):
                n.get_logger().info(f"stopping: {n.summary()}")
        for n in nodes.values():
            n.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown(context=context)
        if net_context is not None:
            rclpy.try_shutdown(context=net_context)
        if a.record:
            log["counters"] = counters
            with open(a.record, "w") as f:
                json.dump(log, f)
        print(f"mcucoder-ros: {side} half stopped: " + "; ".join(
            f"{name} {', '.join(f'{k} {v:g}' for k, v in c.items())}" for name, c in counters.items() if c))
