"""The built-in demo corpus: layout, determinism, and whether its signals have the structure they claim.

The signal checks use small numpy estimators written here rather than librosa's yin/pyin: those are
numba-compiled, and the first call on a fresh machine costs tens of seconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from pipelines.demo import DemoConfig, generate_demo_corpus, generate_noise, generate_speech
from stores.errors import ConfigError

SMALL = DemoConfig(
    speakers=3,
    utterances_per_speaker=2,
    min_seconds=2.0,
    max_seconds=3.0,
    noises=2,
    rirs=2,
    noise_seconds=3.0,
)
SR = SMALL.sample_rate


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return generate_demo_corpus(tmp_path_factory.mktemp("demo") / "corpus", SMALL)


@pytest.fixture(scope="module")
def manifest(corpus):
    return json.loads((corpus.root / "demo.json").read_text(encoding="utf-8"))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _frames(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(x, length)[::hop]


def _pitch_track(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per 40 ms frame: f0 (Hz), periodicity (peak normalised autocorrelation) and level (dB re max).

    The f0 is the shortest lag whose autocorrelation peak is within 15 % of the best one in 60-500 Hz,
    which avoids picking a multiple of the period.
    """
    frames = _frames(x.astype(np.float64), int(0.04 * SR), int(0.01 * SR))
    frames = frames - frames.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(frames, 2 * frames.shape[1], axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : frames.shape[1]]
    acf /= acf[:, :1] + 1e-12
    low, high = SR // 500, SR // 60
    lags = acf[:, low:high]
    best = lags.max(axis=1)
    peaks = (
        (lags[:, 1:-1] > lags[:, :-2])
        & (lags[:, 1:-1] >= lags[:, 2:])
        & (lags[:, 1:-1] > 0.85 * best[:, None])
    )
    lag = low + 1 + np.argmax(peaks, axis=1)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    return SR / lag, best, level - level.max()


def _centroids(x: np.ndarray) -> np.ndarray:
    frames = _frames(x.astype(np.float64), int(0.04 * SR), int(0.01 * SR)) * np.hanning(int(0.04 * SR))
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(frames.shape[1], 1 / SR)
    return power @ freqs / (power.sum(axis=1) + 1e-20)


def _slope_db_per_octave(x: np.ndarray) -> float:
    freqs, power = signal.welch(x, SR, nperseg=4096)
    band = (freqs >= 100) & (freqs <= 6000)
    return float(np.polyfit(np.log2(freqs[band]), 10 * np.log10(power[band]), 1)[0])


def _schroeder_t60(h: np.ndarray) -> float:
    energy = np.cumsum(h.astype(np.float64)[::-1] ** 2)[::-1]
    decay = 10 * np.log10(energy / energy[0])
    first, last = np.argmax(decay <= -5), np.argmax(decay <= -25)
    slope = np.polyfit(np.arange(first, last) / SR, decay[first:last], 1)[0]
    return -60 / slope


def test_librispeech_layout_and_transcripts(corpus, manifest):
    assert manifest["config"] == SMALL.to_dict()
    assert (corpus.root / "README.txt").is_file()
    flacs = sorted(corpus.speech.rglob("*.flac"))
    assert len(flacs) == SMALL.speakers * SMALL.utterances_per_speaker
    subsets = set()
    for path in flacs:
        subset, speaker, chapter, name = path.relative_to(corpus.speech).parts
        subsets.add(subset)
        assert re.fullmatch(rf"{speaker}-{chapter}-\d{{4}}\.flac", name) and speaker.isdigit()
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
    assert subsets == {"train-clean-100", "dev-clean", "test-clean"}
    for folder in {p.parent for p in flacs}:
        (trans,) = folder.glob("*.trans.txt")
        assert trans.name == f"{folder.parent.name}-{folder.name}.trans.txt"
        lines = trans.read_text(encoding="utf-8").splitlines()
        assert [line.split(" ", 1)[0] for line in lines] == sorted(p.stem for p in folder.glob("*.flac"))
        assert all(re.fullmatch(r"\S+ [A-Z]+( [A-Z]+)*", line) for line in lines)
    assert sorted(p.name for p in corpus.noise.iterdir()) == ["pink-1.wav", "white-0.wav"]
    assert sorted(p.name for p in corpus.rir.iterdir()) == ["room-0-t60-0.20.wav", "room-1-t60-1.00.wav"]


def test_same_config_gives_identical_bytes_and_reruns_are_no_ops(corpus, tmp_path):
    other = tmp_path / "other"
    other.mkdir()  # an empty folder is fine, as `scan_corpus` creates it first
    assert generate_demo_corpus(other, SMALL).root == other.resolve()
    assert _files(other) == _files(corpus.root)
    stamps = {p: p.stat().st_mtime_ns for p in other.rglob("*")}
    generate_demo_corpus(other, SMALL)
    assert {p: p.stat().st_mtime_ns for p in other.rglob("*")} == stamps
    assert not [p for p in tmp_path.iterdir() if p.name != "other"]  # no temporary folder left


