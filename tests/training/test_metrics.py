import math
import warnings

import numpy as np
import pytest

from stores.errors import ConfigError, NotFoundError
from stores.schema import table_schema
from training.metrics import (
    METRIC_NAMES,
    METRICS,
    NON_FINITE_ESTIMATE,
    MetricResult,
    MetricUndefined,
    compute_metrics,
    lsd,
    pesq_wb,
    si_snr,
    snr,
    stoi,
)

SR = 16000


@pytest.fixture(scope="module")
def pair(real_data):
    import soundfile as sf

    root = real_data / "voicebank-demand"
    clean, sr_c = sf.read(root / "clean_testset_wav" / "p232_002.wav")
    noisy, sr_n = sf.read(root / "noisy_testset_wav" / "p232_002.wav")
    assert sr_c == sr_n == SR and clean.shape == noisy.shape
    return clean, noisy


@pytest.fixture(scope="module")
def result(pair):
    return compute_metrics(*pair)


def _hand_snr(s, e):
    s, e = np.asarray(s, np.float64), np.asarray(e, np.float64)
    return 10 * np.log10(np.sum(s**2) / np.sum((s - e) ** 2))


def _hand_si_snr(s, e):
    s = np.asarray(s, np.float64) - np.mean(s)
    e = np.asarray(e, np.float64) - np.mean(e)
    target = np.dot(e, s) / np.dot(s, s) * s
    return 10 * np.log10(np.sum(target**2) / np.sum((e - target) ** 2))


def test_real_pair_equals_the_reference_packages(pair, result):
    import pesq
    import pystoi

    clean, noisy = pair
    assert result.notes == {}
    assert result.pesq_wb == pesq.pesq(SR, clean, noisy, "wb")
    assert result.stoi == pystoi.stoi(clean, noisy, SR)
    # pystoi's ESTOI is not bit-reproducible itself (its np.sum varies in the last bit between calls)
    assert result.estoi == pytest.approx(pystoi.stoi(clean, noisy, SR, extended=True), rel=1e-12, abs=0)
    assert result.snr == pytest.approx(_hand_snr(clean, noisy), rel=1e-12)
    assert result.si_snr == pytest.approx(_hand_si_snr(clean, noisy), rel=1e-12)
    # VoiceBank-DEMAND noisy inputs: plausible ranges (published test-set means: PESQ 1.97, STOI 0.921)
    assert 1.0 < result.pesq_wb < 4.6 and 0.5 < result.stoi <= 1.0 and 0.0 < result.snr < 40.0
    assert all(isinstance(v, float) for v in result.values().values())


def test_values_follow_the_metrics_table_columns(result):
    names = table_schema("metrics").names
    assert list(result.values()) == list(METRIC_NAMES)
    assert list(METRIC_NAMES) == names[names.index("snr") : names.index("lsd") + 1]
    assert METRICS.names() == sorted(METRIC_NAMES)
    with pytest.raises(NotFoundError):
        METRICS.get("pesq_nb")


def test_registry_functions_agree_with_compute_metrics(pair, result):
    clean, noisy = pair
    for name in ("snr", "si_snr", "stoi"):
        assert METRICS.get(name).fn(clean, noisy, SR) == getattr(result, name)


def test_hand_values_on_a_tiny_signal():
    s = np.array([1.0, 2.0, 3.0, -1.0])
    e = np.array([1.0, 2.0, 2.0, -1.0])
    assert snr(s, e) == pytest.approx(10 * math.log10(15.0 / 1.0))
    assert si_snr(s, e) == pytest.approx(_hand_si_snr(s, e))


def test_float32_input_is_computed_in_float64(pair):
    clean, noisy = (x.astype(np.float32) for x in pair)
    assert snr(clean, noisy) == pytest.approx(_hand_snr(clean, noisy), rel=1e-12)


