import numpy as np
import pytest

from mcucoder_ros.codec.metrics import ms_ssim, psnr


def test_ms_ssim_matches_pytorch_msssim(photo):
    torch = pytest.importorskip("torch")
    pm = pytest.importorskip("pytorch_msssim")
    rng = np.random.default_rng(0)
    for noise in (3, 20, 60):
        b = np.clip(photo.astype(int) + rng.integers(-noise, noise + 1, photo.shape), 0, 255).astype(np.uint8)
        t = lambda x: torch.from_numpy(x).permute(2, 0, 1)[None].double()  # noqa: E731
        ref = float(pm.ms_ssim(t(photo), t(b), data_range=255))
        assert abs(ms_ssim(photo, b) - ref) < 1e-6


def test_identity_and_psnr(photo):
    assert ms_ssim(photo, photo) == pytest.approx(1.0)
    assert psnr(photo, photo) == float("inf")
    assert psnr(np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        ms_ssim(photo, photo[:100])
