"""`logmel`: equal to librosa's log-mel in dB on real recordings, its ideal band gain, and the way a model's
band gains become audio."""

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

import features as F
from features.kind import get_kind
from features.logmel import band_gains_to_bins
from pipelines.synthesis import snr_db
from stores.errors import ConfigError

KIND = get_kind("logmel")


def librosa_logmel(y, config):
    power = librosa.feature.melspectrogram(
        y=y, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, window=config.window, center=config.center, pad_mode=config.pad_mode,
        power=2.0, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax,
    )  # fmt: skip
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None).T


def test_equals_librosa_within_2e3_db_on_every_real_recording(real_data):
    files = sorted(p for p in real_data.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    assert len(files) > 20
    worst = 0.0
    for path in files:
        y, sr = sf.read(path, dtype="float32", always_2d=True)
        config = KIND.config(sample_rate=sr, n_mels=64 if sr >= 16000 else 32)
        ours = F.compute_feature(y[:, 0], config)
        assert ours.shape == (1 + len(y) // 256, config.n_mels) and ours.dtype == np.float32
        worst = max(worst, float(np.abs(ours - librosa_logmel(y[:, 0], config)).max()))
    assert worst <= 2e-3, worst


def test_other_settings_and_float16_follow_librosa(real_data):
    y, sr = sf.read(
        next((real_data / "voicebank-demand" / "clean_testset_wav").glob("*.wav")), dtype="float32"
    )
    config = KIND.config(n_fft=1024, hop_length=160, win_length=400, n_mels=40, fmin=50.0, fmax=7000.0)
    np.testing.assert_allclose(F.compute_feature(y, config), librosa_logmel(y, config), atol=2e-3)
    half = F.compute_feature(y, KIND.config(dtype="float16"))
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, librosa_logmel(y, KIND.config()), atol=0.1)  # float16 steps of 1/32 dB


@pytest.mark.parametrize("fmin, fmax", [(-1.0, None), (9000.0, None), (100.0, 50.0), (0.0, 9000.0)])
def test_bad_band_limits_are_refused(fmin, fmax):
    with pytest.raises(ConfigError, match="fmin"):
        KIND.config(fmin=fmin, fmax=fmax)


def voicebank_pair(real_data, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) of the k-th VoiceBank-DEMAND test pair."""
    folder = real_data / "voicebank-demand"
    name = sorted((folder / "clean_testset_wav").glob("*.wav"))[k].name
    return tuple(
        sf.read(folder / f"{side}_testset_wav" / name, dtype="float32")[0] for side in ("clean", "noisy")
    )


def test_the_training_target_is_the_ideal_band_gain(real_data):
    clean, noisy = voicebank_pair(real_data, 0)
    config = KIND.config()
    batch = {
        role: torch.from_numpy(F.compute_feature(w, config))[None]
        for role, w in (("input", noisy), ("target", clean))
    }
    scale, gain = KIND.training_target(batch, "mask", config)
    power = {
        role: librosa.feature.melspectrogram(y=w, sr=16000, n_fft=512, hop_length=256, n_mels=64).T
        for role, w in (("input", noisy), ("target", clean))
    }
    expected = np.sqrt(
        np.minimum(1.0, np.maximum(power["target"], 1e-10) / np.maximum(power["input"], 1e-10))
    )
    assert scale is None and gain.shape == (1, *expected.shape)
    np.testing.assert_allclose(gain[0].numpy(), expected, atol=1e-3)
    with pytest.raises(Exception, match="mask"):
        KIND.training_target(batch, "mapping", config)


def test_band_gains_spread_over_the_bins_and_apply_to_the_noisy_stft(real_data):
    clean, noisy = voicebank_pair(real_data, 1)
    config = KIND.config()
    weights = band_gains_to_bins(np.eye(config.n_mels), config)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-9)  # every bin: a weighted mean of bands
    frames = F.compute_feature(noisy, config).shape[0]
    unity, _ = KIND.reconstruct(np.ones((frames, 64), np.float32), "mask", noisy, config, "noisy-phase")
    assert unity.shape == noisy.shape
    np.testing.assert_allclose(unity, noisy, atol=1e-4)  # gain 1 everywhere gives the input back
    gains = np.sqrt(
        np.minimum(1, 10 ** ((F.compute_feature(clean, config) - F.compute_feature(noisy, config)) / 10))
    )
    enhanced, magnitude = KIND.reconstruct(gains, "mask", noisy, config, "noisy-phase")
    assert magnitude.shape == (frames, 257) and snr_db(clean, enhanced) > snr_db(clean, noisy) + 3
