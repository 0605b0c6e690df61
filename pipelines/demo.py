"""The built-in demo corpus: speech, noises and room impulse responses, generated deterministically.

`make demo` and the test-suite need a corpus that comes from nowhere outside, yet is real enough that
mixing, reverberation and spectrogram models behave as they would on recordings. So:

* Speech comes from a compact source-filter formant synthesiser written here (`pipelines.demo_speech`).
* Noises cycle through white, pink, babble (other synthetic voices), mains hum, brown and fan.
* Room impulse responses come from pyroomacoustics shoebox rooms, absorption from `inverse_sabine`
  then corrected until the simulated T60 matches its target.

The same `DemoConfig` gives byte-identical files: every random stream is seeded from
`SeedSequence([seed, domain, ...])`, pyroomacoustics runs on one thread (its threaded sum of image
sources is not bit-reproducible) and float WAVs carry no timestamped PEAK chunk.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal
from scipy.io import wavfile
from tqdm import tqdm

from pipelines.corpora import CorpusReader, LibriSpeechReader, SourceItem
from pipelines.demo_speech import VOICES, generate_speech, synthesise
from pipelines.synthesis import simulate_rir
from stores.config import Config, parse_positive_float, parse_positive_int
from stores.errors import ConfigError

SUBSETS = ("train-clean-100", "dev-clean", "test-clean")
NOISE_KINDS = ("white", "pink", "babble", "hum", "brown", "fan")
MANIFEST = "demo.json"
# Seed domains, so that no two random streams share a SeedSequence.
_SPEAKER, _UTTERANCE, _NOISE, _RIR = 1, 2, 3, 4


@dataclass(frozen=True)
class DemoConfig(Config):
    speakers: int = 6
    utterances_per_speaker: int = 8
    min_seconds: float = 2.0
    max_seconds: float = 6.0
    sample_rate: int = 16000
    seed: int = 0
    noises: int = 4
    rirs: int = 4
    noise_seconds: float = 20.0

    def __post_init__(self) -> None:
        for name in ("speakers", "utterances_per_speaker", "sample_rate", "noises", "rirs"):
            parse_positive_int(getattr(self, name), name)
        for name in ("min_seconds", "max_seconds", "noise_seconds"):
            object.__setattr__(self, name, parse_positive_float(getattr(self, name), name))
        if self.min_seconds > self.max_seconds:
            raise ConfigError(
                f"Expected min_seconds <= max_seconds. Got {self.min_seconds} > {self.max_seconds} instead."
            )
        if self.sample_rate < 8000:
            raise ConfigError(f"Expected sample_rate to be at least 8000 Hz. Got {self.sample_rate} instead.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"Expected seed to be a non-negative integer. Got {self.seed!r} instead.")


DEFAULT_CONFIG = DemoConfig()


@dataclass(frozen=True)
class DemoCorpus:
    root: Path
    speech: Path  # a LibriSpeech layout: <subset>/<speaker>/<chapter>/...
    noise: Path  # <id>.wav
    rir: Path  # <id>.wav


# ----------------------------------------------------------------------------------------- speakers


def speaker_profiles(config: DemoConfig) -> list[dict]:
    """Per speaker: id, chapter, subset, voice kind, pitch range and tract scale (voices cycle)."""
    subsets = _subsets(config.speakers)
    profiles = []
    for k in range(config.speakers):
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, _SPEAKER, k]))
        kind = list(VOICES)[k % len(VOICES)]
        (low, high), (scale_low, scale_high) = VOICES[kind]
        centre = low * (high / low) ** rng.uniform(0.35, 0.65)
        profile = {"speaker": 1001 + k, "chapter": 10 + k, "subset": subsets[k], "voice": kind}
        profile["pitch_range"] = [round(centre / 1.2, 1), round(centre * 1.2, 1)]
        profile["tract_scale"] = round(rng.uniform(scale_low, scale_high), 3)
        profiles.append(profile)
    return profiles


def _subsets(count: int) -> list[str]:
    """~70/15/15 train/dev/test by speaker, at least one held-out speaker each once there are 3."""
    if count < 3:
        return [SUBSETS[0]] * count
    held = max(1, round(0.15 * count))
    return [SUBSETS[0]] * (count - 2 * held) + [SUBSETS[1]] * held + [SUBSETS[2]] * held


# ----------------------------------------------------------------------------------------- noise


def generate_noise(kind: str, rng: np.random.Generator, seconds: float, sample_rate: int) -> np.ndarray:
    """One of NOISE_KINDS, float32 with peak 0.9."""
    n, sr = max(1, round(seconds * sample_rate)), sample_rate
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _coloured(rng, n, sr, 1.0)
    elif kind == "brown":
        x = _coloured(rng, n, sr, 2.0)
    elif kind == "babble":
        x = np.zeros(n)
        for _ in range(rng.integers(4, 7)):  # 4-6 talkers, each at the same level
            (low, high), (s_low, s_high) = VOICES[list(VOICES)[rng.integers(len(VOICES))]]
            centre = low * (high / low) ** rng.uniform(0.2, 0.8)
            pitch, scale = (centre / 1.2, centre * 1.2), rng.uniform(s_low, s_high)
            # Rolled by a random offset (the seam falls in its silent edges), so that the talkers' leading
            # and trailing silences fall at different times instead of all at the noise's edges.
            talk = np.roll(generate_speech(rng, n / sr, sr, pitch, scale), rng.integers(n))
            x += talk / np.sqrt(np.mean(talk.astype(np.float64) ** 2))
    elif kind == "hum":
        t = np.arange(n) / sr
        mains = rng.choice([50.0, 60.0])
        harmonics = np.arange(1, min(12, int(0.45 * sr / mains)) + 1)
        gains = rng.uniform(0.4, 1.0, len(harmonics)) / harmonics
        phases = rng.uniform(0, 2 * np.pi, len(harmonics))
        x = np.sum(gains[:, None] * np.sin(2 * np.pi * mains * harmonics[:, None] * t + phases[:, None]), 0)
        x += 0.01 * rng.standard_normal(n)
    elif kind == "fan":
        t = np.arange(n) / sr
        rumble = signal.sosfilt(
            signal.butter(2, rng.uniform(200, 600), fs=sr, output="sos"), rng.standard_normal(n)
        )
        x = rumble / np.std(rumble) + 0.15 * _coloured(rng, n, sr, 1.0) / 0.3
        x *= 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    else:
        raise ConfigError(f"Expected a noise kind, one of {', '.join(NOISE_KINDS)}. Got {kind!r} instead.")
    return (0.9 * x / np.max(np.abs(x))).astype(np.float32)


def _coloured(rng, n, sr, exponent) -> np.ndarray:
    """Gaussian noise with power ∝ 1/f**exponent (flat below 20 Hz, no DC)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / sr), 20.0)
    spectrum *= freqs ** (-exponent / 2)
    spectrum[0] = 0.0
    x = np.fft.irfft(spectrum, n)
    return x / np.std(x)


