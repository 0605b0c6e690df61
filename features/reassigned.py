"""The reassigned spectrogram: librosa.reassigned_spectrogram's (frequency, time, magnitude) as planes.

librosa computes three STFTs one after another (window h, its cyclic derivative dh, and the time-weighted
window t·h), each in float64, then corrects the bin frequencies by -Im(S_dh / S_h)·sr/(2π) and the frame
times by Re(S_th / S_h)/sr in float64, with NaN below the power threshold. Here the frames go through that
in blocks of BLOCK_VALUES, with the work split by what each STFT decides:

* S_h decides the magnitude plane and, through `|S_h| < sqrt(ref_power)` and S_h == 0, the NaN positions
  (fill_nan=False) and the filled positions (fill_nan=True). It is computed exactly as librosa.stft
  computes it (float32 samples times the float64 window, numpy's float64 real FFT, rounded to complex64),
  so the magnitudes are librosa's bit for bit and the threshold is the same float32 comparison on the same
  values: those positions are librosa's by construction, not within a tolerance.
* S_dh and S_th only enter the corrections, so they are computed in float32 with scipy.fft (window
  product and FFT about 1.8 times faster than numpy's float64 ones), with sr/(2π) and 1/sr folded into
  their windows and the conjugate taken by the transform itself (ihfft). With v = S_h/|S_h|² (one
  complex-by-real product) the corrections are Im(conj(S_dh')·v) and Re(conj(S_th')·v): one complex
  product for both planes and no division. The threshold is applied to 1/|S_h|²: 0 below it with fill_nan
  (the correction vanishes and the plane holds the bin frequency or frame time exactly), NaN without.
* The float32 FFT's error is absolute, on the scale of the frame, so it matters where |S_h| is small: it
  is at most FFT_ERROR·eps32·max|w|·sqrt(n_fft·Σx²) (Σx² over the frame) divided by |S_h| in the
  correction. Rows holding a bin above the threshold where that could exceed REL_TOL of the plane's scale
  (sr/2; the last frame time), or with |S_h| < TINY (float32 range), or frames loud enough for float32 to
  overflow, are recomputed with the exact path (`_exact_planes`: librosa's operations on librosa's dtypes).
  That is about 1% of the rows for 60 s of speech with the default config. FFT_ERROR = 2 is a margin over
  the largest ratio measured (scipy's pocketfft; clean and noisy speech, n_fft 80 to 1024): 0.83. The
  float32 products after the FFT add relative errors of a few eps, as librosa's own complex64 division
  does.

The relation to librosa, checked over every geometry, pad mode, signal and option listed in
tests/features/test_grid.py: shapes, refusals and padding as librosa's (features.stft); the magnitude
plane and the NaN (and filled) positions bit-identical; infinities where float32(librosa) has them (a
correction beyond float32 with ref_power 0); frequencies and times NOT bit-identical (on VoiceBank speech
with the default config 26 % of the frequency and 22 % of the time cells differ from float32(librosa)),
but within REL_TOL (3e-5) of their plane's scale, sr/2 for frequencies and the last frame time (at least
half a window) for times, by the bound above: the grid's worst was 2.9e-6 and 3.9e-6 of those scales.
Magnitudes beyond float32 (samples near float32's limit) raise FeatureRangeError where librosa returns
inf. (The config's clip defaults to False, librosa's to True: compare with the same value.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from features.config import ReassignedConfig
from features.kind import FeatureKind, ModelLayout, register_kind, stft_settings
from features.stft import (
    check_fits,
    checked_wave,
    feature_bound,
    feature_out,
    frames,
    overflow_limit,
    stft_window,
)
from stores.scratch import work_buffers

PLANES = ("frequency", "time", "magnitude")  # plane order of the (frames, 3, bins) output

# Values per block (frames × n_fft): 2 MiB of float64 frames, about one utterance at the defaults. The
# features flow runs two shard threads, and each numpy call of a block takes and gives back the GIL: at
# 2**18 a block makes 4x fewer calls than at 2**16 (cache-sized, once the fastest), and 15 min of VoiceBank
# speech, utterance by utterance, took 0.80 s against 0.92 s on two threads, 1.05 s against 1.20 s on one
# (work buffers kept per thread; benchmarks/bench_feature_threads.py, median of 5).
BLOCK_VALUES = 1 << 18
FFT_ERROR = 2.0  # bound on |float32 FFT error| / (eps32 · max|w| · sqrt(n_fft · Σx²)); measured max 0.83
REL_TOL = 3e-5  # fast-path error allowed, relative to sr/2 (frequency) or the last frame time (time)
TINY = 1e-15  # |S_h| below this (and above the threshold): float32 range or CLAMP matter; exact path
CLAMP = np.float32(2.0**-126)  # added to |S_h|² (fill_nan): 1/|S_h|² finite where S_h == 0; exact above
HUGE_L1 = 1e18  # Σ|x|·max|w| above this: float32 products may overflow; exact path
EPS32 = float(np.finfo(np.float32).eps)


def _window_times(n_fft: int) -> np.ndarray:
    """Sample offsets from the window centre, as librosa's time reassignment weights the window."""
    half = n_fft // 2
    return np.arange(-half, half + 1) if n_fft % 2 else np.arange(0.5 - half, half)


