"""The resolution ladder's codec: integer box decimation, bitstream v4 (a picture
coded at 1/2 or 1/4 of the camera's size), decoding back at the camera's size."""
import cv2
import numpy as np
import pytest
from conftest import SAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from mcucoder_ros.codec import bitstream
from mcucoder_ros.codec.bitstream import BitstreamError, Frame
from mcucoder_ros.codec.entropy import EntropyError
from mcucoder_ros.codec.geometry import SizeError, coded_size, decimate, scales_for
from mcucoder_ros.codec.images import load_rgb
from mcucoder_ros.codec.metrics import ms_ssim


def _photo(w, h):
    a, b = load_rgb(SAMPLES / "astronaut.png"), load_rgb(SAMPLES / "coffee.png")
    return cv2.resize(np.concatenate([a, b], axis=1), (w, h), interpolation=cv2.INTER_AREA)


@settings(max_examples=200, deadline=None)
@given(w=st.integers(1, 70), h=st.integers(1, 70), shift=st.sampled_from([0, 1, 2]), seed=st.integers(0, 2**32 - 1))
def test_decimate_is_the_rounded_block_mean_of_the_edge_replicated_picture(w, h, shift, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = decimate(rgb, shift)
    n = 1 << shift
    cw, ch = coded_size(w, h, shift)
    assert out.shape == (ch, cw, 3) and out.dtype == np.uint8
    # one block by hand, the bottom-right one (edge replication included)
    ys = [min(y, h - 1) for y in range((ch - 1) * n, ch * n)]
    xs = [min(x, w - 1) for x in range((cw - 1) * n, cw * n)]
    block = rgb[np.ix_(ys, xs)].astype(int).sum(axis=(0, 1))
    assert list(out[-1, -1]) == list((block + n * n // 2) // (n * n))
    # within half a level of the float mean everywhere, constant pictures stay constant
    ref = cv2.resize(np.pad(rgb, ((0, ch * n - h), (0, cw * n - w), (0, 0)), mode="edge").astype(np.float64),
                     (cw, ch), interpolation=cv2.INTER_AREA)
    assert np.abs(out - ref.reshape(out.shape)).max() <= 0.5 + 1e-6
    flat = np.full((h, w, 3), seed % 256, np.uint8)
    assert (decimate(flat, shift) == seed % 256).all()


def test_scale_limits():
    assert coded_size(640, 480, 2) == (160, 120) and coded_size(493, 356, 1) == (247, 178)
    assert scales_for(640, 480) == (0, 1, 2) and scales_for(20, 16) == (0, 1) and scales_for(8, 8) == (0,)
    with pytest.raises(SizeError, match="scale shift 3"):
        decimate(np.zeros((16, 16, 3), np.uint8), 3)


@pytest.mark.parametrize("size,shift", [((640, 480), 1), ((640, 480), 2), ((493, 356), 1), ((203, 117), 2),
                                        ((224, 224), 1)])
def test_v4_round_trip_shows_the_camera_size(encoder, decoder, size, shift):
    w, h = size
    rgb = _photo(w, h)
    frame = encoder.encode(rgb, 12, sequence=9, scale_shift=shift)
    data = bitstream.pack(frame)
    assert data[2] == 4 and data[3] == shift
    assert (int.from_bytes(data[14:16], "little"), int.from_bytes(data[16:18], "little")) == (w, h)
    back = bitstream.unpack(data)
    assert back.scale_shift == shift and back.coded_size == coded_size(w, h, shift)
    assert back.latent_shape == (-(-coded_size(w, h, shift)[1] // 8), -(-coded_size(w, h, shift)[0] // 8))
    pic = decoder.decode(back)
    assert pic.shape == (h, w, 3)
    # the same as decoding the decimated picture on its own and scaling it up (bicubic)
    small = decoder.decode(encoder.encode(decimate(rgb, shift), 12, sequence=9))
    assert np.array_equal(pic, cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))
    assert [len(c) for c in back.chunks] == [len(c) for c in encoder.encode(decimate(rgb, shift), 12).chunks]


def test_ladder_rungs_trade_rate_for_quality(encoder, decoder):
    """Lower rungs cost fewer bytes and show less (a real photo at VGA)."""
    rgb = _photo(640, 480)
    sizes, quality = [], []
    for shift in (0, 1, 2):
        f = encoder.encode(rgb, 4, scale_shift=shift)
        sizes.append(len(bitstream.pack(f)))
        quality.append(ms_ssim(rgb, decoder.decode(f)))
    assert sizes[0] > 2.5 * sizes[1] > 2.5 * 2.5 * sizes[2]
    assert quality[0] > quality[1] > quality[2] > 0.5


def test_v4_header_errors(encoder):
    good = bitstream.pack(encoder.encode(_photo(64, 48), 3, scale_shift=1))
    for bad_shift in (0, 3, 255):
        data = bytearray(good)
        data[3] = bad_shift
        with pytest.raises((BitstreamError, EntropyError)):
            bitstream.unpack(bytes(data))
    tiny = bytearray(good)
    tiny[14:18] = (12).to_bytes(2, "little") + (12).to_bytes(2, "little")   # 12x12 at 1/2: 6x6 < 8
    with pytest.raises(BitstreamError, match="cannot be coded"):
        bitstream.unpack(bytes(tiny))
    with pytest.raises(BitstreamError, match="cannot be coded"):
        Frame(1, 0, [], [], width=12, height=12, scale_shift=1).validate()
    with pytest.raises(BitstreamError, match="scale shift"):
        Frame(1, 0, [], [], width=64, height=64, scale_shift=3).validate()


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=0, max_size=64), w=st.integers(0, 4000), h=st.integers(0, 4000),
       shift=st.integers(0, 255))
def test_v4_fuzzed_headers_raise_clear_errors(data, w, h, shift):
    head = bitstream.HEADER_V3.pack(b"MC", 4, shift, 1, 0, 12, 1, w, h)
    try:
        bitstream.unpack(head + data)
    except (BitstreamError, EntropyError):
        pass


def test_message_round_trip_keeps_the_scale(encoder):
    from builtin_interfaces.msg import Time

    from mcucoder_ros.msg import LatentChannels
    from mcucoder_ros.nodes.common import frame_to_msg, gate, message_bytes, msg_to_frame

    frame = encoder.encode(_photo(320, 240), 6, sequence=3, scale_shift=2)
    m = frame_to_msg(frame, Time(), "cam")
    assert isinstance(m, LatentChannels) and m.bitstream_version == 4 and m.scale_shift == 2
    assert (m.width, m.height) == (320, 240) and (m.latent_height, m.latent_width) == (8, 10)
    assert msg_to_frame(m).chunks == frame.chunks and message_bytes(m) == len(bitstream.pack(frame))
    g = gate(m, 2)
    assert g.bitstream_version == 4 and g.scale_shift == 2 and msg_to_frame(g).chunks == frame.chunks[:2]
    m.scale_shift = 0
    with pytest.raises(BitstreamError, match="1/2 or 1/4"):
        msg_to_frame(m)
