"""Video mode (bitstream v2, codec/inter.py): lossless inter-frame coding against
acknowledged references, and its robustness to lost channels and changing k."""
import random

import numpy as np
import pytest
from conftest import ROOT

from mcucoder_ros.codec import bitstream
from mcucoder_ros.codec.bitstream import BitstreamError, Frame
from mcucoder_ros.codec.inter import ReceivedReferences, ReferenceState, fit_inter_tables
from mcucoder_ros.evaluation import code_sequence, collect_frames

FIXED = ROOT / "data" / "clips" / "traffic.mp4"        # fixed camera
MOVING = ROOT / "data" / "clips" / "pan.mp4"           # synthetic pan across a held-out photo


@pytest.fixture(scope="module")
def clips():
    return {name: [f for _, f in collect_frames([p], 24)] for name, p in (("fixed", FIXED), ("moving", MOVING))}


@pytest.fixture(scope="module")
def codec():
    from mcucoder_ros.codec.model import DecoderModel, EncoderModel
    enc, dec = EncoderModel.load(), DecoderModel.load()
    assert enc.inter_coders is not None, "the shipped model needs its inter tables (encoder_inter.npz)"
    return enc, dec


def test_v2_chunk_table_round_trip_and_v1_unchanged():
    intra = Frame(7, 9, [0, 1], [b"abcd", b"efghi"])
    assert bitstream.pack(intra)[2] == 1                              # all intra: still version 1
    inter = Frame(7, 9, [0, 1], [b"abcd", b"efghi"], references=[0, 3])
    data = bitstream.pack(inter)
    assert data[2] == 2 and len(data) == 16 + 2 * 4 + 9
    back = bitstream.unpack(data)
    assert back.reference_deltas == [0, 3] and back.chunks == inter.chunks and back.sequence == 9
    assert bitstream.unpack(bitstream.pack(intra)).reference_deltas == [0, 0]
    with pytest.raises(BitstreamError, match="reference"):
        bitstream.pack(Frame(7, 9, [0], [b"abcd"], references=[256]))
    with pytest.raises(BitstreamError, match="truncated chunk table"):
        bitstream.unpack(data[:20])


def test_lossless_inter_decodes_to_the_intra_picture_and_saves_on_a_fixed_camera(codec, clips):
    enc, dec = codec
    frames = clips["fixed"]
    for k in (4, 12):
        coded = code_sequence(frames, enc, k)
        store = ReceivedReferences()
        inter_bytes = intra_bytes = 0
        for i, (f, rgb) in enumerate(zip(coded, frames)):
            intra = enc.encode(rgb, k, i)
            got = dec.symbols(bitstream.unpack(bitstream.pack(f)), store)
            want = dec.symbols(intra)
            assert sorted(got) == list(range(k)) and all(np.array_equal(got[c], want[c]) for c in range(k))
            inter_bytes += len(bitstream.pack(f))
            intra_bytes += len(bitstream.pack(intra))
        assert any(f.version == 2 for f in coded)
        assert inter_bytes <= 0.6 * intra_bytes, (k, inter_bytes, intra_bytes)      # at least 40 % fewer
    # the decoded picture itself is the intra one
    f0, f1 = code_sequence(frames[:2], enc, 12)
    store = ReceivedReferences()
    dec.decode(f0, store)
    assert f1.version == 2
    assert np.array_equal(dec.decode(f1, store), dec.decode(enc.encode(frames[1], 12, 1)))


def test_moving_camera_never_costs_more_than_intra(codec, clips):
    enc, _ = codec
    frames = clips["moving"]
    inter = sum(len(bitstream.pack(f)) for f in code_sequence(frames, enc, 12))
    intra = sum(len(bitstream.pack(enc.encode(f, 12, i))) for i, f in enumerate(frames))
    assert inter <= 1.02 * intra


