"""link_emulator_node: imposes a bandwidth / loss / delay trace between the controller
and the decoder.

Subscribes `latent_gated` (several cameras: `<name>/latent_gated` each, one FIFO for
all, as on one radio); serialises frames through the link at the trace's current
bandwidth (FIFO), drops whole channel chunks by the loss ratio (the decoder zero-fills
them), publishes what arrives on `latent_link` at its delivery time and a
`delivery_report` for each frame; with `act_as_link_monitor` it also publishes the
trace's state on `link_quality` (10 Hz, and at once when the link changes, as radio
drivers signal rate changes), otherwise nothing, so the controller must estimate.

With `carry: compressed_image` it carries `sensor_msgs/CompressedImage` instead
(`compressed` -> `compressed_link`; a loss drops the whole image): the JPEG baseline of
`mcucoder-ros evaluate-abr --live` crosses the same link code.
"""
from __future__ import annotations

import heapq
import math
import time

from ..link_emulation import LinkEmulator, Trace, first_chunk_bytes
from ..msg import DeliveryReport, LatentChannels, LinkQuality
from .common import QOS_PARAMS, WAIT_PARAM, McuNode, ParamSpec, message_bytes, run_node


def _time_msg(t: float):
    from builtin_interfaces.msg import Time
    return Time(sec=int(t), nanosec=int((t % 1) * 1e9))


