"""The reassigned spectrogram: librosa.reassigned_spectrogram's (frequency, time, magnitude) as planes.

librosa computes three STFTs one after another (window h, its cyclic derivative dh, and the time-weighted
window t·h), each in 256 KiB blocks, then corrects the bin frequencies by -Im(S_dh / S_h)·sr/(2π) and the
frame times by Re(S_th / S_h)/sr. Here the three windows share one framing of the signal and one batched FFT
(`features.stft.stft_batch`, bit-identical to librosa.stft), and the corrections, the power threshold and
the NaN handling repeat librosa's operations on the same dtypes. The NaN positions (fill_nan=False) and the
filled values (fill_nan=True) are therefore librosa's exactly; the values differ only by the final rounding
of librosa's float64 frequency and time planes to float32.
"""

from __future__ import annotations

from typing import Any

import librosa
import numpy as np

from features.config import ReassignedConfig, register_feature
from features.stft import check_wave, stft_batch, stft_window

PLANES = ("frequency", "time", "magnitude")  # plane order of the (frames, 3, bins) output


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


def reassigned(wave: Any, config: ReassignedConfig) -> np.ndarray:
    """(frames, 3, n_fft // 2 + 1) float32: planes [reassigned frequency (Hz), reassigned time (s), magnitude],
    equal to the transposed `librosa.reassigned_spectrogram(y=wave, sr=sample_rate, n_fft=..., hop_length=...,
    win_length=..., window=..., center=..., reassign_frequencies=..., reassign_times=..., ref_power=...,
    fill_nan=..., clip=..., pad_mode=...)`."""
    y = check_wave(wave, config.n_fft)
    sr, n_fft = config.sample_rate, config.n_fft
    window = stft_window(config)
    rows = [window]
    if config.reassign_frequencies:
        rows.append(librosa.util.cyclic_gradient(window))  # periodic window: cyclic derivative
    if config.reassign_times:
        rows.append(window * _window_times(n_fft))
    spectra = stft_batch(y, config, np.stack(rows))
    s_h = spectra[0]
    count, bins = s_h.shape
    mags = np.abs(s_h)

    bin_freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)  # float64 (bins,)
    frame_times = librosa.frames_to_time(
        np.arange(count), sr=sr, hop_length=config.hop_length, n_fft=None if config.center else n_fft
    )  # float64 (frames,)
    ref_p = config.ref_power
    # As librosa: a Python float against float32 magnitudes compares in float32. Magnitudes are never NaN
    # here (the input is checked finite), so librosa's `where=~isnan(mags)` selects every bin.
    low = mags < ref_p**0.5

    out = np.empty((count, 3, bins), dtype=np.float32)
    if config.reassign_frequencies:
        with np.errstate(divide="ignore", invalid="ignore"):
            correction = -np.imag(spectra[1] / s_h)  # float32; NaN/inf where S_h == 0
        freqs = bin_freqs[None, :] + correction * (0.5 * sr / np.pi)  # float64, as librosa
        freqs = _missing(freqs, low if ref_p > 0 else None, bin_freqs[None, :] if config.fill_nan else None)
        if config.clip:
            np.clip(freqs, 0, sr / 2.0, out=freqs)
        out[:, 0] = freqs
    else:
        out[:, 0] = bin_freqs[None, :]
    if config.reassign_times:
        with np.errstate(divide="ignore", invalid="ignore"):
            correction = np.real(spectra[-1] / s_h)
        times = frame_times[:, None] + correction / sr
        times = _missing(times, low if ref_p > 0 else None, frame_times[:, None] if config.fill_nan else None)
        if config.clip:
            np.clip(times, 0, y.shape[-1] / float(sr), out=times)
        out[:, 1] = times
    else:
        out[:, 1] = frame_times[:, None]
    out[:, 2] = mags
    return out


register_feature(
    "reassigned",
    ReassignedConfig,
    reassigned,
    "reassigned frequency (Hz), reassigned time (s) and magnitude planes (frames, 3, bins)",
)
