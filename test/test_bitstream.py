
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcucoder_ros.codec import bitstream
from mcucoder_ros.codec.bitstream import BitstreamError, Frame
from mcucoder_ros.codec.entropy import EntropyError
from mcucoder_ros.codec.model import ModelError

DECODE_ERRORS = (BitstreamError, EntropyError, ModelError)


@pytest.fixture(scope="module")
def coded(encoder, photo):
    return encoder.encode(photo, 12, 7)


@pytest.mark.parametrize("k", range(0, 13))
def test_round_trip_every_k(encoder, decoder, photo, k):
    frame = encoder.encode(photo, k, sequence=42)
    data = bitstream.pack(frame)
    back = bitstream.unpack(data)
    assert back.channel_indices == list(range(k)) and back.sequence == 42 and back.model_id == encoder.model_id
    assert back.chunks == frame.chunks
    sym = encoder.symbols(photo)
    for c, chunk in zip(back.channel_indices, back.chunks):
        assert np.array_equal(decoder.coders[c].decode(chunk), sym[c])
    img = decoder.decode(back)
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8


def test_bitstream_header_layout(coded):
    data = bitstream.pack(coded)
    assert data[:2] == b"MC" and data[2] == 1
    assert int.from_bytes(data[8:12], "little") == 7
    assert data[12:16] == bytes([12, 28, 28, 12])
    assert len(data) == 16 + 3 * 12 + sum(coded.chunk_lengths)


@pytest.mark.parametrize("subset", [(0,), (1, 5), (0, 2, 4, 6, 8, 10), (11,), tuple(range(1, 12)), (3, 4, 9)])
def test_decode_with_missing_channels(encoder, decoder, coded, subset):
    frame = Frame(coded.model_id, 1, list(subset), [coded.chunks[c] for c in subset])
    latent = decoder.latent(bitstream.unpack(bitstream.pack(frame)))
    full = decoder.latent(coded)
    for c in range(12):
        if c in subset:
            assert np.array_equal(latent[0, c], full[0, c])
        else:
            assert not latent[0, c].any()          # zero-filled, as in training
    assert decoder.decode(frame).shape == (224, 224, 3)


def test_quality_rises_with_channels(encoder, decoder, photo):
    from mcucoder_ros.codec.metrics import ms_ssim
    scores = [ms_ssim(photo, decoder.decode(encoder.encode(photo, k))) for k in (1, 4, 8, 12)]
    assert scores == sorted(scores) and scores[-1] > 0.9


def test_truncated_frames_raise(coded):
    data = bitstream.pack(coded)
    for n in [0, 1, 5, 15, 16, 20, 51, len(data) - 1]:
        with pytest.raises(BitstreamError):
            bitstream.unpack(data[:n])


def test_truncated_chunk_detected(decoder, coded):
    for cut in (1, 3, len(coded.chunks[0]) // 2):
        bad = Frame(coded.model_id, 0, [0], [coded.chunks[0][:-cut]])
        with pytest.raises(EntropyError):
            decoder.latent(bad)


def test_corrupted_chunk_detected_mostly(decoder, coded):
    rng = np.random.default_rng(0)
    detected = 0
    for _ in range(200):
        chunk = bytearray(coded.chunks[3])
        chunk[rng.integers(len(chunk))] ^= 1 << int(rng.integers(8))
        try:
            decoder.latent(Frame(coded.model_id, 0, [3], [bytes(chunk)]))
        except EntropyError:
            detected += 1
    assert detected >= 190   # rANS final-state check catches nearly every bit flip


def test_inconsistent_headers_raise(coded):
    data = bytearray(bitstream.pack(coded))
    for pos, val, msg in [(0, ord("X"), "magic"), (2, 9, "version"), (12, 13, "geometry"), (15, 13, "exceeds"),
                          (16, 12, "increasing")]:
        bad = bytearray(data)
        bad[pos] = val
        with pytest.raises(BitstreamError, match=msg):
            bitstream.unpack(bytes(bad))
    bad = bytearray(data)
    bad[17] = 0xFF    # chunk length no longer matches payload
    with pytest.raises(BitstreamError):
        bitstream.unpack(bytes(bad))


def test_wrong_model_rejected(decoder, coded):
    with pytest.raises(ModelError, match="model"):
        decoder.latent(Frame(coded.model_id ^ 1, 0, coded.channel_indices, coded.chunks))


def test_message_fields_round_trip(coded):
    f = bitstream.from_payload(coded.model_id, 3, coded.channel_indices, coded.chunk_lengths, coded.payload)
    assert f.chunks == coded.chunks
    with pytest.raises(BitstreamError, match="sum"):
        bitstream.from_payload(coded.model_id, 3, coded.channel_indices, coded.chunk_lengths, coded.payload[:-1])
    with pytest.raises(BitstreamError, match="lengths"):
        bitstream.from_payload(coded.model_id, 3, [0, 1], [5], b"x" * 5)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_never_crashes(decoder, data):
    try:
        frame = bitstream.unpack(data)
        decoder.latent(frame)
    except DECODE_ERRORS:
        pass


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_frames_never_crash(decoder, coded, data):
    raw = bytearray(bitstream.pack(coded))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        decoder.latent(bitstream.unpack(bytes(raw[:cut])))
    except DECODE_ERRORS:
        pass


def test_oversized_input_rejected():
    with pytest.raises(BitstreamError, match="exceeds"):
        bitstream.unpack(b"MC" + b"\0" * (bitstream.MAX_FRAME_BYTES + 1))
