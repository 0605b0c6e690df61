"""Property-based checks of pair synthesis: finite input never gives non-finite output, shapes always match,
and the SNR is exact whatever the signals' scales and lengths."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.mixing import PairConfig, Sources, _Cache, make_pair
from pipelines.synthesis import noise_segment, reverberate, snr_db, utterance_rng


class _FakeStore:
    def __init__(self, arrays):
        self.arrays = arrays

    def read_samples(self, array, offset, n):
        return self.arrays[array][offset : offset + n]


signals = st.tuples(
    st.integers(400, 6000),  # clean length
    st.integers(100, 9000),  # noise length (shorter or longer than the clean)
    st.floats(1e-4, 1.0),  # clean scale
    st.floats(1e-3, 10.0),  # noise scale (ingest refuses recordings quieter than -60 dBFS peak)
    st.integers(0, 2**31 - 1),  # seed
)


@settings(max_examples=40, deadline=None)
@given(signals, st.floats(-10, 30), st.floats(-50, -5), st.sampled_from(["noisy", "reverb", "reverb+noisy"]))
def test_pairs_are_finite_shaped_and_exact(sig, snr, level, kind):
    n_clean, n_noise, a, b, seed = sig
    rng = np.random.default_rng(seed)
    clean = (rng.standard_normal(n_clean) * a).astype(np.float32)
    noise = (rng.standard_normal(n_noise) * b).astype(np.float32)
    rir = np.zeros(800, dtype=np.float32)
    rir[rng.integers(0, 50)] = 1.0
    rir[100:] = rng.standard_normal(700) * np.exp(-np.arange(700) / 150) * 0.3
    store = _FakeStore({"n": noise, "r": rir})
    config = PairConfig(
        corpus="c", kind=kind, noise="n", rir="r", snr=(snr, snr), level=(level, level), seed=seed
    )
    sources = Sources(
        [{"utterance_id": "n", "array": "n", "offset": 0, "num_samples": n_noise}],
        [{"utterance_id": "r", "array": "r", "offset": 0, "num_samples": 800}],
    )
    pair, fields = make_pair(clean, "u", config, sources, _Cache(store), 16000)
    for role, values in pair.items():
        assert values.shape == clean.shape and values.dtype == np.float32, role
        assert np.isfinite(values).all(), role
    assert np.max(np.abs(pair["input"])) <= 0.99 + 1e-6
    if kind == "noisy":
        assert abs(snr_db(pair["clean"], pair["input"]) - snr) < 0.05
    assert np.isfinite(fields["snr_db_achieved"]) and np.isfinite(fields["gain_db"])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 20000), st.integers(0, 1000))
def test_noise_segments_always_have_the_asked_length(n_noise, length, seed):
    noise = np.random.default_rng(seed).standard_normal(n_noise).astype(np.float32)
    segment, offset = noise_segment(noise, length, utterance_rng(seed, "x"), 16000)
    assert segment.shape == (length,) and np.isfinite(segment).all() and 0 <= offset < max(n_noise, 1)


@settings(max_examples=30, deadline=None)
@given(st.integers(100, 4000), st.integers(1, 2000), st.sampled_from(["dry", "early"]))
def test_reverberation_keeps_length_and_finiteness(n, rir_len, target):
    rng = np.random.default_rng(n + rir_len)
    dry, rir = rng.standard_normal(n), rng.standard_normal(rir_len)
    wet, tgt = reverberate(dry, rir, 16000, target)
    assert wet.shape == tgt.shape == dry.shape
    assert np.isfinite(wet).all() and np.isfinite(tgt).all()
