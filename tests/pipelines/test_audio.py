import numpy as np
import pytest
import soundfile as sf
import soxr

from pipelines.audio import AudioConfig, Rejected, load_audio, to_mono
from pipelines.testing import make_bad_inputs, tone, write_audio
from stores import ConfigError


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    return folder, make_bad_inputs(folder)


@pytest.mark.parametrize("name", ["empty.wav", "truncated.flac", "text.wav", "nan.wav", "short.wav"])
def test_each_bad_input_has_its_reason(bad_folder, name):
    folder, expected = bad_folder
    with pytest.raises(Rejected) as info:
        load_audio(str(folder / name), AudioConfig())
    assert info.value.reason == expected[name]
    assert info.value.detail  # a person can tell what was wrong


def test_good_file_loads(bad_folder):
    folder, _ = bad_folder
    loaded = load_audio(str(folder / "good.wav"), AudioConfig())
    assert loaded.samples.dtype == np.float32 and loaded.samples.shape == (16000,)
    assert len(loaded.source_sha256) == 64


def test_truncated_wav_is_detected(tmp_path):
    data = write_audio(tmp_path / "a.wav", tone(1.0)).read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(Rejected, match="truncated file"):
        load_audio(str(tmp_path / "cut.wav"), AudioConfig())


def test_silent_file_is_rejected(tmp_path):
    write_audio(tmp_path / "zero.wav", np.zeros(16000, dtype=np.float32))
    with pytest.raises(Rejected, match="silent"):
        load_audio(str(tmp_path / "zero.wav"), AudioConfig())


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(Rejected, match="unreadable file"):
        load_audio(str(tmp_path / "absent.wav"), AudioConfig())


def test_clipping_is_recorded_not_rejected(tmp_path):
    x = tone(1.0, amplitude=1.0)
    x[:100] = 1.0
    write_audio(tmp_path / "clip.wav", x, subtype="FLOAT")
    loaded = load_audio(str(tmp_path / "clip.wav"), AudioConfig())
    assert loaded.clipped_samples >= 100


def test_resampling_to_store_rate_keeps_duration_and_pitch(tmp_path):
    write_audio(tmp_path / "a.wav", tone(2.0, sample_rate=44100, freq=440.0), sample_rate=44100)
    loaded = load_audio(str(tmp_path / "a.wav"), AudioConfig(sample_rate=16000))
    assert loaded.source_sample_rate == 44100
    assert loaded.samples.shape[0] == 32000
    spectrum = np.abs(np.fft.rfft(loaded.samples))
    assert abs(np.argmax(spectrum) * 16000 / 32000 - 440.0) < 2.0


def test_mono_policies(tmp_path):
    stereo = tone(1.0, channels=2)
    np.testing.assert_allclose(to_mono(stereo, "mean"), stereo.mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(to_mono(stereo, "first"), stereo[:, 0])
    with pytest.raises(Rejected, match="multichannel"):
        to_mono(stereo, "reject")
    write_audio(tmp_path / "st.wav", stereo)
    assert load_audio(str(tmp_path / "st.wav"), AudioConfig()).source_channels == 2


@pytest.mark.parametrize(
    "name,rate",
    [
        ("clean/lhotse__LJ002-0020.wav", 22050),
        ("clean/spatialaudio__xmas.wav", 44100),
        ("rir/openair_geneticreverb__ir_council_s1r1_ch1.wav", 96000),
    ],
)
def test_streamed_decoding_equals_a_one_shot_soxr_resample(real_data, name, rate, monkeypatch):
    """The loader decodes and resamples block by block; the result is bit-identical to decoding the whole
    file and resampling it at once (small blocks, so that even short files span many)."""
    monkeypatch.setattr("pipelines.audio.BLOCK_SAMPLES", 4096)
    data, source_rate = sf.read(real_data / name, dtype="float32", always_2d=True)
    assert source_rate == rate
    mono = to_mono(data, "mean")
    reference = soxr.resample(np.ascontiguousarray(mono), rate, 16000, quality="HQ")
    loaded = load_audio(str(real_data / name), AudioConfig())
    assert abs(reference.shape[0] - round(mono.shape[0] * 16000 / rate)) <= 1
    np.testing.assert_array_equal(loaded.samples, reference)
    assert loaded.clipped_samples == int(np.count_nonzero(np.abs(data) >= 0.999))


@pytest.mark.parametrize(
    "kwargs", [{"sample_rate": 0}, {"mono": "left"}, {"min_duration_s": -1}, {"silence_dbfs": 3}]
)
def test_bad_audio_config(kwargs):
    with pytest.raises(ConfigError, match="Expected"):
        AudioConfig(**kwargs)
