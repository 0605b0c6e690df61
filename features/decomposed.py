"""Decomposed spectrograms (Shi et al., Interspeech 2022) and their compact storage form.

From a mask M (a first-stage model's estimate or the oracle ideal ratio mask) and the noisy magnitude |Y|:
channel 0 = |Y| and channel i = 1[M > i/n]·|Y| for i = 1..n-1, so (frames, n, bins).

Storage form. The thresholds t_i = i/n increase strictly with i (as float64 too: neighbours differ by 1/n,
far above rounding), so if M > t_j then M > t_i for every i < j: the set {i : M > t_i} is always a prefix
{1, ..., L} of {1, ..., n-1}. Hence 1[M > t_i] = 1[i <= L] with the level L = #{i in 1..n-1 : M > t_i},
and the dense channels are rebuilt exactly from |Y| (float32) plus L (uint8, n <= 256): 5 bytes per
time-frequency cell instead of 4·n (24x smaller for n = 30). `quantise_mask` computes L, `expand_decomposed`
(numpy) and `expand_decomposed_torch` (on any device) rebuild the channels.

Comparisons are made in float64 against t_i = i / n (numpy's correctly rounded division); a float32 or
float16 mask is widened exactly before comparing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from features.config import ORACLE_IRM, DecomposedConfig, check_decomposed_n, register_feature
from features.stft import check_wave, feature_out, stft_magnitude
from stores.errors import ConfigError


def thresholds(n: int) -> np.ndarray:
    """float64 t_i = i / n for i = 1..n-1."""
    n = check_decomposed_n(n)
    return np.arange(1, n, dtype=np.float64) / n


def _check_mask(mask: Any) -> np.ndarray:
    arr = np.asarray(mask)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ConfigError(f"Expected a floating-point mask. Got dtype {arr.dtype} instead.")
    if not np.isfinite(arr).all():
        raise ConfigError("Expected a finite mask. Got NaN or infinite values instead.")
    return arr


def _check_same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ConfigError(f"Expected {what} of the same shape. Got {a.shape} and {b.shape} instead.")


def decomposed_from_mask(magnitude_tf: np.ndarray, mask_tf: np.ndarray, n: int) -> np.ndarray:
    """(..., frames, n, bins): channel 0 = |Y|, channel i = 1[M > i/n]·|Y| (i = 1..n-1), |Y|'s dtype.

    `magnitude_tf` and `mask_tf` are time-major (..., frames, bins) of the same shape."""
    t = thresholds(n)
    mag = np.asarray(magnitude_tf)
    mask = _check_mask(mask_tf)
    _check_same_shape(mag, mask, "magnitude and mask")
    on = mask[..., None, :].astype(np.float64) > t[:, None]  # (..., frames, n-1, bins)
    out = np.empty(mag.shape[:-1] + (n,) + mag.shape[-1:], dtype=mag.dtype)
    out[..., 0, :] = mag
    out[..., 1:, :] = np.where(on, mag[..., None, :], mag.dtype.type(0))
    return out


def quantise_mask(mask: np.ndarray, n: int) -> np.ndarray:
    """uint8 level L = #{i in 1..n-1 : M > i/n}, same shape as the mask; channel i is on iff i <= L."""
    t = thresholds(n)
    arr = _check_mask(mask)
    # searchsorted(side="left") = number of thresholds strictly below M = number of i with M > t_i
    return np.searchsorted(t, arr.astype(np.float64), side="left").astype(np.uint8)


def _check_levels(levels: Any, n: int) -> np.ndarray:
    arr = np.asarray(levels)
    if arr.dtype != np.uint8:
        raise ConfigError(f"Expected uint8 levels (from quantise_mask). Got dtype {arr.dtype} instead.")
    if arr.size and int(arr.max()) > n - 1:
        raise ConfigError(f"Expected levels from 0 to n-1={n - 1}. Got a level of {int(arr.max())} instead.")
    return arr


def expand_decomposed(magnitude: np.ndarray, levels: np.ndarray, n: int) -> np.ndarray:
    """The dense (..., frames, n, bins) channels from |Y| and uint8 levels: exactly decomposed_from_mask."""
    n = check_decomposed_n(n)
    mag = np.asarray(magnitude)
    lev = _check_levels(levels, n)
    _check_same_shape(mag, lev, "magnitude and levels")
    index = np.arange(1, n, dtype=np.uint8)[:, None]  # (n-1, 1)
    on = index <= lev[..., None, :]  # (..., frames, n-1, bins)
    out = np.empty(mag.shape[:-1] + (n,) + mag.shape[-1:], dtype=mag.dtype)
    out[..., 0, :] = mag
    out[..., 1:, :] = np.where(on, mag[..., None, :], mag.dtype.type(0))
    return out


