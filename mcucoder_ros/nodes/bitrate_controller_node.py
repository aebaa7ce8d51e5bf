"""bitrate_controller_node: gates channels so the stream fits the link.

Subscribes `latent`, `link_quality`, `delivery_report` and `receiver_report`;
publishes `latent_gated` (the first k chunks, byte for byte), `bitrate_status` and the
upstream `channel_budget`.  Frames the receiver could not show (its reported max_fps
is below the source rate) are skipped whole, before any link time is spent on them.
Video mode: the receiver's reports go upstream unchanged on `reference_ack`, the
acknowledgements the camera side predicts from (encoder_node, or the MCU through
mcu_bridge_node).  Inter chunks are budgeted by their real sizes like any other.
"""
from __future__ import annotations

import math
import time

from std_msgs.msg import UInt8

from ..codec.geometry import LATENT_CHANNELS
from ..control import BitrateController, ControllerConfig, FrameRateGate
from ..msg import BitrateStatus, DeliveryReport, LatentChannels, LinkQuality, ReceiverReport
from .common import QOS_PARAMS, WAIT_PARAM, McuNode, ParamSpec, gate, message_bytes, run_node, stamp_to_s


class BitrateControllerNode(McuNode):
    PARAMS = {
        "headroom": ParamSpec(0.9, "average share of the available bandwidth to use", range=(0.05, 1.0)),
        "up_hold_frames": ParamSpec(5, "frames without rising after the bandwidth fell", range=(0, 1000)),
        "min_channels": ParamSpec(1, "never send fewer channels", range=(1, LATENT_CHANNELS)),
        "max_channels": ParamSpec(LATENT_CHANNELS, "never send more channels", range=(1, LATENT_CHANNELS)),
        "link_stale_s": ParamSpec(2.0, "ignore link_quality older than this", range=(0.1, 60.0)),
        "follow_receiver_fps": ParamSpec(True, "forward frames no faster than the receiver reports it can show "
                                         "(receiver_report.max_fps)"),
        "receiver_fps_margin": ParamSpec(0.95, "share of the receiver's reported rate to forward",
                                         range=(0.1, 1.0)),
        "deadline_slack_s": ParamSpec(0.05, "a frame is due one frame interval + this after capture (its age "
                                      "and the link delay shrink its byte cap)", range=(0.0, 10.0)),
        "deadline_margin_s": ParamSpec(0.01, "link time left unplanned before each deadline: the hop from this "
                                       "node to the link and scheduling jitter", range=(0.0, 10.0)),
        "skip_late_s": ParamSpec(0.0, "a frame that would arrive later than this past its deadline even with "
                                 "min_channels is not sent (it would only delay the frames behind it)",
                                 range=(0.0, 10.0)),
        **WAIT_PARAM,
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
        # a relay takes frames in once it can pass them on
        self.when_subscribed(self.pub, self._subscribe_input, "taking frames from latent")
        self.create_subscription(LinkQuality, "link_quality", self._on_link, 10)
        self.report_sub = self.create_subscription(DeliveryReport, "delivery_report", self._on_report, 10)
        self.fps_gate = FrameRateGate(margin=self.p["receiver_fps_margin"])
        self.create_subscription(ReceiverReport, "receiver_report", self._on_receiver, 10)
        self.ack_pub = self.create_publisher(ReceiverReport, "reference_ack", 10)
        self.counters["frames_skipped"] = 0
        self.counters["frames_skipped_link"] = 0

    def _subscribe_input(self):
        self.create_subscription(LatentChannels, "latent", self._on_latent, self.qos())

    def _config(self) -> ControllerConfig:
        p = self.p
        if p["min_channels"] > p["max_channels"]:
            raise ValueError("min_channels must not exceed max_channels")
        return ControllerConfig(headroom=p["headroom"], up_hold_frames=p["up_hold_frames"],
                                min_channels=p["min_channels"], max_channels=p["max_channels"],
                                link_stale_s=p["link_stale_s"], deadline_slack_s=p["deadline_slack_s"],
                                deadline_margin_s=p["deadline_margin_s"], skip_late_s=p["skip_late_s"])

    def on_parameter_changed(self, name, value):
        if name == "receiver_fps_margin":
            self.fps_gate.margin = value
        cfg = self.ctrl.cfg
        setattr(cfg, name, value) if hasattr(cfg, name) else None
        cfg.min_channels = min(cfg.min_channels, cfg.max_channels)

    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_link(self, msg: LinkQuality):
        self.ctrl.on_link_quality(msg.bandwidth_bps, time.monotonic(), msg.round_trip_time_s)

    def _on_report(self, r: DeliveryReport):
        # link times are on the receiver's clock: the estimator uses only their differences
        # and their offset from our send times (its minimum filter absorbs the clocks' offset)
        self.ctrl.on_delivery_report(r.sequence, r.bytes * 8, stamp_to_s(r.link_start), stamp_to_s(r.link_end),
                                     r.channels_sent, r.channels_received, time.monotonic(), r.partial)
        self.count("progress_reports" if r.partial else "delivery_reports")

    def _on_receiver(self, r: ReceiverReport):
        self.fps_gate.on_receiver_fps(r.max_fps, time.monotonic())
        self.ack_pub.publish(r)
        self.count("receiver_reports")

    def _on_latent(self, msg: LatentChannels):
        stamp = stamp_to_s(msg.header.stamp)
        if self.p["follow_receiver_fps"] and not self.fps_gate.admit(stamp, time.monotonic()):
            self.count("frames_skipped")          # the receiver could not show it: spend no link time
            self._publish_status(msg, None)
            return
        idx = list(msg.channel_indices)
        if idx != list(range(len(idx))) or len(msg.chunk_lengths) != len(idx):
            # not a prefix: gate what we can by index, sizes unknown for the rest
            self.count("non_prefix_frames")
        lengths = list(msg.chunk_lengths)[:len(idx)]
        self.ctrl.expect_reports = self.count_publishers(self.report_sub.topic_name) > 0
        d = self.ctrl.decide(lengths, stamp, time.monotonic(), age_s=self._ros_now() - stamp)
        if d.channels == 0:
            # the link is out, or even min_channels would arrive after the deadline and
            # delay the frames behind it: spend no link time on it
            self.count("frames_skipped_link")
            self._publish_status(msg, d)
            return
        out = gate(msg, d.channels)
        self.pub.publish(out)
        bits = message_bytes(out) * 8
        self.ctrl.on_sent(msg.sequence, bits, time.monotonic())
        self.sent_bps += 0.2 * (bits / self.ctrl.interval - self.sent_bps)
        if d.budget != self.last_k or self.counters.get("frames", 0) % 10 == 0:
            self.budget_pub.publish(UInt8(data=d.budget))
        self.last_k = d.budget
        self._publish_status(msg, d)
        self.count("frames")
        self.count("channels_dropped", len(idx) - len(out.channel_indices))

    def _publish_status(self, msg: LatentChannels, d):
        """d: the decision, or None for a frame skipped for the receiver (channels = 0)."""
        now = time.monotonic()
        if d is None:
            avail, src = self.ctrl.available(now)
            st = BitrateStatus(sequence=msg.sequence, channels=0, channel_budget=self.last_k, available_bps=avail,
                               target_bps=self.ctrl.cfg.headroom * avail, sent_bps=self.sent_bps,
                               estimate_source=src)
        else:
            st = BitrateStatus(sequence=msg.sequence, channels=d.channels, channel_budget=d.budget,
                               available_bps=d.available_bps, target_bps=d.target_bps, sent_bps=self.sent_bps,
                               estimate_source=d.source)
        est = self.ctrl.estimator
        st.delivery_estimate_bps = float(est.rate())
        st.queue_delay_s, st.chunk_loss = float(est.queue_s), float(est.loss)
        g = self.fps_gate
        st.source_fps, st.receiver_fps = float(g.source_fps), float(g.receiver_fps)
        st.forward_fps = float(g.forward_fps(now))
        st.frames_skipped = int(self.counters["frames_skipped"] + self.counters["frames_skipped_link"])
        st.header = msg.header
        self.status_pub.publish(st)

    def diagnostics(self):
        avail, src = self.ctrl.available(time.monotonic())
        g = self.fps_gate
        est = self.ctrl.estimator
        return 0, "running", {"k": self.ctrl.k, "available_bps": avail if math.isfinite(avail) else "unknown",
                              "sent_bps": self.sent_bps, "estimate_source": src,
                              "delivery_estimate_bps": est.bps if math.isfinite(est.bps) else "unknown",
                              "queue_delay_s": est.queue_s, "chunk_loss": est.loss,
                              "receiver_fps": g.receiver_fps, "forward_fps": g.forward_fps(time.monotonic())}


def main(args=None):
    run_node(BitrateControllerNode, args)
