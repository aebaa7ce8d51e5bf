"""The M-JPEG baseline: OpenCV JPEG per frame (baseline, 4:2:0, standard tables)."""
from __future__ import annotations

import cv2
import numpy as np

DEFAULT_QUALITIES = (1, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def jpeg_encode(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV JPEG encoding failed")
    return buf.tobytes()


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    data = jpeg_encode(rgb, quality)
    dec = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    return data, np.ascontiguousarray(dec)
