"""STFT magnitude and complex planes, time-major, as librosa.stft computes them.

Both ways to the STFT below frame the float32 signal as a strided view of one padded signal, padded with
what librosa's frames see: librosa pads the whole signal only when the frames touching the head and the tail
padding overlap, and otherwise a head and a tail segment separately, which for `reflect` is not always the
whole signal's padding (`_librosa_padded`). The relation to librosa, checked over every geometry, pad mode,
signal and option listed in tests/features/test_grid.py (`make test-grid` for all of them):

- `stft_blocks` / `stft_tf` / `stft_magnitude` compute it the way librosa does: frames times the float64
  window, numpy's float64 real FFT, rounded to complex64. Bit-identical to `librosa.stft(wave.astype(
  np.float32), ...)`, every configuration. The reassigned spectrogram (whose NaN positions are decided by
  exact zeros) and the decomposed masks (thresholds) use it.
- `float32_stft_blocks` (the `magnitude` and `complex` features) stays in float32: float32 window and
  scipy's float32 real FFT (numpy's float32 FFT was 10x slower on these shapes), faster than librosa
  (`benchmarks/bench_features.py`, docs/BENCHMARKS.md). Not bit-identical: every value is within
  STFT_TOLERANCE (1e-5) of librosa's, relative to the largest |STFT| value of the signal (the grid's worst
  was 7e-7). Shapes are librosa's.

Input, as librosa takes it: a 1-D real floating-point wave, finite; integer PCM is refused (its full scale
is not known: divide int16 by 32768 first). It is taken as float32 (the store's audio): a float64 wave is
rounded first, so the features equal librosa's of `wave.astype(np.float32)`, and float64 samples beyond
float32's range are refused as such. A centred wave of at least one sample is framed as librosa frames it
(shorter than n_fft included); an uncentred one needs n_fft samples (librosa refuses it too); an empty one is
refused (librosa frames it only with constant padding and an even n_fft).

Store dtypes: float16 features are the float32 values rounded once. Values that would be inf there (|v| >=
65520) raise FeatureRangeError naming the kind, the frames and the largest value, as does an STFT beyond
float32 itself; values below float16's range round to 0 (under 2^-25, about 3e-8) or keep fewer significant
bits (under 2^-14), as float16 rounding does. The check costs nothing when peak |x|·Σ|w|, a bound on every
|STFT| value, shows that nothing can overflow.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

from features.config import ComplexConfig, MagnitudeConfig
from stores.errors import ConfigError, FeatureRangeError
from stores.scratch import work_buffers

# Values per FFT call: the float64 windowed frames of one call stay at 1 MiB (cache-sized; measured fastest
# among 2**14..2**20 on 60 s of speech), bounding memory for long recordings.
BLOCK_VALUES = 1 << 17
STFT_TOLERANCE = 1e-5  # float32 path: max |error| against librosa / max |librosa STFT| (module docstring)
FLOAT32_MAX = float(np.finfo(np.float32).max)
# float32 values of this size or more round to inf in float16: its largest value, 65504, plus half its last
# place (32), rounded to nearest even
FLOAT16_OVERFLOW = 65520.0

# stft_blocks' float64 frames, complex128 and complex64 spectra (~2.5 MB at the defaults) come from this
# thread's `work_buffers`: fresh memory of that size comes from mmap and costs page faults on every signal
# (on the test VM 2/3 of a magnitude computation's time was system time; reusing them took the magnitudes
# of 58 min of speech, signal by signal, from 2.3 s to 0.8 s).


def check_wave(wave: Any, n_fft: int, center: bool = False) -> np.ndarray:
    """A 1-D finite real floating-point waveform as float32, long enough for librosa to frame it: at least
    n_fft samples uncentred, at least one sample centred (librosa pads it to a frame); ConfigError
    otherwise."""
    return checked_wave(wave, n_fft, center)[0]


def checked_wave(wave: Any, n_fft: int, center: bool) -> tuple[np.ndarray, float]:
    """`check_wave`'s float32 waveform and its peak |x|, which bounds every |STFT| value by peak·Σ|w|."""
    arr = np.asarray(wave)
    original = arr
    if arr.dtype != np.float32:  # the store's audio is float32 already: skip the (slow) dtype checks
        arr = _as_float32(arr)
    if arr.ndim != 1:
        raise ConfigError(f"Expected a 1-D waveform (samples,). Got an array of shape {arr.shape} instead.")
    shortest = 1 if center else n_fft
    if arr.shape[0] < shortest:
        raise ConfigError(
            f"Expected a waveform of at least {shortest} sample{'s' if shortest > 1 else ''} "
            f"({'centred' if center else f'uncentred, n_fft={n_fft}'}). Got {arr.shape[0]} samples instead."
        )
    # max and min propagate NaN and inf: one vectorised pass each, no boolean copy (which was 9 % of a
    # magnitude computation), and the peak bounds the features for the range checks
    peak = max(float(arr.max()), -float(arr.min()))
    if not np.isfinite(peak):
        raise ConfigError(_not_finite(original, arr))
    return arr, peak


