import importlib
import warnings

import librosa
import numpy as np
import pytest
import soundfile as sf

import features as F
from features.reassigned import PLANES

TOLERANCE = 1e-4  # on finite values: max abs error relative to the plane's largest finite value
MODULE = importlib.import_module("features.reassigned")  # `features.reassigned` is the function


def read(real_data, folder, name="p232_002.wav"):
    wave, rate = sf.read(real_data / "voicebank-demand" / folder / name, dtype="float32")
    assert rate == 16000
    return wave


def librosa_planes(wave, cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa's divide-by-zero and numpy's "where without out" warnings
        freqs, times, mags = librosa.reassigned_spectrogram(
            y=wave, sr=cfg.sample_rate, S=None, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
            win_length=cfg.win_length, window=cfg.window, center=cfg.center,
            reassign_frequencies=cfg.reassign_frequencies, reassign_times=cfg.reassign_times,
            ref_power=cfg.ref_power, fill_nan=cfg.fill_nan, clip=cfg.clip, pad_mode=cfg.pad_mode,
        )  # fmt: skip
    return [np.asarray(p).T for p in (freqs, times, mags)]  # time-major (frames, bins)


def assert_matches_librosa(wave, cfg):
    ours = F.reassigned_spectrogram(wave, cfg)
    ref = librosa_planes(wave, cfg)
    assert ours.dtype == np.float32 and ours.shape == (ref[0].shape[0], 3, cfg.n_fft // 2 + 1)
    assert ours.flags.c_contiguous
    assert np.array_equal(ours[:, 2], ref[2]), "magnitudes differ from librosa's"
    for index, name in enumerate(PLANES):
        got, want = ours[:, index], ref[index]
        assert np.array_equal(np.isnan(got), np.isnan(want)), f"{name}: NaN positions differ"
        finite = np.isfinite(want)
        assert np.array_equal(finite, np.isfinite(got)), f"{name}: infinities differ"
        scale = float(np.abs(want[finite]).max())
        error = float(np.abs(got[finite].astype(np.float64) - want[finite]).max())
        assert error <= TOLERANCE * scale, f"{name}: max error {error} against scale {scale}"
    return ours, ref


CONFIGS = {
    "inversion-preset": F.PRESETS["reassigned-inversion"],
    "no-fill": F.ReassignedConfig(fill_nan=False),
    "centred": F.ReassignedConfig(center=True),
    "centred-no-fill": F.ReassignedConfig(center=True, fill_nan=False),
    "n_fft-256-no-fill": F.ReassignedConfig(
        n_fft=256, win_length=200, hop_length=64, window="hann", fill_nan=False
    ),
    "n_fft-512-centred": F.ReassignedConfig(n_fft=512, win_length=512, hop_length=128, center=True),
    "odd-n_fft-no-fill": F.ReassignedConfig(n_fft=81, win_length=81, fill_nan=False),
    "clip": F.ReassignedConfig(clip=True, fill_nan=False),
    "frequencies-only": F.ReassignedConfig(reassign_times=False, fill_nan=False),
    "times-only": F.ReassignedConfig(reassign_frequencies=False, fill_nan=False),
    "no-threshold": F.ReassignedConfig(ref_power=0.0, fill_nan=False),
    "reflect": F.ReassignedConfig(center=True, pad_mode="reflect", fill_nan=False),
}


@pytest.mark.parametrize("folder", ["clean_testset_wav", "noisy_testset_wav"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_reassigned_equals_librosa_on_real_speech(real_data, folder, name):
    cfg = CONFIGS[name]
    ours, ref = assert_matches_librosa(read(real_data, folder), cfg)
    if not cfg.fill_nan and cfg.ref_power > 0:
        assert np.isnan(ref[0] if cfg.reassign_frequencies else ref[1]).any()  # the NaN case is exercised
    if cfg.fill_nan:
        assert not np.isnan(ours).any()


def test_filled_values_are_bin_frequencies_and_frame_times(real_data):
    wave = read(real_data, "clean_testset_wav", "p232_246.wav")
    cfg = F.PRESETS["reassigned-inversion"]
    filled = F.reassigned_spectrogram(wave, cfg)
    holes = np.isnan(F.reassigned_spectrogram(wave, F.ReassignedConfig(fill_nan=False)))
    assert holes[:, 0].any()
    bins = np.broadcast_to(librosa.fft_frequencies(sr=16000, n_fft=80)[None, :], holes[:, 0].shape)
    times = librosa.frames_to_time(np.arange(filled.shape[0]), sr=16000, hop_length=20, n_fft=80)
    times = np.broadcast_to(times[:, None], holes[:, 1].shape)
    assert np.array_equal(filled[:, 0][holes[:, 0]], bins[holes[:, 0]].astype(np.float32))
    assert np.array_equal(filled[:, 1][holes[:, 1]], times[holes[:, 1]].astype(np.float32))


def test_digital_silence_gives_librosas_zero_division_nans(real_data):
    # frames of exact zeros make S_h == 0: 0/0 corrections, kept as NaN (fill_nan=False) even without a
    # power threshold, and filled otherwise
    wave = read(real_data, "noisy_testset_wav", "p232_263.wav").copy()
    wave[8000:12000] = 0.0
    ours, ref = assert_matches_librosa(wave, F.ReassignedConfig(ref_power=0.0, fill_nan=False))
    assert np.isnan(ours[:, 0]).any() and np.isnan(ours[:, 1]).any()
    assert_matches_librosa(wave, F.ReassignedConfig(ref_power=0.0, fill_nan=True))
    assert_matches_librosa(wave, F.ReassignedConfig(center=True, fill_nan=False))


def test_digital_silence_under_the_threshold_is_filled(real_data):
    # S_h == 0 below a positive threshold: 1/|S_h|² must still come out 0 (fill) or NaN (no fill)
    wave = read(real_data, "noisy_testset_wav", "p232_263.wav").copy()
    wave[8000:12000] = 0.0
    ours, _ = assert_matches_librosa(wave, F.ReassignedConfig())
    assert not np.isnan(ours).any()
    assert_matches_librosa(wave, F.ReassignedConfig(fill_nan=False))


@pytest.mark.parametrize("name", ["inversion-preset", "no-fill", "n_fft-256-no-fill", "times-only"])
def test_float32_path_alone_is_within_tolerance(real_data, monkeypatch, name):
    # no row sent to the exact path for accuracy: the float32 corrections alone meet the tolerance
    monkeypatch.setattr(MODULE, "REL_TOL", np.inf)
    calls = []
    exact = MODULE._exact_planes
    monkeypatch.setattr(
        MODULE, "_exact_planes", lambda framed, *a: calls.append(len(framed)) or exact(framed, *a)
    )
    for folder in ("clean_testset_wav", "noisy_testset_wav"):
        assert_matches_librosa(read(real_data, folder), CONFIGS[name])
    assert not calls


@pytest.mark.parametrize("name", ["inversion-preset", "no-fill", "centred", "clip", "odd-n_fft-no-fill"])
def test_exact_path_everywhere_is_librosa_bit_for_bit(real_data, monkeypatch, name):
    # with no error allowance every row holding a bin above the threshold takes the exact path; rows without
    # one hold only filled values or NaN: the whole output is librosa's, rounded to float32, bit for bit
    monkeypatch.setattr(MODULE, "REL_TOL", 1e-300)
    wave = read(real_data, "noisy_testset_wav")
    cfg = CONFIGS[name]
    ours = F.reassigned_spectrogram(wave, cfg)
    ref = np.stack(librosa_planes(wave, cfg), axis=1).astype(np.float32)
    assert np.array_equal(ours, ref, equal_nan=True)


def test_fast_path_rows_sent_to_the_exact_path_are_few(real_data, monkeypatch):
    calls = []
    exact = MODULE._exact_planes
    monkeypatch.setattr(
        MODULE, "_exact_planes", lambda framed, *a: calls.append(len(framed)) or exact(framed, *a)
    )
    wave = np.concatenate(
        [read(real_data, "clean_testset_wav", name) for name in ("p232_002.wav", "p232_246.wav")]
    )
    out = F.reassigned_spectrogram(wave, F.PRESETS["reassigned-inversion"])
    assert sum(calls) < 0.05 * out.shape[0]


@pytest.mark.parametrize(
    "scale, cfg",
    [
        (1e25, F.ReassignedConfig(fill_nan=False)),  # float32 products would overflow: exact path
        (1e25, F.ReassignedConfig()),
        (1e-20, F.ReassignedConfig(ref_power=0.0, fill_nan=False)),  # |S_h|² below float32's normal range
        (1e-20, F.ReassignedConfig(ref_power=1e-45)),
    ],
)
def test_extreme_levels_match_librosa(real_data, scale, cfg):
    wave = read(real_data, "clean_testset_wav") * np.float32(scale)
    assert np.isfinite(wave).all() and (wave != 0).any()
    assert_matches_librosa(wave, cfg)


def test_strided_input_and_hop_not_dividing_n_fft(real_data):
    wave = read(real_data, "noisy_testset_wav")
    strided = wave[::2]  # a float32 view with a stride of two samples
    cfg = F.ReassignedConfig(n_fft=64, win_length=64, hop_length=48, fill_nan=False)
    assert np.array_equal(
        F.reassigned_spectrogram(strided, cfg), F.reassigned_spectrogram(strided.copy(), cfg), equal_nan=True
    )
    assert_matches_librosa(strided, cfg)
    assert_matches_librosa(strided, F.ReassignedConfig(center=True, fill_nan=False))


def test_planes_mean_what_they_say():
    # a 1 kHz tone: energetic bins reassign to ~1 kHz, times near the frame centres, magnitude = |STFT|
    t = np.arange(16000) / 16000
    wave = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    cfg = F.ReassignedConfig(n_fft=512, win_length=512, hop_length=128, window="hann", fill_nan=False)
    planes = F.reassigned_spectrogram(wave, cfg)
    peak = planes[:, 2].argmax(axis=1)
    assert np.allclose(planes[np.arange(len(peak)), 0, peak], 1000.0, atol=1.0)
    centres = librosa.frames_to_time(np.arange(len(peak)), sr=16000, hop_length=128, n_fft=512)
    assert np.allclose(planes[np.arange(len(peak)), 1, peak], centres, atol=1e-3)
    stft = F.stft_tf(wave, F.MagnitudeConfig(n_fft=512, hop_length=128, center=False))
    assert np.array_equal(planes[:, 2], np.abs(stft))  # librosa's arithmetic, as stft_tf
