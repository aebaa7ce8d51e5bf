"""Pictures of the camera's own size: bitstream v3, the codec at any size, limits."""
import json

import cv2
import numpy as np
import pytest
from conftest import SAMPLES, VECTORS
from hypothesis import given, settings
from hypothesis import strategies as st

from mcucoder_ros.codec import bitstream
from mcucoder_ros.codec.bitstream import BitstreamError, Frame
from mcucoder_ros.codec.entropy import EntropyError, max_chunk_bytes
from mcucoder_ros.codec.geometry import SizeError, check_size, latent_shape, parse_size
from mcucoder_ros.codec.images import fit_size, load_rgb
from mcucoder_ros.codec.metrics import ms_ssim
from mcucoder_ros.codec.model import ModelError

DECODE_ERRORS = (BitstreamError, EntropyError, ModelError)
SIZED = VECTORS / "sized"
SIZED_MANIFEST = json.loads((SIZED / "manifest.json").read_text())


def _photo(w, h):
    """A real photo at w x h (two bundled 224x224 samples side by side, resized)."""
    a, b = load_rgb(SAMPLES / "astronaut.png"), load_rgb(SAMPLES / "coffee.png")
    return cv2.resize(np.concatenate([a, b], axis=1), (w, h), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def qvga(encoder):
    return _photo(320, 240)


def test_geometry_limits():
    assert check_size(1920, 1088) == (1920, 1088) and check_size(1088, 1920) == (1088, 1920)
    assert latent_shape(320, 240) == (30, 40) and latent_shape(203, 117) == (15, 26)
    for w, h in [(0, 10), (7, 100), (1921, 1000), (1920, 1089), (1200, 1200), (4096, 8)]:
        with pytest.raises(SizeError, match="outside"):
            check_size(w, h)
    assert parse_size("640x480") == (640, 480)
    with pytest.raises(SizeError, match="WIDTHxHEIGHT"):
        parse_size("640*480")


def test_fit_size_keeps_aspect_like_image_proc():
    assert fit_size(640, 480) == (640, 480)
    assert fit_size(640, 480, out_width=320) == (320, 240)
    assert fit_size(352, 288, out_height=144) == (176, 144)
    assert fit_size(640, 480, 100, 100) == (100, 100)       # both given: exactly that
    assert fit_size(1280, 720, scale=0.5) == (640, 360)


@pytest.mark.parametrize("size", [(320, 240), (352, 288), (203, 117), (640, 480), (8, 8)])
def test_round_trip_at_own_size(encoder, decoder, size):
    w, h = size
    rgb = _photo(w, h)
    frame = encoder.encode(rgb, 12, sequence=5)
    data = bitstream.pack(frame)
    assert data[2] == 3 and int.from_bytes(data[14:16], "little") == w and int.from_bytes(data[16:18], "little") == h
    assert len(data) == 18 + 4 * 12 + sum(frame.chunk_lengths)
    back = bitstream.unpack(data)
    assert (back.width, back.height, back.latent_shape) == (w, h, latent_shape(w, h))
    assert back.chunks == frame.chunks and back.reference_deltas == [0] * 12
    sym = encoder.symbols(rgb)
    assert sym.shape == (12, *latent_shape(w, h))
    for c, chunk in zip(back.channel_indices, back.chunks):
        assert np.array_equal(decoder.coders[c].decode(chunk, back.latent_shape), sym[c])
    img = decoder.decode(back)
    assert img.shape == (h, w, 3) and img.dtype == np.uint8
    if min(w, h) >= 160:
        assert ms_ssim(rgb, img) > 0.93, size


def test_224_frames_stay_version_1(encoder, photo):
    data = bitstream.pack(encoder.encode(photo, 12))
    assert data[2] == 1 and data[12:15] == bytes([12, 28, 28])


def test_padding_is_edge_replication_and_cropped(encoder):
    """A picture whose sides are not multiples of 8 codes exactly as its edge-replicated
    padding does; the decoder gives back the picture's own size."""
    rgb = _photo(203, 117)
    padded = np.pad(rgb, ((0, 3), (0, 5), (0, 0)), mode="edge")
    assert np.array_equal(encoder.latent(rgb), encoder.latent(padded))
    assert encoder.encode(rgb, 12).chunks == encoder.encode(padded, 12).chunks


def test_int8_encoder_is_translation_consistent(encoder, qvga):
    """Fully convolutional: the latent of a picture's top-left 224x224 (away from the
    right and bottom borders, where the padding differs) equals the top-left of the
    latent of the whole picture."""
    whole = encoder.latent(qvga)
    part = encoder.latent(np.ascontiguousarray(qvga[:224, :224]))
    assert np.array_equal(whole[:, :26, :26], part[:, :26, :26])


@pytest.mark.parametrize("name", [v["name"] for v in SIZED_MANIFEST["vectors"]])
def test_sized_golden_vectors_bit_exact(encoder, name):
    v = next(v for v in SIZED_MANIFEST["vectors"] if v["name"] == name)
    assert SIZED_MANIFEST["model_id"] == f"{encoder.model_id:#010x}"
    w, h = v["width"], v["height"]
    lh, lw = latent_shape(w, h)
    rgb = np.fromfile(SIZED / f"{name}.rgb", np.uint8).reshape(h, w, 3)
    latent = encoder.latent(rgb)
    assert np.array_equal(latent, np.fromfile(SIZED / f"{name}.latent", np.int8).reshape(12, lh, lw))
    assert np.array_equal(encoder.quantizer.quantize(latent),
                          np.fromfile(SIZED / f"{name}.sym", np.uint8).reshape(12, lh, lw))
    assert bitstream.pack(encoder.encode(rgb, 12, v["sequence"])) == (SIZED / f"{name}.mcf").read_bytes()


def test_c_and_python_entropy_decoders_agree_at_any_size(encoder, qvga):
    from mcucoder_ros.codec.entropy import c_decoder_built
    if not c_decoder_built():
        pytest.skip("C rANS decoder not built")
    sym = encoder.symbols(qvga)
    for c in (0, 5, 11):
        chunk = encoder.coders[c].encode(sym[c])
        assert np.array_equal(encoder.coders[c].decode(chunk, sym[c].shape), sym[c])
        assert np.array_equal(encoder.coders[c].decode_python(chunk, sym[c].shape), sym[c])
    if encoder.inter_coders is not None:
        ref = encoder.symbols(np.ascontiguousarray(np.roll(qvga, 3, axis=1)))
        chunk = encoder.inter_coders[2].encode(sym[2], ref[2])
        assert np.array_equal(encoder.inter_coders[2].decode(chunk, ref[2]), sym[2])
        assert np.array_equal(encoder.inter_coders[2].decode_python(chunk, ref[2]), sym[2])


def test_chunk_of_the_wrong_size_is_an_error(encoder, decoder, qvga):
    """A 320x240 chunk read as a 224x224 channel (or the other way) is detected."""
    sym = encoder.symbols(qvga)
    chunk = encoder.coders[0].encode(sym[0])
    with pytest.raises(EntropyError):
        decoder.coders[0].decode(chunk, (28, 28))
    with pytest.raises(EntropyError):
        decoder.coders[0].decode(chunk[:-1], (30, 40))


def test_video_mode_at_own_size_and_size_change(encoder, decoder):
    """Inter coding at 320x240 is lossless; when the camera changes its size, no
    reference of the old size is used (camera) or accepted (receiver)."""
    from mcucoder_ros.codec.inter import ReceivedReferences, ReferenceState
    if encoder.inter_coders is None:
        pytest.skip("model without inter tables")
    base = _photo(400, 300)
    frames = [np.ascontiguousarray(base[i:i + 240, i:i + 320]) for i in range(6)]
    state, store = ReferenceState(), ReceivedReferences()
    inter = 0
    for i, rgb in enumerate(frames):
        f = encoder.encode(rgb, 12, i, references=state)
        state.acknowledge(i, f.channel_indices)
        back = bitstream.unpack(bitstream.pack(f))
        assert back.version == 3 and (back.width, back.height) == (320, 240)
        got = decoder.symbols(back, store)
        want = encoder.symbols(rgb)
        assert all(np.array_equal(got[c], want[c]) for c in range(12))
        inter += sum(1 for d in f.reference_deltas if d)
    assert inter > 0
    small = cv2.resize(frames[-1], (224, 168))
    f = encoder.encode(small, 12, len(frames), references=state)
    assert not any(f.reference_deltas), "predicted from a reference of another size"
    # a receiver given an inter chunk whose reference has another size counts it lost
    forged = Frame(f.model_id, len(frames) + 1, [0], [f.chunks[0]], references=[1], width=224, height=168)
    store.store(len(frames), {0: np.zeros((30, 40), np.uint8)})
    decoder.symbols(forged, store)
    assert forged.extra["lost_channels"] == [0]


def test_decoders_take_any_size(encoder, qvga):
    """FP32, INT8 as shipped (QDQ) and INT8 rewritten channels-last all decode 320x240;
    the rewrite is the QDQ file's arithmetic (at most one grey level apart)."""
    from mcucoder_ros.codec.model import DecoderModel
    frame = encoder.encode(qvga, 12)
    fp32 = DecoderModel.load(arch="fast", threads=2)
    fast, shipped = DecoderModel.load(threads=2), DecoderModel.load(threads=2, cpu_rewrite=False)
    assert fast.graph == "channels-last rewrite"
    a, b, c = fp32.decode(frame), fast.decode(frame), shipped.decode(frame)
    assert a.shape == b.shape == c.shape == (240, 320, 3)
    diff = np.abs(b.astype(int) - c.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.999
    assert ms_ssim(qvga, b) >= ms_ssim(qvga, a) - 0.01


def test_batches_are_grouped_by_size(encoder, decoder, photo, qvga):
    frames = [encoder.encode(qvga, 12), encoder.encode(photo, 6), encoder.encode(qvga, 4),
              encoder.encode(_photo(203, 117), 12)]
    pics = decoder.decode_batch(frames)
    assert [p.shape for p in pics] == [(240, 320, 3), (224, 224, 3), (240, 320, 3), (117, 203, 3)]
    for f, p in zip(frames, pics):
        assert np.abs(decoder.decode(f).astype(int) - p).max() <= 1
    decoder.warm_up(2, (320, 240))
    assert (2, 30, 40) in decoder.warm_sizes


def test_v3_header_errors(encoder, qvga):
    data = bytearray(bitstream.pack(encoder.encode(qvga, 12)))
    cases = [((14, 0, 0), "outside"), ((14, 0x81, 0x07), "outside"), ((16, 0xff, 0xff), "outside"),
             ((13, 13), "exceeds"), ((18, 12), "increasing")]
    for edits, msg in cases:
        bad = bytearray(data)
        pos, *vals = edits
        bad[pos:pos + len(vals)] = bytes(vals)
        with pytest.raises(BitstreamError, match=msg):
            bitstream.unpack(bytes(bad))
    # a size the frame's bytes do not fit: 16x16 allows 12 chunks of at most 14 bytes
    bad = bytearray(data)
    bad[14:18] = (16).to_bytes(2, "little") + (16).to_bytes(2, "little")
    with pytest.raises(BitstreamError, match="exceeds the maximum"):
        bitstream.unpack(bytes(bad))
    small = Frame(encoder.model_id, 0, [0], [b"\0" * (max_chunk_bytes((2, 2)) + 1)], width=16, height=16)
    with pytest.raises(BitstreamError, match="allowed 4"):
        bitstream.pack(small)
    with pytest.raises(BitstreamError, match="outside"):
        bitstream.pack(Frame(encoder.model_id, 0, [], [], width=4000, height=100))
    for n in (3, 10, 17, 20, 60):
        with pytest.raises(BitstreamError):
            bitstream.unpack(bytes(data[:n]))


def test_message_fields_carry_the_size(encoder, qvga):
    from types import SimpleNamespace
    f = encoder.encode(qvga, 3)

    def msg(**kw):
        d = {"bitstream_version": f.version, "model_id": f.model_id, "sequence": 1, "num_channels": 12,
             "latent_height": 30, "latent_width": 40, "channel_indices": f.channel_indices,
             "chunk_lengths": f.chunk_lengths, "payload": f.payload, "reference_deltas": [], "width": 320,
             "height": 240}
        d.update(kw)
        return SimpleNamespace(**d)
    assert bitstream.from_message(msg()).size == (320, 240)
    with pytest.raises(BitstreamError, match="width and height"):
        bitstream.from_message(msg(width=0, height=0))
    with pytest.raises(BitstreamError, match="geometry"):
        bitstream.from_message(msg(width=640, height=480))
    p = encoder.encode(load_rgb(SAMPLES / "coffee.png"), 2)
    old = SimpleNamespace(bitstream_version=1, model_id=p.model_id, sequence=1, num_channels=12, latent_height=28,
                          latent_width=28, channel_indices=p.channel_indices, chunk_lengths=p.chunk_lengths,
                          payload=p.payload)            # a message of the first version: no size, no references
    assert bitstream.from_message(old).size == (224, 224)
    with pytest.raises(BitstreamError, match="224x224"):
        bitstream.from_message(msg(bitstream_version=1, latent_height=28, latent_width=28))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_v3_never_crashes(decoder, data):
    try:
        decoder.latent(bitstream.unpack(b"MC\x03" + data))
    except DECODE_ERRORS:
        pass


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_v3_frames_never_crash(encoder, decoder, data):
    rgb = _photo(64, 48)
    raw = bytearray(bitstream.pack(encoder.encode(rgb, 12, 3)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        decoder.latent(bitstream.unpack(bytes(raw[:cut])))
    except DECODE_ERRORS:
        pass


def test_oversized_v3_rejected_without_reading_it():
    with pytest.raises(BitstreamError, match="exceeds"):
        bitstream.unpack(b"MC\x03" + b"\0" * (bitstream.MAX_FRAME_BYTES + 1))


def test_camera_options_carry_a_size():
    from mcucoder_ros.pipeline import parse_camera_option, size_overrides
    cam = parse_camera_option("front=video:clips/traffic.mp4,width=320")
    assert (cam.width, cam.height) == (320, 0)
    assert cam.overrides("encoder_node")["width"] == 320 and cam.overrides("encoder_node")["frame_id"] == "front"
    assert "width" not in parse_camera_option("rear=video:clips/pan.mp4").overrides("encoder_node")
    qemu = parse_camera_option("mcu=qemu-m7:clips/traffic.mp4,width=320")    # its emulated camera takes it
    assert qemu.width == 320 and "width" not in qemu.overrides("mcu_bridge_node")
    with pytest.raises(ValueError, match="its own camera configuration"):
        parse_camera_option("dev=serial:/dev/ttyACM0,width=320")
    with pytest.raises(ValueError, match="negative"):
        size_overrides("video", -1, 0, 0)


def test_camera_driver_encodings_convert_as_cv_bridge_does():
    """Bayer (all four orders), YUV 4:2:2, 16-bit grey in either byte order, to rgb8 with
    OpenCV's conversions; an encoding it cannot take names itself."""
    from sensor_msgs.msg import Image

    from mcucoder_ros.codec.images import ImageError
    from mcucoder_ros.nodes.common import compressed_to_rgb, image_to_rgb
    rgb = _photo(64, 48)
    for order in ("rggb", "bggr", "gbrg", "grbg"):
        mosaic = np.empty((48, 64), np.uint8)
        for i, c in enumerate(order):
            y, x = divmod(i, 2)
            mosaic[y::2, x::2] = rgb[y::2, x::2, "rgb".index(c)]
        out = image_to_rgb(Image(height=48, width=64, encoding=f"bayer_{order}8", step=64, data=mosaic.tobytes()),
                           use_cv_bridge=False)
        assert out.shape == (48, 64, 3)
        assert np.abs(out[8:-8, 8:-8].astype(int) - rgb[8:-8, 8:-8]).mean((0, 1)).max() < 20, order
    grey = (rgb[..., 1].astype(np.uint16) * 257)
    for big in (0, 1):
        data = grey.astype(">u2" if big else "<u2").tobytes()
        out = image_to_rgb(Image(height=48, width=64, encoding="mono16", is_bigendian=big, step=128, data=data),
                           use_cv_bridge=False)
        assert np.array_equal(out[..., 0], rgb[..., 1]) and np.array_equal(out[..., 2], rgb[..., 1])
    with pytest.raises(ImageError, match="'32FC1'"):
        image_to_rgb(Image(height=2, width=2, encoding="32FC1", step=8, data=bytes(16)), use_cv_bridge=False)
    with pytest.raises(ImageError, match="odd width"):
        image_to_rgb(Image(height=2, width=3, encoding="yuv422_yuy2", step=6, data=bytes(12)), use_cv_bridge=False)
    from sensor_msgs.msg import CompressedImage
    with pytest.raises(ImageError, match="cannot decode"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg"))
