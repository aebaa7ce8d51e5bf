"""PSNR and MS-SSIM in numpy/OpenCV (no torch at run time).

MS-SSIM follows Wang et al. 2003 exactly as pytorch-msssim computes it (11-tap
Gaussian, sigma 1.5, valid filtering, 5 scales, ReLU on cs/ssim); a test checks
the two agree.
"""
from __future__ import annotations

import cv2
import numpy as np

_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
_WIN = 11
_G = cv2.getGaussianKernel(_WIN, 1.5, cv2.CV_64F)
_G = _G / _G.sum()
_C1, _C2 = 0.01 ** 2, 0.03 ** 2


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def _filt(x):
    r = _WIN // 2
    return cv2.sepFilter2D(x, cv2.CV_64F, _G, _G, borderType=cv2.BORDER_REFLECT)[r:-r, r:-r]


def _ssim_cs(x, y):
    mu1, mu2 = _filt(x), _filt(y)
    s11 = _filt(x * x) - mu1 * mu1
    s22 = _filt(y * y) - mu2 * mu2
    s12 = _filt(x * y) - mu1 * mu2
    cs = (2 * s12 + _C2) / (s11 + s22 + _C2)
    ssim = (2 * mu1 * mu2 + _C1) / (mu1 * mu1 + mu2 * mu2 + _C1) * cs
    return ssim.mean(), cs.mean()


def _down(x):
    h, w = x.shape
    x = np.pad(x, ((h % 2, h % 2), (w % 2, w % 2)))   # avg_pool2d(2, padding=h%2) counts padding
    h2, w2 = x.shape[0] // 2, x.shape[1] // 2
    return x[:2 * h2, :2 * w2].reshape(h2, 2, w2, 2).mean((1, 3))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two HxWx3 uint8 images (smaller side > 160 px)."""
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"images must have equal HxWxC shapes, got {a.shape} and {b.shape}")
    if min(a.shape[:2]) <= (_WIN - 1) * 2 ** 4:
        raise ValueError("MS-SSIM needs images larger than 160 px on the smaller side")
    vals = []
    for ch in range(a.shape[2]):
        x = a[..., ch].astype(np.float64) / 255.0
        y = b[..., ch].astype(np.float64) / 255.0
        terms = []
        for lvl in range(len(_WEIGHTS)):
            ssim, cs = _ssim_cs(x, y)
            if lvl < len(_WEIGHTS) - 1:
                terms.append(max(cs, 0.0))
                x, y = _down(x), _down(y)
            else:
                terms.append(max(ssim, 0.0))
        vals.append(np.prod(np.power(terms, _WEIGHTS)))
    return float(np.mean(vals))


def ms_ssim_db(v: float) -> float:
    return float(-10 * np.log10(max(1e-12, 1 - v)))
