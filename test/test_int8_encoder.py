import json

import numpy as np
import pytest
from conftest import VECTORS, read_vector

from mcucoder_ros.codec import bitstream
from mcucoder_ros.codec.int8_encoder import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

MANIFEST = json.loads((VECTORS / "manifest.json").read_text())
NAMES = [v["name"] for v in MANIFEST["vectors"]]


def test_vectors_belong_to_shipped_model(encoder):
    assert MANIFEST["model_id"] == f"{encoder.model_id:#010x}", "regenerate: python -m mcucoder_ros.codec.vectors"


@pytest.mark.parametrize("name", NAMES)
def test_golden_vectors_bit_exact(encoder, name):
    rgb = read_vector(f"{name}.rgb", np.uint8, (224, 224, 3))
    latent = encoder.latent(rgb)
    assert np.array_equal(latent, read_vector(f"{name}.latent", np.int8, (12, 28, 28)))
    sym = encoder.quantizer.quantize(latent)
    assert np.array_equal(sym, read_vector(f"{name}.sym", np.uint8, (12, 28, 28)))
    seq = NAMES.index(name)
    assert bitstream.pack(encoder.encode(rgb, 12, seq)) == (VECTORS / f"{name}.mcf").read_bytes()


def test_parameter_count(encoder):
    assert encoder.int8.num_parameters == 10_524


def test_fixed_point_helpers_match_tflite_reference():
    # values worked by hand from TFLite's reference implementation
    assert int(saturating_rounding_doubling_high_mul(np.array([-2**31]), -2**31)[0]) == 2**31 - 1
    assert int(saturating_rounding_doubling_high_mul(np.array([1 << 30]), 1 << 30)[0]) == 1 << 29
    assert int(saturating_rounding_doubling_high_mul(np.array([-3]), 1 << 30)[0]) == -1  # -1.5 rounds away
    assert int(saturating_rounding_doubling_high_mul(np.array([3]), 1 << 30)[0]) == 2    # 1.5 rounds away
    assert rounding_divide_by_pot(np.array([5, -5, 6, -6, 7, -7]), 2).tolist() == [1, -1, 2, -2, 2, -2]
    m, s = quantize_multiplier(0.75)
    assert (m, s) == (3 << 29, 0)
    m, s = quantize_multiplier(0.001)
    assert 1 << 30 <= m < 1 << 31 and abs(m * 2.0 ** (s - 31) - 0.001) < 1e-12
    acc = np.array([100000, -100000, 12345, 0])
    got = multiply_by_quantized_multiplier(acc, np.int32(m), np.int32(s))
    assert np.all(np.abs(got - acc * 0.001) <= 0.5 + 1e-9)


def _srdhm_scalar(a: int, b: int) -> int:
    """TFLite's SaturatingRoundingDoublingHighMul, transcribed literally (Python ints)."""
    if a == b == -2**31:
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    t = ab + nudge
    return t // 2**31 if t >= 0 else -((-t) // 2**31)      # C division: toward zero


def test_vectorised_fixed_point_equals_the_scalar_definition():
    """The vectorised, in-place helper against the literal one, on generated values with
    the edges (int32 limits, ties, zero, the saturating pair) mixed in."""
    rng = np.random.default_rng(7)
    edges = [-2**31, 2**31 - 1, 0, -1, 1, 3, -3, 1 << 30, -(1 << 30)]
    for trial in range(60):
        n = int(rng.integers(1, 400))
        a = rng.integers(-2**31, 2**31, n, dtype=np.int64)
        b = rng.integers(-2**31, 2**31, n, dtype=np.int64)
        a[rng.random(n) < 0.3] = rng.choice(edges)
        b[rng.random(n) < 0.3] = rng.choice(edges + [-2**31] * 3)
        got = saturating_rounding_doubling_high_mul(a, b)
        assert got.tolist() == [_srdhm_scalar(int(x), int(y)) for x, y in zip(a, b)], trial
        # per-channel multipliers broadcast as in conv_int8 (positive, as the exporter makes them)
        m = rng.integers(1 << 30, 1 << 31, 5, dtype=np.int64)
        acc = rng.integers(-2**24, 2**24, (n, 5), dtype=np.int64)
        got = saturating_rounding_doubling_high_mul(acc, m)
        assert got.tolist() == [[_srdhm_scalar(int(x), int(y)) for x, y in zip(row, m)] for row in acc]


