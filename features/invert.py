"""Inverting the reassigned spectrogram: phase-gradient heap integration (PGHI) of the phase derivatives that
reassignment carries, then the inverse STFT.

librosa's STFT references each frame's phase to the frame's own first sample: X[m, k] = Σ_n x[s_m + n] w[n]
e^(-2πi k n / N), s_m = m·hop (minus N//2 when centred). With that convention (LTFAT's "time-invariant"
phase) the two derivatives are:

* along time, ∂φ/∂t = 2π f̂ / sr rad per sample, so a hop advances the phase by 2π f̂·hop / sr. There is no
  bin-centre term: a stationary tone advances by its own frequency in every bin it reaches.
* along frequency, ∂φ/∂ω = -d, with d the delay of the bin's energy from the frame start in samples:
  d = (t̂ - t_m)·sr + (N - 1)/2, where t_m is librosa's frame time ((m·hop + N//2)/sr uncentred, m·hop/sr
  centred) and (N - 1)/2 the centre of librosa's time-weighted window t·h. One bin (2π/N rad/sample) changes
  the phase by -2π·d/N.

Both were checked against the true STFT phase of real speech (tests/features/test_invert.py). The group
delay is exact (the DTFT derivative), but librosa's frequency correction uses the cyclic central difference of
the window, which for a window that does not vanish at its ends (hamming: 0.08) is off by up to ~12 Hz for a
tone half a bin from a bin centre, and a hop multiplies that into a phase drift. `debiased_frequencies`
undoes it with the exact map for a stationary tone (monotonic inside the main lobe): on tones and chirps the
per-hop phase error drops ~20-fold; on speech PESQ goes from 2.85 to 2.98 (LibriSpeech 2412-153948-0000).

The heap (Průša, Balazs & Søndergaard, IEEE/ACM TASLP 25(5), 2017) starts at the loudest bin and always
extends the phase from the loudest bin reached so far to its four neighbours (trapezoidal rule), so the
phase is carried through reliable bins; bins below `tol` times the loudest keep phase 0, and a region the
flood cannot reach restarts from its own loudest bin.

What the triple cannot give back: x and -x (and, per region, any constant phase rotation) have the same
reassigned spectrogram, and integration errors accumulate along the heap's paths (n_fft 80 leaves 200 Hz
between bins), so the absolute phase of each stretch of speech is lost. Waveform metrics against the original
therefore score a nearly uncorrelated signal (SNR about -3 dB, SI-SNR far below 0) even where the sound is
right; spectral and perceptual ones (LSD, PESQ, STOI) measure the reconstruction. Measured with the seed config on the 34 real 16 kHz clean files of
../shared/data/real (benchmarks/bench_invert.py; PGHI / zero phase / Griffin-Lim 100 iterations): LSD 4.6 /
13.4 / 6.0 dB, PESQ 2.57 / 1.16 / 1.22, STOI 0.98 / 0.75 / 0.90, SNR after one phase rotation per 20 ms
10.3 / 0.2 / 1.1 dB, SNR -2.5 / -0.2 / -2.8 dB; about 1 s per 10 s of speech.

`istft` is librosa.istft with the config's window, hop and centring, rounded to float32: bit-identical to
it over every geometry, pad mode and signal of tests/features/test_grid.py, where it also inverts the STFT
(within 1e-4 of the signal's peak wherever the squared windows sum to more than 1e-3 of their maximum). A
window and hop that break the nonzero overlap-add condition (NOLA; a hann window with hop = win_length)
are refused with a ConfigError (`check_nola`), where librosa.istft returns samples it could not normalise.

Written here rather than taken from a package: `ltfatpy` ships LTFAT's heapint only as C source without a
Python binding, `pghipy` (2021) estimates the gradients from a Gaussian log-magnitude and cannot take given
ones, and `tifresi` (2020) needs ltfatpy and numba and uses LTFAT's full-length DGT conventions.
"""

from __future__ import annotations

import heapq
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import numpy as np

from features.config import ReassignedConfig
from features.stft import stft_window
from stores.errors import ConfigError

