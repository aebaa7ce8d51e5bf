"""MCU <-> host serial protocol, versions 1 and 2 (specified in docs/serial-protocol.md).

Packet:  type u8 | length u16 LE | payload (length bytes) | CRC-16/CCITT-FALSE u16 LE
         (CRC over type, length and payload), COBS-encoded, terminated by one 0x00.
A 0x00 never occurs inside an encoded packet, so after any corruption the parser
resynchronises at the next 0x00.  Buffers are bounded (MAX_PAYLOAD).
Version 2 is version 1 sealed with a device key (link/sealed.py).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..codec.entropy import MAX_CHUNK_BYTES_ANY

PROTOCOL_VERSION = 1                    # the unsealed protocol; 2 is the sealed one (link/sealed.py)
PROTOCOL_VERSIONS = (1, 2)
SEAL_OVERHEAD = 21                      # a sealed packet's type, counter and tag (link/sealed.py)
# a channel chunk of the largest picture (1920x1088: 48,968 B; 1,184 at 224x224), its
# header (CHUNK_INTER: 6 B) and the seal
MAX_PAYLOAD = MAX_CHUNK_BYTES_ANY + 6 + SEAL_OVERHEAD
MAX_ENCODED = MAX_PAYLOAD + 5 + (MAX_PAYLOAD + 5) // 254 + 2

# device -> host
HELLO, FRAME_HEADER, CHUNK, FRAME_END, STATUS, CHUNK_INTER = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
DEVICE_ERROR = 0x09                     # code u8, then a line of text (UTF-8)
DEVICE_ERRORS = {1: "camera size", 2: "camera"}
# host -> device
REQUEST_HELLO, SET_BUDGET, SET_FPS, REQUEST_STATUS, ACK = 0x80, 0x81, 0x82, 0x83, 0x84
TARGETS = {0: "host", 1: "cortex-m7 (mps2-an500)", 2: "cortex-m33 (mps2-an505)", 3: "cortex-m3 (mps2-an385)",
           4: "stm32f405 (cortex-m4f)", 5: "cortex-m55 (mps3-an547)"}

HELLO_FMT = struct.Struct("<BHIBIII")          # protocol, fw version, model id, target, ram static, stack, flash
FRAME_HEADER_FMT = struct.Struct("<IIBBBBB")   # seq, capture time us, num ch, h, w, k, bitstream version
FRAME_HEADER_SIZED_FMT = struct.Struct("<IIBBBBBHH")   # ... and the picture's width, height (not 224x224)
FRAME_HEADER_SCALED_FMT = struct.Struct("<IIBBBBBHHB")  # ... and the scale shift (bitstream v4)
FIRMWARE_SCALES = 0x0102        # firmware 1.2 and later take SET_BUDGET's scale byte (HELLO's firmware version)
CHUNK_HEAD_FMT = struct.Struct("<IB")          # seq, channel (chunk bytes follow)
CHUNK_INTER_HEAD_FMT = struct.Struct("<IBB")   # seq, channel, reference delta (video mode; chunk bytes follow)
ACK_FMT = struct.Struct("<IHB")                # seq, channels decoded (bit c: channel c), flags (bit 0: refresh)
FRAME_END_FMT = struct.Struct("<II")           # seq, encode ticks (timer ticks)
STATUS_FMT = struct.Struct("<IIIBHI")          # frames, tx bytes, rx errors, budget, fps x100, uptime ms
STATUS2_FMT = struct.Struct("<IIIBHIIIII")     # protocol 2 adds rejected host packets: bad tag, replay, unsealed,
                                               # malformed


class ProtocolError(ValueError):
    pass


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), bitwise like the C twin."""
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def cobs_encode(data: bytes) -> bytes:
    out = bytearray([0])
    code_pos, code = 0, 1
    for b in data:
        if b == 0:
            out[code_pos] = code
            code_pos, code = len(out), 1
            out.append(0)
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[code_pos] = code
                code_pos, code = len(out), 1
                out.append(0)
    out[code_pos] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError("zero byte inside a COBS packet")
        block = data[i + 1:i + code]
        if len(block) != code - 1:
            raise ProtocolError("COBS block runs past the packet")
        out += block
        i += code
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_packet(ptype: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = struct.pack("<BH", ptype, len(payload)) + payload
    return cobs_encode(body + struct.pack("<H", crc16(body))) + b"\x00"


@dataclass
class Packet:
    type: int
    payload: bytes


class StreamParser:
    """Bytes in (any chunking, any garbage) -> checked packets out; counts errors."""

    def __init__(self):
        self.buf = bytearray()
        self.overflow = False
        self.crc_errors = 0
        self.framing_errors = 0
        self.resyncs = 0
        self.packets = 0

    def feed(self, data: bytes) -> list[Packet]:
        out = []
        for b in data:
            if b != 0:
                if len(self.buf) < MAX_ENCODED:
                    self.buf.append(b)
                else:
                    self.overflow = True          # drop until the next delimiter
                continue
            if self.overflow:
                self.framing_errors += 1
                self.resyncs += 1
            elif self.buf:
                pkt = self._decode(bytes(self.buf))
                if pkt is not None:
                    out.append(pkt)
            self.buf.clear()
            self.overflow = False
        return out

    def _decode(self, enc: bytes) -> Packet | None:
        try:
            raw = cobs_decode(enc)
        except ProtocolError:
            self.framing_errors += 1
            self.resyncs += 1
            return None
        if len(raw) < 5:
            self.framing_errors += 1
            self.resyncs += 1
            return None
        ptype, length = struct.unpack_from("<BH", raw)
        if length != len(raw) - 5:
            self.framing_errors += 1
            self.resyncs += 1
            return None
        if crc16(raw[:-2]) != struct.unpack_from("<H", raw, len(raw) - 2)[0]:
            self.crc_errors += 1
            self.resyncs += 1
            return None
        self.packets += 1
        return Packet(ptype, raw[3:-2])


# --- messages ---------------------------------------------------------------------------

@dataclass
class Hello:
    protocol: int
    firmware_version: int
    model_id: int
    target: int
    ram_static: int
    stack_peak: int
    flash: int
    device_nonce: bytes = b""       # protocol 2: this connection's device nonce (16 bytes)

    @classmethod
    def parse(cls, p: bytes) -> Hello:
        if len(p) < 1:
            raise ProtocolError("empty HELLO")
        if p[0] not in PROTOCOL_VERSIONS:
            raise ProtocolError(f"device speaks serial protocol version {p[0]}; this host understands "
                                f"versions {PROTOCOL_VERSIONS} only: update the host or the firmware")
        size = HELLO_FMT.size + (16 if p[0] == 2 else 0)
        if len(p) != size:
            raise ProtocolError(f"HELLO of {len(p)} bytes, expected {size}")
        return cls(*HELLO_FMT.unpack_from(p), device_nonce=bytes(p[HELLO_FMT.size:]))

    def pack(self) -> bytes:
        return HELLO_FMT.pack(self.protocol, self.firmware_version, self.model_id, self.target, self.ram_static,
                              self.stack_peak, self.flash) + self.device_nonce


def parse_fixed(fmt: struct.Struct, p: bytes, name: str) -> tuple:
    if len(p) != fmt.size:
        raise ProtocolError(f"{name} of {len(p)} bytes, expected {fmt.size}")
    return fmt.unpack(p)


@dataclass
class FrameHeader:
    sequence: int
    capture_us: int
    num_channels: int
    latent_height: int
    latent_width: int
    k: int
    version: int
    width: int = 224            # the camera's picture size: 224x224 in the 13-byte form
    height: int = 224
    scale_shift: int = 0        # coded at 1 / 2^scale_shift of it (18-byte form, version 4)

    @classmethod
    def parse(cls, p: bytes) -> FrameHeader:
        """13 bytes (224x224, bitstream version 1 or 2, as every device sent before), 17
        (the picture's width and height follow: any other size, version 3) or 18 (and the
        scale shift: coded at 1/2 or 1/4 of that size, version 4)."""
        for fmt in (FRAME_HEADER_FMT, FRAME_HEADER_SIZED_FMT, FRAME_HEADER_SCALED_FMT):
            if len(p) == fmt.size:
                return cls(*fmt.unpack(p))
        raise ProtocolError(f"FRAME_HEADER of {len(p)} bytes, expected {FRAME_HEADER_FMT.size}, "
                            f"{FRAME_HEADER_SIZED_FMT.size} or {FRAME_HEADER_SCALED_FMT.size}")

    def pack(self) -> bytes:
        head = (self.sequence, self.capture_us, self.num_channels, self.latent_height, self.latent_width, self.k,
                self.version)
        if self.scale_shift:
            return FRAME_HEADER_SCALED_FMT.pack(*head, self.width, self.height, self.scale_shift)
        if (self.width, self.height) == (224, 224) and self.version in (1, 2):
            return FRAME_HEADER_FMT.pack(*head)
        return FRAME_HEADER_SIZED_FMT.pack(*head, self.width, self.height)


def parse_device_error(p: bytes) -> tuple[int, str]:
    """DEVICE_ERROR -> (code, text)."""
    if len(p) < 1:
        raise ProtocolError("empty DEVICE_ERROR")
    return p[0], p[1:].decode("utf-8", "replace")


def parse_chunk(p: bytes) -> tuple[int, int, bytes]:
    if len(p) < CHUNK_HEAD_FMT.size + 4:
        raise ProtocolError(f"CHUNK of {len(p)} bytes is too short")
    seq, ch = CHUNK_HEAD_FMT.unpack_from(p)
    return seq, ch, p[CHUNK_HEAD_FMT.size:]


def parse_chunk_inter(p: bytes) -> tuple[int, int, int, bytes]:
    if len(p) < CHUNK_INTER_HEAD_FMT.size + 4:
        raise ProtocolError(f"CHUNK_INTER of {len(p)} bytes is too short")
    seq, ch, delta = CHUNK_INTER_HEAD_FMT.unpack_from(p)
    if delta == 0:
        raise ProtocolError("CHUNK_INTER with reference 0")
    return seq, ch, delta, p[CHUNK_INTER_HEAD_FMT.size:]


def ack_payload(sequence: int, channels, refresh: bool = False) -> bytes:
    """Video mode: the receiver decoded these channels of frame `sequence` (and no others)."""
    mask = 0
    for c in channels:
        mask |= 1 << int(c)
    return ACK_FMT.pack(sequence % 2**32, mask & 0xFFFF, 1 if refresh else 0)


def ack(sequence: int, channels, refresh: bool = False) -> bytes:
    return encode_packet(ACK, ack_payload(sequence, channels, refresh))


def budget_payload(k: int, scale_shift: int | None = None) -> bytes:
    """SET_BUDGET: k, and for a device of firmware 1.2 or later the scale shift (0..2)."""
    return bytes([k]) if scale_shift is None else bytes([k, scale_shift])


def set_budget(k: int, scale_shift: int | None = None) -> bytes:
    return encode_packet(SET_BUDGET, budget_payload(k, scale_shift))


def fps_payload(fps: float) -> bytes:
    return struct.pack("<H", int(round(fps * 100)))


def set_fps(fps: float) -> bytes:
    return encode_packet(SET_FPS, fps_payload(fps))


def request_status() -> bytes:
    return encode_packet(REQUEST_STATUS)


def request_hello() -> bytes:
    return encode_packet(REQUEST_HELLO)
