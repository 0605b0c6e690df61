import warnings

import librosa
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import features as F
from stores.errors import FeatureRangeError

TOLERANCE = 1e-4  # max abs error relative to the plane's max


def read(real_data, folder, name="p232_002.wav"):
    wave, rate = sf.read(real_data / "voicebank-demand" / folder / name, dtype="float32")
    assert rate == 16000
    return wave


@pytest.fixture(scope="module", params=["clean_testset_wav", "noisy_testset_wav"])
def speech(real_data, request):
    return read(real_data, request.param)


def librosa_stft(wave, cfg):
    return librosa.stft(
        wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=cfg.window,
        center=cfg.center, pad_mode=cfg.pad_mode,
    )  # fmt: skip


def assert_close(ours, ref):
    assert ours.shape == ref.shape
    scale = float(np.abs(ref).max())
    assert scale > 0
    assert float(np.abs(ours.astype(np.float64) - ref).max()) / scale <= TOLERANCE


MAGNITUDE_CONFIGS = {
    "magnitude-crn": F.PRESETS["magnitude-crn"],
    "magnitude-cnn": F.PRESETS["magnitude-cnn"],
    "uncentred-hamming": F.MagnitudeConfig(center=False, window="hamming", win_length=400, hop_length=160),
    "reflect": F.MagnitudeConfig(pad_mode="reflect"),
}


