import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcucoder_ros.codec.entropy import (
    NUM_CONTEXTS,
    PROB_SCALE,
    ChannelCoder,
    EntropyError,
    fit_tables,
    normalize_frequencies,
)


def test_normalised_frequencies():
    for counts in (np.zeros(64), np.arange(64) ** 3, np.r_[10**9, np.zeros(63)]):
        f = normalize_frequencies(counts)
        assert f.sum() == PROB_SCALE and f.min() >= 1


@pytest.mark.parametrize("seed", range(4))
def test_round_trip_any_symbols(encoder, seed):
    rng = np.random.default_rng(seed)
    coder = encoder.coders[seed]
    for sym in (rng.integers(0, 64, (28, 28)), np.full((28, 28), 63), np.zeros((28, 28), int),
                np.tile(np.arange(28) * 2, (28, 1))):
        sym = sym.astype(np.uint8)
        assert np.array_equal(coder.decode(coder.encode(sym)), sym)


def test_trailing_bytes_rejected(encoder):
    coder = encoder.coders[0]
    chunk = coder.encode(np.zeros((28, 28), np.uint8))
    with pytest.raises(EntropyError):
        coder.decode(chunk + b"\0")
    with pytest.raises(EntropyError):
        coder.decode(b"\1\2")


def test_fit_tables_shape():
    rng = np.random.default_rng(1)
    t = fit_tables(rng.integers(0, 64, (3, 2, 28, 28)).astype(np.uint8), np.array([32, 32]))
    assert t.shape == (2, NUM_CONTEXTS, 64) and np.all(t.sum(-1) == PROB_SCALE)
    ChannelCoder(t[0], 32)


def test_c_encoder_is_built_and_writes_the_python_reference_bytes(encoder, photos):
    """The C encoder gives byte for byte the chunk of the pure-Python reference, on the
    shipped model's real channels (intra and inter tables)."""
    from mcucoder_ros.codec import entropy

    assert entropy._c_encode is not None, "the C rANS encoder was not built (setup.py ext_modules)"
    for rgb in photos[:2]:
        sym = encoder.symbols(rgb)
        for c in range(sym.shape[0]):
            coder = encoder.coders[c]
            res, ctx = entropy.residuals_and_contexts(sym[c], coder.edge)
            assert coder.tables.encode(res, ctx) == coder.tables.encode_python(res, ctx)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3000), st.floats(0.0, 1.0))
def test_c_encoder_matches_the_reference_on_generated_tables_and_residuals(seed, n, skew):
    """Any tables (skewed to frequencies of 1, where a symbol costs 12 bits and the
    output is longest) and any residuals and contexts, including none: the same bytes;
    out-of-range input is an error, never a crash."""
    from mcucoder_ros.codec import entropy
    rng = np.random.default_rng(seed)
    counts = rng.random((NUM_CONTEXTS, 64)) ** (1 + 40 * skew) * 1000
    tables = entropy.RansTables(np.stack([normalize_frequencies(c) for c in counts]))
    res = rng.integers(0, 64, n).astype(np.uint8)
    ctx = rng.integers(0, NUM_CONTEXTS, n).astype(np.uint8)
    assert tables.encode(res, ctx) == tables.encode_python(res, ctx)
    assert tables.encode(res[:0], ctx[:0]) == tables.encode_python(res[:0], ctx[:0])
    with pytest.raises(ValueError):
        tables.encode(np.full(n, 64, np.uint8), ctx)
    with pytest.raises(ValueError):
        tables.encode(res, ctx[:-1])


def test_c_decoder_is_built_and_matches_the_python_reference(encoder, photos):
    """The C decoder (mcucoder_ros.codec._rans) decodes every chunk exactly as the
    pure-Python reference does, and reports every corruption the reference reports."""
    from mcucoder_ros.codec import entropy

    assert entropy._c_decode is not None, "the C rANS decoder was not built (setup.py ext_modules)"
    rng = np.random.default_rng(3)
    for rgb in photos[:2]:
        sym = encoder.symbols(rgb)
        for c in range(sym.shape[0]):
            coder = encoder.coders[c]
            chunk = coder.encode(sym[c])
            assert np.array_equal(coder.decode(chunk), sym[c])
            assert np.array_equal(coder.decode_python(chunk), sym[c])
            for _ in range(20):
                bad = bytearray(chunk)
                cut = rng.random() < 0.3
                if cut:
                    bad = bad[:rng.integers(4, len(bad))]
                else:
                    bad[rng.integers(len(bad))] ^= 1 << int(rng.integers(8))
                results = []
                for fn in (coder.decode, coder.decode_python):
                    try:
                        results.append(fn(bytes(bad)).tobytes())
                    except EntropyError as e:
                        results.append(str(e))
                assert results[0] == results[1]
