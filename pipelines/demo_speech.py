"""The demo corpus's speech synthesiser: a compact source-filter formant synthesiser (no library
synthesises speech, and this one does not try to be intelligible): a Rosenberg glottal pulse train with a
smooth, jittered f0 contour in the speaker's pitch range, through a cascade of four resonators whose formants
glide between vowel targets (/a/ /i/ /u/ /e/ /o/, scaled by the speaker's vocal-tract factor), plus
band-passed noise for fricatives (/s/ /sh/ /f/) and plosive bursts (/p/ /t/ /k/), per-syllable envelopes,
pauses and leading/trailing silence. Everything is whole-array numpy/scipy except the time-varying formant
filter, one `lfilter` call per 10 ms block. Deterministic for a given random generator.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import signal
from scipy.interpolate import PchipInterpolator

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


def generate_speech(
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int,
    pitch_range: tuple[float, float],
    tract_scale: float,
) -> np.ndarray:
    """`seconds` of speech-like audio (float32, peak 0.5-0.9) from one voice."""
    return synthesise(rng, seconds, sample_rate, pitch_range, tract_scale)[0]


def synthesise(rng, seconds, sr, pitch_range, tract_scale) -> tuple[np.ndarray, list[str]]:
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