def expand_decomposed_torch(mag: Any, levels: Any, n: int) -> Any:
    """torch: the dense (..., frames, n, bins) channels on mag's device, from mag (..., frames, bins) and
    uint8 levels of the same shape (moved to mag's device). Equals `expand_decomposed`."""
    import torch

    n = check_decomposed_n(n)
    if levels.dtype != torch.uint8:
        raise ConfigError(f"Expected uint8 levels (from quantise_mask). Got dtype {levels.dtype} instead.")
    if tuple(mag.shape) != tuple(levels.shape):
        raise ConfigError(
            f"Expected magnitude and levels of the same shape. Got {tuple(mag.shape)} and "
            f"{tuple(levels.shape)} instead."
        )
    levels = levels.to(mag.device)
    index = torch.arange(1, n, device=mag.device, dtype=torch.uint8)[:, None]
    on = index <= levels.unsqueeze(-2)  # (..., frames, n-1, bins)
    gated = torch.where(on, mag.unsqueeze(-2), torch.zeros((), dtype=mag.dtype, device=mag.device))
    return torch.cat([mag.unsqueeze(-2), gated], dim=-2)


def oracle_irm(clean_mag: np.ndarray, noise_mag: np.ndarray) -> np.ndarray:
    """float32 ideal ratio mask sqrt(S² / (S² + N²)), in [0, 1].

    Where S = N = 0 the ratio is 0/0; it is defined as 0: there is no speech energy to keep, the noisy
    magnitude it gates is (near) zero there anyway, and 0 gives level 0 (every channel off) instead of NaN.
    Computed in float64 so that squares cannot overflow or underflow for float32 magnitudes."""
    s = np.asarray(clean_mag, dtype=np.float64)
    noise = np.asarray(noise_mag, dtype=np.float64)
    _check_same_shape(s, noise, "clean and noise magnitudes")
    if not (np.isfinite(s).all() and np.isfinite(noise).all()):
        raise ConfigError("Expected finite clean and noise magnitudes. Got NaN or infinite values instead.")
    s2 = s * s
    total = s2 + noise * noise
    ratio = np.divide(s2, total, out=np.zeros_like(total), where=total > 0)
    return np.sqrt(ratio).astype(np.float32)


def _three_waves(wave_pair: Any) -> tuple[Any, Any, Any]:
    if isinstance(wave_pair, np.ndarray) and wave_pair.ndim == 2 and wave_pair.shape[0] == 3:
        return wave_pair[0], wave_pair[1], wave_pair[2]
    if isinstance(wave_pair, Sequence) and not isinstance(wave_pair, str) and len(wave_pair) == 3:
        return wave_pair[0], wave_pair[1], wave_pair[2]
    shape = getattr(wave_pair, "shape", None)
    raise ConfigError(
        f"Expected (noisy, clean, noise) waves: three 1-D arrays or one (3, samples) array. "
        f"Got {type(wave_pair).__name__}{'' if shape is None else f' of shape {shape}'} instead."
    )


def decomposed(wave_pair: Any, config: DecomposedConfig, out: np.ndarray | None = None) -> np.ndarray:
    """(frames, n, bins) dense decomposed spectrogram of the noisy wave under the oracle IRM from the clean
    and noise waves, in config.dtype (copied into `out` when given). A `model:<version>` mask is applied
    with `decomposed_from_mask`."""
    if config.mask != ORACLE_IRM:
        raise ConfigError(
            f"Expected mask {ORACLE_IRM!r} to compute decomposed features from waves (a model's mask is "
            f"applied with decomposed_from_mask). Got {config.mask!r} instead."
        )
    noisy, clean, noise = (check_wave(w, config.n_fft) for w in _three_waves(wave_pair))
    if not noisy.shape == clean.shape == noise.shape:
        raise ConfigError(
            f"Expected noisy, clean and noise waves of the same length. Got {noisy.shape[0]}, "
            f"{clean.shape[0]} and {noise.shape[0]} samples instead."
        )
    mags = [stft_magnitude(w, config) for w in (noisy, clean, noise)]
    dense = decomposed_from_mask(mags[0], oracle_irm(mags[1], mags[2]), config.n)
    if out is None:
        return dense.astype(config.dtype, copy=False)
    np.copyto(feature_out(out, dense.shape, config.dtype), dense, casting="same_kind")
    return out


register_feature(
    "decomposed",
    DecomposedConfig,
    decomposed,
    "Shi et al. 2022 decomposed spectrogram (frames, n, bins) from (noisy, clean, noise) waves",
)
