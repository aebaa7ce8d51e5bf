"""bitrate_controller_node: gates channels so the stream fits the link.

Subscribes `latent` and `link_quality`; publishes `latent_gated` (the first k chunks,
byte for byte), `bitrate_status` and the upstream `channel_budget`.
"""
from __future__ import annotations

import math
import time

from std_msgs.msg import UInt8

from ..codec.geometry import LATENT_CHANNELS
from ..control import BitrateController, ControllerConfig
from ..link_emulation import DeliveryEstimator
from ..msg import BitrateStatus, DeliveryReport, LatentChannels, LinkQuality
from .common import QOS_PARAMS, McuNode, ParamSpec, gate, message_bytes, stamp_to_s, run_node


class BitrateControllerNode(McuNode):
    PARAMS = {
        "headroom": ParamSpec(0.9, "average share of the available bandwidth to use", range=(0.05, 1.0)),
        "up_hold_frames": ParamSpec(5, "frames without rising after the bandwidth fell", range=(0, 1000)),
        "min_channels": ParamSpec(1, "never send fewer channels", range=(1, LATENT_CHANNELS)),
        "max_channels": ParamSpec(LATENT_CHANNELS, "never send more channels", range=(1, LATENT_CHANNELS)),
        "link_stale_s": ParamSpec(2.0, "ignore link_quality older than this", range=(0.1, 60.0)),
        "deadline_slack_s": ParamSpec(0.05, "a frame is due one frame interval + this after capture (its age "
                                      "and the link delay shrink its byte cap)", range=(0.0, 10.0)),
        **QOS_PARAMS,
    }

    def __init__(self, **kwargs):
        super().__init__("bitrate_controller_node", **kwargs)
        self.ctrl = BitrateController(self._config())
        self.sent_bps = 0.0
        self.last_k = LATENT_CHANNELS
        self.pub = self.create_publisher(LatentChannels, "latent_gated", self.qos())
        self.status_pub = self.create_publisher(BitrateStatus, "bitrate_status", 10)
        self.budget_pub = self.create_publisher(UInt8, "channel_budget", 10)
        self.create_subscription(LatentChannels, "latent", self._on_latent, self.qos())
        self.create_subscription(LinkQuality, "link_quality", self._on_link, 10)
        self.estimator = DeliveryEstimator()
        self.create_subscription(DeliveryReport, "delivery_report", self._on_report, 10)

    def _config(self) -> ControllerConfig:
        p = self.p
        if p["min_channels"] > p["max_channels"]:
            raise ValueError("min_channels must not exceed max_channels")
        return ControllerConfig(headroom=p["headroom"], up_hold_frames=p["up_hold_frames"],
                                min_channels=p["min_channels"], max_channels=p["max_channels"],
                                link_stale_s=p["link_stale_s"], deadline_slack_s=p["deadline_slack_s"])

    def on_parameter_changed(self, name, value):
        cfg = self.ctrl.cfg
        setattr(cfg, name, value) if hasattr(cfg, name) else None
        cfg.min_channels = min(cfg.min_channels, cfg.max_channels)

    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_link(self, msg: LinkQuality):
        self.ctrl.on_link_quality(msg.bandwidth_bps, time.monotonic(), msg.round_trip_time_s)

    def _on_report(self, r: DeliveryReport):
        end = stamp_to_s(r.link_end)
        self.estimator.on_delivery(r.bytes * 8, stamp_to_s(r.link_start), end, stamp_to_s(r.header.stamp),
                                   self.ctrl.interval)
        self.ctrl.on_delivery_estimate(self.estimator.bps)
        self.ctrl.on_delivered(r.sequence)
        self.ctrl.on_link_delay(self._ros_now() - end)
        self.count("delivery_reports")

    def _on_latent(self, msg: LatentChannels):
        idx = list(msg.channel_indices)
        if idx != list(range(len(idx))) or len(msg.chunk_lengths) != len(idx):
            # not a prefix: gate what we can by index, sizes unknown for the rest
            self.count("non_prefix_frames")
        lengths = list(msg.chunk_lengths)[:len(idx)]
        stamp = stamp_to_s(msg.header.stamp)
        d = self.ctrl.decide(lengths, stamp, time.monotonic(), age_s=self._ros_now() - stamp)
        out = gate(msg, d.channels)
        self.pub.publish(out)
        bits = message_bytes(out) * 8
        self.ctrl.on_sent(msg.sequence, bits, time.monotonic())
        self.sent_bps += 0.2 * (bits / self.ctrl.interval - self.sent_bps)
        if d.budget != self.last_k or self.counters.get("frames", 0) % 10 == 0:
            self.budget_pub.publish(UInt8(data=d.budget))
        self.last_k = d.budget
        st = BitrateStatus(sequence=msg.sequence, channels=d.channels, channel_budget=d.budget,
                           available_bps=d.available_bps, target_bps=d.target_bps, sent_bps=self.sent_bps,
                           estimate_source=d.source)
        st.header = msg.header
        self.status_pub.publish(st)
        self.count("frames")
        self.count("channels_dropped", len(idx) - len(out.channel_indices))

    def diagnostics(self):
        avail, src = self.ctrl.available(time.monotonic())
        return 0, "running", {"k": self.ctrl.k, "available_bps": avail if math.isfinite(avail) else "unknown",
                              "sent_bps": self.sent_bps, "estimate_source": src}


def main(args=None):
    run_node(BitrateControllerNode, args)
