"""MCUCoder frame bitstream, versions 1, 2 and 3 (specified in docs/bitstream.md).

Versions 1 and 2 are 224x224 frames (what the firmware sends):

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
of frame sequence - d).  A 224x224 frame whose chunks are all intra is written as version 1.

Version 3 carries the picture's size (any size up to 1920x1088; a 224x224 frame is
still written as version 1 or 2, byte for byte what the firmware sends):

    0      2     magic b"MC"
    2      1     version (3)
    3      1     flags (0; reserved)
    4      4     model_id      u32 LE
    8      4     sequence      u32 LE
    12     1     num_channels  (12)
    13     1     chunk_count   n (0..num_channels)
    14     2     width         u16 LE, pixels
    16     2     height        u16 LE, pixels
    18     4n    chunk table as version 2: channel u8, length u16 LE, reference u8
    18+4n  ...   the chunks

The latent is ceil(height / 8) x ceil(width / 8) per channel; every limit (chunk and
frame length) follows from the size in the header.

Version 4 is a picture coded at 1/2 or 1/4 of the camera's size (the resolution
ladder): version 3's layout, with byte 3 the scale shift s (1 or 2) and width and
height the camera's size, which the receiver shows; the coded picture is
ceil(width / 2^s) x ceil(height / 2^s) (geometry.decimate), and the latent follows
from that.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .entropy import MAX_CHUNK_BYTES_ANY, max_chunk_bytes
from .geometry import (
    IMAGE_SIZE,
    LATENT_CHANNELS,
    MAX_LONG_SIDE,
    MAX_SHORT_SIDE,
    MIN_SIDE,
    SizeError,
    check_scale,
    check_size,
    coded_size,
    latent_shape,
)

MAGIC = b"MC"
VERSION = 1              # 224x224, intra only
VERSION_INTER = 2        # 224x224, chunk table with a reference per chunk
VERSION_SIZED = 3        # any size: width and height in the header, chunk table as version 2
VERSION_SCALED = 4       # coded at 1/2 or 1/4 of the camera's size (byte 3: the scale shift)
VERSIONS = (VERSION, VERSION_INTER, VERSION_SIZED, VERSION_SCALED)
HEADER = struct.Struct("<2sBBIIBBBB")             # versions 1 and 2
HEADER_V3 = struct.Struct("<2sBBIIBBHH")          # versions 3 and 4
CHUNK_ENTRY = struct.Struct("<BH")
CHUNK_ENTRY_V2 = struct.Struct("<BHB")            # versions 2 and 3


def max_frame_bytes(width: int = IMAGE_SIZE, height: int = IMAGE_SIZE) -> int:
    """The longest frame of a picture of this size: header, full chunk table, 12 chunks
    of the longest length a channel of that size can have."""
    header = HEADER if (width, height) == (IMAGE_SIZE, IMAGE_SIZE) else HEADER_V3
    return header.size + LATENT_CHANNELS * (CHUNK_ENTRY_V2.size + max_chunk_bytes(latent_shape(width, height)))


MAX_FRAME_BYTES_224 = max_frame_bytes()                                   # 14,272 bytes
MAX_FRAME_BYTES = HEADER_V3.size + LATENT_CHANNELS * (CHUNK_ENTRY_V2.size + MAX_CHUNK_BYTES_ANY)  # 1920x1088


class BitstreamError(ValueError):
    """Malformed, truncated or inconsistent frame bytes."""


@dataclass
class Frame:
    model_id: int
    sequence: int
    channel_indices: list[int]
    chunks: list[bytes]
    num_channels: int = LATENT_CHANNELS
    latent_height: int | None = None        # None: from the picture size (ceil(height / 8))
    latent_width: int | None = None
    flags: int = 0
    extra: dict = field(default_factory=dict)
    references: list[int] | None = None     # per chunk: 0 intra, d > 0 inter against frame sequence - d
    width: int = IMAGE_SIZE                 # the picture's size in pixels (the camera's)
    height: int = IMAGE_SIZE
    scale_shift: int = 0                    # coded at 1 / 2^scale_shift of that size (version 4)

    def __post_init__(self):
        try:
            lh, lw = latent_shape(*self.coded_size)
        except SizeError:       # a scale the codec does not take: validate() says so
            lh, lw = latent_shape(self.width, self.height)
        if self.latent_height is None:
            self.latent_height = lh
        if self.latent_width is None:
            self.latent_width = lw

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the picture, in pixels."""
        return self.width, self.height

    @property
    def coded_size(self) -> tuple[int, int]:
        """(width, height) of the picture as coded: the camera's size at this frame's scale."""
        return coded_size(self.width, self.height, self.scale_shift)

    @property
    def latent_shape(self) -> tuple[int, int]:
        return self.latent_height, self.latent_width

    @property
    def reference_deltas(self) -> list[int]:
        return list(self.references) if self.references is not None else [0] * len(self.chunks)

    @property
    def version(self) -> int:
        if self.scale_shift:
            return VERSION_SCALED
        if (self.width, self.height) != (IMAGE_SIZE, IMAGE_SIZE):
            return VERSION_SIZED
        return VERSION_INTER if any(self.reference_deltas) else VERSION

    def validate(self) -> None:
        if not (0 <= self.model_id < 2**32 and 0 <= self.sequence < 2**32):
            raise BitstreamError("model_id and sequence must fit in u32")
        try:
            check_size(self.width, self.height)
            check_scale(self.scale_shift)
        except SizeError as e:
            raise BitstreamError(str(e)) from None
        if min(self.coded_size) < MIN_SIDE:
            raise BitstreamError(f"a {self.width}x{self.height} picture cannot be coded at 1/{1 << self.scale_shift} "
                                 f"of its size (each coded side must be at least {MIN_SIDE})")
        expected = (LATENT_CHANNELS, *latent_shape(*self.coded_size))
        if (self.num_channels, self.latent_height, self.latent_width) != expected:
            raise BitstreamError(f"unsupported latent geometry {self.num_channels}x{self.latent_height}x"
                                 f"{self.latent_width} (expected {expected[0]}x{expected[1]}x{expected[2]} for "
                                 f"{self.width}x{self.height} pixels at scale 1/{1 << self.scale_shift})")
        if len(self.channel_indices) != len(self.chunks):
            raise BitstreamError("one chunk per channel index is required")
        prev = -1
        for c in self.channel_indices:
            if not (0 <= c < self.num_channels) or c <= prev:
                raise BitstreamError(f"channel indices must be strictly increasing in 0..{self.num_channels - 1}: "
                                     f"{list(self.channel_indices)}")
            prev = c
        limit = max_chunk_bytes(self.latent_shape)
        for c, ch in zip(self.channel_indices, self.chunks):
            if not 4 <= len(ch) <= limit:
                raise BitstreamError(f"chunk of channel {c} has {len(ch)} bytes (allowed 4..{limit} at "
                                     f"{self.latent_width * 8}x{self.latent_height * 8} coded)")
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


