"""The built-in demo corpus: speech, noises and room impulse responses, generated deterministically.

`make demo` and the test-suite need a corpus that comes from nowhere outside, yet is real enough that
mixing, reverberation and spectrogram models behave as they would on recordings. So:

* Speech comes from a compact source-filter formant synthesiser written here (no library synthesises
  speech, and this one does not try to be intelligible): a Rosenberg glottal pulse train with a smooth,
  jittered f0 contour in the speaker's pitch range, through a cascade of four resonators whose formants
  glide between vowel targets (/a/ /i/ /u/ /e/ /o/, scaled by the speaker's vocal-tract factor), plus
  band-passed noise for fricatives (/s/ /sh/ /f/) and plosive bursts (/p/ /t/ /k/), per-syllable
  envelopes, pauses and leading/trailing silence. Everything is whole-array numpy/scipy except the
  time-varying formant filter, one `lfilter` call per 10 ms block (30 minutes of speech take ~10 s).
* Noises cycle through white, pink, babble (other synthetic voices), mains hum, brown and fan.
* Room impulse responses come from pyroomacoustics shoebox rooms, absorption from `inverse_sabine`
  then corrected until the simulated T60 matches its target.

The same `DemoConfig` gives byte-identical files: every random stream is seeded from
`SeedSequence([seed, domain, ...])`, pyroomacoustics runs on one thread (its threaded sum of image
sources is not bit-reproducible) and float WAVs carry no timestamped PEAK chunk.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal
from scipy.interpolate import PchipInterpolator
from scipy.io import wavfile
from tqdm import tqdm

from pipelines.synthesis import simulate_rir
from stores.config import Config, parse_positive_float, parse_positive_int
from stores.errors import ConfigError

SUBSETS = ("train-clean-100", "dev-clean", "test-clean")
NOISE_KINDS = ("white", "pink", "babble", "hum", "brown", "fan")
MANIFEST = "demo.json"
# Voice groups: pitch range (Hz) and vocal-tract scale (formants relative to an adult male).
VOICES = {
    "male": ((85.0, 155.0), (0.95, 1.05)),
    "female": ((165.0, 255.0), (1.12, 1.22)),
    "child": ((250.0, 400.0), (1.28, 1.42)),
}
# F1-F4 targets of an adult male (Peterson & Barney-like), and the resonators' bandwidths.
VOWELS = {
    "a": (730.0, 1090.0, 2440.0, 3400.0),
    "i": (270.0, 2290.0, 3010.0, 3500.0),
    "u": (300.0, 870.0, 2240.0, 3300.0),
    "e": (530.0, 1840.0, 2480.0, 3400.0),
    "o": (570.0, 840.0, 2410.0, 3300.0),
}
BANDWIDTHS = np.array([70.0, 100.0, 140.0, 200.0])
# Noise bands (Hz) of fricatives and plosive bursts; the keys are also their letters in the transcripts.
FRICATIVES = {"s": (3800.0, 7500.0), "sh": (1800.0, 4500.0), "f": (1000.0, 7000.0)}
PLOSIVES = {"p": (300.0, 1500.0), "t": (2500.0, 6500.0), "k": (1200.0, 3000.0)}
ONSETS = {"": 0.25, "s": 0.15, "sh": 0.1, "f": 0.1, "p": 0.13, "t": 0.14, "k": 0.13}  # probabilities
CODAS = {"": 0.6, "s": 0.12, "sh": 0.06, "f": 0.06, "t": 0.08, "k": 0.08}
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


# ----------------------------------------------------------------------------------------- speech


def generate_speech(
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int,
    pitch_range: tuple[float, float],
    tract_scale: float,
) -> np.ndarray:
    """`seconds` of speech-like audio (float32, peak 0.5-0.9) from one voice."""
    return _synthesise(rng, seconds, sample_rate, pitch_range, tract_scale)[0]


def _synthesise(rng, seconds, sr, pitch_range, tract_scale) -> tuple[np.ndarray, list[str]]:
    """Audio and its pseudo-words (one per synthesised word, spelt from its phones)."""
    n = max(1, round(seconds * sr))
    vowels, noises, words = _plan(rng, n, sr, tract_scale)
    voiced = _voiced(rng, n, sr, vowels, pitch_range)
    active = np.abs(voiced) > 0
    out = voiced / (np.sqrt(np.mean(voiced[active] ** 2)) if active.any() else 1.0)
    for start, length, band, level, burst in noises:
        stop = min(start + length, n)
        if stop > start:
            out[start:stop] += level * _noise_burst(rng, stop - start, band, sr, burst)
    # A faint floor, as in any recording: keeps log-spectra finite in pauses without being audible.
    out += 10 ** (-75 / 20) * np.max(np.abs(out)) * rng.standard_normal(n)
    peak = np.max(np.abs(out)) or 1.0
    return (out * (rng.uniform(0.5, 0.9) / peak)).astype(np.float32), words


def _plan(rng, n, sr, scale):
    """Lay out words of 1-3 syllables between a leading and trailing silence of 0.1-0.3 s.

    Returns vowels (start, length, amplitude, F from, F to), noises (start, length, band, level, burst)
    and the words. The first word is always placed, so even a very short utterance is not silent.
    """
    t = round(min(rng.uniform(0.1, 0.3), 0.15 * n / sr) * sr)
    end = n - round(min(rng.uniform(0.1, 0.3), 0.15 * n / sr) * sr)
    vowels, noises, words = [], [], []
    while t < end:
        word_vowels, word_noises, letters = [], [], []
        syllables = rng.integers(1, 4)
        stress = rng.integers(syllables)
        for i in range(syllables):
            t, text = _syllable(rng, t, sr, scale, 1.0 if i == stress else 0.6, word_vowels, word_noises)
            letters.append(text)
        if t > end and words:
            break
        vowels += word_vowels
        noises += word_noises
        words.append("".join(letters).upper())
        long_pause = rng.random() < 0.15
        t += round((rng.uniform(0.25, 0.5) if long_pause else rng.uniform(0.03, 0.15)) * sr)
    return vowels, noises, words


def _syllable(rng, t, sr, scale, stress, vowels, noises) -> tuple[int, str]:
    """Append one (onset) vowel (coda) syllable starting at sample t; return its end and spelling."""
    amp = stress * rng.uniform(0.7, 1.0)
    onset = str(rng.choice(list(ONSETS), p=list(ONSETS.values())))
    t = _consonant(rng, onset, t, sr, amp, noises)
    first, second = rng.choice(list(VOWELS), size=2)
    second = first if rng.random() < 0.6 else second  # a monophthong or a glide to another vowel
    length = round(rng.uniform(0.09, 0.25) * sr)
    targets = [np.array(VOWELS[v]) * scale * rng.uniform(0.93, 1.07, 4) for v in (first, second)]
    vowels.append((t, length, amp, *targets))
    coda = str(rng.choice(list(CODAS), p=list(CODAS.values())))
    t = _consonant(rng, coda, t + length, sr, 0.8 * amp, noises)
    return t, onset + (first if first == second else first + second) + coda


def _consonant(rng, phone, t, sr, amp, noises) -> int:
    if phone in FRICATIVES:
        length = round(rng.uniform(0.06, 0.14) * sr)
        noises.append((t, length, FRICATIVES[phone], amp * rng.uniform(0.25, 0.45), False))
        return t + length
    if phone in PLOSIVES:
        t += round(rng.uniform(0.02, 0.05) * sr)  # the closure is silence
        length = round(rng.uniform(0.03, 0.06) * sr)  # burst and aspiration
        noises.append((t, length, PLOSIVES[phone], amp * rng.uniform(0.4, 0.7), True))
        return t + length
    return t


def _voiced(rng, n, sr, vowels, pitch_range) -> np.ndarray:
    """Glottal source gated by the vowels' envelopes, through the gliding formant cascade."""
    if not vowels:
        return np.zeros(n)
    envelope = np.zeros(n)
    for start, length, amp, _, _ in vowels:
        part = amp * _envelope(max(0, min(length, n - start)), round(0.02 * sr), round(0.04 * sr))
        envelope[start : start + len(part)] = np.maximum(envelope[start : start + len(part)], part)
    block = round(0.01 * sr)
    centres = (np.arange(-(-n // block)) + 0.5) * block
    times = np.concatenate([[s, s + length] for s, length, *_ in vowels])
    targets = np.concatenate([[f_from, f_to] for *_, f_from, f_to in vowels])
    # Between vowels the formants interpolate to the next target: coarticulation for free.
    formants = np.stack([np.interp(centres, times, targets[:, k]) for k in range(4)], axis=1)
    source = _glottal(rng, n, sr, pitch_range) * envelope
    out = _formant_cascade(source, np.minimum(formants, 0.45 * sr), sr, block)
    # The cascade's gain differs by ~20 dB between vowels (it grows with F1): level each vowel to its
    # amplitude through a smooth gain curve, so that loudness follows stress rather than vowel quality.
    # Flat over each vowel's middle half, ramps across its edges and the gaps between vowels.
    knots, gains = [], []
    for start, length, amp, _, _ in vowels:
        part = out[start : start + length]
        if part.size:
            knots += [start + 0.25 * part.size, start + 0.75 * part.size]
            gains += [amp / (np.sqrt(np.mean(part**2)) + 1e-12)] * 2
    return out * np.interp(np.arange(n), knots, gains) if knots else out


def _envelope(length: int, attack: int, decay: int) -> np.ndarray:
    attack, decay = min(attack, length // 2), min(decay, length // 2)
    env = np.ones(max(length, 0))
    env[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    if decay:
        env[length - decay :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, decay + 1) / decay)
    return env


def _glottal(rng, n, sr, pitch_range) -> np.ndarray:
    """Rosenberg glottal flow derivative with a declining, wandering f0, jitter, shimmer and breath."""
    low, high = pitch_range
    knots = np.linspace(0, n, max(2, round(n / sr / 0.2)) + 1)
    level = 0.55 + 0.18 * rng.standard_normal(len(knots)) - 0.2 * knots / n  # declination
    # f0 is set every 5 ms (slower than any period) and interpolated: 1 % jitter, a fraction of the cost.
    coarse = np.arange(0, n + round(0.005 * sr), round(0.005 * sr))
    contour = low * (high / low) ** PchipInterpolator(knots, np.clip(level, 0.05, 0.95))(coarse)
    f0 = np.interp(np.arange(n), coarse, contour * (1 + 0.01 * rng.standard_normal(len(coarse))))
    phase = np.cumsum(f0 / sr)
    period = phase.astype(int)
    # One period of Rosenberg flow (rise, fall, closed), tabulated and read at each sample's phase.
    rise, fall = rng.uniform(0.35, 0.45), rng.uniform(0.12, 0.2)
    grid = np.linspace(0.0, 1.0, 2049)
    opening = 0.5 - 0.5 * np.cos(np.pi * grid / rise)
    closing = np.cos(0.5 * np.pi * np.minimum((grid - rise) / fall, 1.0))
    flow = np.interp(phase - period, grid, np.where(grid < rise, opening, closing))
    flow *= 1 + 0.05 * rng.standard_normal(period[-1] + 1)[period]  # shimmer
    derivative = np.diff(flow, prepend=0.0)
    derivative /= np.max(np.abs(derivative))
    return derivative + 0.03 * flow * rng.standard_normal(n)


def _formant_cascade(x: np.ndarray, formants: np.ndarray, sr: int, block: int) -> np.ndarray:
    """Four unity-DC-gain 2-pole resonators in cascade (one 8th-order all-pole filter), retuned every block.

    Between blocks the last 8 *outputs* carry over and the next block's state is rebuilt from them: the
    transposed direct-form state depends on the coefficients, so reusing it after a retune clicks at
    the block rate. One `lfilter` per block (sosfilt's per-call overhead is ~6x larger); blocks with no
    input and a rung-out filter are skipped, so pauses cost nothing.
    """
    r = np.exp(-np.pi * BANDWIDTHS / sr)
    a = np.ones((len(formants), 1))
    for k in range(4):  # multiply the sections' denominators, row by row
        a1, a2 = -2 * r[k] * np.cos(2 * np.pi * formants[:, k : k + 1] / sr), r[k] ** 2
        a = np.pad(a, ((0, 0), (0, 2))) + np.pad(a1 * a, ((0, 0), (1, 1))) + np.pad(a2 * a, ((0, 0), (2, 0)))
    gain = a.sum(axis=1, keepdims=True)
    # All-pole DF2T state from outputs: z_k = -sum_m a[k + 1 + m] * y[n - m].
    lag = np.arange(1, 9)[:, None] + np.arange(8)[None, :]
    history_to_state = -np.where(lag <= 8, a[:, np.minimum(lag, 8)], 0.0)  # (blocks, 8, 8)
    out = np.zeros_like(x)
    history = np.zeros(8)  # y[n], y[n-1], ... y[n-7]
    for b in range(len(a)):
        part = x[b * block : (b + 1) * block]
        if not part.any() and np.abs(history).max() < 1e-9:
            history[:] = 0.0
            continue
        y, _ = signal.lfilter(gain[b], a[b], part, zi=history_to_state[b] @ history)
        out[b * block : (b + 1) * block] = y
        history = np.concatenate([y[::-1], history])[:8]
    return out


@functools.lru_cache(maxsize=64)
def _bandpass(band: tuple[float, float], sr: int) -> np.ndarray:
    high = min(band[1], 0.45 * sr)
    return signal.butter(2, (min(band[0], 0.5 * high), high), btype="bandpass", fs=sr, output="sos")


def _noise_burst(rng, length, band, sr, burst) -> np.ndarray:
    """Unit-RMS band-passed noise under a fricative (rise-hold-fall) or plosive (sharp decay) envelope."""
    noise = signal.sosfilt(_bandpass(band, sr), rng.standard_normal(length))
    noise /= np.sqrt(np.mean(noise**2)) + 1e-12
    if burst:
        return noise * np.exp(-np.arange(length) / (0.3 * length)) * _envelope(length, 8, 0)
    return noise * _envelope(length, length // 3, length // 3)


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


# ----------------------------------------------------------------------------------------- rooms


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
            audio, words = _synthesise(rng, samples / config.sample_rate, config.sample_rate, pitch, scale)
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
