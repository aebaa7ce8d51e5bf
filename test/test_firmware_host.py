"""The firmware's core, built for this machine with either kernel set (portable C, and
the SIMD kernels on C models of the DSP instructions), reproduces the golden vectors
(INT8 latent, symbols and bitstream frame) byte for byte."""
import shutil
import subprocess

import pytest
from conftest import ROOT


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_c_core_matches_golden_vectors(tmp_path):
    r = subprocess.run(["make", "-C", str(ROOT / "firmware"), f"BUILD={tmp_path}", "host-test"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK: 3 vectors, 0 failures (model 0e91bf51, c kernels)" in r.stdout
    assert "OK: 3 vectors, 0 failures (model 0e91bf51, dsp kernels)" in r.stdout
    assert "OK: serial protocol vectors" in r.stdout