def test_other_config_or_foreign_folder_is_refused(corpus, tmp_path):
    with pytest.raises(ConfigError, match="Expected"):
        generate_demo_corpus(corpus.root, DemoConfig(speakers=3, utterances_per_speaker=2, seed=1))
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="Expected"):
        generate_demo_corpus(tmp_path, SMALL)


@pytest.mark.parametrize(
    "kwargs",
    [{"speakers": 0}, {"min_seconds": 3.0, "max_seconds": 2.0}, {"noise_seconds": 0}, {"seed": -1}],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(ConfigError, match="Expected"):
        DemoConfig(**kwargs)


def test_durations_within_bounds(corpus, manifest):
    for path in corpus.speech.rglob("*.flac"):
        assert SMALL.min_seconds <= sf.info(str(path)).frames / SR <= SMALL.max_seconds
    for speaker in manifest["speakers"]:
        assert all(SMALL.min_seconds <= u["seconds"] <= SMALL.max_seconds for u in speaker["utterances"])


def test_speech_has_pauses_pitch_in_range_and_bright_unvoiced_parts(corpus, manifest):
    medians = {}
    for speaker in manifest["speakers"]:
        for utterance in speaker["utterances"]:
            audio, _ = sf.read(str(next(corpus.speech.rglob(utterance["id"] + ".flac"))))
            rms = np.sqrt(np.mean(_frames(audio, int(0.02 * SR), int(0.02 * SR)) ** 2, axis=1))
            assert 20 * np.log10(rms.max() / np.percentile(rms, 10)) > 30
            f0, periodicity, level = _pitch_track(audio)
            voiced = (periodicity > 0.7) & (level > -30)
            unvoiced = (periodicity < 0.4) & (level > -35)
            assert voiced.mean() > 0.15 and unvoiced.sum() >= 3
            low, high = speaker["pitch_range"]
            medians[speaker["voice"]] = median = np.median(f0[voiced])
            assert 0.9 * low <= median <= 1.1 * high, (speaker["voice"], median, low, high)
            centroid = _centroids(audio)
            assert np.median(centroid[unvoiced]) > 2 * np.median(centroid[voiced])
    assert medians["female"] > 1.3 * medians["male"] and medians["child"] > 1.2 * medians["female"]


def test_generate_speech_is_float32_with_peak_in_range():
    audio = generate_speech(np.random.default_rng(7), 1.5, 8000, (100.0, 140.0), 1.0)
    assert audio.dtype == np.float32 and audio.shape == (12000,)
    assert 0.5 <= np.max(np.abs(audio)) <= 0.9


def test_noise_spectra(corpus):
    white, _ = sf.read(str(corpus.noise / "white-0.wav"))
    pink, _ = sf.read(str(corpus.noise / "pink-1.wav"))
    assert len(white) == len(pink) == int(SMALL.noise_seconds * SR)
    assert abs(_slope_db_per_octave(white)) < 0.5
    assert abs(_slope_db_per_octave(pink) + 3.0) < 1.0


def test_other_noise_kinds():
    rng = np.random.default_rng(0)
    brown = generate_noise("brown", rng, 2.0, SR)
    assert abs(_slope_db_per_octave(brown) + 6.0) < 1.5
    hum = generate_noise("hum", rng, 2.0, SR)
    freqs, power = signal.welch(hum, SR, nperseg=SR)  # 1 Hz bins
    near = [(np.abs(freqs - mains * np.round(freqs / mains)) <= 2) & (freqs > 10) for mains in (50, 60)]
    on_harmonics = max(power[mask].sum() for mask in near)
    assert on_harmonics > 0.95 * power.sum()  # mains and its harmonics, with a little noise
    for kind in ("babble", "fan"):
        noise = generate_noise(kind, rng, 2.0, SR)
        assert noise.shape == (2 * SR,) and np.isclose(np.max(np.abs(noise)), 0.9)
    with pytest.raises(ConfigError, match="Expected"):
        generate_noise("traffic", rng, 1.0, SR)


def test_rirs_reach_their_target_t60(corpus, manifest):
    for entry in manifest["rirs"]:
        rir, rate = sf.read(str(corpus.rir / f"{entry['id']}.wav"))
        assert rate == SR and np.isclose(np.max(np.abs(rir)), 1.0)
        assert np.argmax(np.abs(rir)) < 0.005 * SR  # the direct path leads
        assert abs(_schroeder_t60(rir) / entry["t60"] - 1) < 0.35, entry
