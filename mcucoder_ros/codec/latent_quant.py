"""Per-channel 6-bit quantisation of the int8 latent with fixed, shipped parameters.

The encoder's last layer already scales each channel to int8 by its (offline,
training-set) range; the symbol keeps the top 6 bits with rounding:
    symbol = round((clamp(v, lo, hi) - lo) * 63 / (hi - lo))     (integers only)
with lo = -128, hi = 127 for the shipped model ("divide by 4", as in the paper).
The firmware computes exactly this.  Parameters are never fitted on coded frames.
"""
from __future__ import annotations

import numpy as np

from .geometry import LATENT_CHANNELS, NUM_SYMBOLS

LEVELS = NUM_SYMBOLS - 1  # 63 steps between lo and hi


class LatentQuantizer:
    def __init__(self, lo: np.ndarray, hi: np.ndarray, latent_scale, latent_zero_point):
        lo = np.asarray(lo, np.int32)
        hi = np.asarray(hi, np.int32)
        if lo.shape != (LATENT_CHANNELS,) or hi.shape != (LATENT_CHANNELS,) or np.any(hi <= lo):
            raise ValueError("latent ranges must be 12 per-channel int8 pairs with hi > lo")
        self.lo, self.hi = lo, hi
        self.scale = np.asarray(latent_scale, np.float64).reshape(LATENT_CHANNELS)
        self.zero_point = np.asarray(latent_zero_point, np.int32).reshape(LATENT_CHANNELS)

    def quantize(self, latent_int8: np.ndarray) -> np.ndarray:
        """int8 [C,28,28] (C = 12, or the first channels only) -> uint8 symbols 0..63."""
        c = latent_int8.shape[0]
        lo = self.lo[:c, None, None]
        hi = self.hi[:c, None, None]
        v = np.clip(latent_int8.astype(np.int32), lo, hi) - lo
        span = hi - lo
        return ((2 * LEVELS * v + span) // (2 * span)).astype(np.uint8)

    def dequantize(self, symbols: np.ndarray, channels) -> np.ndarray:
        """Symbols of the given channels -> float latent values (decoder input units)."""
        ch = np.asarray(channels, dtype=np.int64)
        lo = self.lo[ch, None, None].astype(np.float64)
        span = (self.hi[ch] - self.lo[ch])[:, None, None].astype(np.float64)
        v = lo + symbols.astype(np.float64) * span / LEVELS - self.zero_point[ch, None, None]
        return (self.scale[ch, None, None] * v).astype(np.float32)
