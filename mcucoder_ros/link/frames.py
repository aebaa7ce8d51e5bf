"""Assemble device packets into bitstream frames (pure; used by mcu_bridge_node)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..codec import bitstream, geometry
from . import serial_protocol as sp


@dataclass
class PendingFrame:
    sequence: int
    capture_us: int
    k: int
    chunks: dict = field(default_factory=dict)
    references: dict = field(default_factory=dict)    # video mode: channel -> reference delta
    width: int = 224                                   # the camera's picture size (FRAME_HEADER)
    height: int = 224
    scale_shift: int = 0                               # coded at 1 / 2^scale_shift of it


@dataclass
class DeviceFrame:
    frame: bitstream.Frame
    capture_us: int
    complete: bool
    encode_ticks: int | None


class FrameAssembler:
    """HELLO / FRAME_HEADER / CHUNK... / FRAME_END -> DeviceFrame.  A frame whose end never
    arrives is still delivered (with the channels that did) when the next header comes."""

    def __init__(self, expected_model_id: int | None = None):
        self.expected_model_id = expected_model_id
        self.hello: sp.Hello | None = None
        self.hello_error: str | None = None
        self.pending: PendingFrame | None = None
        self.last_sequence: int | None = None      # of the last frame delivered
        self.last_status: tuple | None = None
        self.errors = {"protocol": 0, "orphan_chunks": 0, "duplicates": 0, "partial_frames": 0, "version": 0,
                       "device_errors": 0}
        self.device_error: str | None = None      # the device's last DEVICE_ERROR, as text

    def _finish(self, complete: bool, ticks=None) -> DeviceFrame | None:
        p, self.pending = self.pending, None
        if p is None or self.hello is None:
            return None
        self.last_sequence = p.sequence
        chans = sorted(c for c in p.chunks if c < p.k)
        # a frame is usable up to the first missing channel only if channels are a prefix;
        # any received subset is still valid bitstream (the decoder zero-fills)
        refs = [p.references.get(c, 0) for c in chans]
        frame = bitstream.Frame(self.hello.model_id, p.sequence, chans, [p.chunks[c] for c in chans],
                                references=refs if any(refs) else None, width=p.width, height=p.height,
                                scale_shift=p.scale_shift)
        if not complete or len(chans) < p.k:
            self.errors["partial_frames"] += 1
        return DeviceFrame(frame, p.capture_us, complete and len(chans) == p.k, ticks)

    def on_packet(self, pkt: sp.Packet) -> list[DeviceFrame]:
        out = []
        try:
            if pkt.type == sp.HELLO:
                try:
                    self.hello = sp.Hello.parse(pkt.payload)
                    self.hello_error = None
                except sp.ProtocolError as e:
                    self.hello, self.hello_error = None, str(e)
                    self.errors["version"] += 1
            elif pkt.type == sp.FRAME_HEADER:
                fh = sp.FrameHeader.parse(pkt.payload)
                seq, cap, nc, h, w, k, ver = (fh.sequence, fh.capture_us, fh.num_channels, fh.latent_height,
                                              fh.latent_width, fh.k, fh.version)
                try:
                    geometry.check_size(fh.width, fh.height)
                    coded = geometry.coded_size(fh.width, fh.height, fh.scale_shift)
                    geometry.check_size(*coded)
                except geometry.SizeError as e:
                    raise sp.ProtocolError(f"FRAME_HEADER: {e}") from None
                sized = (fh.width, fh.height) != (geometry.IMAGE_SIZE, geometry.IMAGE_SIZE)
                expected = bitstream.VERSION_SCALED if fh.scale_shift else bitstream.VERSION_SIZED if sized else None
                if (nc, h, w) != (12, *geometry.latent_shape(*coded)) or ver not in bitstream.VERSIONS \
                        or (expected is None and ver not in (bitstream.VERSION, bitstream.VERSION_INTER)) \
                        or (expected is not None and ver != expected) or not 0 <= k <= nc:
                    raise sp.ProtocolError(f"unsupported frame geometry {nc}x{h}x{w} ({fh.width}x{fh.height}) "
                                           f"v{ver} k={k}")
                if seq == self.last_sequence or (self.pending is not None and self.pending.sequence == seq):
                    self.errors["duplicates"] += 1          # a repeated frame: keep the first
                    return out
                if self.pending is not None:
                    f = self._finish(False)
                    out += [f] if f else []
                self.pending = PendingFrame(seq, cap, k, width=fh.width, height=fh.height, scale_shift=fh.scale_shift)
            elif pkt.type in (sp.CHUNK, sp.CHUNK_INTER):
                if pkt.type == sp.CHUNK:
                    (seq, ch, data), delta = sp.parse_chunk(pkt.payload), 0
                else:
                    seq, ch, delta, data = sp.parse_chunk_inter(pkt.payload)
                if self.pending is None or seq != self.pending.sequence or ch >= self.pending.k:
                    self.errors["orphan_chunks"] += 1
                elif ch in self.pending.chunks:
                    self.errors["duplicates"] += 1
                else:
                    self.pending.chunks[ch] = data
                    if delta:
                        self.pending.references[ch] = delta
            elif pkt.type == sp.FRAME_END:
                seq, ticks = sp.parse_fixed(sp.FRAME_END_FMT, pkt.payload, "FRAME_END")
                if self.pending is not None and seq == self.pending.sequence:
                    f = self._finish(True, ticks)
                    out += [f] if f else []
            elif pkt.type == sp.DEVICE_ERROR:
                code, text = sp.parse_device_error(pkt.payload)
                self.errors["device_errors"] += 1
                self.device_error = f"device error ({sp.DEVICE_ERRORS.get(code, code)}): {text}"
            elif pkt.type == sp.STATUS:
                fmt = sp.STATUS2_FMT if len(pkt.payload) == sp.STATUS2_FMT.size else sp.STATUS_FMT
                self.last_status = sp.parse_fixed(fmt, pkt.payload, "STATUS")
            else:
                self.errors["protocol"] += 1
        except (sp.ProtocolError, bitstream.BitstreamError):
            self.errors["protocol"] += 1
        return out
