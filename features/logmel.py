"""`logmel`: log-mel band energies in dB, and the ideal band gain enhancers learn on them.

The feature equals `librosa.power_to_db(librosa.feature.melspectrogram(y, sr, n_fft, hop_length,
win_length, window, center, pad_mode, power=2.0, n_mels, fmin, fmax), ref=1.0, amin=1e-10, top_db=None).T`
(librosa's default Slaney mel scale and area normalisation): the STFT is librosa's own arithmetic
(`features.stft.stft_magnitude`, bit-identical), then the power, the filterbank product and the dB in
float32 as librosa does them, so the values agree to rounding: within 2e-3 dB over every geometry, pad mode,
signal and option of tests/features/test_grid.py (worst seen 1.5e-5 dB), framing, padding, shapes and
refusals as librosa's (features.stft).

A model learns, per band, the ideal band gain sqrt(min(1, clean band power / noisy band power)) (as
RNNoise-style enhancers do): from the stored input (noisy) and target (clean) dB values, g =
sqrt(min(1, 10^((T - I) / 10))). Its estimate is spread over the STFT bins with the filterbank (each bin takes
the bands covering it, weighted by their filter values) and applied to the noisy STFT.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.config import StftConfig
from features.kind import FeatureKind, ModelLayout, register_kind, stft_settings
from features.spectral import MAGNITUDE_RECONSTRUCTIONS, check_output, magnitude_to_wave
from features.stft import check_wave, feature_out, n_frames, stft_magnitude, stft_tf
from stores.config import parse_positive_int
from stores.errors import ConfigError

AMIN = 1e-10  # power floor of the dB conversion (librosa's default amin)


@dataclass(frozen=True)
class LogMelConfig(StftConfig):
    """Log-mel band energies in dB: (frames, n_mels). Defaults: 64 bands over a 512-point STFT at 16 kHz."""

    kind: str = "logmel"
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = None  # None -> sample_rate / 2

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_positive_int(self.n_mels, "n_mels")
        top = self.sample_rate / 2 if self.fmax is None else self.fmax
        if not (isinstance(self.fmin, int | float) and isinstance(top, int | float)):
            raise ConfigError(
                f"Expected numbers for fmin and fmax. Got {self.fmin!r} and {self.fmax!r} instead."
            )
        if not (
            math.isfinite(self.fmin) and math.isfinite(top) and 0 <= self.fmin < top <= self.sample_rate / 2
        ):
            raise ConfigError(
                f"Expected 0 <= fmin < fmax <= sample_rate / 2 ({self.sample_rate / 2:g}). Got fmin={self.fmin} "
                f"and fmax={self.fmax} instead."
            )


@functools.lru_cache(maxsize=16)
def mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """librosa's (n_mels, bins) float32 filterbank, read-only. Imported here, not at the top: librosa's
    filters module imports numba, which takes seconds in every fresh process, and only this kind needs it."""
    import librosa.filters  # numba: seconds in every fresh process, and only this kind needs it

    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    basis.flags.writeable = False
    return basis


def _basis(config: LogMelConfig) -> np.ndarray:
    return mel_basis(config.sample_rate, config.n_fft, config.n_mels, float(config.fmin), config.fmax)


def log_mel(wave: Any, config: LogMelConfig, out: np.ndarray | None = None) -> np.ndarray:
    """(frames, n_mels) log-mel energies in dB in config.dtype, written into `out` when given."""
    y = check_wave(wave, config.n_fft, config.center)
    out = feature_out(out, (n_frames(y.shape[0], config), config.n_mels), config.dtype)
    power = np.square(stft_magnitude(y, config))  # float32 |X|², as librosa's abs(stft) ** 2
    bands = power @ _basis(config).T  # float32, as librosa's einsum over the float32 basis
    np.copyto(out, 10.0 * np.log10(np.maximum(np.float32(AMIN), bands)), casting="same_kind")
    return out


@functools.lru_cache(maxsize=16)
def _spread(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """(n_mels, bins): each bin's weights over the bands covering it (columns sum to 1); a bin no band
    covers (below fmin, above fmax, the edges) takes the band whose centre is nearest."""
    basis = mel_basis(sample_rate, n_fft, n_mels, fmin, fmax).astype(np.float64)
    cover = basis.sum(axis=0)
    weights = np.divide(basis, cover, out=np.zeros_like(basis), where=cover > 0)
    centres = (basis * np.arange(basis.shape[1])).sum(axis=1) / np.maximum(basis.sum(axis=1), 1e-30)
    for k in np.flatnonzero(cover <= 0):
        weights[np.argmin(np.abs(centres - k)), k] = 1.0
    weights.flags.writeable = False
    return weights


def band_gains_to_bins(gains: np.ndarray, config: LogMelConfig) -> np.ndarray:
    """(frames, n_mels) band gains -> (frames, bins) STFT-bin gains."""
    weights = _spread(config.sample_rate, config.n_fft, config.n_mels, float(config.fmin), config.fmax)
    return np.asarray(gains, dtype=np.float64) @ weights


class LogMelKind(FeatureKind):
    name = "logmel"
    config_cls = LogMelConfig
    description = "log-mel band energies in dB (frames, n_mels)"
    outputs = ("mask",)  # the ideal band gain

    def compute(self, wave: Any, config: Any, out: np.ndarray | None = None) -> np.ndarray:
        return log_mel(wave, config, out)

    def model_layout(self, config: Any) -> ModelLayout:
        return ModelLayout(0, config.n_mels, "log-power", stft_settings(config))

    def training_target(self, batch: dict, output: str, config: Any) -> tuple[Any, Any]:
        check_output(self.name, output, ("mask",))  # the ideal band gain is a mask per band
        import torch  # here: training batches are torch tensors, and torch takes seconds to import

        ratio = torch.pow(10.0, (batch["target"] - batch["input"]) / 10.0)
        return None, torch.sqrt(torch.clamp(ratio, max=1.0))

    def reconstructions(self, output: str) -> tuple[str, ...]:
        return MAGNITUDE_RECONSTRUCTIONS

    def reconstruct(self, out, output, noisy, config, reconstruction):
        check_output(self.name, output, ("mask",))
        noisy_tf = stft_tf(noisy, config)
        enhanced = np.abs(noisy_tf) * band_gains_to_bins(out, config)
        return magnitude_to_wave(enhanced, noisy_tf, config, reconstruction, noisy.shape[0]), enhanced


register_kind(LogMelKind())
