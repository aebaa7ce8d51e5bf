"""Golden test vectors of the INT8 encoder, quantiser, entropy coder and bitstream.

Python tests check the codec against them; the firmware tests (C, host and QEMU)
read the same files and must reproduce every byte.  Per vector NAME:
    NAME.rgb     input, 224x224x3 uint8 RGB, row-major (what the camera port delivers)
    NAME.latent  int8 latent [12][28][28]
    NAME.sym     uint8 6-bit symbols [12][28][28]
    NAME.mcf     the bitstream frame (all 12 channels, sequence = vector index)
manifest.json names the model and the SHA-256 of every file.

test/vectors/sized/ holds the same for pictures of other sizes (bitstream v3): NAME.rgb
is then HxWx3 with the size in its manifest, NAME.latent and NAME.sym cover the padded
picture (sides rounded up to multiples of 8).  The firmware, 224x224 only for now, does
not read them.
Regenerate after exporting a new model:  python -m mcucoder_ros.codec.vectors test/vectors
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from .. import resources
from . import bitstream
from .geometry import IMAGE_SIZE
from .images import load_rgb, resize_224
from .model import EncoderModel

VECTOR_PHOTOS = ("astronaut.png", "road.png")


def sample_frames() -> list[Path]:
    try:
        return sorted(resources.data_path("samples").glob("*.png"))
    except resources.ResourceNotFound:
        return []


def synthetic_extremes() -> np.ndarray:
    """Saturating input: black/white checkerboard, colour ramps, flat patches."""
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    img = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    img[..., 0] = (((y // 8 + x // 8) % 2) * 255).astype(np.uint8)
    img[..., 1] = (x * 255 // (IMAGE_SIZE - 1)).astype(np.uint8)
    img[..., 2] = np.where(y < IMAGE_SIZE // 2, 255, 0).astype(np.uint8)
    img[150:200, 20:70] = 0
    img[20:60, 150:210] = 255
    return img


def vector_inputs() -> dict[str, np.ndarray]:
    frames = {p.name: p for p in sample_frames()}
    out = {Path(n).stem: resize_224(load_rgb(frames[n])) for n in VECTOR_PHOTOS if n in frames}
    out["extremes"] = synthetic_extremes()
    return out


def sized_inputs() -> dict[str, np.ndarray]:
    """Pictures of other sizes: the bundled clip's first frame at its own 352x288, and the
    saturating pattern at 203x117 (sides not multiples of 8: padded, then cropped)."""
    from ..sources import default_clip
    out = {}
    try:
        from ..evaluation import iter_video
        out["traffic"] = next(iter(iter_video(str(default_clip()), 1)))[1]
    except (resources.ResourceNotFound, FileNotFoundError):
        pass
    out["extremes_203x117"] = np.ascontiguousarray(synthetic_extremes()[:117, :203])
    return out


def compute(encoder: EncoderModel, name: str, rgb: np.ndarray, index: int) -> dict[str, bytes]:
    latent = encoder.latent(rgb)
    sym = encoder.quantizer.quantize(latent)
    frame = bitstream.pack(encoder.encode(rgb, 12, index))
    return {f"{name}.rgb": rgb.tobytes(), f"{name}.latent": latent.tobytes(), f"{name}.sym": sym.tobytes(),
            f"{name}.mcf": frame}


def write(out_dir: str, encoder: EncoderModel | None = None) -> dict:
    enc = encoder or EncoderModel.load()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"model_id": f"{enc.model_id:#010x}", "vectors": [], "sha256": {}}
    for i, (name, rgb) in enumerate(vector_inputs().items()):
        manifest["vectors"].append({"name": name, "sequence": i})
        for fname, data in compute(enc, name, rgb, i).items():
            (out / fname).write_bytes(data)
            manifest["sha256"][fname] = hashlib.sha256(data).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def write_sized(out_dir: str, encoder: EncoderModel | None = None) -> dict:
    enc = encoder or EncoderModel.load()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"model_id": f"{enc.model_id:#010x}", "vectors": [], "sha256": {}}
    for i, (name, rgb) in enumerate(sized_inputs().items()):
        manifest["vectors"].append({"name": name, "sequence": i, "width": int(rgb.shape[1]),
                                    "height": int(rgb.shape[0])})
        for fname, data in compute(enc, name, rgb, i).items():
            (out / fname).write_bytes(data)
            manifest["sha256"][fname] = hashlib.sha256(data).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else "test/vectors"
    print(json.dumps(write(root), indent=2))
    print(json.dumps(write_sized(str(Path(root) / "sized")), indent=2))
