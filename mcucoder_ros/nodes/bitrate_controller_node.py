"""bitrate_controller_node: gates channels so the stream fits the link.

Subscribes `latent`, `link_quality`, `delivery_report` and `receiver_report`;
publishes `latent_gated` (the first k chunks, byte for byte), `bitrate_status` and the
upstream `channel_budget`, and with the resolution ladder (one camera, a model with a
ladder table) `picture_scale`: the size the source should code at (1, 2 or 4: the
camera's size, 1/2 or 1/4 of it; docs/bitrate-control.md).  Frames the receiver could not show (its reported max_fps
is below the source rate) are skipped whole, before any link time is spent on them.
Video mode: the receiver's reports go upstream unchanged on `reference_ack`, the
acknowledgements the camera side predicts from (encoder_node, or the MCU through
mcu_bridge_node).  Inter chunks are budgeted by their real sizes like any other.
"""
from __future__ import annotations

import math
import time

from std_msgs.msg import Float32, UInt8

from ..chunking import PART_BYTES, parts_by_k
from ..codec.geometry import LATENT_CHANNELS
from ..codec.model import model_channel_gains
from ..control import (
    BitrateController,
    CameraSpec,
    ControllerConfig,
    FrameRateGate,
    LadderController,
    SharedLinkController,
    share_frame_rate,
)
from ..ladder import load_table
from ..link_emulation import first_chunk_bytes
from ..msg import BitrateStatus, DeliveryReport, LatentChannels, LinkQuality, ReceiverReport
from .common import QOS_PARAMS, WAIT_PARAM, McuNode, ParamSpec, gate, message_bytes, run_node, stamp_to_s