def test_lost_channels_and_changing_k_never_decode_from_a_missing_reference(codec, clips):
    """5 % of channels lost, k changing every few frames, acknowledgements one frame
    late and only for what the receiver really decoded: every channel the receiver
    decodes equals what the camera coded, and the bytes stay near the loss-free case."""
    enc, dec = codec
    frames = clips["fixed"]
    rng = random.Random(1)
    ks = [rng.choice((4, 6, 8, 12)) for _ in range(0, len(frames), 3) for _ in range(3)][:len(frames)]

    def run(loss):
        cam, rx = ReferenceState(), ReceivedReferences()
        pending_ack, total, lost_refs = None, 0, 0
        for i, (rgb, k) in enumerate(zip(frames, ks)):
            if pending_ack:
                cam.acknowledge(*pending_ack)
            f = enc.encode(rgb, k, i, references=cam)
            total += len(bitstream.pack(f))
            keep = [j for j in range(len(f.chunks)) if rng.random() >= loss]
            got = Frame(f.model_id, f.sequence, [f.channel_indices[j] for j in keep], [f.chunks[j] for j in keep],
                        references=[f.reference_deltas[j] for j in keep])
            sym = dec.symbols(got, rx)
            truth = enc.symbols(rgb)
            for c, s in sym.items():
                assert np.array_equal(s, truth[c]), f"frame {i} channel {c} decoded wrong"
            lost_refs += len(got.extra["lost_channels"])
            pending_ack = (i, list(sym))
        return total, lost_refs

    clean, _ = run(0.0)
    lossy, lost_refs = run(0.05)
    # the camera predicts only from acknowledged channels, so every inter chunk that
    # arrives finds its reference
    assert lost_refs == 0
    assert lossy <= 1.15 * clean, (lossy, clean)


def test_inter_chunk_without_its_reference_is_a_lost_channel_not_a_wrong_picture(codec, clips):
    enc, dec = codec
    f0, f1 = code_sequence(clips["fixed"][:2], enc, 6)
    assert any(f1.reference_deltas)
    z = dec.latent(f1)                      # no reference store at all
    inter_channels = [c for c, d in zip(f1.channel_indices, f1.reference_deltas) if d]
    assert f1.extra["lost_channels"] == inter_channels
    assert all(not z[0, c].any() for c in inter_channels)
    store = ReceivedReferences()            # a store that missed frame 0
    dec.symbols(f1, store)
    assert f1.extra["lost_channels"] == inter_channels


def test_without_acknowledgements_the_stream_returns_to_intra(codec, clips):
    enc, _ = codec
    cam = ReferenceState(max_age=5, refresh_period=0)
    frames = clips["fixed"]
    cam_frames = []
    for i, rgb in enumerate(frames[:12]):
        f = enc.encode(rgb, 12, i, references=cam)
        if i == 0:
            cam.acknowledge(0, range(12))       # one acknowledgement, then silence
        cam_frames.append(f)
    assert any(cam_frames[1].reference_deltas)
    assert all(not any(f.reference_deltas) for f in cam_frames[6:])


def test_cyclic_refresh_sends_each_channel_intra_once_per_period_one_at_a_time():
    cam = ReferenceState(max_age=255, refresh_period=24)
    sym = np.zeros((28, 28), np.uint8)
    for c in range(12):
        cam.acked[c] = type("S", (), {"sequence": 0, "symbols": sym})()
    forced = {}
    for seq in range(1, 25):
        intra = [c for c in range(12) if cam.reference(seq, c) is None]
        assert len(intra) <= 1
        for c in intra:
            forced.setdefault(c, []).append(seq)
    assert sorted(forced) == list(range(12))
    cam.request_refresh()
    assert all(cam.reference(5, c) is None for c in range(12))
    cam.frame_done()
    assert cam.reference(5, 0) is not None


def test_fit_inter_tables_are_valid_rans_tables():
    rng = np.random.default_rng(0)
    seq = rng.integers(0, 64, (3, 12, 28, 28)).astype(np.uint8)
    f = fit_inter_tables([seq], np.full(12, 32))
    assert f.shape == (12, 8, 64) and (f >= 1).all() and (f.sum(-1) == 4096).all()


def test_c_inter_decoder_matches_the_python_reference(codec, clips):
    """The C decoder's inter path decodes exactly as InterChannelCoder.decode_python,
    and reports the same corruption."""
    from mcucoder_ros.codec import entropy
    from mcucoder_ros.codec.entropy import EntropyError
    enc, _ = codec
    assert entropy._c_decode is not None, "the C rANS decoder was not built (setup.py ext_modules)"
    rng = np.random.default_rng(5)
    s0, s1 = enc.symbols(clips["moving"][0]), enc.symbols(clips["moving"][1])
    for c in range(12):
        coder = enc.inter_coders[c]
        chunk = coder.encode(s1[c], s0[c])
        assert np.array_equal(coder.decode(chunk, s0[c]), s1[c])
        assert np.array_equal(coder.decode_python(chunk, s0[c]), s1[c])
        for _ in range(10):
            bad = bytearray(chunk)
            if rng.random() < 0.3:
                bad = bad[:rng.integers(4, len(bad))]
            else:
                bad[rng.integers(len(bad))] ^= 1 << int(rng.integers(8))
            outcomes = []
            for fn in (coder.decode, coder.decode_python):      # the same picture, or the same error
                try:
                    outcomes.append(fn(bytes(bad), s0[c]).tobytes())
                except EntropyError as e:
                    outcomes.append(str(e))
            assert outcomes[0] == outcomes[1]
