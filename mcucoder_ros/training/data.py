"""Training data: photos held in (GPU) memory, random multi-scale crops resized to 224x224."""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..codec.geometry import IMAGE_SIZE
from ..codec.images import load_rgb, resize_224

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(paths) -> list[str]:
    out: list[str] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS)
        else:
            out.append(str(p))
    return out


def prepare(out_dir: str, max_short: int = 896, debian_root: str = "data/debian") -> dict:
    """Write the training photos (JPEG q95, short side <= max_short) and the held-out
    frames at 224x224 (npz) into out_dir: a compact, portable copy for a GPU machine."""
    from .photos import split

    train, held = split(debian_root)
    os.makedirs(out_dir, exist_ok=True)
    for i, path in enumerate(train):
        img = load_rgb(path)
        s = min(img.shape[:2])
        if s > max_short:
            f = max_short / s
            img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_AREA)
        cv2.imwrite(os.path.join(out_dir, f"train_{i:03d}.jpg"), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    frames = np.stack([resize_224(load_rgb(p)) for p in held])
    np.savez_compressed(os.path.join(out_dir, "heldout_224.npz"), frames=frames,
                        names=np.array([Path(p).name for p in held]))
    return {"train": len(train), "held_out": len(held)}


class CropSampler:
    """Random crops of random scale (224 px up to the whole short side) and aspect,
    resized to 224x224 with antialiasing, random flips and mild photometric jitter.
    Whole-frame crops squashed to 224x224 match how frames are coded at run time."""

    def __init__(self, paths, device, seed: int = 0):
        self.device = device
        self.images = [torch.from_numpy(load_rgb(p)).permute(2, 0, 1).contiguous().to(device) for p in paths]
        if not self.images:
            raise ValueError("no training images")
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        out = torch.empty(n, 3, IMAGE_SIZE, IMAGE_SIZE, device=self.device)
        r = self.rng
        for i in range(n):
            im = self.images[r.integers(len(self.images))]
            h, w = im.shape[1:]
            short = min(h, w)
            side = math.exp(r.uniform(math.log(min(IMAGE_SIZE, short)), math.log(short)))
            aspect = math.exp(r.uniform(math.log(0.75), math.log(1.33)))
            ch = int(min(h, max(32, side / math.sqrt(aspect))))
            cw = int(min(w, max(32, side * math.sqrt(aspect))))
            y = int(r.integers(0, h - ch + 1))
            x = int(r.integers(0, w - cw + 1))
            crop = im[:, y:y + ch, x:x + cw].unsqueeze(0).float()
            crop = F.interpolate(crop, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True,
                                 align_corners=False)
            if r.random() < 0.5:
                crop = crop.flip(3)
            out[i] = crop[0]
        out = out / 255.0
        gain = torch.from_numpy(r.uniform(0.8, 1.2, (n, 1, 1, 1))).float().to(self.device)
        bias = torch.from_numpy(r.uniform(-0.08, 0.08, (n, 1, 1, 1))).float().to(self.device)
        return ((out - 0.5) * gain + 0.5 + bias).clamp_(0.0, 1.0)
