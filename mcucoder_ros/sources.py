"""Frame sources for the host-side encoder: video file, image folder, camera device."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import resources
from .codec.images import ImageError, load_rgb

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


class FrameSource:
    """next() -> RGB uint8 frame, or None when the input is exhausted."""

    def __init__(self, kind: str, spec: str, loop: bool = False):
        self.kind, self.spec, self.loop = kind, spec, loop
        self.cap = None
        self.files: list[Path] = []
        self.pos = 0
        self.frames_read = 0
        self._open()

    def _open(self):
        if self.kind == "images":
            p = Path(self.spec)
            self.files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS) if p.is_dir() else [p]
            if not self.files:
                raise ImageError(f"no images in {self.spec}")
            self.pos = 0
        else:
            target = int(self.spec) if self.kind == "camera" else self.spec
            if self.kind == "video" and not Path(self.spec).exists():
                raise ImageError(f"video not found: {self.spec}")
            self.cap = cv2.VideoCapture(target)
            if not self.cap.isOpened():
                raise ImageError(f"cannot open {self.kind} '{self.spec}'")

    @property
    def fps(self) -> float:
        if self.cap is not None:
            f = self.cap.get(cv2.CAP_PROP_FPS)
            return float(f) if f and 0 < f < 240 else 0.0
        return 0.0

    def next(self) -> np.ndarray | None:
        for _ in range(2):
            frame = self._read()
            if frame is not None:
                self.frames_read += 1
                return frame
            if not self.loop or self.kind == "camera" or self.frames_read == 0:
                return None
            self.close()
            self._open()
        return None

    def _read(self):
        if self.kind == "images":
            if self.pos >= len(self.files):
                return None
            self.pos += 1
            return load_rgb(self.files[self.pos - 1])
        ok, bgr = self.cap.read()
        return np.ascontiguousarray(bgr[..., ::-1]) if ok else None

    def close(self):
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def default_clip() -> Path:
    """The bundled sample clip (checkout or installed share/)."""
    return resources.data_path("clips/traffic.mp4")


def pan_frames(image: np.ndarray, frames: int, speed: float = 3.0, window: float = 0.6,
               size: tuple[int, int] = (224, 224)) -> list[np.ndarray]:
    """A synthetic moving-camera clip: a window of the output's aspect (`window` of the
    photo's short side high) panning diagonally across a still photo by `speed` output
    pixels per frame, each view resized to `size` (width, height; INTER_AREA).  Camera
    motion with real image content, for inter-frame coding and rate control where few
    real moving-camera clips exist offline; name it synthetic wherever it is used."""
    import cv2
    out_w, out_h = size
    h, w = image.shape[:2]
    side = int(min(h, w) * window)
    win_w = min(w, int(side * out_w / out_h))
    step = speed * side / out_h
    span_x, span_y = w - win_w, h - side
    out = []
    for i in range(frames):
        # bounce inside the photo so any number of frames fits
        x = int(abs((i * step) % (2 * span_x) - span_x)) if span_x else 0
        y = int(abs((i * step * 0.5) % (2 * span_y) - span_y)) if span_y else 0
        view = np.ascontiguousarray(image[y:y + side, x:x + win_w])
        out.append(cv2.resize(view, (out_w, out_h), interpolation=cv2.INTER_AREA))
    return out