def test_int8_encoder_close_to_float_encoder(encoder, photos):
    torch = pytest.importorskip("torch")
    from conftest import ROOT

    from mcucoder_ros.codec.images import resize_224
    from mcucoder_ros.training.models import MCUCoder

    ck = torch.load(ROOT / "models" / "default" / "checkpoint.pt", map_location="cpu")
    model = MCUCoder(ck["config"]["decoder"])
    model.load_state_dict(ck["model"])
    frames = np.stack([resize_224(p) for p in photos])
    with torch.no_grad():
        zf = model.encoder(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255).numpy()
    zi = np.stack([encoder.int8.dequantize(encoder.latent(f)) for f in frames])
    step = encoder.int8.latent_scale[None, :, None, None]
    err = np.abs(zf - zi) / step           # error in int8 latent steps (1/4 of a 6-bit symbol step)
    rel_rms = np.sqrt(np.mean((zf - zi) ** 2) / np.mean(zf ** 2))
    # measured on the bundled samples: median 1.2 steps, relative RMS error 0.75 %
    assert np.median(err) < 2.0
    assert rel_rms < 0.02


def test_rejects_wrong_input(encoder):
    with pytest.raises(ValueError, match="multiples of 8"):
        encoder.int8(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError):
        encoder.int8(np.zeros((224, 224, 3), np.float32))


def test_int8_decoder_close_to_fp32_decoder_on_golden_frames():
    """The default INT8 decoder (fast_int8) against the FP32 one (fast) on the golden
    bitstreams, at k = 12 and k = 4.  Tolerance: the two pictures agree to MS-SSIM
    >= 0.98 and mean |difference| <= 2.5 grey levels, and the INT8 picture's MS-SSIM
    against the source is within 0.01 of the FP32 one's (held-out mean: docs/results.md)."""
    from mcucoder_ros.codec.metrics import ms_ssim
    from mcucoder_ros.codec.model import DecoderModel, shipped_decoders

    assert shipped_decoders()[:2] == ["fast_int8", "fast"]
    fp32, int8 = DecoderModel.load(arch="fast", threads=2), DecoderModel.load(threads=2)
    assert int8.name == "fast_int8"
    for name in ("astronaut", "road"):
        src = np.fromfile(VECTORS / f"{name}.rgb", np.uint8).reshape(224, 224, 3)
        frame = bitstream.unpack((VECTORS / f"{name}.mcf").read_bytes())
        for k in (12, 4):
            part = bitstream.Frame(frame.model_id, frame.sequence, frame.channel_indices[:k], frame.chunks[:k])
            a, b = fp32.decode(part), int8.decode(part)
            diff = np.abs(a.astype(int) - b.astype(int))
            assert ms_ssim(a, b) >= 0.98 and diff.mean() <= 2.5, (name, k, ms_ssim(a, b), diff.mean())
            assert ms_ssim(src, b) >= ms_ssim(src, a) - 0.01, (name, k)


def test_channels_last_rewrite_is_the_shipped_int8_decoder():
    """On the CPU provider the INT8 decoder runs through the channels-last rewrite
    (codec/channels_last.py).  It must be the QDQ file's arithmetic: on the golden
    bitstreams, at k = 12, 5 and 1, the pictures agree to at most one grey level
    (float summation order only), nearly all pixels exactly."""
    import onnx

    from mcucoder_ros.codec.channels_last import channels_last_model
    from mcucoder_ros.codec.model import DecoderModel

    fast, shipped = DecoderModel.load(threads=2), DecoderModel.load(threads=2, cpu_rewrite=False)
    assert fast.graph == "channels-last rewrite" and shipped.graph == "as shipped"
    rewritten = onnx.load_from_string(channels_last_model(fast.onnx_path.read_bytes()))
    ops = [n.op_type for n in rewritten.graph.node]
    # the shuffles are row copies; the only layout changes left: the float head's output
    # into the first convolution, the float tail's input (fused into its reorder)
    assert "DepthToSpace" not in ops and ops.count("Transpose") <= 3 + 2, ops
    for name in ("astronaut", "road"):
        frame = bitstream.unpack((VECTORS / f"{name}.mcf").read_bytes())
        for k in (12, 5, 1):
            part = bitstream.Frame(frame.model_id, frame.sequence, frame.channel_indices[:k], frame.chunks[:k])
            a, b = fast.decode(part), shipped.decode(part)
            diff = np.abs(a.astype(int) - b.astype(int))
            assert diff.max() <= 1 and (diff == 0).mean() >= 0.999, (name, k, diff.max(), (diff == 0).mean())


def test_channels_last_rewrite_refuses_what_it_does_not_know():
    """A graph with an operator outside the rewrite's set is left as shipped (the
    decoder still loads and runs), with the reason in `graph`."""
    from onnx import TensorProto, helper

    from mcucoder_ros.codec.channels_last import NotConvertible, channels_last_model

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    g = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=1)], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(NotConvertible, match="Softmax"):
        channels_last_model(m.SerializeToString())
