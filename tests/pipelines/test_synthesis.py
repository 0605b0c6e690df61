import math

import numpy as np
import pytest
import soundfile as sf

from pipelines.synthesis import (
    apply_level,
    measure_t60,
    noise_segment,
    reverberate,
    scale_to_snr,
    simulate_rir,
    snr_db,
    utterance_rng,
)
from pipelines.testing import deconvolution_lag
from stores import ConfigError


def test_utterance_rng_depends_on_seed_and_id_only():
    a = utterance_rng(3, "u1").standard_normal(4)
    np.testing.assert_array_equal(a, utterance_rng(3, "u1").standard_normal(4))
    assert not np.array_equal(a, utterance_rng(4, "u1").standard_normal(4))
    assert not np.array_equal(a, utterance_rng(3, "u2").standard_normal(4))


def test_scale_to_snr_is_exact_over_many_draws():
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(300):
        n = int(rng.integers(4000, 40000))
        speech = rng.standard_normal(n) * rng.uniform(0.01, 0.5)
        noise = rng.standard_normal(n) * rng.uniform(1e-3, 1.0)
        target = float(rng.uniform(-10, 30))
        mixed = (speech + scale_to_snr(speech, noise, target)).astype(np.float32)
        worst = max(worst, abs(snr_db(speech.astype(np.float32), mixed) - target))
    assert worst < 0.01


def test_short_noise_is_looped_with_a_crossfade_and_no_dip():
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(8000).astype(np.float32)  # 0.5 s for a 3 s utterance
    segment, offset = noise_segment(noise, 48000, utterance_rng(0, "x"), 16000)
    assert segment.shape == (48000,) and 0 <= offset < 8000
    frame_rms = np.sqrt(
        np.mean(segment[: 48000 // 160 * 160].reshape(-1, 160).astype(np.float64) ** 2, axis=1)
    )
    assert frame_rms.min() > 0.6 * np.median(frame_rms)  # no silent or dipped seam


def test_long_noise_segment_is_a_plain_slice():
    noise = np.arange(100000, dtype=np.float32)
    segment, offset = noise_segment(noise, 1000, utterance_rng(0, "y"), 16000)
    np.testing.assert_array_equal(segment, noise[offset : offset + 1000])


def test_silent_noise_segment_is_refused():
    with pytest.raises(ConfigError, match="silent"):
        scale_to_snr(np.ones(100), np.zeros(100), 5.0)


def test_apply_level_sets_rms_and_prevents_clipping():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(16000) * 0.1
    (inp, tgt), gain_db, limited = apply_level(x, x * 0.5, -20.0)
    assert not limited and 20 * math.log10(np.sqrt(np.mean(inp**2))) == pytest.approx(-20.0)
    np.testing.assert_allclose(tgt, inp * 0.5)
    (inp, tgt), gain_db, limited = apply_level(x, x, -1.0)
    assert limited and np.max(np.abs(inp)) == pytest.approx(0.99)


def test_reverberation_is_aligned_at_the_direct_path(real_data):
    dry, rate = sf.read(real_data / "voicebank-demand/clean_testset_wav/p232_002.wav", dtype="float32")
    for path in sorted((real_data / "rir").glob("*.wav")):
        rir, rir_rate = sf.read(path, dtype="float32", always_2d=True)
        rir = rir[:, 0]
        if rir_rate != rate:
            import soxr

            rir = soxr.resample(rir, rir_rate, rate)
        wet, target = reverberate(dry, rir, rate, "dry")
        assert wet.shape == dry.shape
        np.testing.assert_array_equal(target, dry.astype(np.float64))
        assert abs(deconvolution_lag(wet, dry)) <= 16, path.name


def test_early_target_keeps_only_the_first_50_ms():
    rng = np.random.default_rng(3)
    dry = rng.standard_normal(16000)
    rir = np.zeros(8000)
    rir[100], rir[100 + 400], rir[100 + 2000] = 1.0, 0.5, 0.3  # reflections at 25 ms and 125 ms
    wet, early = reverberate(dry, rir, 16000, "early")
    expected = dry + 0.5 * np.concatenate([np.zeros(400), dry[:-400]])
    np.testing.assert_allclose(early, expected, atol=1e-9)
    assert not np.allclose(wet, early)


@pytest.mark.parametrize("low,high", [(0.2, 0.4), (0.5, 0.9)])
def test_simulated_rooms_hit_the_t60_range(low, high):
    for k in range(3):
        rir, room = simulate_rir(
            utterance_rng(k, f"room{low}"), float(utterance_rng(k, "t").uniform(low, high)), 16000
        )
        t60 = measure_t60(rir, 16000)
        assert 0.75 * low <= t60 <= 1.25 * high, (t60, room)


def test_measured_t60_of_real_rooms_is_plausible(real_data):
    t60s = {}
    for path in sorted((real_data / "rir").glob("*.wav")):
        rir, rate = sf.read(path, dtype="float32", always_2d=True)
        t60s[path.stem] = measure_t60(rir[:, 0], rate)
    assert all(0.1 < t < 2.0 for t in t60s.values()), t60s
