"""mcu_bridge_node: the MCU camera's serial stream -> `latent` (LatentChannels).

Opens a tty, a pty or a `socket://host:port` URL (pyserial), parses the serial
protocol (docs/serial-protocol.md), publishes each frame as soon as it is complete
(or, partial, when the next one starts), forwards `channel_budget` to the device,
and reopens the port with back-off when it vanishes.  Garbage is counted, never fatal.
With `video_mode`, the receiver's acknowledgements (`reference_ack`) go to the device
as ACK commands, and it codes channels against them (bitstream v2).
With `link_key_file`, the link is sealed (serial protocol 2, link/sealed.py): only
packets that authenticate under this connection's keys reach `latent`; the others are
counted by cause (`rejected_*` in diagnostics) and dropped.
"""
from __future__ import annotations

import threading
import time

import serial
from std_msgs.msg import UInt8

from ..codec.geometry import LATENT_CHANNELS
from ..link import sealed
from ..link import serial_protocol as sp
from ..link.frames import FrameAssembler
from ..msg import LatentChannels, ReceiverReport
from .common import QOS_PARAMS, WAIT_PARAM, McuNode, ParamSpec, RateMeter, frame_to_msg, run_node


class McuBridgeNode(McuNode):
    PARAMS = {
        "port": ParamSpec("", "serial device, pty or socket://host:port URL", read_only=True),
        "baudrate": ParamSpec(921600, "UART baud rate (ignored for sockets and ptys)", range=(1200, 12_000_000),
                              read_only=True),
        "frame_id": ParamSpec("camera", "frame_id stamped on the latent"),
        "fps": ParamSpec(0.0, "frame rate requested from the device (0: as fast as it can)", range=(0.0, 120.0)),
        "reconnect_max_s": ParamSpec(5.0, "longest wait between attempts to reopen the port", range=(0.1, 60.0)),
        "video_mode": ParamSpec(False, "forward the receiver's acknowledgements (reference_ack) to the device, "
                                "which then codes against them (bitstream v2)", read_only=True),
        "link_key_file": ParamSpec("", "device key file (64 hex digits, owner-only): seal the link (serial "
                                   "protocol 2); empty: plain protocol 1", read_only=True),
        "provision_key": ParamSpec(False, "no longer used: the bridge never sends its key, whatever the line "
                                   "says; provision a device with `mcucoder-ros provision --device-id` "
                                   "(docs/serial-protocol.md)", read_only=True),
        **WAIT_PARAM,
        **QOS_PARAMS,
    }

    def __init__(self, **kwargs):
        super().__init__("mcu_bridge_node", **kwargs)
        if not self.p["port"]:
            raise ValueError("parameter 'port' is required (a tty, a pty or socket://host:port)")
        self.pub = self.create_publisher(LatentChannels, "latent", self.qos())
        self.create_subscription(UInt8, "channel_budget", self._on_budget, 10)
        # the picture's scale (denominator 1, 2 or 4), for a device that codes scales (firmware 1.2)
        self.create_subscription(UInt8, "picture_scale", self._on_scale, 10)
        self.scale_shift = 0
        if self.p["video_mode"]:
            self.create_subscription(ReceiverReport, "reference_ack", self._on_ack, 10)
        key = sealed.read_key_file(self.p["link_key_file"]) if self.p["link_key_file"] else None
        self.link = sealed.HostLink(key)
        self.link_error = None
        self.sessions_seen = 0
        self.budget = None              # the last channel budget asked for: sent again to each new session
        if self.p["provision_key"]:
            self.get_logger().error("provision_key is no longer honoured: the bridge never sends its key (a forged "
                                    "HELLO could ask for it); provision the device once with `mcucoder-ros provision "
                                    "--port PORT --key FILE --device-id ID`")
        self.parser = sp.StreamParser()
        self.assembler = FrameAssembler()
        self.rate = RateMeter()
        self.ser = None
        self.lock = threading.Lock()
        self.offset_s = None            # host time - device capture time (min over frames)
        self.bytes_in = 0
        self.device_ended = False
        self.frames_published = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._reader, daemon=True)
        # a device streams from the moment the port opens: open it once frames have somewhere to go
        self.when_subscribed(self.pub, self.thread.start, f"opening {self.p['port']}")

    # -- device I/O (reader thread) -----------------------------------------------------
    def _open(self):
        s = serial.serial_for_url(self.p["port"], baudrate=self.p["baudrate"], timeout=0.1)
        with self.lock:
            self.ser = s
        if not self.link.sealed:        # sealed: HostLink.poll asks for the HELLO, and again until a session
            s.write(sp.request_hello())
        if self.p["fps"] and not self.link.sealed:
            s.write(sp.set_fps(self.p["fps"]))
        self.get_logger().info(f"opened {self.p['port']}" + (" (sealed link, protocol 2)" if self.link.sealed else ""))

    def _reader(self):
        backoff = 0.1
        down_since = None           # the port is missing since then: one warning per outage, not one per retry
        while not self._stop.is_set():
            if self.ser is None:
                try:
                    self._open()
                    backoff = 0.1
                    if down_since is not None:
                        self.get_logger().info(f"{self.p['port']} is back after {time.monotonic() - down_since:.1f} s")
                        down_since = None
                except (serial.SerialException, OSError, ValueError) as e:
                    self.count("open_failures")
                    if down_since is None:
                        down_since = time.monotonic()
                        self.get_logger().warning(f"cannot open {self.p['port']}: {e}; retrying every "
                                                  f"{self.p['reconnect_max_s']:g} s at most")
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.p["reconnect_max_s"])
                    continue
            try:
                data = self.ser.read(4096)
            except (serial.SerialException, OSError, TypeError, AttributeError) as e:
                self.count("port_lost")
                self.get_logger().warning(f"lost {self.p['port']}: {e}; reopening it every "
                                          f"{self.p['reconnect_max_s']:g} s at most")
                self._close()
                down_since = time.monotonic()
                continue
            if data:
                self.bytes_in += len(data)
                self.handle_bytes(data)
            # no session proven yet, or an exchange unanswered: ask for a HELLO again (every
            # 0.5 s while an exchange waits, every second while nothing happens), never giving up
            for r in self.link.poll():
                self.count("handshake_retries")
                self._write(r)

    def handle_bytes(self, data: bytes):
        for raw in self.parser.feed(data):
            passed, replies = self.link.on_packet(raw)
            for r in replies:
                self._write(r)
            if self.link.error != self.link_error:
                self.link_error = self.link.error
                if self.link_error:
                    self.get_logger().error(self.link_error)
            if self.link.sessions != self.sessions_seen:
                # a new session proven (the first, or new keys after a HELLO): the device has
                # the new keys, so the settings sent under the old ones may be lost: send them again
                first = self.sessions_seen == 0
                self.sessions_seen = self.link.sessions
                if first:
                    self.get_logger().info("link sealed: session keys agreed with the device (protocol 2)")
                if self.p["fps"]:
                    self._command(sp.SET_FPS, sp.fps_payload(self.p["fps"]))
                if self.budget is not None:
                    self._command(sp.SET_BUDGET, self._budget_payload())
            for pkt in passed:
                self._on_device_packet(pkt)

    def _on_device_packet(self, pkt):
        had_hello = self.assembler.hello
        for df in self.assembler.on_packet(pkt):
            if self.link.error is None:
                self._publish(df)
        if pkt.type == sp.DEVICE_ERROR and self.assembler.device_error:
            # e.g. a camera picture above the firmware's compiled maximum: the device codes nothing
            self.get_logger().error(self.assembler.device_error)
        if pkt.type == sp.HELLO and self.assembler.hello_error:
            self.get_logger().error(self.assembler.hello_error)
        elif pkt.type == sp.HELLO and self.assembler.hello is not had_hello:
            h = self.assembler.hello
            self.get_logger().info(f"device: firmware {h.firmware_version >> 8}.{h.firmware_version & 0xff}, "
                                   f"{sp.TARGETS.get(h.target, h.target)}, model {h.model_id:#010x}, "
                                   f"serial protocol {h.protocol}")
            # the device has its UART up now (bytes sent before that are lost, and a
            # device that restarted forgot its settings): (re)send the frame rate
            if self.p["fps"] and not self.link.sealed:
                self._write(sp.set_fps(self.p["fps"]))

    def _publish(self, df):
        now = time.time()
        dev = df.capture_us * 1e-6
        self.offset_s = now - dev if self.offset_s is None else min(self.offset_s, now - dev)
        if now - dev - self.offset_s > 5.0:          # device clock restarted: re-anchor
            self.offset_s = now - dev
        t = dev + self.offset_s
        stamp = self.get_clock().now().to_msg()
        stamp.sec, stamp.nanosec = int(t), int((t % 1) * 1e9)
        self.pub.publish(frame_to_msg(df.frame, stamp, self.p["frame_id"]))
        self.frames_published += 1
        self.count("frames")
        self.count("inter_chunks", sum(1 for d in df.frame.reference_deltas if d))
        self.rate.tick()

    def _close(self):
        with self.lock:
            s, self.ser = self.ser, None
        try:
            if s is not None:
                s.close()
        except Exception:  # noqa: BLE001 - closing a vanished port may fail in any way
            pass

    def _command(self, ptype: int, payload: bytes = b""):
        """A command to the device, sealed on a keyed link (dropped, and counted, until
        the session is up: the device refuses commands in the clear)."""
        data = self.link.command(ptype, payload)
        if data is None:
            self.count("commands_before_session")
            return
        self._write(data)

    def _write(self, data: bytes):
        with self.lock:
            s = self.ser
        if s is None:
            self.count("commands_dropped")
            return
        try:
            s.write(data)
        except (serial.SerialException, OSError) as e:
            self.count("write_errors")
            self.get_logger().warning(f"write failed: {e}", throttle_duration_sec=5.0)

    # -- ROS side ---------------------------------------------------------------------
    def _scales(self) -> bool:
        """The device takes SET_BUDGET's scale byte (its HELLO says firmware 1.2 or later)."""
        h = self.assembler.hello
        return h is not None and h.firmware_version >= sp.FIRMWARE_SCALES

    def _budget_payload(self) -> bytes:
        """k, and the scale shift for a device that codes scales (older ones keep scale 1)."""
        return sp.budget_payload(self.budget, self.scale_shift if self._scales() else None)

    def _on_budget(self, msg: UInt8):
        if 1 <= msg.data <= LATENT_CHANNELS:
            self.budget = int(msg.data)
            self._command(sp.SET_BUDGET, self._budget_payload())

    def _on_scale(self, msg: UInt8):
        """picture_scale: the denominator (1, 2 or 4); applied with the next budget command,
        sent at once when a budget is known (the device applies it from its next frame)."""
        shift = {1: 0, 2: 1, 4: 2}.get(int(msg.data))
        if shift is None:
            self.count("bad_picture_scale")
            self.get_logger().warning(f"picture_scale {msg.data}: expected 1, 2 or 4", throttle_duration_sec=5.0)
            return
        if shift and not self._scales():
            self.count("scale_unsupported")
        self.scale_shift = shift
        if self.budget is not None and self._scales():
            self._command(sp.SET_BUDGET, self._budget_payload())

    def _on_ack(self, r: ReceiverReport):
        self._command(sp.ACK, sp.ack_payload(r.sequence, list(r.channels_decoded), r.refresh_request))
        self.count("acks_forwarded")

    def on_parameter_changed(self, name, value):
        if name == "fps":
            self._command(sp.SET_FPS, sp.fps_payload(value))

    def diagnostics(self):
        h = self.assembler.hello
        vals = {"fps": self.rate.rate, "bytes_in": self.bytes_in, "crc_errors": self.parser.crc_errors,
                "framing_errors": self.parser.framing_errors, "resyncs": self.parser.resyncs,
                **{f"{k}": v for k, v in self.assembler.errors.items()},
                "connected": self.ser is not None, "model_id": f"{h.model_id:#010x}" if h else "unknown",
                "sealed": self.link.sealed, "session": self.link.confirmed, "sessions": self.link.sessions,
                "key_exchanges": self.link.exchanges,
                **{f"rejected_{k}": v for k, v in self.link.rejected.items()}}
        if self.assembler.last_status is not None and len(self.assembler.last_status) == 10:
            vals.update(zip(("device_rejected_bad_tag", "device_rejected_replay", "device_rejected_unsealed",
                             "device_rejected_malformed"), self.assembler.last_status[6:]))
        error = self.link.error or self.assembler.device_error
        level = 0 if self.ser is not None and h and not error else 1 if not error else 2
        msg = error or self.assembler.hello_error or (
            ("streaming, sealed" if self.link.confirmed else "waiting for the device's SESSION_OK")
            if h and self.link.sealed else "streaming" if h else "waiting for device HELLO")
        return level, msg, vals

    def destroy_node(self):
        if hasattr(self, "thread"):          # absent when __init__ failed
            self._stop.set()
            if self.thread.is_alive():
                self.thread.join(timeout=2)
            self._close()
        return super().destroy_node()


def main(args=None):
    run_node(McuBridgeNode, args)
