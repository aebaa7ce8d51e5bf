"""Inter-frame coding in the latent domain (bitstream v2, docs/bitstream.md).

A channel may be coded against the same channel of an earlier frame, its reference:
conditional coding of the 6-bit symbols, lossless, so a frame decodes to exactly the
picture its intra coding gives.  Per symbol, in raster order:

    r        = the reference's co-located symbol
    residual = (symbol - r) mod 64
    context  = bucket(|a - a'| + |b - b'|)   a, b: left and top symbols of this frame,
                                             a', b': the same positions in the reference
                                             (the channel's edge symbol outside the grid)

coded by the same byte-wise rANS as intra chunks, with a table per (channel, context)
fitted on video (`mcucoder fit-inter`) and shipped beside the model (encoder_inter.npz).
Temporal activity picks the context: where the neighbours did not change, the symbol
most likely did not either.

Robustness (what makes it safe on a lossy link with changing k):
  * the camera predicts only from references the receiver acknowledged (ACK mode);
    it keeps per channel one acknowledged reference and one candidate awaiting its
    acknowledgement (what an MCU can hold: two latents); an acknowledgement of that
    frame or a later one that lacks the channel frees the slot;
  * references older than `max_age` frames are not used: without acknowledgements the
    stream falls back to intra by itself;
  * every channel is refreshed as intra once per `refresh_period` frames, one channel
    at a time (no intra spikes), and the whole frame on the receiver's request;
  * each channel is sent as the shorter of its intra and inter chunks.
The receiver decodes an inter chunk only if it holds that channel of that reference;
otherwise the channel counts as lost (zero-filled, as a dropped channel) and is not
acknowledged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .entropy import (
    NUM_CONTEXTS,
    PROB_BITS,
    PROB_SCALE,
    RANS_L,
    EntropyError,
    RansTables,
    check_chunk,
    normalize_frequencies,
)
from .geometry import LATENT_CHANNELS, NUM_SYMBOLS

TEMPORAL_THRESHOLDS = (0, 1, 2, 3, 5, 8, 12)     # activity <= t -> bucket index; 8 buckets
MAX_REFERENCE_DELTA = 255                         # the chunk table's u8 reference field
assert len(TEMPORAL_THRESHOLDS) + 1 == NUM_CONTEXTS

_TBUCKET_LUT = [int(np.searchsorted(TEMPORAL_THRESHOLDS, a, side="left")) for a in range(2 * NUM_SYMBOLS)]


def inter_residuals_and_contexts(sym: np.ndarray, ref: np.ndarray, edge: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised inter model for a whole channel (any shape) given its reference."""
    s, r = sym.astype(np.int32), ref.astype(np.int32)
    res = (s - r) & (NUM_SYMBOLS - 1)
    ps = np.pad(s, ((1, 0), (1, 0)), constant_values=edge)
    pr = np.pad(r, ((1, 0), (1, 0)), constant_values=edge)
    act = np.abs(ps[1:, :-1] - pr[1:, :-1]) + np.abs(ps[:-1, 1:] - pr[:-1, 1:])
    ctx = np.searchsorted(np.asarray(TEMPORAL_THRESHOLDS), act, side="left")
    return res.ravel(), ctx.ravel()


def fit_inter_tables(sequences, edges) -> np.ndarray:
    """sequences: iterables of uint8 [N, C, 28, 28] symbol arrays of consecutive frames
    -> freqs [C, NUM_CONTEXTS, 64], each frame coded against the one before it."""
    counts = np.zeros((LATENT_CHANNELS, NUM_CONTEXTS, NUM_SYMBOLS), np.int64)
    for seq in sequences:
        for prev, cur in zip(seq[:-1], seq[1:]):
            for ch in range(LATENT_CHANNELS):
                res, ctx = inter_residuals_and_contexts(cur[ch], prev[ch], int(edges[ch]))
                np.add.at(counts[ch], (ctx, res), 1)
    return np.stack([[normalize_frequencies(counts[ch, k]) for k in range(NUM_CONTEXTS)]
                     for ch in range(LATENT_CHANNELS)])


