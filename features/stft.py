"""STFT magnitude and complex planes, time-major, equal to librosa.stft.

Two ways to the same STFT, both framing the float32 signal as a strided view of the whole padded signal
(for the pad modes allowed, that equals librosa's separate head and tail padding):

- `stft_blocks` / `stft_tf` compute it the way librosa does: frames times the float64 window, numpy's
  float64 real FFT, rounded to complex64. Each frame sees librosa's arithmetic, so the result is
  bit-identical to `librosa.stft(wave.astype(np.float32), ...)` (the tests check this). The reassigned
  spectrogram (whose NaN positions are decided by exact zeros) and the decomposed masks (thresholds) use it.
- `float32_stft_blocks` (the `magnitude` and `complex` features) stays in float32: float32 window and
  scipy's float32 real FFT (numpy's float32 FFT was 10x slower on these shapes). It is 1.8-1.9x faster than
  librosa (half the bytes through the multiply and the FFT, no complex128 -> complex64 pass;
  `benchmarks/bench_features.py`) and differs from it by about 1e-7 of the plane's maximum on real
  speech, far inside the 1e-4 the features promise.

Input is always taken as float32 (the store's audio): a float64 wave is rounded first.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal

from features.config import ComplexConfig, MagnitudeConfig, register_feature
from stores.errors import ConfigError
from stores.scratch import work_buffers

# Values per FFT call: the float64 windowed frames of one call stay at 1 MiB (cache-sized; measured fastest
# among 2**14..2**20 on 60 s of speech), bounding memory for long recordings.
BLOCK_VALUES = 1 << 17

# stft_blocks' float64 frames, complex128 and complex64 spectra (~2.5 MB at the defaults) come from this
# thread's `work_buffers`: fresh memory of that size comes from mmap and costs page faults on every signal
# (on the test VM 2/3 of a magnitude computation's time was system time; reusing them took the magnitudes
# of 58 min of speech, signal by signal, from 2.3 s to 0.8 s).


def check_wave(wave: Any, n_fft: int) -> np.ndarray:
    """A 1-D finite real waveform of at least n_fft samples, as float32; ConfigError otherwise."""
    arr = np.asarray(wave)
    if arr.dtype != np.float32:  # the store's audio is float32 already: skip the (slow) dtype checks
        arr = _as_float32(arr)
    if arr.ndim != 1:
        raise ConfigError(f"Expected a 1-D waveform (samples,). Got an array of shape {arr.shape} instead.")
    if arr.shape[0] < n_fft:
        raise ConfigError(
            f"Expected a waveform of at least n_fft={n_fft} samples. Got {arr.shape[0]} samples instead."
        )
    # a float64 sum of float32 values cannot overflow, so it is finite exactly when every sample is: one
    # pass without the boolean copy (which was 9 % of a magnitude computation)
    if not np.isfinite(np.add.reduce(arr, dtype=np.float64)):
        finite = np.isfinite(arr)
        raise ConfigError(
            f"Expected a finite waveform. Got {int(arr.size - finite.sum())} NaN or infinite samples instead."
        )
    return arr


def _as_float32(arr: np.ndarray) -> np.ndarray:
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ConfigError(
            f"Expected a real waveform (float or integer samples). Got dtype {arr.dtype} instead."
        )
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf, reported after
        return arr.astype(np.float32)


def stft_window(config: Any) -> np.ndarray:
    """librosa's analysis window: `get_window(window, win_length, fftbins=True)` centred in n_fft (float64).

    Built with scipy directly, exactly as `librosa.filters.get_window` + `librosa.util.pad_center` build it
    for a window name: touching `librosa.filters` imports numba and compiles its kernels, 2-4 s in every
    fresh worker process (measured in the features flow). Read-only, built once per (window, lengths):
    scipy takes about 0.3 ms, and a feature shard asks for it per signal."""
    return _window(config.window, config.win_length, config.n_fft)


@functools.lru_cache(maxsize=64)
def _window(name: str, win_length: int, n_fft: int) -> np.ndarray:
    window = scipy.signal.get_window(name, win_length, fftbins=True)
    left = (n_fft - window.shape[0]) // 2
    window = np.pad(window, (left, n_fft - window.shape[0] - left))
    window.flags.writeable = False
    return window


@functools.lru_cache(maxsize=64)
def _window32(name: str, win_length: int, n_fft: int) -> np.ndarray:
    window = _window(name, win_length, n_fft).astype(np.float32)
    window.flags.writeable = False
    return window


def n_frames(n_samples: int, config: Any) -> int:
    padded = n_samples + (2 * (config.n_fft // 2) if config.center else 0)
    return 1 + (padded - config.n_fft) // config.hop_length


def frames(wave: np.ndarray, config: Any) -> np.ndarray:
    """Read-only strided view (frames, n_fft) of the (padded, if centred) float32 signal.

    Built with the ndarray constructor rather than `np.pad` + `sliding_window_view` (90 us of Python per
    signal against 13 us), and zero padding written directly: a feature shard frames every signal, and
    this Python time holds the GIL the other shard thread computes with."""
    n_fft = config.n_fft
    if config.center:
        wave = _padded(wave, n_fft // 2, config.pad_mode)
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    count = 1 + (wave.shape[0] - n_fft) // config.hop_length
    view = np.ndarray((count, n_fft), np.float32, wave, 0, (config.hop_length * 4, 4))
    view.flags.writeable = False
    return view


def _padded(wave: np.ndarray, half: int, mode: str) -> np.ndarray:
    if mode != "constant":
        return np.pad(wave, (half, half), mode=mode)
    padded = np.empty(wave.shape[0] + 2 * half, dtype=np.float32)
    padded[:half] = 0
    padded[half : half + wave.shape[0]] = wave
    padded[half + wave.shape[0] :] = 0
    return padded


def _block_rows(count: int, n_fft: int, planes: int = 1) -> int:
    return max(1, min(count, BLOCK_VALUES // (n_fft * planes)))


def stft_blocks(wave: np.ndarray, config: Any, windows: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(start, complex64 (len(windows), size, bins)) blocks of the STFT of `wave` under each window (rows of
    float64 n_fft), frames start..start+size, in order, in librosa's arithmetic (bit-identical). The block's
    buffer is reused: use it before the next.

    `wave` must already have passed `check_wave`."""
    framed = frames(wave, config)
    count, n_fft = framed.shape
    step = _block_rows(count, n_fft, windows.shape[0])
    key = (windows.shape[0], _block_rows(1 << 30, n_fft, windows.shape[0]), n_fft)  # the full-size buffers
    with work_buffers(("float64", *key), lambda: _float64_buffers(*key)) as (x64, spec, block):
        for start in range(0, count, step):
            size = min(step, count - start)
            np.multiply(windows[:, None, :], framed[None, start : start + size], out=x64[:, :size])
            np.fft.rfft(x64[:, :size], axis=-1, out=spec[:, :size])
            np.copyto(block[:, :size], spec[:, :size], casting="same_kind")  # librosa's complex64 rounding
            yield start, block[:, :size]


