"""Image I/O helpers shared by the CLI, evaluation and nodes (OpenCV, RGB order)."""
from __future__ import annotations

import cv2
import numpy as np

from .geometry import IMAGE_SIZE


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