class InterChannelCoder:
    """rANS coder for one channel against a reference, given its [NUM_CONTEXTS, 64] table."""

    def __init__(self, freqs: np.ndarray, edge: int):
        self.tables = RansTables(freqs)
        self.edge = int(edge)
        self.freq, self.cum, self.slot2sym = self.tables.freq, self.tables.cum, self.tables.slot2sym

    def encode(self, sym: np.ndarray, ref: np.ndarray) -> bytes:
        return self.tables.encode(*inter_residuals_and_contexts(sym, ref, self.edge))

    def decode(self, chunk: bytes, ref: np.ndarray) -> np.ndarray:
        """A chunk and its reference's symbols (their shape is the channel's) -> symbols."""
        out = self.tables.decode_c(chunk, self.edge, ref, ref.shape)  # the C decoder; the Python one is the reference
        return self.decode_python(chunk, ref) if out is None else out

    def decode_python(self, chunk: bytes, ref: np.ndarray) -> np.ndarray:
        """The reference decoder in pure Python (and the fallback without the C one)."""
        n = check_chunk(chunk, ref.shape)
        x = int.from_bytes(chunk[:4], "big")
        pos = 4
        freq, cum, s2s, bucket = self.freq, self.cum, self.slot2sym, _TBUCKET_LUT
        mask, edge = PROB_SCALE - 1, self.edge
        height, size = ref.shape
        r_flat = ref.astype(np.int32).ravel().tolist()
        out = [0] * (height * size)
        for i in range(height * size):
            y, xx = divmod(i, size)
            a, a_ref = (out[i - 1], r_flat[i - 1]) if xx else (edge, edge)
            b, b_ref = (out[i - size], r_flat[i - size]) if y else (edge, edge)
            k = bucket[abs(a - a_ref) + abs(b - b_ref)]
            slot = x & mask
            d = s2s[k][slot]
            x = freq[k][d] * (x >> PROB_BITS) + slot - cum[k][d]
            while x < RANS_L:
                if pos >= n:
                    raise EntropyError("channel chunk truncated")
                x = (x << 8) | chunk[pos]
                pos += 1
            out[i] = (r_flat[i] + d) & (NUM_SYMBOLS - 1)
        if x != RANS_L or pos != n:
            raise EntropyError("channel chunk corrupted (rANS state check failed)")
        return np.asarray(out, np.uint8).reshape(height, size)


@dataclass
class _Slot:
    sequence: int
    symbols: np.ndarray


@dataclass
class ReferenceState:
    """The camera's references (ACK mode), per channel: `acked`, the newest frame the
    receiver confirmed having, and `candidate`, the frame sent and awaiting its
    acknowledgement.  A candidate is replaced only once it is acknowledged or too old,
    so an acknowledgement that arrives a few frames late still promotes it."""
    max_age: int = 30                # frames; older references are not used
    refresh_period: int = 60         # frames; each channel is sent intra once per period (0: never)
    # how many of the most important channels keep references; the rest always go intra
    # (the firmware holds references to 64 KB: 9 channels at 640x480, see reference_channels_for)
    reference_channels: int = LATENT_CHANNELS
    acked: dict = field(default_factory=dict)
    candidate: dict = field(default_factory=dict)
    refresh_all: bool = False

    def reference(self, sequence: int, channel: int, shape: tuple[int, int] | None = None):
        """(delta, symbols) to predict this channel of frame `sequence` from, or None: intra.
        With `shape` (the channel's latent height and width), a reference of another size
        (the camera changed its resolution) is not used."""
        if self.refresh_all or channel >= self.reference_channels:
            return None
        if self.refresh_period and (sequence + channel * self.refresh_period // LATENT_CHANNELS) \
                % self.refresh_period == 0:
            return None
        ref = self.acked.get(channel)
        if ref is None or (shape is not None and ref.symbols.shape != tuple(shape)):
            return None
        delta = (sequence - ref.sequence) % 2**32
        if not 1 <= delta <= min(self.max_age, MAX_REFERENCE_DELTA):
            return None
        return delta, ref.symbols

    def sent(self, sequence: int, channel: int, symbols: np.ndarray) -> None:
        """This channel of this frame went out; it becomes the candidate if the slot is free."""
        if channel >= self.reference_channels:
            return
        cand = self.candidate.get(channel)
        if cand is None or (sequence - cand.sequence) % 2**32 > self.max_age or cand.symbols.shape != symbols.shape:
            self.candidate[channel] = _Slot(sequence, symbols.copy())

    def acknowledge(self, sequence: int, channels) -> None:
        """The receiver decoded these channels of frame `sequence` (and no others of it)."""
        got = {int(c) for c in channels}
        for c, cand in list(self.candidate.items()):
            age = (sequence - cand.sequence) % 2**32
            if age == 0 and c in got:
                self.acked[c] = cand
                del self.candidate[c]
            elif age < 2**31:
                # acknowledgements come in frame order: one for this frame or a later
                # one without the channel means the candidate was lost: free the slot
                del self.candidate[c]

    def frame_done(self) -> None:
        self.refresh_all = False

    def request_refresh(self) -> None:
        """The receiver lost its references: the next frame is all intra."""
        self.refresh_all = True


def reference_channels_for(max_width: int, max_height: int, budget: int = 65536) -> int:
    """How many channels the firmware keeps references for, built for cameras of at most
    max_width x max_height (MCU_REF_BUDGET in firmware/core/mcu_video.c): two slots of
    packed 6-bit symbols and an 8-byte header per channel within `budget` bytes."""
    n = ((max_width + 7) // 8) * ((max_height + 7) // 8)
    return min(LATENT_CHANNELS, budget // (2 * (((n + 3) // 4) * 3 + 8)))


class ReceivedReferences:
    """The receiver's decoded symbols per (frame, channel), for the last MAX_REFERENCE_DELTA
    frames: what inter chunks may refer to."""

    def __init__(self, depth: int = MAX_REFERENCE_DELTA):
        self.depth = depth
        self.frames: dict[int, dict[int, np.ndarray]] = {}

    def get(self, sequence: int, channel: int):
        return self.frames.get(sequence % 2**32, {}).get(channel)

    def store(self, sequence: int, channels: dict) -> None:
        self.frames[sequence % 2**32] = channels
        for s in [s for s in self.frames if (sequence - s) % 2**32 > self.depth]:
            del self.frames[s]
