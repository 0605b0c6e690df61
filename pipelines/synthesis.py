"""Pure signal functions for training pairs: noise segments, exact-SNR mixing, direct-path-aligned
reverberation, output level, T60 measurement and room simulation.

Everything here is deterministic given its inputs and a `numpy.random.Generator`; the pair stage derives
that generator from the pair set's seed and the utterance id, so a pair never depends on which shard or
worker made it. Energies are summed in float64.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from stores.errors import ConfigError

CROSSFADE_S = 0.05  # loop seam for noise shorter than the utterance
EARLY_S = 0.05  # `--target early`: the first 50 ms of the response after the direct path
PEAK_LIMIT = 0.99  # output peak above this would clip a 16-bit export: both signals are scaled down


def utterance_rng(seed: int, utterance_id: str) -> np.random.Generator:
    """A generator that depends only on the seed and the id (never on shard, order or worker)."""
    key = int.from_bytes(hashlib.sha256(utterance_id.encode()).digest()[:8], "big")
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, key]))


def energy(x: np.ndarray) -> float:
    return float(np.dot(x.astype(np.float64), x.astype(np.float64)))


def snr_db(clean: np.ndarray, degraded: np.ndarray) -> float:
    """10·log10(Σs² / Σ(y−s)²) in float64; +inf when the two are identical."""
    noise = energy(degraded.astype(np.float64) - clean.astype(np.float64))
    if noise == 0:
        return math.inf
    signal = energy(clean)
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def noise_segment(
    noise: np.ndarray, length: int, rng: np.random.Generator, sample_rate: int
) -> tuple[np.ndarray, int]:
    """A random `length`-sample segment of `noise` -> (segment, offset). Noise shorter than `length` is looped
    with an equal-power crossfade at each seam, so the loop adds no click and no energy dip."""
    if noise.size == 0:
        raise ConfigError("Expected a noise recording with samples. Got an empty one instead.")
    if noise.shape[0] >= length:
        offset = int(rng.integers(0, noise.shape[0] - length + 1))
        return noise[offset : offset + length].astype(np.float32), offset
    fade = min(int(CROSSFADE_S * sample_rate), noise.shape[0] // 4)
    looped = _loop_with_crossfade(noise.astype(np.float64), length + noise.shape[0], fade)
    offset = int(rng.integers(0, noise.shape[0]))
    return looped[offset : offset + length].astype(np.float32), offset


def _loop_with_crossfade(noise: np.ndarray, length: int, fade: int) -> np.ndarray:
    if fade == 0:
        return np.resize(noise, length)
    t = np.linspace(0, np.pi / 2, fade)
    fade_in, fade_out = np.sin(t), np.cos(t)
    period = noise.shape[0] - fade
    body = noise.copy()
    body[:fade] = noise[:fade] * fade_in + noise[-fade:] * fade_out  # the seam blends the end into the start
    reps = math.ceil(length / period) + 1
    return np.tile(body[:period], reps)[:length]


def scale_to_snr(reference: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """Noise scaled so that 10·log10(Σref² / Σnoise²) equals `snr` exactly (float64 arithmetic)."""
    ref_energy, noise_energy = energy(reference), energy(noise)
    if noise_energy == 0:
        raise ConfigError("Expected a noise segment with energy. Got a silent segment instead.")
    gain = math.sqrt(ref_energy / (noise_energy * 10 ** (snr / 10)))
    return noise.astype(np.float64) * gain


def direct_path_index(rir: np.ndarray) -> int:
    return int(np.argmax(np.abs(rir)))


def reverberate(
    dry: np.ndarray, rir: np.ndarray, sample_rate: int, target: str = "dry"
) -> tuple[np.ndarray, np.ndarray]:
    """(reverberant input, target), both aligned to the dry signal at the RIR's direct path and as long as
    `dry`. `target` is `dry` (the dry speech) or `early` (dry convolved with the first 50 ms after the
    direct path)."""
    import scipy.signal  # imported here: it takes about a second, and ingest workers never need it

    d = direct_path_index(rir)
    n = dry.shape[0]
    wet = scipy.signal.fftconvolve(dry.astype(np.float64), rir.astype(np.float64))[d : d + n]
    if target == "dry":
        return wet, dry.astype(np.float64)
    early_len = d + int(round(EARLY_S * sample_rate))
    early = scipy.signal.fftconvolve(dry.astype(np.float64), rir[:early_len].astype(np.float64))[d : d + n]
    return wet, early


def apply_level(inp: np.ndarray, target: np.ndarray, level_dbfs: float, extra: list[np.ndarray] = ()):
    """Scale input and target (and `extra` signals) together so the input's RMS is `level_dbfs`; if that
    would push a peak above PEAK_LIMIT, scale down further. -> (scaled signals, gain_db, limited)."""
    rms = math.sqrt(energy(inp) / max(1, inp.shape[0]))
    gain = 10 ** (level_dbfs / 20) / rms if rms > 0 else 1.0
    peak = max(float(np.max(np.abs(s))) for s in (inp, target, *extra)) * gain
    limited = peak > PEAK_LIMIT
    if limited:
        gain *= PEAK_LIMIT / peak
    scaled = [s * gain for s in (inp, target, *extra)]
    return scaled, 20 * math.log10(gain), limited


def measure_t60(rir: np.ndarray, sample_rate: int) -> float:
    """T60 by Schroeder backward integration (pyroomacoustics), fitted over a 20 dB decay and extrapolated
    (T20 -> T60), which works for measured responses whose noise floor hides the full 60 dB."""
    from pyroomacoustics.experimental import measure_rt60  # pyroomacoustics (seconds) only for reverb pairs

    h = rir[direct_path_index(rir) :].astype(np.float64)
    return float(measure_rt60(h, fs=sample_rate, decay_db=20))


def simulate_rir(rng: np.random.Generator, t60: float, sample_rate: int) -> tuple[np.ndarray, dict]:
    """A shoebox RIR with the target T60, from 2.5 ms before its direct path, max |h| = 1; and its room.

    inverse_sabine gives the first absorption; image-source rooms that are far from cubic decay up to
    ~50 % off Sabine, so the absorption is then corrected (in Eyring's -ln(1 - a), which T60 is inversely
    proportional to) until the Schroeder T60 is within 5 % of the target, at most 4 simulations.
    """
    import pyroomacoustics as pra  # seconds to import: only for simulated rooms

    for _ in range(100):  # redraw the rare room too big for its T60 (absorption > 1)
        dims = [rng.uniform(3, 10), rng.uniform(3, 10), rng.uniform(2.5, 4)]
        source, mic = (rng.uniform(0.5, np.array(dims) - 0.5) for _ in range(2))
        if np.linalg.norm(source - mic) < 1.0:
            continue
        try:
            absorption, order = pra.inverse_sabine(t60, dims)
            break
        except ValueError:
            continue
    else:
        raise ConfigError(f"Expected a T60 a 3-10 m room can have. Got {t60} s instead.")
    # inverse_sabine's order reaches c*T60; c*T60/2 (decay to -30 dB) is enough for the -5..-25 dB
    # fit that defines T60 and keeps a 1 s small room at a fraction of a second instead of minutes.
    order = min(order, int(np.ceil(pra.constants.get("c") * t60 / 2 / min(dims))) + 2)
    for attempt in range(4):
        h = _shoebox(pra, dims, source, mic, absorption, order, sample_rate)
        measured = measure_t60(h, sample_rate)
        if abs(measured / t60 - 1) < 0.05 or attempt == 3:
            break
        absorption = float(min(0.99, -np.expm1(np.log1p(-absorption) * measured / t60)))
    h = h[max(0, int(np.argmax(np.abs(h))) - round(0.0025 * sample_rate)) :]
    info = {"room": dims, "source": source.tolist(), "mic": mic.tolist(), "absorption": absorption}
    info |= {"max_order": order, "t60_measured": round(measured, 4)}
    return (h / np.max(np.abs(h))).astype(np.float32), info


def _shoebox(pra, dims, source, mic, absorption, order, sample_rate) -> np.ndarray:
    threads = pra.constants.get("num_threads")
    pra.constants.set("num_threads", 1)  # the threaded sum of images is not bit-reproducible
    try:
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=order)
        room.add_source(source)
        room.add_microphone(mic)
        room.compute_rir()
    finally:
        pra.constants.set("num_threads", threads)
    return np.asarray(room.rir[0][0], dtype=np.float64)
