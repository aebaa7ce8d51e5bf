"""MCUCoder frame bitstream, versions 1 and 2 (specified in docs/bitstream.md).

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

Version 2 (inter-frame coding, codec/inter.py) differs only in the chunk table: 4n bytes,
channel u8, length u16 LE, reference u8 (0: intra; d: coded against channel `channel`
of frame sequence - d).  A frame whose chunks are all intra is written as version 1.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .entropy import MAX_CHUNK_BYTES
from .geometry import LATENT_CHANNELS, LATENT_SIZE

MAGIC = b"MC"
VERSION = 1              # intra only
VERSION_INTER = 2        # chunk table with a reference per chunk
VERSIONS = (VERSION, VERSION_INTER)
HEADER = struct.Struct("<2sBBIIBBBB")
CHUNK_ENTRY = struct.Struct("<BH")
CHUNK_ENTRY_V2 = struct.Struct("<BHB")
MAX_FRAME_BYTES = HEADER.size + LATENT_CHANNELS * (CHUNK_ENTRY_V2.size + MAX_CHUNK_BYTES)


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
    references: list[int] | None = None     # per chunk: 0 intra, d > 0 inter against frame sequence - d

    @property
    def reference_deltas(self) -> list[int]:
        return list(self.references) if self.references is not None else [0] * len(self.chunks)

    @property
    def version(self) -> int:
        return VERSION_INTER if any(self.reference_deltas) else VERSION

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
        refs = self.reference_deltas
        if len(refs) != len(self.chunks) or any(not 0 <= int(d) <= 255 for d in refs):
            raise BitstreamError(f"one reference per chunk is required, each in 0..255: {refs}")

    @property
    def payload(self) -> bytes:
        """The chunks concatenated: the LatentChannels message's `payload` field."""
        return b"".join(self.chunks)

    @property
    def chunk_lengths(self) -> list[int]:
        return [len(c) for c in self.chunks]


def pack(frame: Frame) -> bytes:
    frame.validate()
    version = frame.version
    head = HEADER.pack(MAGIC, version, frame.flags, frame.model_id, frame.sequence, frame.num_channels,
                       frame.latent_height, frame.latent_width, len(frame.chunks))
    if version == VERSION:
        table = b"".join(CHUNK_ENTRY.pack(c, len(ch)) for c, ch in zip(frame.channel_indices, frame.chunks))
    else:
        table = b"".join(CHUNK_ENTRY_V2.pack(c, len(ch), d)
                         for c, ch, d in zip(frame.channel_indices, frame.chunks, frame.reference_deltas))
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
    if version not in VERSIONS:
        raise BitstreamError(f"unsupported bitstream version {version} (this decoder reads {VERSIONS})")
    if n > nc:
        raise BitstreamError(f"chunk count {n} exceeds channel count {nc}")
    entry = CHUNK_ENTRY if version == VERSION else CHUNK_ENTRY_V2
    table_end = HEADER.size + n * entry.size
    if len(data) < table_end:
        raise BitstreamError("truncated chunk table")
    entries = [entry.unpack_from(data, HEADER.size + i * entry.size) for i in range(n)]
    refs = [e[2] for e in entries] if version == VERSION_INTER else None
    return from_payload(model_id, seq, [e[0] for e in entries], [e[1] for e in entries], data[table_end:],
                        num_channels=nc, latent_height=lh, latent_width=lw, flags=flags, references=refs)


def from_payload(model_id, sequence, channel_indices, chunk_lengths, payload, *, num_channels=LATENT_CHANNELS,
                 latent_height=LATENT_SIZE, latent_width=LATENT_SIZE, flags=0, references=None) -> Frame:
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
              int(latent_width), int(flags), references=[int(d) for d in references] if references else None)
    f.validate()
    return f


def from_message(m) -> Frame:
    """A LatentChannels message (rclpy's, or one read from a bag by rosbags: the same
    field names) -> Frame, checked; raises BitstreamError on inconsistent fields."""
    if m.bitstream_version not in VERSIONS:
        raise BitstreamError(f"unsupported bitstream version {m.bitstream_version}")
    refs = [int(d) for d in getattr(m, "reference_deltas", ())]     # bags of the first message version lack it
    if m.bitstream_version == VERSION and refs:
        raise BitstreamError("a version 1 frame carries no references")
    if refs and len(refs) != len(m.channel_indices):
        raise BitstreamError(f"{len(refs)} references for {len(m.channel_indices)} chunks")
    return from_payload(m.model_id, m.sequence, list(m.channel_indices), list(m.chunk_lengths),
                        bytes(m.payload), num_channels=m.num_channels, latent_height=m.latent_height,
                        latent_width=m.latent_width, references=refs or None)
