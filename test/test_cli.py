import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLES


def mcucoder(*args, check=True):
    exe = Path(sys.executable).parent / "mcucoder"     # the installed console script
    r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=ROOT / "test", timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(r.stderr)
    return r


def test_encode_decode(tmp_path):
    from mcucoder_ros.codec.images import load_rgb
    from mcucoder_ros.codec.metrics import ms_ssim

    for k in (3, 12):
        out = mcucoder("encode", SAMPLES / "astronaut.png", "-o", tmp_path / f"a{k}.mcf", "--channels", k)
        assert "bpp" in out.stdout
        mcucoder("decode", tmp_path / f"a{k}.mcf", "-o", tmp_path / f"a{k}.png")
        img = load_rgb(tmp_path / f"a{k}.png")
        assert img.shape == (224, 224, 3)
    src = load_rgb(SAMPLES / "astronaut.png")
    assert ms_ssim(src, load_rgb(tmp_path / "a12.png")) > ms_ssim(src, load_rgb(tmp_path / "a3.png"))
    assert (tmp_path / "a3.mcf").stat().st_size < (tmp_path / "a12.mcf").stat().st_size


def test_clear_errors(tmp_path):
    r = mcucoder("encode", tmp_path / "missing.png", "-o", tmp_path / "x.mcf", check=False)
    assert r.returncode != 0 and "cannot read image file" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "junk.mcf").write_bytes(b"MC\x01garbage")
    r = mcucoder("decode", tmp_path / "junk.mcf", "-o", tmp_path / "x.png", check=False)
    assert r.returncode != 0 and "error" in r.stderr and "Traceback" not in r.stderr
    r = mcucoder("encode", SAMPLES / "astronaut.png", "-o", tmp_path / "x.mcf", "--channels", 13, check=False)
    assert r.returncode == 2


def test_eval_json_and_plot(tmp_path):
    import cv2
    # a short video clip plus images: both input kinds
    clip = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    img = cv2.imread(str(SAMPLES / "road.png"))
    for i in range(3):
        w.write(cv2.resize(np.roll(img, 4 * i, axis=1), (320, 240)))
    w.release()
    out = tmp_path / "rd.json"
    mcucoder("eval", SAMPLES / "coffee.png", clip, "--json", out, "--plot", tmp_path / "rd.png", "--max-frames", 3)
    res = json.loads(out.read_text())
    assert res["frames"] == 3
    assert [p["k"] for p in res["mcucoder"]] == list(range(1, 13))
    assert {"bpp", "psnr", "ms_ssim"} <= set(res["mcucoder"][0]) and {"quality", "bpp"} <= set(res["jpeg"][0])
    bpp = [p["bpp"] for p in res["mcucoder"]]
    assert bpp == sorted(bpp)
    assert "bd_rate_ms_ssim" in res and "bd_rate_psnr" in res
    assert res["bd_rate_ms_ssim"] is None or res["bd_rate_ms_ssim"] < 0
    assert (tmp_path / "rd.png").stat().st_size > 10_000


def test_bench_keys(tmp_path):
    out = tmp_path / "bench.json"
    mcucoder("bench", "--json", out, "--seconds", 0.2, "--threads", 2)
    res = json.loads(out.read_text())
    assert res["encoder_fps"] > 0 and res["decoder_fps"] > 0 and "fast" in res["architectures"]