def _missing(values: np.ndarray, low: np.ndarray | None, fill: np.ndarray | None) -> np.ndarray:
    """librosa's clean-up in one pass: NaN where the power is below the threshold (`low`), then, with
    fill_nan, every NaN (those and the 0/0 of silent bins) replaced by the bin frequency or frame time."""
    missing = np.isnan(values)
    if low is not None:
        missing |= low
    return np.where(missing, np.nan if fill is None else fill, values)


def _exact_planes(
    framed: np.ndarray,
    windows: np.ndarray,
    bin_freqs: np.ndarray,
    frame_times: np.ndarray,
    config: ReassignedConfig,
    n_samples: int,
) -> np.ndarray:
    """(len(framed), 3, bins) float32 as librosa computes them, operation for operation: `framed` (float32
    frames) under the float64 `windows` rows [h, dh?, th?], then librosa's corrections and clean-up in
    float64. `frame_times` are those of the given frames."""
    spectra = np.fft.rfft(windows[:, None, :] * framed[None], axis=-1).astype(np.complex64)
    s_h = spectra[0]
    mags = np.abs(s_h)
    sr, ref_p = config.sample_rate, config.ref_power
    # As librosa: a Python float against float32 magnitudes compares in float32. Magnitudes are never NaN
    # here (the input is checked finite), so librosa's `where=~isnan(mags)` selects every bin.
    low = mags < ref_p**0.5 if ref_p > 0 else None
    out = np.empty((len(framed), 3, s_h.shape[-1]), dtype=np.float32)
    if config.reassign_frequencies:
        with np.errstate(divide="ignore", invalid="ignore"):
            correction = -np.imag(spectra[1] / s_h)  # float32; NaN/inf where S_h == 0
        freqs = bin_freqs[None, :] + correction * (0.5 * sr / np.pi)  # float64, as librosa
        freqs = _missing(freqs, low, bin_freqs[None, :] if config.fill_nan else None)
        if config.clip:
            np.clip(freqs, 0, sr / 2.0, out=freqs)
        out[:, 0] = freqs
    else:
        out[:, 0] = bin_freqs[None, :]
    if config.reassign_times:
        with np.errstate(divide="ignore", invalid="ignore"):
            correction = np.real(spectra[-1] / s_h)
        times = frame_times[:, None] + correction / sr
        times = _missing(times, low, frame_times[:, None] if config.fill_nan else None)
        if config.clip:
            np.clip(times, 0, n_samples / float(sr), out=times)
        out[:, 1] = times
    else:
        out[:, 1] = frame_times[:, None]
    out[:, 2] = mags
    return out