@pytest.mark.parametrize("name", sorted(MAGNITUDE_CONFIGS))
def test_magnitude_equals_librosa_on_real_speech(speech, name):
    cfg = MAGNITUDE_CONFIGS[name]
    ref = np.abs(librosa_stft(speech, cfg)).T  # time-major
    ours = F.magnitude(speech, cfg)
    assert ours.dtype == np.float32 and ours.shape == (ref.shape[0], cfg.n_fft // 2 + 1)
    assert_close(ours, ref)


@pytest.mark.parametrize(
    "cfg", [F.PRESETS["complex-dccrn"], F.ComplexConfig(center=False, n_fft=256, win_length=256)]
)
def test_complex_equals_librosa_on_real_speech(speech, cfg):
    ref = librosa_stft(speech, cfg).T
    ours = F.complex_stft(speech, cfg)
    assert ours.dtype == np.float32 and ours.shape == (ref.shape[0], 2, cfg.n_fft // 2 + 1)
    assert_close(ours[:, 0], ref.real)
    assert_close(ours[:, 1], ref.imag)


def test_stft_tf_is_librosa_stft_transposed(real_data):
    wave = read(real_data, "noisy_testset_wav", "p232_117.wav")
    cfg = F.PRESETS["magnitude-crn"]
    spec = F.stft_tf(wave, cfg)
    assert spec.dtype == np.complex64
    # the same arithmetic as librosa (float64 window and FFT, rounded to complex64): equal to the bit,
    # which the reassigned spectrogram's NaN positions depend on
    assert np.array_equal(spec, librosa_stft(wave, cfg).T)


def test_float64_input_is_taken_as_float32(real_data):
    wave = read(real_data, "clean_testset_wav")
    cfg = F.PRESETS["magnitude-crn"]
    assert np.array_equal(F.magnitude(wave.astype(np.float64), cfg), F.magnitude(wave, cfg))
    # float16 samples widen exactly, as in librosa (which multiplies them by its float64 window)
    short = wave.astype(np.float16)
    assert np.array_equal(F.stft_tf(short, cfg), librosa_stft(short, cfg).T)


def test_float16_output(real_data):
    wave = read(real_data, "clean_testset_wav")
    ours = F.magnitude(wave, F.MagnitudeConfig(dtype="float16"))
    assert ours.dtype == np.float16
    ref = F.magnitude(wave, F.MagnitudeConfig())
    assert np.array_equal(ours, ref.astype(np.float16))  # float32 rounded once to float16


def test_long_input_crosses_fft_blocks():
    # more frames than one FFT call holds: block boundaries must not show
    rng = np.random.default_rng(3)
    wave = rng.standard_normal(16000 * 12).astype(np.float32)
    cfg = F.MagnitudeConfig(n_fft=64, win_length=64, hop_length=16)
    assert np.array_equal(F.stft_tf(wave, cfg), librosa_stft(wave, cfg).T)


@st.composite
def wave_and_config(draw):
    n_fft = draw(st.sampled_from([16, 32, 33, 64]))
    win_length = draw(st.integers(n_fft // 2, n_fft))
    hop_length = draw(st.integers(1, win_length))
    center = draw(st.booleans())
    window = draw(st.sampled_from(["hann", "hamming", "blackman", "boxcar"]))
    length = draw(st.integers(n_fft, 600))
    elements = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
    wave = draw(hnp.arrays(np.float32, length, elements=elements))
    return wave, dict(n_fft=n_fft, win_length=win_length, hop_length=hop_length, center=center, window=window)


@settings(max_examples=30, deadline=None)
@given(wave_and_config())
def test_finite_input_gives_finite_output_of_librosas_shape(case):
    wave, kw = case
    ref = librosa_stft(wave, F.MagnitudeConfig(**kw)).T
    mag = F.magnitude(wave, F.MagnitudeConfig(**kw))
    planes = F.complex_stft(wave, F.ComplexConfig(**kw))
    assert mag.shape == ref.shape and planes.shape == (ref.shape[0], 2, ref.shape[1])
    assert np.isfinite(mag).all() and np.isfinite(planes).all()
    # the features' float32 arithmetic: close to librosa's, not bit-identical; errors relative to |STFT|'s
    # maximum (a plane of round-off alone, the imaginary part of a constant, has no scale of its own)
    scale = float(np.abs(ref).max())
    assert np.abs(mag - np.abs(ref)).max() <= TOLERANCE * scale
    assert np.abs(planes[:, 0] - ref.real).max() <= TOLERANCE * scale
    assert np.abs(planes[:, 1] - ref.imag).max() <= TOLERANCE * scale


@pytest.mark.parametrize("kind", ["magnitude", "complex", "decomposed"])
def test_features_beyond_float16_are_refused_saying_what_overflowed(real_data, kind):
    # speech at amplitude 3000 (int16 counts taken as amplitudes): float16 held 692 of 8,224 cells as inf,
    # with only numpy's RuntimeWarning; now a FeatureRangeError, and no warning on the way
    wave = read(real_data, "clean_testset_wav")
    loud = wave * np.float32(3000 / np.abs(wave).max())
    cfg = F.feature_config(kind, dtype="float16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(
            FeatureRangeError, match=rf"Expected {kind} values that fit float16 \(\|v\| <= 65504\)"
        ):
            F.compute_feature((loud, loud, loud) if kind == "decomposed" else loud, cfg)
        stored = F.compute_feature(
            (loud, loud, loud) if kind == "decomposed" else loud, F.feature_config(kind)
        )
    assert np.isfinite(stored).all() and np.abs(stored).max() > 65504  # float32 holds them


def test_float16_rounds_tiny_values_to_zero_as_documented(real_data):
    # the other end of float16's range is rounding, not an error: values below 2^-25 become 0, those below
    # 2^-14 keep fewer significant bits (the stored float16 is the float32 value rounded once)
    quiet = read(real_data, "clean_testset_wav") * np.float32(1e-6)
    ours32 = F.magnitude(quiet, F.MagnitudeConfig())
    ours16 = F.magnitude(quiet, F.MagnitudeConfig(dtype="float16"))
    assert np.array_equal(ours16, ours32.astype(np.float16))
    flushed = (ours16 == 0) & (ours32 > 0)
    assert flushed.any() and (ours32[flushed] <= 2.0**-25).all()


@pytest.mark.parametrize("kind", ["magnitude", "complex", "reassigned"])
def test_features_beyond_float32_are_refused(kind):
    wave = np.full(2000, 3e38, dtype=np.float32)  # finite samples whose STFT is not
    with pytest.raises(
        FeatureRangeError, match=f"Expected {kind}.* values that fit float32.*scale the audio down"
    ):
        F.compute_feature(wave, F.feature_config(kind))