def _as_float32(arr: np.ndarray) -> np.ndarray:
    # As librosa (util.valid_audio): integer PCM has no agreed full scale here (int16 / 32768? / 32767?),
    # and taking its counts as amplitudes silently gives features 30000 times too large.
    if not np.issubdtype(arr.dtype, np.floating):
        raise ConfigError(
            f"Expected a real floating-point waveform, as librosa requires (scale integer PCM to [-1, 1] "
            f"first, e.g. int16 samples / 32768). Got dtype {arr.dtype} instead."
        )
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf, reported after
        return arr.astype(np.float32)


def _not_finite(original: np.ndarray, arr: np.ndarray) -> str:
    """What is wrong with a waveform whose float32 copy `arr` holds NaN or inf: NaN or infinite samples
    in `original`, or finite ones beyond float32's range (float64 input)."""
    finite = np.isfinite(original)
    if not finite.all():
        bad = int(original.size - finite.sum())
        return f"Expected a finite waveform. Got {bad} NaN or infinite samples instead."
    beyond = np.isinf(arr)
    return (
        f"Expected samples within float32's range (|x| <= {FLOAT32_MAX:.4g}): features are computed from "
        f"float32 audio. Got {int(beyond.sum())} {original.dtype} samples out of float32 range (largest "
        f"|x| {float(np.abs(original[beyond]).max()):.4g}) instead."
    )


def overflow_limit(dtype: Any, bound: float) -> float | None:
    """The |value| from which float32 features do not fit `dtype` (float16: those that round to inf;
    float32: inf itself, an overflow while computing), or None when `bound`, an upper bound on every
    |value|, shows that none can reach it."""
    limit = FLOAT16_OVERFLOW if np.dtype(dtype) == np.float16 else np.inf
    return None if bound * (1 + 1e-3) < min(limit, FLOAT32_MAX) else limit


def check_fits(values: np.ndarray, limit: float | None, dtype: Any, what: str, first_frame: int = 0) -> None:
    """FeatureRangeError when the float32 feature frames `values` (frames first, starting at `first_frame`)
    hold a value of `limit` (from `overflow_limit`) or more, which `dtype` would store as inf."""
    if limit is None or not values.size:
        return
    peak = max(float(values.max()), -float(values.min()))
    if peak < limit:
        return
    over = ~(np.abs(values.reshape(values.shape[0], -1)) < limit)  # NaN too: inf - inf in the FFT
    frames = np.flatnonzero(over.any(axis=1)) + first_frame
    largest = f"largest |v| {peak:.4g}" if np.isfinite(peak) else "float32 overflowed computing them"
    remedy = "scale the audio down" if np.isinf(limit) else "store float32, or scale the audio to [-1, 1]"
    raise FeatureRangeError(
        f"Expected {what} values that fit {np.dtype(dtype)} (|v| <= {float(np.finfo(dtype).max):.6g}). Got "
        f"{int(over.sum())} values beyond it in frames {frames[0]}-{frames[-1]} ({largest}) instead: {remedy}."
    )


