"""network_receiver_node: the base station's end of the network hop from the robot.

Subscribes `latent_chunks` (LatentChunk parts from network_sender_node), puts each
frame back together (mcucoder_ros/chunking.py) and publishes it on `latent_link` for
the decoder (decoder_node `input_topic: latent_link`), and, back to the robot's
bitrate controller, a `delivery_report` per frame (and a progress report once the
first two parts of a longer frame are in): bytes, link start and end on this
machine's clock, chunks sent and received.  Link times come from the times DDS
received the parts (MessageInfo.received_timestamp), not from when a callback ran, so
a busy executor does not blur the train; the parts are taken by a helper node
(`<name>_rx`, or `<name>_net` in a network context: network_sender_node's text) spun in
a thread of its own by a SingleThreadedExecutor, since rclpy's EventsExecutor cannot
hand callbacks their MessageInfo.  In a network context `delivery_report` goes out
there, and the decoder's `receiver_report` is relayed to it.  The two machines' clocks
need not agree: the controller uses only differences of these times, and their offset
from its own send times through a minimum filter (docs/bitrate-control.md).
"""
from __future__ import annotations

import threading
import time

from builtin_interfaces.msg import Time

from ..chunking import PART_OVERHEAD_BYTES, Reassembler, join_parts
from ..msg import DeliveryReport, LatentChannels, LatentChunk, ReceiverReport
from .common import QOS_PARAMS, WAIT_PARAM, McuNode, ParamSpec, run_node
from .network_sender_node import NETWORK_QOS_PARAMS, NetworkSide


def _time_msg(t: float) -> Time:
    ns = int(round(t * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class NetworkReceiverNode(McuNode):
    PARAMS = {
        "part_timeout_s": ParamSpec(0.3, "a frame missing parts is given out with what arrived this long after "
                                    "its last part (or at once when a later frame's part arrives)",
                                    range=(0.01, 10.0)),
        "report_clock_offset_s": ParamSpec(0.0, "added to the link times of delivery reports (to test a base "
                                           "station whose clock disagrees with the robot's)", range=(-1e6, 1e6)),
        "part_overhead_bytes": ParamSpec(float(PART_OVERHEAD_BYTES), "header bytes per part on the wire, counted "
                                         "in the rate reported (the controller's packet_overhead_bytes)",
                                         range=(0.0, 10000.0), read_only=True),
        "output_topic": ParamSpec("latent_link", "where whole frames go (the decoder's input_topic)",
                                  read_only=True),
        **NETWORK_QOS_PARAMS,
        **WAIT_PARAM,
        **QOS_PARAMS,
    }

    def __init__(self, network_context=None, **kwargs):
        super().__init__("network_receiver_node", **kwargs)
        self.asm = Reassembler(self.p["part_timeout_s"], self.p["part_overhead_bytes"])
        self._lock = threading.Lock()
        self.out = self.create_publisher(LatentChannels, self.p["output_topic"], self.qos())
        # the parts come in on a helper node with an executor of its own (see the module
        # text), in the network's context when there is one (network_sender_node's text)
        self.net = NetworkSide(self, network_context)
        self._rx = self.net.node
        self.reports = self._rx.create_publisher(DeliveryReport, "delivery_report", 10)
        if self.net.bridged:
            self.net.relay(ReceiverReport, "receiver_report", False, self)
        self.when_subscribed(self.out, lambda: self._rx.create_subscription(
            LatentChunk, "latent_chunks", self._on_part, self.qos("network")), "taking frames from the robot")
        self.create_timer(0.05, self._expire)

    def destroy_node(self):
        self.net.close()
        return super().destroy_node()

    def on_parameter_changed(self, name, value):
        if name == "part_timeout_s":
            self.asm.timeout_s = value

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_part(self, c: LatentChunk, info) -> None:
        info = info or {}
        t = info.get("received_timestamp", 0) * 1e-9 or self._now()   # 0: the RMW does not say
        sent = info.get("source_timestamp", 0) * 1e-9 or None
        if not (c.count >= 1 and c.index < c.count and len(c.part.chunk_lengths) == len(c.part.channel_indices)
                and sum(c.part.chunk_lengths) == len(c.part.payload)):
            self.count("malformed")
            self.get_logger().warning(f"malformed part {c.index}/{c.count} of frame {c.part.sequence} dropped",
                                      throttle_duration_sec=5.0)
            return
        with self._lock:
            self._emit(self.asm.add(c, t, sent))

    def _expire(self) -> None:
        with self._lock:
            self._emit(self.asm.expire(self._now()))

    def _emit(self, events) -> None:
        off = self.p["report_clock_offset_s"]
        for frame, rep in events:
            if frame is not None:
                self.out.publish(join_parts(list(frame.parts.values()), LatentChannels))
                self.count("frames")
                if rep.channels_received < rep.channels_sent:
                    self.count("frames_incomplete")
            r = DeliveryReport(sequence=rep.sequence, bytes=rep.bytes, link_start=_time_msg(rep.link_start + off),
                               link_end=_time_msg(rep.link_end + off), channels_sent=rep.channels_sent,
                               channels_received=rep.channels_received, partial=rep.partial,
                               link_rate_bps=rep.rate_bps)
            r.header.stamp = rep.stamp
            self.reports.publish(r)
            self.count("progress_reports" if rep.partial else "delivery_reports")

    def diagnostics(self):
        return 0, "running", {**self.asm.stats, "link_rate_bps": self.asm.rate * 8, "at": time.monotonic()}


def main(args=None):
    run_node(NetworkReceiverNode, args)
