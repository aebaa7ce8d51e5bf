"""Image I/O helpers shared by the CLI, evaluation and nodes (OpenCV, RGB order)."""
from __future__ import annotations

import cv2
import numpy as np

from .geometry import IMAGE_SIZE, padded_size


class ImageError(ValueError):
    """An image could not be read or has an unusable shape."""


def load_rgb(path: str) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (alpha dropped, grey expanded)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"cannot read image file: {path}")
    return np.ascontiguousarray(img[..., ::-1])


def save_rgb(path: str, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise ImageError(f"cannot write image file: {path}")


def resize_224(rgb: np.ndarray) -> np.ndarray:
    """Resize any HxWx3 frame to the codec's 224x224 (cv2.INTER_AREA, as in every figure)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f"expected an HxWx3 uint8 image, got shape {rgb.shape} dtype {rgb.dtype}")
    if rgb.shape[:2] == (IMAGE_SIZE, IMAGE_SIZE):
        return rgb
    return cv2.resize(rgb, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)


def pad_to_stride(rgb: np.ndarray) -> np.ndarray:
    """The frame padded by edge replication (right and bottom) to sides that are
    multiples of 8, as the encoder codes it; the decoder crops the padding off."""
    h, w = rgb.shape[:2]
    pw, ph = padded_size(w, h)
    if (pw, ph) == (w, h):
        return rgb
    return np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")


def fit_size(width: int, height: int, out_width: int = 0, out_height: int = 0, scale: float = 0.0) -> tuple[int, int]:
    """The size a frame of width x height is resized to, as image_proc's resize node
    does: `scale` (> 0) scales both sides; else `out_width` and `out_height` (0: not
    set); with only one of them set, the other follows the frame's aspect ratio; with
    neither, the frame keeps its size."""
    if scale and scale > 0:
        return max(1, round(width * scale)), max(1, round(height * scale))
    if out_width and out_height:
        return int(out_width), int(out_height)
    if out_width:
        return int(out_width), max(1, round(height * out_width / width))
    if out_height:
        return max(1, round(width * out_height / height)), int(out_height)
    return int(width), int(height)


def resize_to(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (width, height): INTER_AREA when shrinking, INTER_LINEAR when enlarging."""
    w, h = size
    if rgb.shape[:2] == (h, w):
        return rgb
    shrink = w * h < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def upscale(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A picture decoded at a rung of the resolution ladder back at the camera's size
    (width, height): bicubic (cv2.INTER_CUBIC); the picture as is when it has that size."""
    if rgb.shape[:2] == (size[1], size[0]):
        return rgb
    return cv2.resize(rgb, (int(size[0]), int(size[1])), interpolation=cv2.INTER_CUBIC)
