"""Exact INT8 reference of the MCUCoder encoder (TFLite INT8 conv semantics).

This numpy code is the ground truth the firmware must match bit for bit:
  * input  : uint8 RGB H x W (multiples of 8; 224x224 on the firmware today), quantised
             as int8 with scale 1/255, zero point -128
  * weights: int8, per-output-channel symmetric (zero point 0)
  * bias   : int32 at scale s_in * s_w[c]
  * acc    : int32 sum of (x - zp_in) * w over the kernel; padding contributes 0
             (TFLite pads with the input zero point)
  * requant: MultiplyByQuantizedMultiplier(acc, M0[c], shift[c]) + zp_out[c],
             clamped to [-128, 127] (ReLU layers clamp at zp_out)
  * the latent layer has a per-channel output scale and zero point, fitted to each
    channel's range: "scale each channel to 8 bits by its min/max" as in the paper

Speed: the integer products are summed by float32 BLAS, which is exact here: every
partial sum is an integer of magnitude <= K*255*127 < 2**24 (K <= 400 taps), so no
rounding ever happens; the bias and requantisation then use int64 arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .geometry import LATENT_CHANNELS, LATENT_STRIDE

INPUT_ZERO_POINT = -128   # uint8 pixel p -> int8 p - 128 (scale 1/255)


@dataclass(frozen=True)
class ConvLayer:
    weight: np.ndarray      # int8  [cout, cin, kh, kw]
    bias: np.ndarray        # int32 [cout]
    multiplier: np.ndarray  # int32 [cout]  Q31 mantissa of s_in*s_w/s_out
    shift: np.ndarray       # int32 [cout]  power-of-two exponent (<= 0: right shift)
    stride: int
    padding: int
    input_zero_point: int
    output_zero_point: np.ndarray  # int32 [cout] (per channel on the latent layer)
    relu: bool

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]


# --- TFLite fixed-point helpers (reference_ops semantics, vectorised) ----------------

_LOW31 = np.int64((1 << 31) - 1)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.int64)
    b = np.asarray(b, dtype=np.int64)
    t = a * b
    # nudge: 2**30 where the product is >= 0, 1 - 2**30 where it is negative (sign masks,
    # in place: this runs on every activation of a frame)
    s = t >> 63
    s &= _LOW31
    t += 1 << 30
    t -= s
    # C integer division by 2**31 truncates toward zero: add 2**31 - 1 to a negative t
    np.right_shift(t, 63, out=s)
    s &= _LOW31
    t += s
    t >>= 31
    if np.any(b == -2**31):         # the one product that overflows int32: saturate
        t = np.where((a == -2**31) & (b == -2**31), 2**31 - 1, t)
    return t


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = x >> 63                 # -1 where x < 0: the threshold is one higher there
    np.subtract(mask >> 1, threshold, out=threshold)
    out = x >> exponent
    out += remainder > threshold
    return out


def multiply_by_quantized_multiplier(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = np.asarray(acc, np.int64)
    if np.any(left):
        x = x * (np.int64(1) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), right)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = M0 * 2**(shift - 31), M0 in [2**30, 2**31)."""
    if real <= 0:
        return 0, 0
    mant, shift = np.frexp(real)
    m0 = int(round(mant * (1 << 31)))
    if m0 == 1 << 31:
        m0 //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return m0, int(shift)


# --- The convolution ------------------------------------------------------------------

BAND_ELEMENTS = 1 << 21      # im2col elements per band of output rows (8 MB of float32)


