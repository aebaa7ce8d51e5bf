"""mcu_bridge_node: the MCU camera's serial stream -> `latent` (LatentChannels).

Opens a tty, a pty or a `socket://host:port` URL (pyserial), parses the serial
protocol (docs/serial-protocol.md), publishes each frame as soon as it is complete
(or, partial, when the next one starts), forwards `channel_budget` to the device,
and reopens the port with back-off when it vanishes.  Garbage is counted, never fatal.
With `video_mode`, the receiver's acknowledgements (`reference_ack`) go to the device
as ACK commands, and it codes channels against them (bitstream v2).
"""
from __future__ import annotations

import threading
import time

import serial
from std_msgs.msg import UInt8

from ..codec.geometry import LATENT_CHANNELS
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
        **WAIT_PARAM,
        **QOS_PARAMS,
    }

    def __init__(self, **kwargs):
        super().__init__("mcu_bridge_node", **kwargs)
        if not self.p["port"]:
            raise ValueError("parameter 'port' is required (a tty, a pty or socket://host:port)")
        self.pub = self.create_publisher(LatentChannels, "latent", self.qos())
        self.create_subscription(UInt8, "channel_budget", self._on_budget, 10)
        if self.p["video_mode"]:
            self.create_subscription(ReceiverReport, "reference_ack", self._on_ack, 10)
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
        s.write(sp.request_hello())
        if self.p["fps"]:
            s.write(sp.set_fps(self.p["fps"]))
        self.get_logger().info(f"opened {self.p['port']}")

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

    def handle_bytes(self, data: bytes):
        for pkt in self.parser.feed(data):
            had_hello = self.assembler.hello
            for df in self.assembler.on_packet(pkt):
                self._publish(df)
            if pkt.type == sp.HELLO and self.assembler.hello_error:
                self.get_logger().error(self.assembler.hello_error)
            elif pkt.type == sp.HELLO and self.assembler.hello is not had_hello:
                h = self.assembler.hello
                self.get_logger().info(f"device: firmware {h.firmware_version >> 8}.{h.firmware_version & 0xff}, "
                                       f"{sp.TARGETS.get(h.target, h.target)}, model {h.model_id:#010x}")
                # the device has its UART up now (bytes sent before that are lost, and a
                # device that restarted forgot its settings): (re)send the frame rate
                if self.p["fps"]:
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
    def _on_budget(self, msg: UInt8):
        if 1 <= msg.data <= LATENT_CHANNELS:
            self._write(sp.set_budget(int(msg.data)))

    def _on_ack(self, r: ReceiverReport):
        self._write(sp.ack(r.sequence, list(r.channels_decoded), r.refresh_request))
        self.count("acks_forwarded")

    def on_parameter_changed(self, name, value):
        if name == "fps":
            self._write(sp.set_fps(value))

    def diagnostics(self):
        h = self.assembler.hello
        vals = {"fps": self.rate.rate, "bytes_in": self.bytes_in, "crc_errors": self.parser.crc_errors,
                "framing_errors": self.parser.framing_errors, "resyncs": self.parser.resyncs,
                **{f"{k}": v for k, v in self.assembler.errors.items()},
                "connected": self.ser is not None, "model_id": f"{h.model_id:#010x}" if h else "unknown"}
        level = 0 if self.ser is not None and h else 1
        msg = self.assembler.hello_error or ("streaming" if h else "waiting for device HELLO")
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