def header_bytes(version: int, chunks: int) -> int:
    """Bytes of a frame's header and chunk table: what a frame costs beyond its chunks."""
    if version == VERSION:
        return HEADER.size + CHUNK_ENTRY.size * chunks
    return (HEADER_V3 if version >= VERSION_SIZED else HEADER).size + CHUNK_ENTRY_V2.size * chunks


def pack(frame: Frame) -> bytes:
    frame.validate()
    version = frame.version
    if version >= VERSION_SIZED:
        flags = frame.scale_shift if version == VERSION_SCALED else frame.flags
        head = HEADER_V3.pack(MAGIC, version, flags, frame.model_id, frame.sequence, frame.num_channels,
                              len(frame.chunks), frame.width, frame.height)
    else:
        head = HEADER.pack(MAGIC, version, frame.flags, frame.model_id, frame.sequence, frame.num_channels,
                           frame.latent_height, frame.latent_width, len(frame.chunks))
    if version == VERSION:
        table = b"".join(CHUNK_ENTRY.pack(c, len(ch)) for c, ch in zip(frame.channel_indices, frame.chunks))
    else:
        table = b"".join(CHUNK_ENTRY_V2.pack(c, len(ch), d)
                         for c, ch, d in zip(frame.channel_indices, frame.chunks, frame.reference_deltas))
    return head + table + frame.payload


def unpack(data: bytes) -> Frame:
    """Frame bytes -> Frame, checked; BitstreamError on anything malformed.  The length
    is checked against the largest frame before anything is read, and against the
    largest frame of the picture size the header states once that is known."""
    data = bytes(data[:MAX_FRAME_BYTES + 1])
    if len(data) > MAX_FRAME_BYTES:
        raise BitstreamError(f"frame of more than {MAX_FRAME_BYTES} bytes exceeds the maximum {MAX_FRAME_BYTES} "
                             f"(a {MAX_LONG_SIDE}x{MAX_SHORT_SIDE} picture)")
    if len(data) < 3:
        raise BitstreamError(f"truncated frame header ({len(data)} bytes)")
    if data[:2] != MAGIC:
        raise BitstreamError(f"not an MCUCoder frame (magic {data[:2]!r})")
    version = data[2]
    if version not in VERSIONS:
        raise BitstreamError(f"unsupported bitstream version {version} (this decoder reads {VERSIONS})")
    header = HEADER_V3 if version >= VERSION_SIZED else HEADER
    if len(data) < header.size:
        raise BitstreamError(f"truncated frame header ({len(data)} of {header.size} bytes)")
    shift = 0
    if version >= VERSION_SIZED:
        _, _, flags, model_id, seq, nc, n, w, h = header.unpack_from(data)
        if version == VERSION_SCALED:
            shift, flags = flags, 0
            if shift not in (1, 2):
                raise BitstreamError(f"frame header: scale shift {shift} (a version 4 frame is coded at 1/2 or 1/4)")
        try:
            check_size(w, h)
        except SizeError as e:
            raise BitstreamError(f"frame header: {e}") from None
        if min(coded_size(w, h, shift)) < MIN_SIDE:
            raise BitstreamError(f"frame header: a {w}x{h} picture cannot be coded at 1/{1 << shift}")
        lh, lw = latent_shape(*coded_size(w, h, shift))
    else:
        _, _, flags, model_id, seq, nc, lh, lw, n = header.unpack_from(data)
        w = h = IMAGE_SIZE
    if n > nc:
        raise BitstreamError(f"chunk count {n} exceeds channel count {nc}")
    limit = max_frame_bytes(*coded_size(w, h, shift)) if shift else max_frame_bytes(w, h)
    if len(data) > limit:
        raise BitstreamError(f"frame of {len(data)} bytes exceeds the maximum {limit} of a "
                             f"{w}x{h} picture at scale 1/{1 << shift}")
    entry = CHUNK_ENTRY if version == VERSION else CHUNK_ENTRY_V2
    table_end = header.size + n * entry.size
    if len(data) < table_end:
        raise BitstreamError("truncated chunk table")
    entries = [entry.unpack_from(data, header.size + i * entry.size) for i in range(n)]
    refs = [e[2] for e in entries] if version != VERSION else None
    return from_payload(model_id, seq, [e[0] for e in entries], [e[1] for e in entries], data[table_end:],
                        num_channels=nc, latent_height=lh, latent_width=lw, flags=flags,
                        references=refs, width=w, height=h, scale_shift=shift)


