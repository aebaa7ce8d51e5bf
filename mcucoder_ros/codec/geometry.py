"""Geometry of the MCUCoder latent (the paper's architecture) and the picture sizes
the codec takes.

The encoder is fully convolutional: a picture of H x W pixels (multiples of 8) gives
12 channels of H/8 x W/8 symbols.  A picture whose sides are not multiples of 8 is
padded by edge replication before coding and cropped after decoding.

The resolution ladder: a camera picture may be coded at 1/2 or 1/4 of its size
(`scale_shift` 1 or 2), by integer box decimation (`decimate`, bit-exact with the
firmware's), and the receiver scales the decoded picture back to the camera's size.
"""
import numpy as np

IMAGE_SIZE = 224          # the paper's frame size; bitstream v1 and v2 frames are 224x224
LATENT_CHANNELS = 12      # importance-sorted channels
LATENT_SIZE = 28          # each channel is 28x28 at 224x224
LATENT_STRIDE = 8         # pixels per latent position, each axis
SYMBOL_BITS = 6           # per-channel quantised symbols, 0..63
NUM_SYMBOLS = 1 << SYMBOL_BITS
MAX_LONG_SIDE = 1920      # the largest picture: 1920x1088 (or 1088x1920)
MAX_SHORT_SIDE = 1088
MIN_SIDE = 8              # the smallest: one latent position
SCALE_SHIFTS = (0, 1, 2)  # the ladder: coded at the camera's size, 1/2 or 1/4 of it (each side)


class SizeError(ValueError):
    """A picture size the codec does not take."""


def check_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) if the codec takes a picture of that size, else SizeError."""
    w, h = int(width), int(height)
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_LONG_SIDE or min(w, h) > MAX_SHORT_SIDE:
        raise SizeError(f"picture size {w}x{h} is outside what the codec takes: each side at least {MIN_SIDE}, "
                        f"at most {MAX_LONG_SIDE}x{MAX_SHORT_SIDE} (or {MAX_SHORT_SIDE}x{MAX_LONG_SIDE})")
    return w, h


def latent_shape(width: int, height: int) -> tuple[int, int]:
    """(latent height, latent width) of a picture: its sides over 8, rounded up."""
    return -(-int(height) // LATENT_STRIDE), -(-int(width) // LATENT_STRIDE)


def padded_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) padded up to multiples of 8: what the encoder codes."""
    lh, lw = latent_shape(width, height)
    return lw * LATENT_STRIDE, lh * LATENT_STRIDE


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), checked."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise SizeError(f"size '{text}': expected WIDTHxHEIGHT, e.g. 640x480") from None
    return check_size(w, h)


def coded_size(width: int, height: int, scale_shift: int = 0) -> tuple[int, int]:
    """(width, height) of the picture coded at 1 / 2^scale_shift of a camera picture of
    width x height: each side divided, rounded up (the last block is edge-replicated)."""
    n = 1 << check_scale(scale_shift)
    return -(-int(width) // n), -(-int(height) // n)


def check_scale(scale_shift: int) -> int:
    s = int(scale_shift)
    if s not in SCALE_SHIFTS:
        raise SizeError(f"scale shift {scale_shift} is not one the codec takes: {SCALE_SHIFTS} "
                        f"(coded at 1, 1/2 or 1/4 of the camera's size)")
    return s


def scales_for(width: int, height: int) -> tuple[int, ...]:
    """The scale shifts a camera picture of this size can be coded at: those whose coded
    picture is still at least MIN_SIDE on each side."""
    return tuple(s for s in SCALE_SHIFTS if min(coded_size(width, height, s)) >= MIN_SIDE)


def decimate(rgb: np.ndarray, scale_shift: int) -> np.ndarray:
    """A uint8 HxWxC picture at 1 / 2^scale_shift of its size, in integers only (what the
    firmware computes as the camera's rows stream in): the picture is edge-replicated
    (right and bottom) to multiples of n = 2^scale_shift, and each output value is the
    n x n block's sum plus n*n/2, shifted right by 2*scale_shift (round half up)."""
    s = check_scale(scale_shift)
    if s == 0:
        return rgb
    n = 1 << s
    h, w = rgb.shape[:2]
    cw, ch = coded_size(w, h, s)
    x = rgb
    if (cw * n, ch * n) != (w, h):
        x = np.pad(rgb, ((0, ch * n - h), (0, cw * n - w), (0, 0)), mode="edge")
    acc = x.reshape(ch, n, cw, n, -1).astype(np.uint32).sum(axis=(1, 3))
    return ((acc + (1 << (2 * s - 1))) >> (2 * s)).astype(np.uint8)
