"""MCUCoder frame bitstream, version 1 (specified in docs/bitstream.md).

    offset size  field
    0      2     magic b"MC"
    2      1     version (1)
    3      1     flags (0; reserved)
    4      4     model_id      u32 LE
    8      4     sequence      u32 LE
    12     1     num_channels  (12)
    13     1     latent_height (28)
    14     1     latent_width  (28)
    15     1     chunk_count   n (0..num_channels)
    16     3n    chunk table: channel index u8, chunk length u16 LE (strictly increasing indices)
    16+3n  ...   the chunks, concatenated in table order
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .entropy import MAX_CHUNK_BYTES
from .geometry import LATENT_CHANNELS, LATENT_SIZE

MAGIC = b"MC"
VERSION = 1
HEADER = struct.Struct("<2sBBIIBBBB")
CHUNK_ENTRY = struct.Struct("<BH")
MAX_FRAME_BYTES = HEADER.size + LATENT_CHANNELS * (CHUNK_ENTRY.size + MAX_CHUNK_BYTES)


class BitstreamError(ValueError):
    """Malformed, truncated or inconsistent frame bytes."""


@dataclass
class Frame:
    model_id: int
    sequence: int
    channel_indices: list[int]
    chunks: list[bytes]
    num_channels: int = LATENT_CHANNELS
    latent_height: int = LATENT_SIZE
    latent_width: int = LATENT_SIZE
    flags: int = 0
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if not (0 <= self.model_id < 2**32 and 0 <= self.sequence < 2**32):
            raise BitstreamError("model_id and sequence must fit in u32")
        if (self.num_channels, self.latent_height, self.latent_width) != (LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE):
            raise BitstreamError(f"unsupported latent geometry {self.num_channels}x{self.latent_height}x"
                                 f"{self.latent_width} (expected {LATENT_CHANNELS}x{LATENT_SIZE}x{LATENT_SIZE})")
        if len(self.channel_indices) != len(self.chunks):
            raise BitstreamError("one chunk per channel index is required")
        prev = -1
        for c in self.channel_indices:
            if not (0 <= c < self.num_channels) or c <= prev:
                raise BitstreamError(f"channel indices must be strictly increasing in 0..{self.num_channels - 1}: "
                                     f"{list(self.channel_indices)}")
            prev = c
        for c, ch in zip(self.channel_indices, self.chunks):
            if not 4 <= len(ch) <= MAX_CHUNK_BYTES:
                raise BitstreamError(f"chunk of channel {c} has {len(ch)} bytes (allowed 4..{MAX_CHUNK_BYTES})")

    @property
    def payload(self) -> bytes:
        """The chunks concatenated: the LatentChannels message's `payload` field."""
        return b"".join(self.chunks)

    @property
    def chunk_lengths(self) -> list[int]:
        return [len(c) for c in self.chunks]


def pack(frame: Frame) -> bytes:
    frame.validate()
    head = HEADER.pack(MAGIC, VERSION, frame.flags, frame.model_id, frame.sequence, frame.num_channels,
                       frame.latent_height, frame.latent_width, len(frame.chunks))
    table = b"".join(CHUNK_ENTRY.pack(c, len(ch)) for c, ch in zip(frame.channel_indices, frame.chunks))
    return head + table + frame.payload


def unpack(data: bytes) -> Frame:
    data = bytes(data)
    if len(data) > MAX_FRAME_BYTES:
        raise BitstreamError(f"frame of {len(data)} bytes exceeds the maximum {MAX_FRAME_BYTES}")
    if len(data) < HEADER.size:
        raise BitstreamError(f"truncated frame header ({len(data)} of {HEADER.size} bytes)")
    magic, version, flags, model_id, seq, nc, lh, lw, n = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BitstreamError(f"not an MCUCoder frame (magic {magic!r})")
    if version != VERSION:
        raise BitstreamError(f"unsupported bitstream version {version} (this decoder reads {VERSION})")
    if n > nc:
        raise BitstreamError(f"chunk count {n} exceeds channel count {nc}")
    table_end = HEADER.size + n * CHUNK_ENTRY.size
    if len(data) < table_end:
        raise BitstreamError("truncated chunk table")
    entries = [CHUNK_ENTRY.unpack_from(data, HEADER.size + i * CHUNK_ENTRY.size) for i in range(n)]
    return from_payload(model_id, seq, [e[0] for e in entries], [e[1] for e in entries], data[table_end:],
                        num_channels=nc, latent_height=lh, latent_width=lw, flags=flags)


def from_payload(model_id, sequence, channel_indices, chunk_lengths, payload, *, num_channels=LATENT_CHANNELS,
                 latent_height=LATENT_SIZE, latent_width=LATENT_SIZE, flags=0) -> Frame:
    """Build a Frame from the fields a LatentChannels message carries (checked)."""
    channel_indices = [int(c) for c in channel_indices]
    chunk_lengths = [int(n) for n in chunk_lengths]
    if len(channel_indices) != len(chunk_lengths):
        raise BitstreamError(f"{len(channel_indices)} channel indices but {len(chunk_lengths)} chunk lengths")
    if any(n < 0 for n in chunk_lengths) or sum(chunk_lengths) != len(payload):
        raise BitstreamError(f"chunk lengths sum to {sum(chunk_lengths)} but the payload has {len(payload)} bytes")
    payload = bytes(payload)
    chunks, off = [], 0
    for n in chunk_lengths:
        chunks.append(payload[off:off + n])
        off += n
    f = Frame(int(model_id), int(sequence), channel_indices, chunks, int(num_channels), int(latent_height),
              int(latent_width), int(flags))
    f.validate()
    return f


def from_message(m) -> Frame:
    """A LatentChannels message (rclpy's, or one read from a bag by rosbags: the same
    field names) -> Frame, checked; raises BitstreamError on inconsistent fields."""
    if m.bitstream_version != VERSION:
        raise BitstreamError(f"unsupported bitstream version {m.bitstream_version}")
    return from_payload(m.model_id, m.sequence, list(m.channel_indices), list(m.chunk_lengths),
                        bytes(m.payload), num_channels=m.num_channels, latent_height=m.latent_height,
                        latent_width=m.latent_width)