def from_payload(model_id, sequence, channel_indices, chunk_lengths, payload, *, num_channels=LATENT_CHANNELS,
                 latent_height=None, latent_width=None, flags=0, references=None, width=IMAGE_SIZE,
                 height=IMAGE_SIZE, scale_shift=0) -> Frame:
    """Build a Frame from the fields a LatentChannels message carries (checked)."""
    channel_indices = [int(c) for c in channel_indices]
    chunk_lengths = [int(n) for n in chunk_lengths]
    if len(channel_indices) != len(chunk_lengths):
        raise BitstreamError(f"{len(channel_indices)} channel indices but {len(chunk_lengths)} chunk lengths")
    if len(channel_indices) > LATENT_CHANNELS:
        raise BitstreamError(f"{len(channel_indices)} chunks for at most {LATENT_CHANNELS} channels")
    if any(n < 0 for n in chunk_lengths) or sum(chunk_lengths) != len(payload):
        raise BitstreamError(f"chunk lengths sum to {sum(chunk_lengths)} but the payload has {len(payload)} bytes")
    payload = bytes(payload)
    chunks, off = [], 0
    for n in chunk_lengths:
        chunks.append(payload[off:off + n])
        off += n
    f = Frame(int(model_id), int(sequence), channel_indices, chunks, int(num_channels),
              None if latent_height is None else int(latent_height),
              None if latent_width is None else int(latent_width),
              int(flags), references=[int(d) for d in references] if references else None,
              width=int(width), height=int(height), scale_shift=int(scale_shift))
    f.validate()
    return f


def from_message(m) -> Frame:
    """A LatentChannels message (rclpy's, or one read from a bag by rosbags: the same
    field names) -> Frame, checked; raises BitstreamError on inconsistent fields.
    Messages of the first message versions lack `reference_deltas`, `width` and
    `height`: their frames are version 1 or 2, 224x224."""
    if m.bitstream_version not in VERSIONS:
        raise BitstreamError(f"unsupported bitstream version {m.bitstream_version}")
    refs = [int(d) for d in getattr(m, "reference_deltas", ())]     # bags of the first message version lack it
    if m.bitstream_version == VERSION and refs:
        raise BitstreamError("a version 1 frame carries no references")
    if refs and len(refs) != len(m.channel_indices):
        raise BitstreamError(f"{len(refs)} references for {len(m.channel_indices)} chunks")
    w, h = int(getattr(m, "width", 0)), int(getattr(m, "height", 0))
    shift = int(getattr(m, "scale_shift", 0))
    if shift and m.bitstream_version != VERSION_SCALED:
        raise BitstreamError(f"a version {m.bitstream_version} frame is not scaled (scale_shift {shift})")
    if m.bitstream_version == VERSION_SCALED and shift not in (1, 2):
        raise BitstreamError(f"a version 4 frame is coded at 1/2 or 1/4 (scale_shift {shift})")
    if m.bitstream_version >= VERSION_SIZED:
        if not w or not h:
            raise BitstreamError(f"a version {m.bitstream_version} frame needs its width and height")
    elif (w, h) in ((0, 0), (IMAGE_SIZE, IMAGE_SIZE)):
        w = h = IMAGE_SIZE
    else:
        raise BitstreamError(f"a version {m.bitstream_version} frame is 224x224, not {w}x{h}")
    return from_payload(m.model_id, m.sequence, list(m.channel_indices), list(m.chunk_lengths),
                        bytes(m.payload), num_channels=m.num_channels, latent_height=m.latent_height,
                        latent_width=m.latent_width, references=refs or None, width=w, height=h,
                        scale_shift=shift)
