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

Relation to librosa: |Y|, |S| and |N| come from `features.stft.stft_magnitude`, bit-identical to
|librosa.stft| in every configuration (padding, short signals and refusals as librosa's), so `decomposed`
equals these definitions applied to librosa's magnitudes bit for bit (tests/features/test_grid.py, every
geometry, pad mode, signal, n and dtype listed there); float16 channels are the float32 ones rounded once,
and a |Y| beyond float16 raises FeatureRangeError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from features.config import MODEL_MASK_PREFIX, ORACLE_IRM, DecomposedConfig, check_decomposed_n
from features.kind import (
    SIGNAL_OF_ROLE,
    FeatureKind,
    MaskFn,
    ModelLayout,
    StoredArray,
    register_kind,
    stft_settings,
)
from features.spectral import (
    MAGNITUDE_OUTPUTS,
    MAGNITUDE_RECONSTRUCTIONS,
    magnitude_target,
    reconstruct_magnitude,
)
from features.stft import as_stored, check_wave, feature_out, stft_magnitude
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
    import torch  # here: only training batches need it, and torch takes seconds to import

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


def decomposed_spectrogram(
    wave_pair: Any, config: DecomposedConfig, out: np.ndarray | None = None
) -> np.ndarray:
    """(frames, n, bins) dense decomposed spectrogram of the noisy wave under the oracle IRM from the clean
    and noise waves, in config.dtype (copied into `out` when given). A `model:<version>` mask is applied
    with `decomposed_from_mask`."""
    if config.mask != ORACLE_IRM:
        raise ConfigError(
            f"Expected mask {ORACLE_IRM!r} to compute decomposed features from waves (a model's mask is "
            f"applied with decomposed_from_mask). Got {config.mask!r} instead."
        )
    noisy, clean, noise = (check_wave(w, config.n_fft, config.center) for w in _three_waves(wave_pair))
    if not noisy.shape == clean.shape == noise.shape:
        raise ConfigError(
            f"Expected noisy, clean and noise waves of the same length. Got {noisy.shape[0]}, "
            f"{clean.shape[0]} and {noise.shape[0]} samples instead."
        )
    mags = [stft_magnitude(w, config) for w in (noisy, clean, noise)]
    dense = decomposed_from_mask(mags[0], oracle_irm(mags[1], mags[2]), config.n)
    if out is not None:
        out = feature_out(out, dense.shape, config.dtype)
    return as_stored(dense, config.dtype, "decomposed", out)


def _into(out: dict[str, np.ndarray], name: str, values: np.ndarray, dtype: Any) -> np.ndarray:
    return as_stored(values, dtype, f"decomposed {name}", out.get(name))  # FeatureRangeError if beyond dtype


class DecomposedKind(FeatureKind):
    """Stores |Y| and the mask level L per bin for `input` (5 bytes per bin instead of 4·n), |S| for
    `target`; expanded to the n dense channels on read and on the device. Masks: the oracle IRM from the
    pair's clean and noise signals, or a first-stage mask model's estimate on |Y| (`model:<version>`),
    handed in by the caller as a function."""

    name = "decomposed"
    config_cls = DecomposedConfig
    description = "Shi et al. 2022 decomposed spectrogram (frames, n, bins) from (noisy, clean, noise) waves"
    corpus_features = False
    outputs = MAGNITUDE_OUTPUTS

    def compute(self, wave: Any, config: Any, out: np.ndarray | None = None) -> np.ndarray:
        return decomposed_spectrogram(wave, config, out)

    def stored(self, config: Any, role: str) -> dict[str, StoredArray]:
        bins, dtype = (config.n_fft // 2 + 1,), np.dtype(config.dtype)
        if role != "input":
            return {role: StoredArray(bins, dtype)}
        return {"input": StoredArray(bins, dtype), "levels": StoredArray(bins, np.dtype(np.uint8))}

    def signals_needed(self, config: Any, roles: tuple[str, ...], mask: MaskFn | None) -> tuple[str, ...]:
        needed = super().signals_needed(config, roles, mask)
        oracle = ("clean", "noise") if "input" in roles and mask is None else ()  # the oracle IRM's
        return tuple(dict.fromkeys((*needed, *oracle)))

    def compute_stored(self, signals, config, role, out=None, mask=None) -> dict[str, np.ndarray]:
        out, dtype = out or {}, np.dtype(config.dtype)
        if role != "input":
            return {role: _into(out, role, stft_magnitude(signals[SIGNAL_OF_ROLE[role]], config), dtype)}
        noisy = stft_magnitude(signals["input"], config)
        if mask is None:
            clean, noise = (stft_magnitude(signals[r], config) for r in ("clean", "noise"))
            values = oracle_irm(clean, noise)
        else:
            values = mask(noisy)
        levels = quantise_mask(values, config.n)
        return {"input": _into(out, "input", noisy, dtype), "levels": _into(out, "levels", levels, np.uint8)}

    def needed_model(self, config: Any) -> str | None:
        return None if config.mask == ORACLE_IRM else config.mask[len(MODEL_MASK_PREFIX) :]

    def mask_layout(self, config: Any) -> ModelLayout | None:
        return ModelLayout(0, config.n_fft // 2 + 1, "magnitude", stft_settings(config))

    def needs_reference(self, config: Any) -> str | None:
        if config.mask == ORACLE_IRM:
            return "its masks are the oracle IRM, computed from the clean signal"
        return None

    def expand(self, stored: dict[str, np.ndarray], config: Any, role: str) -> np.ndarray:
        if role != "input":
            return stored[role]
        return expand_decomposed(stored["input"], stored["levels"], int(self.config(config).n))

    def expand_torch(self, stored: dict[str, Any], config: Any, role: str) -> Any:
        if role != "input":
            return stored[role]
        return expand_decomposed_torch(stored["input"], stored["levels"], int(self.config(config).n))

    def model_layout(self, config: Any) -> ModelLayout:
        return ModelLayout(config.n, config.n_fft // 2 + 1, "magnitude", stft_settings(config))

    def training_target(self, batch: dict, output: str, config: Any) -> tuple[Any, Any]:
        return magnitude_target(batch["input"][:, :, 0], batch["target"], output, self.name)  # channel 0: |Y|

    def reconstructions(self, output: str) -> tuple[str, ...]:
        return MAGNITUDE_RECONSTRUCTIONS

    def reconstruct(self, out, output, noisy, config, reconstruction):
        return reconstruct_magnitude(out, output, noisy, config, reconstruction)


register_kind(DecomposedKind())
