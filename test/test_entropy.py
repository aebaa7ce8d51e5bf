import numpy as np
import pytest

from mcucoder_ros.codec.entropy import (NUM_CONTEXTS, PROB_SCALE, ChannelCoder, EntropyError, fit_tables,
                                        normalize_frequencies)


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