def as_stored(values: np.ndarray, dtype: Any, what: str, out: np.ndarray | None = None) -> np.ndarray:
    """Feature frames `values` in `dtype` (copied into `out` when given); FeatureRangeError when `dtype` is
    a narrower float that would hold some of them as inf."""
    target = np.dtype(dtype)
    if values.dtype.kind == "f" and target.kind == "f" and target.itemsize < values.dtype.itemsize:
        check_fits(values, overflow_limit(target, np.inf), target, what)
    if out is None:
        return values.astype(target, copy=False)
    np.copyto(out, values, casting="same_kind")
    return out


def feature_bound(peak: float, config: Any) -> float:
    """An upper bound on every |STFT| value of a waveform whose peak |x| is `peak`: peak·Σ|w|."""
    return peak * _window_l1(config.window, config.win_length, config.n_fft)


def stft_window(config: Any) -> np.ndarray:
    """librosa's analysis window: `get_window(window, win_length, fftbins=True)` centred in n_fft (float64).

    Built with scipy directly, exactly as `librosa.filters.get_window` + `librosa.util.pad_center` build it
    for a window name: touching `librosa.filters` imports numba and compiles its kernels, 2-4 s in every
    fresh worker process (measured in the features flow). Read-only, built once per (window, lengths):
    scipy takes about 0.3 ms, and a feature shard asks for it per signal."""
    return _window(config.window, config.win_length, config.n_fft)


@functools.lru_cache(maxsize=64)
def _window(name: str, win_length: int, n_fft: int) -> np.ndarray:
    import scipy.signal  # about a second to import (docs/BENCHMARKS.md "Command start-up"): once per window

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


@functools.lru_cache(maxsize=64)
def _window_l1(name: str, win_length: int, n_fft: int) -> float:
    return float(np.abs(_window(name, win_length, n_fft)).sum())