TOL = 1e-4  # bins below TOL × the loudest get phase 0 (speech: 1e-3..1e-5 measured within 0.03 PESQ)
TABLE_POINTS = 1 << 16  # tone offsets over [-π, π) rad/sample in the debiasing map (at least n_fft)


def _check_triple(triple: Any, config: Any) -> np.ndarray:
    """(frames, 3, bins) float64 with finite, non-negative magnitudes; ConfigError otherwise."""
    if not isinstance(config, ReassignedConfig):
        raise ConfigError(f"Expected a ReassignedConfig. Got {type(config).__name__} instead.")
    arr = np.asarray(triple)
    bins = config.n_fft // 2 + 1
    if arr.ndim != 3 or arr.shape[1] != 3 or arr.shape[2] != bins or arr.shape[0] < 1:
        raise ConfigError(
            f"Expected a reassigned triple of shape (frames, 3, {bins}) for n_fft={config.n_fft}. "
            f"Got shape {arr.shape} instead."
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise ConfigError(f"Expected a float reassigned triple. Got dtype {arr.dtype} instead.")
    arr = arr.astype(np.float64)
    mags = arr[:, 2]
    if not (np.isfinite(mags).all() and (mags >= 0).all()):
        raise ConfigError(
            "Expected finite magnitudes >= 0 in plane 2. Got NaN, infinite or negative values instead."
        )
    return arr


def _check_tol(tol: object) -> float:
    if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 <= tol < 1:
        raise ConfigError(f"Expected tol to be a number in [0, 1). Got {tol!r} instead.")
    return float(tol)


def frame_times(frames: int, config: ReassignedConfig) -> np.ndarray:
    """librosa's frame times (s) of the reassigned spectrogram: the frame centres."""
    offset = 0 if config.center else config.n_fft // 2
    return (np.arange(frames) * config.hop_length + offset) / float(config.sample_rate)


@lru_cache(maxsize=16)
def _tone_map(window: str, win_length: int, n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """(measured, true): librosa's frequency correction -Im(S_dh/S_h) (rad/sample) for a complex tone at
    offset `true` from a bin centre, over the increasing stretch around 0 (the main lobe). The sums over
    the window are a zero-padded FFT: Σ w[n]·e^(iδn) = conj(FFT(w))[δ·M/2π] for a real window."""
    w = stft_window(SimpleNamespace(window=window, win_length=win_length, n_fft=n_fft))
    dh = np.gradient(np.pad(w, 1, mode="wrap"), edge_order=1)[1:-1]  # librosa's cyclic derivative
    size = max(TABLE_POINTS, 1 << int(n_fft - 1).bit_length())
    with np.errstate(divide="ignore", invalid="ignore"):
        measured = np.fft.fftshift(np.imag(np.fft.fft(dh, size) / np.fft.fft(w, size)))  # -Im(conj/conj)
    true = np.fft.fftshift(np.fft.fftfreq(size)) * (2 * np.pi)
    centre = size // 2  # true == 0
    rising = np.diff(measured) > 0
    lo = centre - int(np.argmin(rising[:centre][::-1])) if not rising[:centre].all() else 0
    hi = centre + int(np.argmin(rising[centre:])) if not rising[centre:].all() else size - 1
    return measured[lo : hi + 1], true[lo : hi + 1]


def debiased_frequencies(freqs: np.ndarray, config: ReassignedConfig) -> np.ndarray:
    """Reassigned frequencies (Hz, (frames, bins)) with the bias of librosa's discrete window derivative
    removed: inside the main lobe each offset from the bin centre is mapped to the tone offset that gives it
    (exact for a stationary tone); values outside it are kept."""
    measured, true = _tone_map(config.window, config.win_length, config.n_fft)
    sr = float(config.sample_rate)
    centres = np.fft.rfftfreq(config.n_fft, d=1.0 / sr)
    offset = (freqs - centres) * (2 * np.pi / sr)
    inside = (offset > measured[0]) & (offset < measured[-1])
    fixed = np.interp(offset, measured, true)
    return centres + np.where(inside, fixed, offset) * (sr / (2 * np.pi))


def phase_gradients(triple: Any, config: ReassignedConfig) -> tuple[np.ndarray, np.ndarray]:
    """(time, frequency) phase derivatives of the STFT, float64 (frames, bins): radians per hop and radians
    per bin (module docstring). NaN frequencies or times (fill_nan=False) count as the bin centre or frame
    time, as fill_nan=True stores them."""
    arr = _check_triple(triple, config)
    sr, n_fft = float(config.sample_rate), config.n_fft
    centres = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    times = frame_times(arr.shape[0], config)
    freqs = np.where(np.isfinite(arr[:, 0]), arr[:, 0], centres)
    if config.reassign_frequencies:
        freqs = debiased_frequencies(freqs, config)
    delays = np.where(np.isfinite(arr[:, 1]), arr[:, 1], times[:, None]) - times[:, None]
    time_gradient = freqs * (2 * np.pi * config.hop_length / sr)
    frequency_gradient = (delays * sr + (n_fft - 1) / 2.0) * (-2 * np.pi / n_fft)
    return time_gradient, frequency_gradient


def _flood(start: int, bins: int, todo: bytearray, phase: list, neg: list, up: list, right: list) -> None:
    """Heap integration from `start` over the bins still to do (flat index frame·bins + bin): the loudest bin
    reached so far gives its phase to its undone neighbours. `up[i]` is the increment from i to i + bins,
    `right[i]` from i to i + 1."""
    push, pop = heapq.heappush, heapq.heappop
    last = len(todo) - bins
    todo[start] = 0
    heap = [(neg[start], start)]
    while heap:
        i = pop(heap)[1]
        p, k = phase[i], i % bins
        if i < last and todo[i + bins]:
            j = i + bins
            todo[j], phase[j] = 0, p + up[i]
            push(heap, (neg[j], j))
        if i >= bins and todo[i - bins]:
            j = i - bins
            todo[j], phase[j] = 0, p - up[j]
            push(heap, (neg[j], j))
        if k + 1 < bins and todo[i + 1]:
            j = i + 1
            todo[j], phase[j] = 0, p + right[i]
            push(heap, (neg[j], j))
        if k and todo[i - 1]:
            j = i - 1
            todo[j], phase[j] = 0, p - right[j]
            push(heap, (neg[j], j))


def pghi(
    magnitude: np.ndarray, time_gradient: np.ndarray, frequency_gradient: np.ndarray, tol: float = TOL
) -> np.ndarray:
    """Phase (frames, bins) integrated from its derivatives (radians per frame and per bin, same shape as
    `magnitude`) by phase-gradient heap integration; bins below tol·max(magnitude) get phase 0."""
    tol = _check_tol(tol)
    mags = np.asarray(magnitude, dtype=np.float64)
    if mags.ndim != 2 or np.shape(time_gradient) != mags.shape or np.shape(frequency_gradient) != mags.shape:
        raise ConfigError(
            f"Expected a (frames, bins) magnitude and two gradients of its shape. Got {mags.shape}, "
            f"{np.shape(time_gradient)} and {np.shape(frequency_gradient)} instead."
        )
    frames, bins = mags.shape
    flat = mags.ravel()
    peak = float(flat.max()) if flat.size else 0.0
    if not peak > 0:
        return np.zeros(mags.shape)
    tg, fg = np.asarray(time_gradient, np.float64), np.asarray(frequency_gradient, np.float64)
    up = np.zeros(mags.shape)
    up[:-1] = (tg[:-1] + tg[1:]) / 2  # trapezoidal rule between neighbouring frames
    right = np.zeros(mags.shape)
    right[:, :-1] = (fg[:, :-1] + fg[:, 1:]) / 2  # ... and neighbouring bins
    significant = flat >= tol * peak
    starts = np.flatnonzero(significant)
    starts = starts[np.argsort(-flat[starts], kind="stable")]
    todo = bytearray(significant.astype(np.uint8).tobytes())
    phase = [0.0] * flat.size
    args = (bins, todo, phase, (-flat).tolist(), up.ravel().tolist(), right.ravel().tolist())
    for start in starts.tolist():
        if todo[start]:
            _flood(start, *args)
    return np.asarray(phase).reshape(frames, bins)


def reassigned_phase(triple: Any, config: ReassignedConfig, tol: float = TOL) -> np.ndarray:
    """The STFT phase (frames, bins) rebuilt from a reassigned triple by PGHI."""
    time_gradient, frequency_gradient = phase_gradients(triple, config)
    return pghi(np.asarray(triple, dtype=np.float64)[:, 2], time_gradient, frequency_gradient, tol)


@lru_cache(maxsize=64)
def _overlap_add_works(window: str, win_length: int, n_fft: int, hop_length: int) -> bool:
    import scipy.signal  # about a second to import (docs/BENCHMARKS.md "Command start-up"): cached check

    w = stft_window(SimpleNamespace(window=window, win_length=win_length, n_fft=n_fft))
    return bool(scipy.signal.check_NOLA(w, n_fft, n_fft - hop_length))


def check_nola(config: Any) -> None:
    """ConfigError unless the config's window and hop meet the nonzero overlap-add condition (NOLA: the
    squared windows, shifted by every hop, sum to more than 1e-10 at every sample), without which the
    inverse STFT divides by (nearly) zero. librosa.istft does not check: it skips the division there and
    returns those samples unnormalised."""
    if not _overlap_add_works(config.window, config.win_length, config.n_fft, config.hop_length):
        raise ConfigError(
            f"Expected a window and hop whose overlapping squared windows never sum to zero (NOLA), so that "
            f"the inverse STFT can undo them. Got window {config.window!r} of {config.win_length} samples "
            f"with hop_length={config.hop_length} instead: some samples fall only on the window's zeros "
            f"(take a smaller hop)."
        )


def istft(spec: np.ndarray, config: Any, length: int | None = None) -> np.ndarray:
    """float32 waveform = librosa.istft(spec.T, ...) with the config's window, hop and centring; `length`
    samples (None: (frames - 1)·hop + n_fft, less 2·(n_fft//2) when centred). ConfigError where the
    window and hop break NOLA (`check_nola`)."""
    import librosa  # imports numba and compiles its kernels (seconds): only where audio is rebuilt

    check_nola(config)
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 0
    ):
        raise ConfigError(f"Expected length to be None or an integer >= 0. Got {length!r} instead.")
    return librosa.istft(
        np.asarray(spec).T,
        hop_length=config.hop_length,
        win_length=config.win_length,
        n_fft=config.n_fft,
        window=config.window,
        center=config.center,
        length=None if length is None else int(length),
    ).astype(np.float32)


def griffin_lim(magnitude: np.ndarray, config: Any, length: int, n_iter: int = 64) -> np.ndarray:
    """float32 waveform from a time-major magnitude alone: librosa.griffinlim with the config's window, hop
    and centring (random initial phase, seed 0, so reruns are identical). ConfigError where the window and
    hop break NOLA (`check_nola`)."""
    import librosa  # imports numba and compiles its kernels (seconds): only where audio is rebuilt

    check_nola(config)
    return librosa.griffinlim(
        np.asarray(magnitude).T,
        n_iter=n_iter,
        hop_length=config.hop_length,
        win_length=config.win_length,
        n_fft=config.n_fft,
        window=config.window,
        center=config.center,
        length=length,
        random_state=0,
    ).astype(np.float32)


def invert_reassigned(
    triple: Any, config: ReassignedConfig, length: int | None = None, tol: float = TOL
) -> np.ndarray:
    """float32 waveform from a reassigned triple (`features.reassigned`'s (frames, 3, bins)): the magnitude
    plane with the phase rebuilt by PGHI, through librosa.istft. Determined up to sign (module docstring)."""
    arr = _check_triple(triple, config)
    phase = reassigned_phase(arr, config, tol)
    return istft(arr[:, 2] * np.exp(1j * phase), config, length)


def invert_zero_phase(triple: Any, config: ReassignedConfig, length: int | None = None) -> np.ndarray:
    """The trivial baseline: the magnitude plane with zero phase, through librosa.istft."""
    arr = _check_triple(triple, config)
    return istft(arr[:, 2].astype(np.complex128), config, length)
