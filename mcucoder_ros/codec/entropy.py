"""Static-table rANS coding of one latent channel, with a causal context model.

Each channel is coded on its own (its chunk decodes without any other channel).
Per symbol, in raster order:
  a = left, b = top, c = top-left neighbour (symbol `edge` outside the channel)
  pred     = MED(a, b, c)  (LOCO-I median edge detector)
  residual = (symbol - pred) mod 64
  context  = activity bucket of |a-c| + |b-c|   (NUM_CONTEXTS buckets)
residuals are coded by byte-wise rANS (32-bit state, 12-bit probabilities) with a
frequency table per (channel, context), trained offline and shipped with the model.
Integer-only and table-driven: what a Cortex-M encoder can run.

Chunk layout: the final encoder state (4 bytes, big endian) followed by the
renormalisation bytes; the decoder checks that it ends in the initial state
having consumed every byte, so truncated or corrupted chunks are detected.
"""
from __future__ import annotations

import numpy as np

from .geometry import LATENT_SIZE, MAX_LONG_SIDE, MAX_SHORT_SIDE, NUM_SYMBOLS, latent_shape

try:    # the C coder (same model, about 100x faster); the Python one below is the reference
    from ._rans import decode_channel as _c_decode
    from ._rans import encode_residuals as _c_encode
except ImportError:     # built without a C compiler: code in Python
    _c_decode = _c_encode = None


def c_decoder_built() -> bool:
    return _c_decode is not None

PROB_BITS = 12
PROB_SCALE = 1 << PROB_BITS
RANS_L = 1 << 23
ACTIVITY_THRESHOLDS = (0, 1, 2, 4, 7, 12, 20)   # activity <= t -> bucket index
NUM_CONTEXTS = len(ACTIVITY_THRESHOLDS) + 1
SYMBOLS_PER_CHANNEL = LATENT_SIZE * LATENT_SIZE       # at 224x224


def max_chunk_bytes(shape=(LATENT_SIZE, LATENT_SIZE)) -> int:
    """The longest chunk a channel of this latent shape (height, width) can have: the
    state, at most 12 bits per symbol (every frequency is >= 1 of 4096), and slack."""
    return 4 + (int(shape[0]) * int(shape[1]) * PROB_BITS + 7) // 8 + 4


MAX_CHUNK_BYTES = max_chunk_bytes()                                  # 224x224: 1184
MAX_CHUNK_BYTES_ANY = max_chunk_bytes(latent_shape(MAX_LONG_SIDE, MAX_SHORT_SIDE))   # the largest picture


class EntropyError(ValueError):
    """A channel chunk is truncated, has trailing bytes or does not decode consistently."""


def _bucket(activity: np.ndarray | int):
    return np.searchsorted(np.asarray(ACTIVITY_THRESHOLDS), activity, side="left")


_BUCKET_LUT = [int(_bucket(a)) for a in range(2 * NUM_SYMBOLS)]


def _med(a, b, c):
    mn, mx = np.minimum(a, b), np.maximum(a, b)
    return np.where(c >= mx, mn, np.where(c <= mn, mx, a + b - c))