def test_silence_gives_none_with_reasons():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = compute_metrics(np.zeros(SR), np.zeros(SR))
    assert r.values() == dict.fromkeys(METRIC_NAMES)
    assert set(r.notes) == set(METRIC_NAMES) and all("silent" in why for why in r.notes.values())


def test_silent_estimate(pair):
    clean, _ = pair
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = compute_metrics(clean, np.zeros_like(clean))
    assert r.snr == 0.0  # the error is the reference itself
    assert r.pesq_wb is None and "PESQ refused" in r.notes["pesq_wb"]
    assert r.si_snr is None and "si_snr" in r.notes
    assert r.stoi is not None and r.stoi < 0.1
    with pytest.raises(MetricUndefined):
        pesq_wb(clean, np.zeros_like(clean))


def test_short_signal_gives_none_for_pesq_and_stoi(pair):
    clean, noisy = (x[8000:9600] for x in pair)  # 0.1 s of speech
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pystoi's "Not enough STFT frames" warning is handled, not leaked
        r = compute_metrics(clean, noisy)
    assert r.pesq_wb is None and "0.25 s" in r.notes["pesq_wb"]
    assert r.stoi is None and r.estoi is None and "too short for STOI" in r.notes["stoi"]
    assert r.snr == pytest.approx(_hand_snr(clean, noisy)) and r.si_snr is not None
    assert set(r.notes) == {"pesq_wb", "stoi", "estoi"}


def test_pesq_refusal_inside_the_library_is_caught(pair, monkeypatch):
    # inputs that pass the pre-checks but that the library refuses (hard to provoke on real speech)
    import pesq

    def refuse(*args, **kwargs):
        raise pesq.NoUtterancesError(b"No utterances detected")

    monkeypatch.setattr(pesq, "pesq", refuse)
    clean, noisy = pair
    r = compute_metrics(clean, noisy)
    assert r.pesq_wb is None and r.notes == {
        "pesq_wb": "PESQ refused: No utterances detected (NoUtterancesError)"
    }
    assert r.stoi is not None


def test_stoi_on_30_frames_of_speech_is_computed(pair):
    clean, noisy = (x[4000:12000] for x in pair)  # 0.5 s of speech
    assert 0.0 < stoi(clean, noisy) <= 1.0


def test_identical_signals(pair):
    clean, _ = pair
    r = compute_metrics(clean, clean.copy())
    assert r.snr == math.inf and r.si_snr == math.inf and r.lsd == 0.0
    assert r.pesq_wb > 4.5 and r.stoi == pytest.approx(1.0) and r.estoi == pytest.approx(1.0)
    assert r.notes == {}


def test_si_snr_is_scale_and_offset_invariant(pair):
    clean, noisy = pair
    base = si_snr(clean, noisy)
    for scale in (0.01, 0.5, 3.7, 1000.0):
        assert si_snr(clean, scale * noisy) == pytest.approx(base, abs=1e-9)
        assert si_snr(scale * clean, noisy) == pytest.approx(base, abs=1e-9)
    assert si_snr(clean, noisy + 0.05) == pytest.approx(base, abs=1e-9)
    assert snr(clean, 0.5 * noisy) != pytest.approx(snr(clean, noisy))
    assert si_snr(clean, -2.0 * clean) == math.inf or si_snr(clean, -2.0 * clean) > 200


def test_non_finite_estimate(pair):
    clean, noisy = pair
    for bad in (np.nan, np.inf, -np.inf):
        estimate = noisy.copy()
        estimate[123] = bad
        r = compute_metrics(clean, estimate)
        assert r.values() == dict.fromkeys(METRIC_NAMES)
        assert r.notes == dict.fromkeys(METRIC_NAMES, NON_FINITE_ESTIMATE)