def _frame_l1(signal: np.ndarray, n_fft: int, hop: int, count: int) -> np.ndarray:
    """float64 (frames,): an upper bound on Σ|x| over each frame of `signal` (the framed 1-D float32
    signal): sqrt(n_fft · Σx²) (Cauchy-Schwarz), with Σx² summed over the hop-sized chunks that cover the
    frame (frame f starts at chunk f and spans ceil(n_fft / hop) chunks) plus a slack for the rounding of
    the cumulative sum."""
    span = -(-n_fft // hop)
    whole = min(signal.shape[0] // hop, count - 1 + span)
    energy = np.zeros(count + span)  # energy[0] = 0, energy[1 + j] = chunk j's Σx²
    chunks = signal[: whole * hop].reshape(whole, hop)
    with np.errstate(over="ignore"):
        sums = np.einsum("ij,ij->i", chunks, chunks)  # float32 sums: relative error < hop·eps32
    if not np.isfinite(sums).all():  # samples beyond 1e19: float64
        sums = np.einsum("ij,ij->i", chunks, chunks, dtype=np.float64)
    energy[1 : whole + 1] = sums
    tail = signal[whole * hop : (count - 1 + span) * hop].astype(np.float64)
    if tail.size:
        energy[whole + 1] = np.sum(tail * tail)
    np.cumsum(energy, out=energy)
    # float32 chunk sums, then differences of float64 partial sums (each within count·eps64 of the total)
    frame_energy = (energy[span:] - energy[:count]) * (1.001 + 2 * hop * EPS32)
    frame_energy += energy[-1] * (4 * count * float(np.finfo(np.float64).eps))
    return np.sqrt(n_fft * frame_energy)


def _block_buffers(step: int, n_fft: int, scaled: int) -> tuple[np.ndarray, ...]:
    """`_fast_planes`' work buffers for blocks of `step` frames (kept per thread by `work_buffers`:
    allocated per signal they come from mmap and cost page faults every time)."""
    bins = n_fft // 2 + 1
    return (
        np.empty((step, n_fft)),
        np.empty((step, bins), dtype=np.complex128),
        np.empty((scaled, step, n_fft), dtype=np.float32),
        np.empty((step, bins), dtype=np.complex64),
        np.empty((3, step, bins), dtype=np.float32),  # planes of one block, copied into `out` at once
        np.empty((step, bins), dtype=np.float32),
        np.empty((step, bins), dtype=bool),
    )


def _inverse_power(mags: np.ndarray, threshold, fill_nan: bool, r: np.ndarray, flag: np.ndarray) -> None:
    """r = 1/|S_h|², and below the threshold 0 (fill_nan: the correction vanishes) or NaN (so does the
    plane)."""
    np.multiply(mags, mags, out=r)
    if threshold is None:
        np.reciprocal(r, out=r)
    elif fill_nan:
        np.add(r, CLAMP, out=r)  # > 0 where S_h == 0; changes no |S_h|² above TINY²
        np.greater_equal(mags, threshold, out=flag)
        np.divide(flag, r, out=r)
    else:
        np.reciprocal(r, out=r)
        np.less(mags, threshold, out=flag)
        np.copyto(r, np.float32(np.nan), where=flag)


def _clip_planes(planes: np.ndarray, config: ReassignedConfig, n_samples: int) -> None:
    """librosa's clip: frequencies into [0, sr/2], times into [0, the signal's duration]."""
    sr = config.sample_rate
    if config.reassign_frequencies:
        np.clip(planes[0], 0, sr / 2.0, out=planes[0])
    if config.reassign_times:
        np.clip(planes[1], 0, n_samples / float(sr), out=planes[1])


def _fast_planes(
    framed: np.ndarray,
    window: np.ndarray,
    scaled: np.ndarray,
    bin_freqs: np.ndarray,
    frame_times: np.ndarray,
    config: ReassignedConfig,
    n_samples: int,
    out: np.ndarray,
) -> np.ndarray:
    """`out` (frames, 3, bins) float32: exact S_h (magnitudes, threshold), float32 corrections from the
    `scaled` float32 windows [dh·sr/(2π)?, th/sr?], in blocks of BLOCK_VALUES."""
    import scipy.fft  # with scipy.special, a third of a second that readers never need

    count, n_fft = framed.shape
    ref_p = config.ref_power
    freqs_on, times_on = config.reassign_frequencies, config.reassign_times
    threshold = ref_p**0.5 if ref_p > 0 else None
    bf32 = bin_freqs.astype(np.float32)
    ft32 = frame_times.astype(np.float32)
    step = max(1, BLOCK_VALUES // n_fft)
    key = ("reassigned", step, n_fft, len(scaled))
    with work_buffers(key, lambda: _block_buffers(*key[1:])) as buffers:
        buf64, spec64, buf32, s_h, work, inv, flags = buffers
        if not freqs_on:
            work[0] = bf32
        for start in range(0, count, step):
            stop = min(start + step, count)
            size = stop - start
            x64, spec, x32, sh, planes = (
                buf64[:size],
                spec64[:size],
                buf32[:, :size],
                s_h[:size],
                work[:, :size],
            )
            r, flag, mags = inv[:size], flags[:size], planes[2]
            # S_h as librosa.stft: float32 samples times the float64 window, float64 FFT, rounded to complex64
            np.multiply(framed[start:stop], window, out=x64)
            np.fft.rfft(x64, axis=-1, out=spec)
            np.copyto(sh, spec, casting="same_kind")
            # conj(S_w) of the scaled windows in float32
            np.multiply(framed[None, start:stop], scaled[:, None, :], out=x32)
            conj = scipy.fft.ihfft(x32, axis=-1, norm="forward")  # conj(rfft(x32)), complex64 (k, size, bins)
            np.abs(sh, out=mags)
            _inverse_power(mags, threshold, config.fill_nan, r, flag)
            # v = S_h/|S_h|², then conj(S_w)·v: its imaginary part is -Im(S_dh/S_h)·sr/(2π) for the scaled dh,
            # its real part Re(S_th/S_h)/sr for the scaled th
            np.multiply(sh, r, out=sh)
            np.multiply(conj, sh[None], out=conj)
            if freqs_on:
                np.add(conj[0].imag, bf32, out=planes[0])
            if times_on:
                np.add(conj[-1].real, ft32[start:stop, None], out=planes[1])
            else:
                planes[1] = ft32[start:stop, None]
            if config.clip:
                _clip_planes(planes, config, n_samples)
            np.copyto(out[start:stop], planes.transpose(1, 0, 2))
    return out


def _rows_to_redo(
    out: np.ndarray,
    framed: np.ndarray,
    window: np.ndarray,
    scaled: np.ndarray,
    tolerance: list[float],
    config: ReassignedConfig,
) -> np.ndarray:
    """Frames the fast path may have got wrong, for the exact path. With L = sqrt(n_fft·Σx²) ≥ Σ|x| over
    the frame, a bin's correction error is below FFT_ERROR·eps32·max|w|·L / |S_h| (S_h is exact), so rows
    holding a bin above the threshold with |S_h| < FFT_ERROR·eps32·max|w|·L / tolerance (the worst of the
    scaled windows) could exceed the allowance; also |S_h| < TINY (float32 range, CLAMP) and
    L·max|w| > HUGE_L1 (float32 overflow)."""
    count, n_fft = framed.shape
    hop = config.hop_length
    signal = np.lib.stride_tricks.as_strided(  # the 1-D signal the frames view
        framed, shape=((count - 1) * hop + n_fft,), strides=(framed.strides[1],), writeable=False
    )
    l1 = _frame_l1(signal, n_fft, hop, count)
    worst = max(float(np.abs(w).max()) / tol for w, tol in zip(scaled, tolerance, strict=True))
    limits = np.clip(l1 * (FFT_ERROR * EPS32 * worst), TINY, 1e30).astype(np.float32)
    loud = ~(l1 * max(float(np.abs(scaled).max()), float(np.abs(window).max())) <= HUGE_L1)
    threshold = config.ref_power**0.5 if config.ref_power > 0 else None
    checked = np.flatnonzero(limits > (0.0 if threshold is None else threshold))
    mags = out[checked, 2]
    suspect = mags < limits[checked, None]
    if threshold is not None:
        suspect &= ~(mags < threshold)  # above the threshold, as compared in the fast path
    return np.union1d(checked[suspect.any(axis=1)], np.flatnonzero(loud))


def reassigned_spectrogram(wave: Any, config: ReassignedConfig, out: np.ndarray | None = None) -> np.ndarray:
    """(frames, 3, n_fft // 2 + 1) float32: planes [reassigned frequency (Hz), reassigned time (s), magnitude],
    equal to the transposed `librosa.reassigned_spectrogram(y=wave, sr=sample_rate, n_fft=..., hop_length=...,
    win_length=..., window=..., center=..., reassign_frequencies=..., reassign_times=..., ref_power=...,
    fill_nan=..., clip=..., pad_mode=...)`: the magnitudes and the NaN (or filled) positions exactly, the
    frequencies and times within REL_TOL of the plane's scale (module docstring). Written into `out` when
    given."""
    y, peak = checked_wave(wave, config.n_fft, config.center)
    sr, n_fft = config.sample_rate, config.n_fft
    framed = frames(y, config)  # float32 (frames, n_fft) view of the (padded) signal
    out = feature_out(out, (framed.shape[0], 3, n_fft // 2 + 1), np.float32)
    # librosa.fft_frequencies / frames_to_time / util.cyclic_gradient, written out: touching librosa's
    # modules imports numba and compiles its kernels (seconds in every fresh worker process)
    bin_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)  # float64 (bins,)
    offset = 0 if config.center else n_fft // 2
    frame_times = (np.arange(framed.shape[0]) * config.hop_length + offset).astype(int) / float(sr)
    window = stft_window(config)
    rows = [window]  # float64 windows of the exact path: h, dh?, th?
    scaled = []  # float32 windows of the fast path: dh·sr/(2π)?, th/sr?
    tolerance = []  # per scaled window: its plane's error allowance
    if config.reassign_frequencies:
        rows.append(np.gradient(np.pad(window, 1, mode="wrap"), edge_order=1)[1:-1])  # cyclic derivative
        scaled.append(rows[-1] * (0.5 * sr / np.pi))
        tolerance.append(REL_TOL * sr / 2.0)
    if config.reassign_times:
        rows.append(window * _window_times(n_fft))
        scaled.append(rows[-1] / sr)
        tolerance.append(REL_TOL * max(float(np.abs(frame_times).max()), n_fft / (2.0 * sr)))
    scaled32 = np.stack(scaled).astype(np.float32)

    # float32 overflow, 0/0 and 1/0 in rows that are then redone exactly
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        _fast_planes(framed, window, scaled32, bin_freqs, frame_times, config, y.shape[-1], out)
    redo = _rows_to_redo(out, framed, window, scaled32, tolerance, config)
    if redo.size:
        # float32(librosa) is inf where librosa's value is beyond float32: magnitudes are refused below,
        # frequencies and times (a 1/|S_h| correction with ref_power 0) are kept as librosa rounds them
        with np.errstate(over="ignore"):
            out[redo] = _exact_planes(
                framed[redo], np.stack(rows), bin_freqs, frame_times[redo], config, y.shape[-1]
            )
    # magnitudes beyond float32 (inf in librosa's complex64 too) only from samples near float32's limit
    limit = overflow_limit(np.float32, feature_bound(peak, config))
    check_fits(out[:, 2], limit, np.float32, "reassigned magnitude")
    return out


class ReassignedKind(FeatureKind):
    """Three planes per bin. A model learns a waveform from them (the inverter); no model output on them can
    be turned back into audio by the kind itself (they hold no phase to give it)."""

    name = "reassigned"
    config_cls = ReassignedConfig
    description = "reassigned frequency (Hz), reassigned time (s) and magnitude planes (frames, 3, bins)"

    def compute(self, wave: Any, config: Any, out: np.ndarray | None = None) -> np.ndarray:
        return reassigned_spectrogram(wave, config, out)

    def model_layout(self, config: Any) -> ModelLayout:
        return ModelLayout(3, config.n_fft // 2 + 1, "reassigned", stft_settings(config))


register_kind(ReassignedKind())
