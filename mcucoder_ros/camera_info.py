"""Camera calibration for `camera_info`: the YAML that ROS's camera_calibration writes
(and camera_info_manager reads), scaled to the size of the decoded images.

Pure Python: the node turns the result into sensor_msgs/CameraInfo."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml


class CalibrationError(ValueError):
    """A calibration file that is missing, unreadable or incomplete."""


def _path(url: str) -> Path:
    u = urlparse(url)
    if u.scheme in ("", "file"):
        return Path(unquote(u.path) if u.scheme else url)
    raise CalibrationError(f"camera_info_url '{url}': only file:// URLs and plain paths are supported")


def _matrix(d: dict, key: str, n: int) -> list[float]:
    m = d.get(key)
    data = m.get("data") if isinstance(m, dict) else None
    if not isinstance(data, list) or len(data) != n:
        raise CalibrationError(f"calibration: '{key}' needs a 'data' list of {n} numbers")
    return [float(v) for v in data]


def load_calibration(url: str) -> dict:
    p = _path(url)
    try:
        d = yaml.safe_load(p.read_text())
    except OSError as e:
        raise CalibrationError(f"cannot read calibration file {p}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise CalibrationError(f"calibration file {p} is not valid YAML: {e}") from None
    if not isinstance(d, dict):
        raise CalibrationError(f"calibration file {p}: expected a mapping")
    try:
        w, h = int(d["image_width"]), int(d["image_height"])
    except (KeyError, TypeError, ValueError):
        raise CalibrationError(f"calibration file {p}: image_width and image_height are required") from None
    if w <= 0 or h <= 0:
        raise CalibrationError(f"calibration file {p}: image size {w}x{h}")
    dist = d.get("distortion_coefficients", {"data": []})
    return {"width": w, "height": h, "camera_name": str(d.get("camera_name", "")),
            "distortion_model": str(d.get("distortion_model", "plumb_bob")),
            "D": [float(v) for v in (dist.get("data") or [])],
            "K": _matrix(d, "camera_matrix", 9),
            "R": _matrix(d, "rectification_matrix", 9) if "rectification_matrix" in d else
            [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
            "P": _matrix(d, "projection_matrix", 12)}


def scale_calibration(cal: dict, width: int, height: int) -> dict:
    """The calibration of the same camera with its image resized to width x height
    (as image_proc's resize does: focal lengths and principal point scale with the
    axis; distortion and rectification do not change)."""
    sx, sy = width / cal["width"], height / cal["height"]
    K, P = list(cal["K"]), list(cal["P"])
    for i in (0, 2):
        K[i] *= sx
    for i in (4, 5):
        K[i] *= sy
    for i in (0, 2, 3):
        P[i] *= sx
    for i in (5, 6, 7):
        P[i] *= sy
    return {**cal, "width": width, "height": height, "K": K, "P": P}