# ----------------------------------------------------------------------------------------- corpus


def generate_demo_corpus(
    dest: str | Path, config: DemoConfig = DEFAULT_CONFIG, progress: bool = False
) -> DemoCorpus:
    """Write the demo corpus to `dest` (new or empty), or return the one already there.

    Built in a hidden sibling folder and renamed into place, so an interrupted run leaves no half corpus.
    """
    if not isinstance(config, DemoConfig):
        raise ConfigError(f"Expected a DemoConfig. Got {type(config).__name__} instead.")
    dest = Path(dest).expanduser().resolve()  # so that the temporary folder is a true sibling
    corpus = DemoCorpus(dest, dest / "LibriSpeech", dest / "noise", dest / "rir")
    if _existing_config(dest, config):
        return corpus
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(
            f"Expected {dest} to be a new or empty folder for the demo corpus. Got other files."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        _write_corpus(tmp, config, progress)
        if dest.exists():
            dest.rmdir()
        try:
            os.replace(tmp, dest)
        except OSError:
            if not _existing_config(dest, config):  # not a concurrent twin that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return corpus


def _existing_config(dest: Path, config: DemoConfig) -> bool:
    """True when dest holds this config's corpus; ConfigError when it holds another one."""
    manifest = dest / MANIFEST
    if not manifest.is_file():
        return False
    stored = json.loads(manifest.read_text(encoding="utf-8")).get("config", {})
    if stored != config.to_dict():
        raise ConfigError(
            f"Expected {dest} to hold the demo corpus of {config.to_json()} or be empty. "
            f"Got one made with {json.dumps(stored, sort_keys=True)} instead."
        )
    return True


def _write_corpus(root: Path, config: DemoConfig, progress: bool) -> None:
    total = config.speakers * config.utterances_per_speaker + config.noises + config.rirs
    with tqdm(total=total, desc="demo corpus", unit="file", disable=not progress) as bar:
        manifest = {
            "config": config.to_dict(),
            "speakers": _write_speech(root / "LibriSpeech", config, bar),
            "noises": _write_noises(root / "noise", config, bar),
            "rirs": _write_rirs(root / "rir", config, bar),
        }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    (root / "README.txt").write_text(
        "Synthetic demo corpus made by specstore's pipelines/demo.py: formant-synthesised speech in a\n"
        "LibriSpeech layout, noise/ and rir/ (simulated rooms). demo.json lists the config and every file.\n",
        encoding="utf-8",
    )


def _write_speech(root: Path, config: DemoConfig, bar) -> list[dict]:
    profiles = speaker_profiles(config)
    for k, profile in enumerate(profiles):
        prefix = f"{profile['speaker']}-{profile['chapter']}"
        folder = root / profile["subset"] / str(profile["speaker"]) / str(profile["chapter"])
        folder.mkdir(parents=True)
        lines, profile["utterances"] = [], []
        for index in range(config.utterances_per_speaker):
            rng = np.random.default_rng(np.random.SeedSequence([config.seed, _UTTERANCE, k, index]))
            samples = _draw_length(rng, config)
            pitch, scale = tuple(profile["pitch_range"]), profile["tract_scale"]
            audio, words = synthesise(rng, samples / config.sample_rate, config.sample_rate, pitch, scale)
            uid = f"{prefix}-{index:04d}"
            sf.write(folder / f"{uid}.flac", audio, config.sample_rate, subtype="PCM_16")
            lines.append(f"{uid} {' '.join(words)}")
            profile["utterances"].append({"id": uid, "seconds": len(audio) / config.sample_rate})
            bar.update()
        (folder / f"{prefix}.trans.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return profiles


def _draw_length(rng, config: DemoConfig) -> int:
    """Samples in [min_seconds, max_seconds] (rounded inwards when the bounds fall between samples)."""
    low = int(np.ceil(config.min_seconds * config.sample_rate))
    high = max(low, int(np.floor(config.max_seconds * config.sample_rate)))
    return int(rng.integers(low, high + 1))


def _write_noises(root: Path, config: DemoConfig, bar) -> list[dict]:
    root.mkdir(parents=True)
    entries = []
    for index in range(config.noises):
        kind = NOISE_KINDS[index % len(NOISE_KINDS)]
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, _NOISE, index]))
        audio = generate_noise(kind, rng, config.noise_seconds, config.sample_rate)
        _write_float_wav(root / f"{kind}-{index}.wav", audio, config.sample_rate)
        entries.append({"id": f"{kind}-{index}", "kind": kind, "seconds": len(audio) / config.sample_rate})
        bar.update()
    return entries