class BitrateControllerNode(McuNode):
    PARAMS = {
        "headroom": ParamSpec(0.95, "average share of the available bandwidth to use", range=(0.05, 1.0)),
        "up_hold_frames": ParamSpec(5, "frames without rising after the bandwidth fell", range=(0, 1000)),
        "min_channels": ParamSpec(1, "never send fewer channels", range=(1, LATENT_CHANNELS)),
        "max_channels": ParamSpec(LATENT_CHANNELS, "never send more channels", range=(1, LATENT_CHANNELS)),
        "link_stale_s": ParamSpec(2.0, "ignore link_quality older than this", range=(0.1, 60.0)),
        "follow_receiver_fps": ParamSpec(True, "forward frames no faster than the receiver reports it can show "
                                         "(receiver_report.max_fps)"),
        "receiver_fps_margin": ParamSpec(0.95, "share of the receiver's reported rate to forward",
                                         range=(0.1, 1.0)),
        "cameras_fps_margin": ParamSpec(0.8, "several cameras into one decoder: share of its whole rate to split "
                                        "among them (their frames come at independent times and queue at the "
                                        "decoder; one camera's come evenly)", range=(0.1, 1.0)),
        "deadline_slack_s": ParamSpec(0.05, "a frame is due one frame interval + this after capture (its age "
                                      "and the link delay shrink its byte cap)", range=(0.0, 10.0)),
        "deadline_margin_s": ParamSpec(0.01, "link time left unplanned before each deadline: the hop from this "
                                       "node to the link and scheduling jitter", range=(0.0, 10.0)),
        "packet_overhead_bytes": ParamSpec(0.0, "a link of packets (the network sender's parts): header bytes "
                                           "each costs beside its chunks (0: not counted; --split robot: "
                                           "the parts' measured 250)", range=(0.0, 10000.0)),
        "packet_payload_bytes": ParamSpec(0, "... and the chunk bytes one packet takes at most (the network "
                                          "sender's part_bytes; 0: its default)", range=(0, 65000)),
        "skip_late_s": ParamSpec(0.0, "a frame that would arrive later than this past its deadline even with "
                                 "min_channels is not sent (it would only delay the frames behind it)",
                                 range=(0.0, 10.0)),
        "cameras": ParamSpec([""], "several cameras on one link: their names; each camera's topics are "
                             "<name>/latent, <name>/latent_gated, ... (empty: one camera, unprefixed topics)",
                             read_only=True),
        "camera_weights": ParamSpec([0.0], "share weight of each camera in `cameras` (empty: 1 each)",
                                    read_only=True),
        "camera_min_channels": ParamSpec([0], "min_channels of each camera in `cameras` (empty: min_channels)",
                                         read_only=True),
        "sharing": ParamSpec("shared", "several cameras: shared (by weight and what a channel buys), equal, or "
                             "independent (each camera plans as if it had the link alone)",
                             choices=["shared", "equal", "independent"], read_only=True),
        "model_dir": ParamSpec("", "model whose per-channel MS-SSIM gains steer the split and whose ladder "
                               "table ranks the scales (empty: the shipped model)", read_only=True),
        "ladder": ParamSpec(True, "resolution ladder (one camera): ask the source for 1/2 or 1/4 of the camera's "
                            "size on picture_scale where that shows more at the rate; false: channels only",
                            read_only=True),
        **WAIT_PARAM,
        **QOS_PARAMS,
    }

    def __init__(self, **kwargs):
        super().__init__("bitrate_controller_node", **kwargs)
        names = [n for n in self.p["cameras"] if n]         # [""]: ROS has no typed empty list
        if names:       # several cameras, one link: SharedLinkController splits it
            weights = _per_camera(self.p["camera_weights"], names, 1.0, "camera_weights")
            mins = _per_camera(self.p["camera_min_channels"], names, self.p["min_channels"], "camera_min_channels")
            cfg = self._config()
            self.shared = SharedLinkController(
                [CameraSpec(n, float(w), int(m), cfg.max_channels) for n, w, m in zip(names, weights, mins)],
                model_channel_gains(self.p["model_dir"] or None), cfg, strategy=self.p["sharing"])
            self.lanes = {n: _Lane(self, n, self.shared.ctrls[n]) for n in names}
            self.total_pub = self.create_publisher(BitrateStatus, "bitrate_status", 10)
        else:           # one camera: today's topics, the link its own
            self.shared = None
            table = load_table(self.p["model_dir"] or None) if self.p["ladder"] else None
            if self.p["ladder"] and table is None:
                self.get_logger().warning("the model has no ladder table (export.json 'ladder'; `mcucoder "
                                          "ladder-table`): channels only")
            ctrl = LadderController(table, self._config()) if table else BitrateController(self._config())
            self.lanes = {"": _Lane(self, "", ctrl)}
        self.ctrl = next(iter(self.lanes.values())).ctrl       # the (first) camera's controller
        self.create_subscription(LinkQuality, "link_quality", self._on_link, 10)
        self.counters["frames_skipped"] = 0
        self.counters["frames_skipped_link"] = 0

    def _config(self) -> ControllerConfig:
        p = self.p
        if p["min_channels"] > p["max_channels"]:
            raise ValueError("min_channels must not exceed max_channels")
        return ControllerConfig(headroom=p["headroom"], up_hold_frames=p["up_hold_frames"],
                                min_channels=p["min_channels"], max_channels=p["max_channels"],
                                link_stale_s=p["link_stale_s"], deadline_slack_s=p["deadline_slack_s"],
                                deadline_margin_s=p["deadline_margin_s"], skip_late_s=p["skip_late_s"],
                                packet_overhead_bytes=p["packet_overhead_bytes"],
                                packet_payload_bytes=p["packet_payload_bytes"])

    def on_parameter_changed(self, name, value):
        for lane in self.lanes.values():
            if name == "receiver_fps_margin":
                lane.fps_gate.margin = value
            cfg = lane.ctrl.cfg
            if hasattr(cfg, name) and not (self.shared is not None and name == "min_channels"):  # per camera then
                setattr(cfg, name, value)
            cfg.min_channels = min(cfg.min_channels, cfg.max_channels)

    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_link(self, msg: LinkQuality):
        (self.shared or self.ctrl).on_link_quality(msg.bandwidth_bps, time.monotonic(), msg.round_trip_time_s)

    def _publish_total(self, msg: LatentChannels, d):
        """Several cameras: the link's figures, summed over the cameras, on bitrate_status."""
        now = time.monotonic()
        avail, src = self.ctrl.available(now)
        lanes = self.lanes.values()
        st = BitrateStatus(sequence=msg.sequence, channels=sum(ln.last_channels for ln in lanes),
                           channel_budget=sum(ln.last_k for ln in lanes), available_bps=avail,
                           target_bps=self.ctrl.cfg.headroom * avail if math.isfinite(avail) else math.nan,
                           sent_bps=sum(ln.sent_bps for ln in lanes), estimate_source=src)
        est = self.shared.estimator
        st.delivery_estimate_bps = float(est.rate())
        st.queue_delay_s, st.chunk_loss = float(est.queue_s), float(est.loss)
        st.source_fps = float(sum(ln.fps_gate.source_fps for ln in lanes))
        st.receiver_fps = float(sum(ln.fps_gate.receiver_fps for ln in lanes))
        st.forward_fps = float(sum(ln.fps_gate.forward_fps(now) for ln in lanes))
        st.frames_skipped = int(self.counters["frames_skipped"] + self.counters["frames_skipped_link"])
        st.header.stamp = msg.header.stamp
        st.header.frame_id = "all"
        self.total_pub.publish(st)

    def share_receiver(self, now: float) -> None:
        """Several cameras into one decoder: the sum of its fresh per-camera parts is its
        whole; split it by weight, a camera that needs fewer frames keeping its own rate."""
        if len(self.lanes) < 2:
            return
        lanes = list(self.lanes.values())
        fresh = [ln for ln in lanes if ln.fps_gate.fresh(now)]
        whole = sum(ln.fps_gate.receiver_fps for ln in fresh) * self.p["cameras_fps_margin"]
        weights = [self.shared.specs[ln.name].weight for ln in lanes]
        shares = share_frame_rate(whole if fresh else math.nan, [ln.fps_gate.source_fps for ln in lanes], weights)
        for ln, share in zip(lanes, shares):
            ln.fps_gate.share_fps = share

    def diagnostics(self):
        now = time.monotonic()
        avail, src = self.ctrl.available(now)
        est = self.ctrl.estimator
        values = {"available_bps": avail if math.isfinite(avail) else "unknown", "estimate_source": src,
                  "delivery_estimate_bps": est.bps if math.isfinite(est.bps) else "unknown",
                  "queue_delay_s": est.queue_s, "chunk_loss": est.loss}
        for name, ln in self.lanes.items():
            pre = f"{name}." if name else ""
            g = ln.fps_gate
            values.update({f"{pre}k": ln.ctrl.k, f"{pre}sent_bps": ln.sent_bps, f"{pre}receiver_fps": g.receiver_fps,
                           f"{pre}forward_fps": g.forward_fps(now)})
            if self.shared is not None:
                values[f"{pre}share_bps"] = self.shared.shares.get(name, 0.0)
        return 0, "running", values