def conv_int8(x: np.ndarray, layer: ConvLayer) -> np.ndarray:
    """x: int8 [cin, H, W] -> int8 [cout, Ho, Wo].  Computed in bands of output rows, so
    that a large picture's im2col matrix never has to exist whole."""
    cin, h, w = x.shape
    k = layer.weight.shape[2]
    p, s = layer.padding, layer.stride
    assert cin * k * k * 255 * 127 < 2**24, "float32 accumulation would not be exact"
    xc = x.astype(np.float32) - np.float32(layer.input_zero_point)   # zero-centred input
    xp = np.pad(xc, ((0, 0), (p, p), (p, p)))                      # padding == zero point
    win = sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::s, ::s]  # [cin, Ho, Wo, k, k] (a view)
    ho, wo = win.shape[1:3]
    wmat = layer.weight.reshape(layer.out_channels, -1).astype(np.float32)
    col = (slice(None), None)           # per output channel, along the rows of [cout, pixels]
    zp_out = layer.output_zero_point.astype(np.int64)[col]
    lo = zp_out if layer.relu else np.int64(-128)
    bias, mult, shift = layer.bias.astype(np.int64)[col], layer.multiplier[col], layer.shift[col]
    out = np.empty((layer.out_channels, ho, wo), np.int8)
    rows = max(1, BAND_ELEMENTS // (wo * cin * k * k))
    for r0 in range(0, ho, rows):
        band = win[:, r0:r0 + rows]
        n = band.shape[1]
        # im2col as [cin*k*k, pixels]: the copy runs along output columns, and the product
        # comes out [cout, pixels], the output's own layout
        cols = band.transpose(0, 3, 4, 1, 2).reshape(cin * k * k, n * wo)
        acc = (wmat @ cols).astype(np.int64)
        acc += bias
        q = multiply_by_quantized_multiplier(acc, mult, shift)
        q += zp_out
        out[:, r0:r0 + n] = np.clip(q, lo, 127).astype(np.int8).reshape(layer.out_channels, n, wo)
    return out


class Int8Encoder:
    """The three-layer INT8 encoder: uint8 RGB HxWx3 (multiples of 8) -> int8 latent
    12 x H/8 x W/8 (224x224 -> 12x28x28)."""

    def __init__(self, layers: list[ConvLayer], latent_scale, latent_zero_point):
        if len(layers) != 3:
            raise ValueError("the MCUCoder encoder has exactly three conv layers")
        self.layers = layers
        self.latent_scale = np.asarray(latent_scale, np.float64).reshape(LATENT_CHANNELS)
        self.latent_zero_point = np.asarray(latent_zero_point, np.int32).reshape(LATENT_CHANNELS)

    @staticmethod
    def quantize_input(rgb: np.ndarray) -> np.ndarray:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.shape[0] % LATENT_STRIDE \
                or rgb.shape[1] % LATENT_STRIDE or not rgb.shape[0] or not rgb.shape[1]:
            raise ValueError(f"encoder input must be uint8 HxWx3 RGB with H and W multiples of {LATENT_STRIDE} "
                             f"(e.g. 224x224x3), got {rgb.dtype} {rgb.shape}")
        return (rgb.astype(np.int16) + INPUT_ZERO_POINT).astype(np.int8).transpose(2, 0, 1)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        x = self.quantize_input(rgb)
        for layer in self.layers:
            x = conv_int8(x, layer)
        assert x.shape == (LATENT_CHANNELS, rgb.shape[0] // LATENT_STRIDE, rgb.shape[1] // LATENT_STRIDE)
        return x

    def dequantize(self, latent_int8: np.ndarray) -> np.ndarray:
        c = latent_int8.shape[0]
        s = self.latent_scale[:c, None, None]
        return (s * (latent_int8.astype(np.float64) - self.latent_zero_point[:c, None, None])).astype(np.float32)

    # -- (de)serialisation: the layer arrays live in the model's npz ------------------
    def to_arrays(self) -> dict:
        d = {"latent_scale": self.latent_scale, "latent_zero_point": self.latent_zero_point}
        for i, L in enumerate(self.layers, 1):
            d.update({f"conv{i}_weight": L.weight, f"conv{i}_bias": L.bias, f"conv{i}_multiplier": L.multiplier,
                      f"conv{i}_shift": L.shift,
                      f"conv{i}_output_zero_point":
                          np.broadcast_to(L.output_zero_point, (L.out_channels,)).astype(np.int32),
                      f"conv{i}_meta":
                          np.array([L.stride, L.padding, L.input_zero_point, int(L.relu)], dtype=np.int32)})
        return d

    @classmethod
    def from_arrays(cls, d) -> Int8Encoder:
        layers = []
        for i in (1, 2, 3):
            stride, pad, zin, relu = (int(v) for v in d[f"conv{i}_meta"])
            layers.append(ConvLayer(np.asarray(d[f"conv{i}_weight"], np.int8), np.asarray(d[f"conv{i}_bias"], np.int32),
                                    np.asarray(d[f"conv{i}_multiplier"], np.int32),
                                    np.asarray(d[f"conv{i}_shift"], np.int32), stride, pad, zin,
                                    np.asarray(d[f"conv{i}_output_zero_point"], np.int32), bool(relu)))
        return cls(layers, d["latent_scale"], d["latent_zero_point"])

    @property
    def num_parameters(self) -> int:
        return sum(L.weight.size + L.bias.size for L in self.layers)