def residuals_and_contexts(sym: np.ndarray, edge: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised model for a whole channel, any shape (the encoder knows every symbol)."""
    s = sym.astype(np.int32)
    p = np.pad(s, ((1, 0), (1, 0)), constant_values=edge)
    a, b, c = p[1:, :-1], p[:-1, 1:], p[:-1, :-1]
    pred = _med(a, b, c)
    res = (s - pred) & (NUM_SYMBOLS - 1)
    ctx = _bucket(np.abs(a - c) + np.abs(b - c))
    return res.ravel(), ctx.ravel()


def normalize_frequencies(counts: np.ndarray) -> np.ndarray:
    """Counts -> integer frequencies summing to PROB_SCALE, every symbol >= 1."""
    counts = np.asarray(counts, np.float64) + 0.5   # keep unseen symbols codable
    f = np.maximum(1, np.floor(counts / counts.sum() * PROB_SCALE)).astype(np.int64)
    while f.sum() != PROB_SCALE:   # hand the rounding error to / take it from the largest
        i = int(np.argmax(f))
        f[i] += PROB_SCALE - f.sum()
        if f[i] < 1:
            f[i] = 1
            j = int(np.argmax(f))
            f[j] -= f.sum() - PROB_SCALE
    return f.astype(np.uint16)


class RansTables:
    """One channel's static rANS tables, [NUM_CONTEXTS, 64] frequencies, in the forms the
    coder needs: frequencies and cumulative frequencies per context, the slot -> residual
    lookup of the decoder, and the same as bytes for the C decoder.  Shared by the intra
    (ChannelCoder) and inter (inter.InterChannelCoder) models."""

    def __init__(self, freqs: np.ndarray):
        freqs = np.asarray(freqs, np.int64)
        if freqs.shape != (NUM_CONTEXTS, NUM_SYMBOLS) or np.any(freqs < 1) or np.any(freqs.sum(1) != PROB_SCALE):
            raise ValueError("frequency table must be [contexts, 64], >= 1, rows summing to 4096")
        self.freq = [list(map(int, row)) for row in freqs]
        cum = np.concatenate([np.zeros((NUM_CONTEXTS, 1), np.int64), np.cumsum(freqs, 1)], 1)
        self.cum = [list(map(int, row)) for row in cum]
        self.slot2sym = [np.repeat(np.arange(NUM_SYMBOLS), freqs[k]).tolist() for k in range(NUM_CONTEXTS)]
        self.c_tables = (freqs.astype(np.uint16).tobytes(), cum.astype(np.uint16).tobytes(),
                         np.asarray(self.slot2sym, np.uint8).tobytes())

    def encode(self, res: np.ndarray, ctx: np.ndarray) -> bytes:
        """Residuals and contexts in raster order -> chunk (final state, then the bytes)."""
        if _c_encode is not None:
            return _c_encode(np.ascontiguousarray(res, np.uint8), np.ascontiguousarray(ctx, np.uint8),
                             *self.c_tables[:2])
        return self.encode_python(res, ctx)

    def encode_python(self, res: np.ndarray, ctx: np.ndarray) -> bytes:
        """The reference of encode (and its fallback without the C extension)."""
        freq, cum = self.freq, self.cum
        out = bytearray()
        x = RANS_L
        xmax_base = (RANS_L >> PROB_BITS) << 8
        for r, k in zip(reversed(res.tolist()), reversed(ctx.tolist())):
            f = freq[k][r]
            xmax = xmax_base * f
            while x >= xmax:
                out.append(x & 0xFF)
                x >>= 8
            x = ((x // f) << PROB_BITS) + (x % f) + cum[k][r]
        out += bytes(((x >> 0) & 0xFF, (x >> 8) & 0xFF, (x >> 16) & 0xFF, (x >> 24) & 0xFF))
        out.reverse()
        return bytes(out)

    def decode_c(self, chunk: bytes, edge: int, ref: np.ndarray | None = None,
                 shape=(LATENT_SIZE, LATENT_SIZE)) -> np.ndarray | None:
        """The C decoder (intra, or inter with `ref`) of a channel of `shape` (latent
        height, width); None when it was not built."""
        check_chunk(chunk, shape)
        if _c_decode is None:
            return None
        h, w = int(shape[0]), int(shape[1])
        out = np.empty((h, w), np.uint8)
        extra = () if ref is None else (np.ascontiguousarray(ref, np.uint8).tobytes(),)
        status = _c_decode(bytes(chunk), *self.c_tables, edge, out, h, w, *extra)
        if status == 1:
            raise EntropyError("channel chunk truncated")
        if status == 2:
            raise EntropyError("channel chunk corrupted (rANS state check failed)")
        return out


class ChannelCoder:
    """rANS coder for one channel, given its [NUM_CONTEXTS, 64] frequency table."""

    def __init__(self, freqs: np.ndarray, edge: int):
        self.tables = RansTables(freqs)
        self.edge = int(edge)
        self.freq, self.cum, self.slot2sym = self.tables.freq, self.tables.cum, self.tables.slot2sym

    def encode(self, sym: np.ndarray) -> bytes:
        return self.tables.encode(*residuals_and_contexts(sym, self.edge))

    def decode(self, chunk: bytes, shape=(LATENT_SIZE, LATENT_SIZE)) -> np.ndarray:
        """A chunk -> the channel's symbols, uint8 [height, width] of `shape` (the latent's)."""
        out = self.tables.decode_c(chunk, self.edge, shape=shape)
        return self.decode_python(chunk, shape) if out is None else out

    def decode_python(self, chunk: bytes, shape=(LATENT_SIZE, LATENT_SIZE)) -> np.ndarray:
        """The reference decoder in pure Python (and the fallback without the C one)."""
        n = check_chunk(chunk, shape)
        x = int.from_bytes(chunk[:4], "big")
        pos = 4
        freq, cum, s2s = self.freq, self.cum, self.slot2sym
        mask = PROB_SCALE - 1
        height, size = int(shape[0]), int(shape[1])
        edge = self.edge
        bucket = _BUCKET_LUT
        out = [0] * (height * size)
        for y in range(height):
            row = y * size
            for xx in range(size):
                a = out[row + xx - 1] if xx else edge
                if y:
                    b = out[row - size + xx]
                    c = out[row - size + xx - 1] if xx else edge
                else:
                    b = c = edge
                if a < b:
                    mn, mx = a, b
                else:
                    mn, mx = b, a
                pred = mn if c >= mx else (mx if c <= mn else a + b - c)
                k = bucket[abs(a - c) + abs(b - c)]
                slot = x & mask
                r = s2s[k][slot]
                x = freq[k][r] * (x >> PROB_BITS) + slot - cum[k][r]
                while x < RANS_L:
                    if pos >= n:
                        raise EntropyError("channel chunk truncated")
                    x = (x << 8) | chunk[pos]
                    pos += 1
                out[row + xx] = (r + pred) & (NUM_SYMBOLS - 1)
        if x != RANS_L or pos != n:
            raise EntropyError("channel chunk corrupted (rANS state check failed)")
        return np.asarray(out, np.uint8).reshape(height, size)


def check_chunk(chunk: bytes, shape) -> int:
    """The chunk's length, or EntropyError when no chunk of a channel of `shape` has it."""
    n, limit = len(chunk), max_chunk_bytes(shape)
    if not 4 <= n <= limit:
        raise EntropyError(f"channel chunk of {n} bytes is outside 4..{limit} (latent {shape[0]}x{shape[1]})")
    return n


def fit_tables(symbols: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """symbols: uint8 [N, C, H, W] from training frames -> freqs [C, NUM_CONTEXTS, 64]."""
    n, c = symbols.shape[:2]
    counts = np.zeros((c, NUM_CONTEXTS, NUM_SYMBOLS), np.int64)
    for ch in range(c):
        for i in range(n):
            res, ctx = residuals_and_contexts(symbols[i, ch], int(edges[ch]))
            np.add.at(counts[ch], (ctx, res), 1)
    return np.stack([[normalize_frequencies(counts[ch, k]) for k in range(NUM_CONTEXTS)] for ch in range(c)])