def msg_scale(msg: LatentChannels) -> int:
    """The frame's scale shift (0 for frames of message versions without the field, or a
    bad value: the bitstream check downstream rejects those)."""
    s = int(getattr(msg, "scale_shift", 0))
    return s if s in (1, 2) and msg.bitstream_version == 4 else 0


def _per_camera(values, names, default, what):
    vals = [v for v in values if v]                         # [0]: not given
    if not vals:
        return [default] * len(names)
    if len(vals) != len(names):
        raise ValueError(f"{what} has {len(vals)} values for {len(names)} cameras")
    return vals


class _Lane:
    """One camera's topics and state in the controller (topics prefixed by its name;
    the single camera's lane has today's names)."""

    def __init__(self, node: BitrateControllerNode, name: str, ctrl: BitrateController):
        self.node, self.name, self.ctrl = node, name, ctrl
        pre = f"{name}/" if name else ""
        self.sent_bps = 0.0
        self.last_k = LATENT_CHANNELS
        self.last_channels = 0
        self.frames = 0
        self.skipped = [0, 0]       # frames skipped for the receiver, for the link
        self.pub = node.create_publisher(LatentChannels, f"{pre}latent_gated", node.qos())
        self.status_pub = node.create_publisher(BitrateStatus, f"{pre}bitrate_status", 10)
        self.budget_pub = node.create_publisher(UInt8, f"{pre}channel_budget", 10)
        self.ladder = isinstance(ctrl, LadderController)
        self.scale_pub = node.create_publisher(UInt8, f"{pre}picture_scale", 10) if self.ladder else None
        self.last_scale = 1
        self.report_sub = node.create_subscription(DeliveryReport, f"{pre}delivery_report", self._on_report, 10)
        self.fps_gate = FrameRateGate(margin=node.p["receiver_fps_margin"])
        self.rate_limit, self.arrived = 0.0, 0
        self.rate_limit_pub = node.create_publisher(Float32, f"{pre}frame_rate_limit", 10)
        node.create_subscription(ReceiverReport, f"{pre}receiver_report", self._on_receiver, 10)
        self.ack_pub = node.create_publisher(ReceiverReport, f"{pre}reference_ack", 10)
        # a relay takes frames in once it can pass them on
        node.when_subscribed(self.pub, lambda: node.create_subscription(
            LatentChannels, f"{pre}latent", self._on_latent, node.qos()), "taking frames from latent")

    def _on_report(self, r: DeliveryReport):
        # link times are on the receiver's clock: the estimator uses only their differences
        # and their offset from our send times (its minimum filter absorbs the clocks' offset)
        args = (r.sequence, r.bytes * 8, stamp_to_s(r.link_start), stamp_to_s(r.link_end), r.channels_sent,
                r.channels_received, time.monotonic(), r.partial, float(r.link_rate_bps))
        if self.node.shared is not None:
            self.node.shared.on_delivery_report(self.name, *args)
        else:
            self.ctrl.on_delivery_report(*args)
        self.node.count("progress_reports" if r.partial else "delivery_reports")

    def _on_receiver(self, r: ReceiverReport):
        self.fps_gate.on_receiver_fps(r.max_fps, time.monotonic())
        self.ack_pub.publish(r)
        self.node.count("receiver_reports")

    def _publish_rate_limit(self, now: float):
        """Tell a host encoder the frame rate worth encoding (0: all), on a change of 5 %
        and every 10 frames: it skips the others before encoding, so a CPU the decoder
        shares is not spent on frames that would be skipped here."""
        g = self.fps_gate
        src, fwd = g.source_fps, g.forward_fps(now)
        limit = fwd if math.isfinite(src) and math.isfinite(fwd) and fwd < 0.98 * src else 0.0
        if abs(limit - self.rate_limit) > 0.05 * max(limit, self.rate_limit) or self.arrived % 10 == 0:
            self.rate_limit_pub.publish(Float32(data=float(limit)))
        self.rate_limit = limit

    def _decide(self, lengths, stamp, now, age):
        node = self.node
        self.ctrl.expect_reports = node.count_publishers(self.report_sub.topic_name) > 0
        if node.shared is not None:
            return node.shared.decide(self.name, lengths, stamp, now, age_s=age)
        if self.ladder:
            return self.ctrl.decide(lengths, stamp, now, age_s=age, scale_shift=msg_scale(self._msg))
        return self.ctrl.decide(lengths, stamp, now, age_s=age)

    def _note_sent(self, bits: int):
        """Sent rate, smoothed over frames; a skipped frame sends 0 bits (or a camera that
        skips every other frame would report twice its rate)."""
        self.sent_bps += 0.2 * (bits / self.ctrl.interval - self.sent_bps)

    def _on_latent(self, msg: LatentChannels):
        node = self.node
        stamp = stamp_to_s(msg.header.stamp)
        now = time.monotonic()
        self.arrived += 1
        if node.p["follow_receiver_fps"]:
            node.share_receiver(now)
        admit = self.fps_gate.admit(stamp, now, int(msg.sequence))
        if node.p["follow_receiver_fps"]:
            self._publish_rate_limit(now)
        if node.p["follow_receiver_fps"] and not admit:
            node.count("frames_skipped")          # the receiver could not show it: spend no link time
            self.skipped[0] += 1
            self._note_sent(0)
            self._publish_status(msg, None)
            return
        idx = list(msg.channel_indices)
        if idx != list(range(len(idx))) or len(msg.chunk_lengths) != len(idx):
            # not a prefix: gate what we can by index, sizes unknown for the rest
            node.count("non_prefix_frames")
        lengths = list(msg.chunk_lengths)[:len(idx)]
        self._msg = msg
        d = self._decide(lengths, stamp, time.monotonic(), node._ros_now() - stamp)
        self._publish_scale(d)
        self.last_channels = d.channels
        if d.channels == 0:
            # the link is out, or even min_channels would arrive after the deadline and
            # delay the frames behind it (or, sharing the link, this camera's share buys
            # fewer frames): spend no link time on it
            node.count("frames_skipped_link")
            self.skipped[1] += 1
            self._note_sent(0)
            self._publish_status(msg, d)
            return
        if d.source.endswith("+probe"):
            node.count("probes")                  # sent after a silence, to measure the link again
        out = gate(msg, d.channels)
        self.pub.publish(out)
        bits = message_bytes(out) * 8
        cfg = self.ctrl.cfg if node.shared is None else node.shared.cfg
        if cfg.packet_overhead_bytes:
            bits += 8 * cfg.packet_overhead_bytes * parts_by_k(list(out.chunk_lengths),
                                                                cfg.packet_payload_bytes or PART_BYTES)[-1]
        first = 8 * first_chunk_bytes(message_bytes(out), out.chunk_lengths) or math.nan
        if node.shared is not None:
            node.shared.on_sent(self.name, msg.sequence, bits, time.monotonic(), first)
        else:
            self.ctrl.on_sent(msg.sequence, bits, time.monotonic(), first)
        self._note_sent(bits)
        if d.budget != self.last_k or self.frames % 10 == 0:
            self.budget_pub.publish(UInt8(data=d.budget))
        self.last_k = d.budget
        self.frames += 1
        self._publish_status(msg, d)
        node.count("frames")
        node.count("channels_dropped", len(idx) - len(out.channel_indices))

    def _publish_scale(self, d):
        """The ladder's scale request, as the denominator (1, 2, 4), when it changes and
        every 10 frames (a source that starts late learns it)."""
        if self.scale_pub is None:
            return
        scale = 1 << getattr(d, "scale_shift", 0)
        if scale != self.last_scale or self.frames % 10 == 0:
            self.scale_pub.publish(UInt8(data=scale))
            if scale != self.last_scale:
                self.node.count("scale_changes")
        self.last_scale = scale

    def _publish_status(self, msg: LatentChannels, d):
        """d: the decision, or None for a frame skipped for the receiver (channels = 0)."""
        node, now = self.node, time.monotonic()
        if d is None:
            self.last_channels = 0
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
        st.frames_skipped = int(sum(self.skipped))             # this camera's (one camera: the node's)
        st.frame_scale, st.picture_scale = 1 << msg_scale(msg), self.last_scale
        st.header = msg.header
        self.status_pub.publish(st)
        if node.shared is not None:
            node._publish_total(msg, d)


def main(args=None):
    run_node(BitrateControllerNode, args)
