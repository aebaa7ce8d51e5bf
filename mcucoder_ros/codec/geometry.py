"""Geometry of the MCUCoder latent (the paper's architecture) and the picture sizes
the codec takes.

The encoder is fully convolutional: a picture of H x W pixels (multiples of 8) gives
12 channels of H/8 x W/8 symbols.  A picture whose sides are not multiples of 8 is
padded by edge replication before coding and cropped after decoding.
"""
IMAGE_SIZE = 224          # the paper's frame size; bitstream v1 and v2 frames are 224x224
LATENT_CHANNELS = 12      # importance-sorted channels
LATENT_SIZE = 28          # each channel is 28x28 at 224x224
LATENT_STRIDE = 8         # pixels per latent position, each axis
SYMBOL_BITS = 6           # per-channel quantised symbols, 0..63
NUM_SYMBOLS = 1 << SYMBOL_BITS
MAX_LONG_SIDE = 1920      # the largest picture: 1920x1088 (or 1088x1920)
MAX_SHORT_SIDE = 1088
MIN_SIDE = 8              # the smallest: one latent position


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