def n_frames(n_samples: int, config: Any) -> int:
    padded = n_samples + (2 * (config.n_fft // 2) if config.center else 0)
    return 1 + (padded - config.n_fft) // config.hop_length


def frames(wave: np.ndarray, config: Any) -> np.ndarray:
    """Read-only strided view (frames, n_fft) of the (padded, if centred) float32 signal.

    Built with the ndarray constructor rather than `np.pad` + `sliding_window_view` (90 us of Python per
    signal against 13 us), and zero padding written directly: a feature shard frames every signal, and
    this Python time holds the GIL the other shard thread computes with."""
    n_fft, hop = config.n_fft, config.hop_length
    if config.center:
        wave = _padded(wave, n_fft, hop, config.pad_mode)
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    count = 1 + (wave.shape[0] - n_fft) // hop
    view = np.ndarray((count, n_fft), np.float32, wave, 0, (hop * 4, 4))
    view.flags.writeable = False
    return view


def _padded(wave: np.ndarray, n_fft: int, hop: int, mode: str) -> np.ndarray:
    """The centred signal, padded by n_fft // 2 on each side with what librosa.stft's frames see."""
    half = n_fft // 2
    if mode != "constant":
        return _librosa_padded(wave, n_fft, hop, mode)
    padded = np.empty(wave.shape[0] + 2 * half, dtype=np.float32)
    padded[:half] = 0
    padded[half : half + wave.shape[0]] = wave
    padded[half + wave.shape[0] :] = 0
    return padded


def _librosa_padded(wave: np.ndarray, n_fft: int, hop: int, mode: str) -> np.ndarray:
    """librosa.stft's padding as one signal. librosa pads the whole signal only when the frames that touch
    the head and the tail padding overlap; otherwise it pads a head segment and a tail segment separately,
    and `np.pad` of a segment is not always `np.pad` of the whole signal: a reflect-padded tail segment of
    exactly n_fft // 2 samples is reflected twice (its last padded sample is the segment's second, not the
    sample before the segment). The head segment always holds more than n_fft // 2 samples, so its
    padding equals the whole signal's; the tail's is taken from its own segment, as librosa does."""
    half, length = n_fft // 2, wave.shape[0]
    if half == 0:
        return wave
    head_frames = -(-half // hop)  # frames that start in the head padding
    tail_frame = (length + half - n_fft) // hop + 1  # the first frame that reaches the tail padding
    if tail_frame <= head_frames:
        return np.pad(wave, half, mode=mode)
    head = np.pad(wave[: half + 1], (half, 0), mode=mode)[:half]
    segment = wave[tail_frame * hop - half :]
    if segment.shape[0] + half < n_fft:  # no frame reaches the tail padding (librosa pads nothing)
        return np.concatenate([head, wave, np.zeros(half, np.float32)])
    tail = np.pad(segment, (0, half), mode=mode)[-half:]
    return np.concatenate([head, wave, tail])


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
    import scipy.fft  # with scipy.special, a third of a second that readers never need

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
    y = check_wave(wave, config.n_fft, config.center)
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


def _magnitudes(blocks: Iterator[tuple[int, np.ndarray]], out: np.ndarray, limit: float | None) -> np.ndarray:
    """|block| of each (start, complex64 (size, bins)) block into `out`'s frames, in float32 then rounded
    once to `out`'s dtype; checked against `limit` first when the input's bound left one."""
    for start, block in blocks:
        rows = out[start : start + block.shape[0]]
        if limit is None:
            np.abs(block, out=rows, casting="same_kind")
        else:
            values = np.abs(block)
            check_fits(values, limit, out.dtype, "magnitude", start)
            np.copyto(rows, values, casting="same_kind")
    return out


def magnitude(wave: Any, config: MagnitudeConfig, out: np.ndarray | None = None) -> np.ndarray:
    """(frames, n_fft // 2 + 1) = |librosa.stft(wave, n_fft, hop_length, win_length, window, center,
    pad_mode)|.T in config.dtype (written into `out` when given), computed in float32 (see the module note).
    FeatureRangeError when a value does not fit config.dtype."""
    y, peak = checked_wave(wave, config.n_fft, config.center)
    out = feature_out(out, (n_frames(y.shape[0], config), config.n_fft // 2 + 1), config.dtype)
    limit = overflow_limit(config.dtype, feature_bound(peak, config))
    return _magnitudes(float32_stft_blocks(y, config), out, limit)


def stft_magnitude(
    wave: Any, config: Any, out: np.ndarray | None = None, dtype: Any = np.float32
) -> np.ndarray:
    """|stft_tf(wave, config)| in `dtype` (librosa's arithmetic, bit-identical; computed in float32 as
    librosa, then rounded once), into `out` when given. FeatureRangeError when a value does not fit
    `dtype`."""
    y, peak = checked_wave(wave, config.n_fft, config.center)
    out = feature_out(out, (n_frames(y.shape[0], config), config.n_fft // 2 + 1), dtype)
    limit = overflow_limit(dtype, feature_bound(peak, config))
    blocks = ((start, block[0]) for start, block in stft_blocks(y, config, stft_window(config)[None]))
    return _magnitudes(blocks, out, limit)


def complex_stft(wave: Any, config: ComplexConfig, out: np.ndarray | None = None) -> np.ndarray:
    """(frames, 2, n_fft // 2 + 1): the real and imaginary planes of librosa.stft(...).T in config.dtype
    (written into `out` when given), computed in float32 (see the module note). FeatureRangeError when a
    value does not fit config.dtype."""
    y, peak = checked_wave(wave, config.n_fft, config.center)
    bins = config.n_fft // 2 + 1
    out = feature_out(out, (n_frames(y.shape[0], config), 2, bins), config.dtype)
    limit = overflow_limit(config.dtype, feature_bound(peak, config))
    for start, block in float32_stft_blocks(y, config):
        size = block.shape[0]
        # (size, bins) complex64 read as (size, bins, [re, im]) float32: both planes in one strided copy
        planes = block.view(np.float32).reshape(size, bins, 2).transpose(0, 2, 1)
        check_fits(planes, limit, config.dtype, "complex", start)
        np.copyto(out[start : start + size], planes, casting="same_kind")
    return out