def float32_stft_blocks(wave: np.ndarray, config: Any) -> Iterator[tuple[int, np.ndarray]]:
    """(start, complex64 (size, bins)) blocks of the STFT of `wave` under the config's window, computed in
    float32 (within ~2e-7 of librosa relative to the plane's maximum, not bit-identical). Each block is a
    new array.

    `wave` must already have passed `check_wave`."""
    framed = frames(wave, config)
    count, n_fft = framed.shape
    step = _block_rows(count, n_fft)
    window = _window32(config.window, config.win_length, n_fft)
    rows = _block_rows(1 << 30, n_fft)  # the full-size buffer
    with work_buffers(("float32", rows, n_fft), lambda: np.empty((rows, n_fft), np.float32)) as x32:
        for start in range(0, count, step):
            size = min(step, count - start)
            np.multiply(window, framed[start : start + size], out=x32[:size])
            # scipy, not numpy: numpy's float32 rfft took 1.8 ms for a 190 x 512 block, scipy's 0.18 ms
            yield start, scipy.fft.rfft(x32[:size], axis=-1, overwrite_x=True)


def _float64_buffers(planes: int, rows: int, n_fft: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x64 = np.empty((planes, rows, n_fft))
    spec = np.empty((planes, rows, n_fft // 2 + 1), dtype=np.complex128)
    return x64, spec, np.empty(spec.shape, dtype=np.complex64)


def stft_batch(wave: np.ndarray, config: Any, windows: np.ndarray) -> np.ndarray:
    """complex64 (len(windows), frames, bins): the STFT of `wave` under each window (rows of float64 n_fft).

    `wave` must already have passed `check_wave`.
    """
    out = np.empty((windows.shape[0], n_frames(wave.shape[0], config), config.n_fft // 2 + 1), np.complex64)
    for start, block in stft_blocks(wave, config, windows):
        out[:, start : start + block.shape[1]] = block
    return out


def stft_tf(wave: Any, config: Any) -> np.ndarray:
    """complex64 (frames, bins) = librosa.stft(...).T"""
    y = check_wave(wave, config.n_fft)
    return stft_batch(y, config, stft_window(config)[None])[0]


def feature_out(out: np.ndarray | None, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """`out` checked to be a writable array of `shape` and `dtype`, or a new one."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if out.shape != shape or out.dtype != np.dtype(dtype) or not out.flags.writeable:
        raise ConfigError(
            f"Expected out to be a writable {np.dtype(dtype)} array of shape {shape}. Got "
            f"{out.dtype} {out.shape} instead."
        )
    return out


def magnitude(wave: Any, config: MagnitudeConfig, out: np.ndarray | None = None) -> np.ndarray:
    """(frames, n_fft // 2 + 1) = |librosa.stft(wave, n_fft, hop_length, win_length, window, center,
    pad_mode)|.T in config.dtype (written into `out` when given), computed in float32 (see the module note)."""
    y = check_wave(wave, config.n_fft)
    out = feature_out(out, (n_frames(y.shape[0], config), config.n_fft // 2 + 1), config.dtype)
    for start, block in float32_stft_blocks(y, config):
        np.abs(block, out=out[start : start + block.shape[0]], casting="same_kind")  # float16: rounded once
    return out


def stft_magnitude(
    wave: Any, config: Any, out: np.ndarray | None = None, dtype: Any = np.float32
) -> np.ndarray:
    """|stft_tf(wave, config)| in `dtype` (librosa's arithmetic, bit-identical; computed in float32 as
    librosa, then rounded once), into `out` when given."""
    y = check_wave(wave, config.n_fft)
    out = feature_out(out, (n_frames(y.shape[0], config), config.n_fft // 2 + 1), dtype)
    for start, block in stft_blocks(y, config, stft_window(config)[None]):
        # |complex64| in float32 as librosa, then (float16) rounded once
        np.abs(block[0], out=out[start : start + block.shape[1]], casting="same_kind")
    return out


def complex_stft(wave: Any, config: ComplexConfig, out: np.ndarray | None = None) -> np.ndarray:
    """(frames, 2, n_fft // 2 + 1): the real and imaginary planes of librosa.stft(...).T in config.dtype
    (written into `out` when given), computed in float32 (see the module note)."""
    y = check_wave(wave, config.n_fft)
    bins = config.n_fft // 2 + 1
    out = feature_out(out, (n_frames(y.shape[0], config), 2, bins), config.dtype)
    for start, block in float32_stft_blocks(y, config):
        size = block.shape[0]
        # (size, bins) complex64 read as (size, bins, [re, im]) float32: both planes in one strided copy
        planes = block.view(np.float32).reshape(size, bins, 2).transpose(0, 2, 1)
        np.copyto(out[start : start + size], planes, casting="same_kind")
    return out


register_feature("magnitude", MagnitudeConfig, magnitude, "|STFT| (frames, bins)")
# Stored raw by default: LZ4 + byte shuffle saves only 8.6 % of a complex plane's bytes (the low mantissa
# bytes of full-precision spectra are noise) for ~40 % of the features flow's CPU, and reads decode at
# 2.9 GB/s against a copy's 7 (benchmarks/bench_features_flow.py, docs/BENCHMARKS.md). `--codec lz4` still
# compresses.
register_feature(
    "complex",
    ComplexConfig,
    complex_stft,
    "STFT real and imaginary planes (frames, 2, bins)",
    default_codec="none",
)