def test_training_and_export_smoke(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("pytorch_msssim")
    run = tmp_path / "run"
    mcucoder("train", SAMPLES, "--out", run, "--iterations", 3, "--batch", 2, "--decoder", "fast")
    assert (run / "weights.pt").exists()
    # resume continues from the checkpoint rather than starting over
    r = mcucoder("train", SAMPLES, "--out", run, "--iterations", 5, "--batch", 2)
    assert "resumed" in r.stdout
    mcucoder("export", run / "weights.pt", SAMPLES, "--out", tmp_path / "model")
    from mcucoder_ros.codec import bitstream
    from mcucoder_ros.codec.images import load_rgb
    from mcucoder_ros.codec.model import DecoderModel, EncoderModel
    enc = EncoderModel.load(tmp_path / "model")
    dec = DecoderModel.load(tmp_path / "model", threads=1)
    img = dec.decode(bitstream.unpack(bitstream.pack(enc.encode(load_rgb(SAMPLES / "coffee.png"), 12))))
    assert img.shape == (224, 224, 3)
    assert (tmp_path / "model" / "encoder_int8.h").read_text().count("mcu_conv") >= 12

    # decoder-only fine-tuning on the exported encoder's exact latents: the encoder
    # files (and so model id, firmware and bitstreams) stay byte for byte the same
    ft = tmp_path / "ft"
    r = mcucoder("train", SAMPLES, "--out", ft, "--iterations", 2, "--batch", 2, "--init", run / "weights.pt",
                 "--decoder-only", tmp_path / "model")
    assert "decoder only" in r.stdout
    mcucoder("export", ft / "weights.pt", SAMPLES, "--out", tmp_path / "model2")
    for name in ("encoder_int8.npz", "encoder_int8.h"):
        assert (tmp_path / "model2" / name).read_bytes() == (tmp_path / "model" / name).read_bytes()
    assert (tmp_path / "model2" / "decoder_fast.onnx").read_bytes() != \
        (tmp_path / "model" / "decoder_fast.onnx").read_bytes()
    dec2 = DecoderModel.load(tmp_path / "model2", threads=1)
    frame = bitstream.unpack(bitstream.pack(enc.encode(load_rgb(SAMPLES / "coffee.png"), 12)))
    assert dec2.decode(frame).shape == (224, 224, 3)
    # a fine-tuned decoder is never exported beside an encoder it was not trained for
    src = dict(np.load(tmp_path / "model" / "encoder_int8.npz"))
    np.savez(tmp_path / "model" / "encoder_int8.npz", **{**src, "model_id": np.uint32(int(src["model_id"]) ^ 1)})
    r = mcucoder("export", ft / "weights.pt", SAMPLES, "--out", tmp_path / "other", check=False)
    assert r.returncode != 0 and "needs the encoder of model" in r.stderr


def test_paper_decoder_loads_authors_layout():
    torch = pytest.importorskip("torch")
    from mcucoder_ros.training.models import MCUCoder, load_paper_state_dict
    src = MCUCoder("paper")
    # the authors' Lightning checkpoint: {"state_dict": {"encoder.conv1.weight": ..., "decoder.dec.0...": ...}}
    state = {"state_dict": {k: v.clone() for k, v in src.state_dict().items()}}
    assert any(k.startswith("decoder.dec.0.conv_a.0.conv.0") for k in state["state_dict"])
    dst = MCUCoder("paper")
    load_paper_state_dict(dst, state)
    for k, v in dst.state_dict().items():
        assert torch.equal(v, src.state_dict()[k])
    with pytest.raises(ValueError, match="paper layout"):
        load_paper_state_dict(MCUCoder("paper"), {"decoder.bogus": torch.zeros(1)})


def test_eval_and_bench_at_other_sizes(tmp_path):
    """eval --size native: each photo at its own size, JPEG at the same size, bpp over
    the photo's own pixels; bench --size: one row per size."""
    import cv2
    big = tmp_path / "photos"
    big.mkdir()
    src = cv2.imread(str(SAMPLES / "road.png"))
    cv2.imwrite(str(big / "a.png"), cv2.resize(src, (336, 256)))
    cv2.imwrite(str(big / "b.png"), cv2.resize(src, (203, 180)))
    out = tmp_path / "rd.json"
    mcucoder("eval", big, "--json", out, "--size", "native", "--plot", tmp_path / "rd.png")
    res = json.loads(out.read_text())
    assert res["frame_size"] == "native" and res["frame_sizes"] == [[203, 180], [336, 256]]
    assert res["resize"].startswith("none")
    mcucoder("eval", big, "--json", out, "--size", "320x240")
    assert json.loads(out.read_text())["frame_sizes"] == [[320, 240]]
    r = mcucoder("eval", big, "--json", out, "--size", "320*240", check=False)
    assert r.returncode != 0 and "WIDTHxHEIGHT" in r.stderr
    mcucoder("bench", "--json", tmp_path / "b.json", "--seconds", 0.3, "--threads", 2, "--size", "224x224", "96x64")
    rows = json.loads((tmp_path / "b.json").read_text())["sizes_table"]
    assert [r["size"] for r in rows] == [[224, 224], [96, 64]] and all(r["decode_fps"]["fast_int8"] > 0 for r in rows)