def _write_rirs(root: Path, config: DemoConfig, bar) -> list[dict]:
    root.mkdir(parents=True)
    targets = np.linspace(0.2, 1.0, config.rirs) if config.rirs > 1 else np.array([0.5])
    entries = []
    for index, t60 in enumerate(np.round(targets, 2)):
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, _RIR, index]))
        rir, info = simulate_rir(rng, float(t60), config.sample_rate)
        rid = f"room-{index}-t60-{t60:.2f}"
        _write_float_wav(root / f"{rid}.wav", rir, config.sample_rate)
        entries.append({"id": rid, "t60": float(t60), "seconds": len(rir) / config.sample_rate} | info)
        bar.update()
    return entries


def _write_float_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    # Not soundfile: libsndfile stamps float WAVs with a PEAK chunk holding the time of writing, which
    # would make two generations differ. scipy writes the bare IEEE-float WAV.
    wavfile.write(path, sample_rate, np.asarray(audio, dtype=np.float32))


class DemoReader(CorpusReader):
    """The built-in generated corpus: generated into the source folder when missing (deterministically),
    then read through the LibriSpeech reader, exactly as a downloaded LibriSpeech would be. Declared in
    `pipelines.corpora.CORPORA` by its import path, so that listing the readers does not import scipy."""

    name = "demo"
    description = "the built-in generated corpus (LibriSpeech layout), created in --source when missing"
    creates_source = True

    def scan(self, source: Path) -> Iterator[SourceItem]:
        corpus = generate_demo_corpus(source)
        yield from LibriSpeechReader().scan(Path(corpus.speech))