class LinkEmulatorNode(McuNode):
    PARAMS = {
        "trace": ParamSpec("", "CSV t,bandwidth_bps[,loss][,delay_ms]", read_only=True),
        "act_as_link_monitor": ParamSpec(True, "publish the trace's bandwidth/loss/delay on link_quality"),
        "loop": ParamSpec(False, "restart the trace at its end", read_only=True),
        "seed": ParamSpec(0, "random seed of chunk losses", range=(0, 2**31 - 1), read_only=True),
        "carry": ParamSpec("latent", "what crosses the link: latent (LatentChannels) or compressed_image "
                           "(sensor_msgs/CompressedImage, for baselines)", choices=["latent", "compressed_image"],
                           read_only=True),
        "cameras": ParamSpec([""], "several cameras on the one link: <name>/latent_gated in, <name>/latent_link "
                             "and <name>/delivery_report out, one FIFO for all (empty: one camera)",
                             read_only=True),
        **WAIT_PARAM,
        **QOS_PARAMS,
    }

    def __init__(self, **kwargs):
        super().__init__("link_emulator_node", **kwargs)
        if not self.p["trace"]:
            raise ValueError("parameter 'trace' (a CSV file) is required")
        self.trace = Trace.load(self.p["trace"])
        self.t0 = time.monotonic()
        self.link = LinkEmulator(self.trace, self.p["seed"])
        self.queue = []            # (delivery time, n, message, report)
        self.n = 0
        self._reported = None      # the trace point last published on link_quality
        self.ports = {}            # camera -> (output publisher, delivery_report publisher)
        self.lq = self.create_publisher(LinkQuality, "link_quality", 10)
        cameras = [c for c in self.p["cameras"] if c]
        if self.p["carry"] == "compressed_image":
            if cameras:
                raise ValueError("carry: compressed_image takes one camera")
            from sensor_msgs.msg import CompressedImage
            self._port("", CompressedImage, "compressed", self._on_image)
        else:
            for cam in cameras or [""]:
                self._port(cam, LatentChannels, "latent_gated", lambda m, cam=cam: self._on_frame(m, cam))
        self.create_timer(0.005, self._deliver)
        self.create_timer(0.1, self._monitor)

    def _port(self, cam: str, msg_type, input_name: str, callback) -> None:
        """One camera's way across the link (its topics prefixed by its name)."""
        pre = f"{cam}/" if cam else ""
        out_name = "compressed_link" if input_name == "compressed" else "latent_link"
        out = self.create_publisher(msg_type, pre + out_name, self.qos())
        self.ports[cam] = (out, self.create_publisher(DeliveryReport, pre + "delivery_report", 10))
        # a relay takes frames in once it can pass them on
        self.when_subscribed(out, lambda: self.create_subscription(msg_type, pre + input_name, callback, self.qos()),
                             "carrying frames")

    def restart(self) -> None:
        """Start the trace (and an empty link) from now."""
        self.t0 = time.monotonic()
        self.link = LinkEmulator(self.trace, self.p["seed"])
        self.queue.clear()

    def now(self) -> float:
        t = time.monotonic() - self.t0
        return t % self.trace.duration if self.p["loop"] and self.trace.duration > 0 else t

    def _on_frame(self, m: LatentChannels, cam: str = ""):
        t = self.now()
        n_chunks = len(m.channel_indices)
        nbytes = message_bytes(m)
        lens = list(m.chunk_lengths)
        first = first_chunk_bytes(nbytes, lens)
        d = self.link.send(t, nbytes, n_chunks, first)
        kept = set(d.kept)
        out = LatentChannels()
        out.header = m.header
        out.sequence, out.model_id, out.bitstream_version = m.sequence, m.model_id, m.bitstream_version
        out.num_channels, out.latent_height, out.latent_width = m.num_channels, m.latent_height, m.latent_width
        out.width, out.height, out.scale_shift = m.width, m.height, m.scale_shift
        lens, payload, off = [], bytearray(), 0
        idx, refs = [], []
        deltas = list(m.reference_deltas) or [0] * n_chunks
        for i, (c, n) in enumerate(zip(m.channel_indices, m.chunk_lengths)):
            if i in kept:
                idx.append(c)
                lens.append(n)
                refs.append(deltas[i] if i < len(deltas) else 0)
                payload += bytes(m.payload[off:off + n])
            off += n
        from array import array
        out.channel_indices, out.chunk_lengths, out.payload = array("B", idx), array("H", lens), array("B", payload)
        if any(refs):                         # video mode: each kept chunk keeps its reference
            out.reference_deltas = array("B", refs)
        elif m.bitstream_version < 3:         # 224x224 with only intra chunks left: a version 1 frame
            out.bitstream_version = 1
        self._queue(t, d, m.header, m.sequence, nbytes, n_chunks, len(idx), out, first, cam)

    def _on_image(self, m):
        t = self.now()
        d = self.link.send(t, len(m.data), 1)
        self._queue(t, d, m.header, self.n, len(m.data), 1, len(d.kept), m if d.kept else None)

    def _queue(self, t, d, header, sequence, nbytes, sent, received, out, first_bytes=0, cam=""):
        # report link times on the ROS clock, like the capture stamps
        to_ros = self.get_clock().now().nanoseconds * 1e-9 - t
        rep = DeliveryReport(sequence=sequence, bytes=nbytes, link_start=_time_msg(d.start + to_ros),
                             link_end=_time_msg(d.end + to_ros), channels_sent=sent, channels_received=received)
        rep.header = header
        if math.isfinite(d.first_end):       # a progress report once the first chunk has crossed
            prog = DeliveryReport(sequence=sequence, bytes=first_bytes, link_start=rep.link_start,
                                  link_end=_time_msg(d.first_end + to_ros), channels_sent=sent,
                                  channels_received=int(0 in d.kept), partial=True)
            prog.header = header
            heapq.heappush(self.queue, (d.first_end + d.delivered - d.end, self.n, cam, None, prog))
            self.n += 1
        heapq.heappush(self.queue, (d.delivered, self.n, cam, out, rep))
        self.n += 1
        self.count("frames_in")
        self.count("chunks_lost", sent - received)

    def _deliver(self):
        t = self.now()
        if self.p["act_as_link_monitor"] and self.trace.at(t) != self._reported:
            self._monitor()                      # a link change is reported at once, like a rate-change event
        while self.queue and self.queue[0][0] <= t:
            _, _, cam, out, rep = heapq.heappop(self.queue)
            out_pub, report_pub = self.ports[cam]
            if out is not None:                  # None: a compressed image lost whole, or a progress report
                out_pub.publish(out)
            report_pub.publish(rep)
            if not rep.partial:
                self.count("frames_out")

    def _monitor(self):
        if not self.p["act_as_link_monitor"]:
            return
        p = self.trace.at(self.now())
        self._reported = p
        m = LinkQuality(bandwidth_bps=float(p.bandwidth_bps), packet_loss=float(p.loss),
                        round_trip_time_s=float(2 * p.delay_ms / 1000), rssi_dbm=math.nan)
        m.header.stamp = self.get_clock().now().to_msg()
        self.lq.publish(m)

    def diagnostics(self):
        p = self.trace.at(self.now())
        return 0, "running", {"bandwidth_bps": p.bandwidth_bps, "queued_frames": len(self.queue),
                              "backlog_s": max(0.0, self.link.free_at - self.now())}


def main(args=None):
    run_node(LinkEmulatorNode, args)