def test_bad_input_raises_config_error(pair):
    clean, noisy = pair
    with pytest.raises(ConfigError, match="same length"):
        compute_metrics(clean, noisy[:-1])
    with pytest.raises(ConfigError, match="same length"):
        snr(clean[:10], noisy[:11])
    with pytest.raises(ConfigError, match="1-D"):
        compute_metrics(np.stack([clean, clean]), np.stack([noisy, noisy]))
    with pytest.raises(ConfigError, match="1-D"):
        si_snr(np.zeros(0), np.zeros(0))
    bad = clean.copy()
    bad[0] = np.nan
    with pytest.raises(ConfigError, match="finite clean"):
        compute_metrics(bad, noisy)
    with pytest.raises(ConfigError, match="16000"):
        pesq_wb(clean, noisy, sr=8000)
    with pytest.raises(ConfigError, match="16000"):
        compute_metrics(clean, noisy, sr=8000)
    with pytest.raises(ConfigError, match="sample rate"):
        stoi(clean, noisy, sr=0)


def test_subset_of_metrics():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(400)
    r = compute_metrics(s, s + 0.1 * rng.standard_normal(400), metrics=("snr", "si_snr"))
    assert r.snr is not None and r.si_snr is not None
    assert r.pesq_wb is None and r.notes["pesq_wb"] == "not computed"
    with pytest.raises(NotFoundError):
        compute_metrics(s, s, metrics=("bogus",))


def test_metric_result_is_a_plain_record():
    r = MetricResult(snr=1.0, notes={"pesq_wb": "x"})
    assert r.values() == {
        "snr": 1.0,
        "si_snr": None,
        "pesq_wb": None,
        "stoi": None,
        "estoi": None,
        "lsd": None,
    }


def _hand_lsd(clean, estimate):
    """The documented convention, through librosa: 512/256 periodic Hann frames from sample 0, the signal
    zero-padded at the end to whole frames, powers floored 80 dB below the reference's loudest bin."""
    import librosa

    frames = 1 + max(0, math.ceil((clean.size - 512) / 256))
    pad = (frames - 1) * 256 + 512 - clean.size

    def power(x):
        padded = np.pad(np.asarray(x, np.float64), (0, pad))
        return np.abs(librosa.stft(padded, n_fft=512, hop_length=256, window="hann", center=False)) ** 2

    ref, est = power(clean), power(estimate)
    floor = ref.max() * 1e-8
    diff = 10 * np.log10(np.maximum(ref, floor)) - 10 * np.log10(np.maximum(est, floor))
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=0))))


def test_lsd_follows_its_documented_convention(pair, result):
    clean, noisy = pair
    assert result.lsd == pytest.approx(_hand_lsd(clean, noisy), rel=1e-9)
    assert 2.0 < result.lsd < 20.0  # VoiceBank-DEMAND noisy input against its clean reference
    assert METRICS.get("lsd").fn(clean, noisy, SR) == result.lsd and not METRICS.get("lsd").higher_is_better
    short = clean[8000:8300]  # shorter than one frame: one zero-padded frame
    assert lsd(short, noisy[8000:8300]) == pytest.approx(_hand_lsd(short, noisy[8000:8300]), rel=1e-9)


def test_lsd_of_a_gain_is_the_gain_in_db():
    x = np.random.default_rng(0).standard_normal(SR)  # white: every bin far above the 80 dB floor
    assert lsd(x, 2.0 * x) == pytest.approx(20 * math.log10(2.0), rel=1e-9)
    assert lsd(x, 0.5 * x) == pytest.approx(20 * math.log10(2.0), rel=1e-9)


def test_lsd_edge_cases():
    x = np.random.default_rng(1).standard_normal(4000)
    assert lsd(x, np.zeros_like(x)) > 30.0  # a silent estimate sits at the floor: finite and large
    lone = np.zeros(4000)
    lone[0] = 1.0  # only the first frame's window zero sees it
    r = compute_metrics(lone, x, metrics=("lsd",))
    assert r.lsd is None and "silent reference" in r.notes["lsd"]
