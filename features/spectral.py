"""The STFT kinds, `magnitude` and `complex`, and what every magnitude-domain kind shares: how a mask or a
magnitude estimate is learned and turned back into a waveform (the noisy phase, or Griffin-Lim).

The functions behind them are in `features.stft`; the inverse STFT in `features.invert`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from features.config import ComplexConfig, MagnitudeConfig
from features.invert import griffin_lim, istft
from features.kind import FeatureKind, ModelLayout, register_kind, stft_settings
from features.stft import complex_stft, magnitude, stft_tf
from stores.errors import ConfigError

MAGNITUDE_OUTPUTS = ("mask", "mapping")
MAGNITUDE_RECONSTRUCTIONS = ("noisy-phase", "griffin-lim")
GRIFFIN_LIM_ITERATIONS = 64


def check_output(kind: str, output: str, allowed: tuple[str, ...]) -> None:
    if output not in allowed:
        raise ConfigError(
            f"Expected a model with output {' or '.join(allowed)} for {kind} features. Got {output!r} instead."
        )


def magnitude_target(noisy: Any, clean: Any, output: str, kind: str) -> tuple[Any, Any]:
    """A mask learns |S| through |Y| (signal approximation: mask · |Y| against |S|); a mapping learns |S|."""
    check_output(kind, output, MAGNITUDE_OUTPUTS)
    return (noisy if output == "mask" else None), clean


def magnitude_to_wave(
    magnitude_tf: np.ndarray, noisy_tf: np.ndarray, config: Any, reconstruction: str, length: int
) -> np.ndarray:
    """A waveform of `length` samples from an enhanced magnitude: with the noisy phase, or by Griffin-Lim
    from the magnitude alone (dereverberation, where the noisy phase is the reverberant one's)."""
    if reconstruction == "griffin-lim":
        return griffin_lim(magnitude_tf, config, length, n_iter=GRIFFIN_LIM_ITERATIONS)
    return istft(magnitude_tf * np.exp(1j * np.angle(noisy_tf)), config, length)


def reconstruct_magnitude(
    out: np.ndarray, output: str, noisy: np.ndarray, config: Any, reconstruction: str
) -> tuple[np.ndarray, np.ndarray]:
    """(waveform, enhanced magnitude) from a mask or magnitude estimate (frames, bins) on `noisy`."""
    noisy_tf = stft_tf(noisy, config)
    enhanced = np.abs(noisy_tf) * out if output == "mask" else out
    return magnitude_to_wave(enhanced, noisy_tf, config, reconstruction, noisy.shape[0]), enhanced


class MagnitudeKind(FeatureKind):
    name = "magnitude"
    config_cls = MagnitudeConfig
    description = "|STFT| (frames, bins)"
    outputs = MAGNITUDE_OUTPUTS

    def compute(self, wave: Any, config: Any, out: np.ndarray | None = None) -> np.ndarray:
        return magnitude(wave, config, out)

    def model_layout(self, config: Any) -> ModelLayout:
        return ModelLayout(0, config.n_fft // 2 + 1, "magnitude", stft_settings(config))

    def training_target(self, batch: dict, output: str, config: Any) -> tuple[Any, Any]:
        return magnitude_target(batch["input"], batch["target"], output, self.name)

    def reconstructions(self, output: str) -> tuple[str, ...]:
        return MAGNITUDE_RECONSTRUCTIONS

    def reconstruct(self, out, output, noisy, config, reconstruction):
        return reconstruct_magnitude(out, output, noisy, config, reconstruction)


class ComplexKind(FeatureKind):
    name = "complex"
    config_cls = ComplexConfig
    description = "STFT real and imaginary planes (frames, 2, bins)"
    outputs = ("mapping",)  # a complex estimate of the clean spectrum (DCCRN's masks are its own)
    # Stored raw by default: LZ4 with byte shuffle saves little on full-precision spectra (their low
    # mantissa bytes are noise) for a large share of the features flow's CPU (docs/BENCHMARKS.md).
    default_codec = "none"

    def compute(self, wave: Any, config: Any, out: np.ndarray | None = None) -> np.ndarray:
        return complex_stft(wave, config, out)

    def model_layout(self, config: Any) -> ModelLayout:
        return ModelLayout(2, config.n_fft // 2 + 1, "complex", stft_settings(config))

    def training_target(self, batch: dict, output: str, config: Any) -> tuple[Any, Any]:
        check_output(self.name, output, ("mapping",))  # a complex estimate of the clean spectrum
        return None, batch["target"]

    def reconstructions(self, output: str) -> tuple[str, ...]:
        return ("complex",)

    def reconstruct(self, out, output, noisy, config, reconstruction):
        check_output(self.name, output, ("mapping",))
        return istft(out[:, 0] + 1j * out[:, 1], config, noisy.shape[0]), out


register_kind(MagnitudeKind())
register_kind(ComplexKind())
