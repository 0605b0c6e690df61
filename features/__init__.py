"""Pure feature functions `(wave, config) -> array` (time-major: frames first), their configs, and the
feature kinds that say what each one means to the store and to models (`features.kind`).

Importing the package registers every kind: magnitude and complex (`spectral`), reassigned, decomposed,
logmel. `features.invert` turns spectrograms back into waveforms (inverse STFT, Griffin-Lim, and the
phase-gradient heap integration of a reassigned triple).
"""

from features import decomposed, logmel, reassigned, spectral  # noqa: F401  (register the kinds)
from features.config import (
    FEATURES,
    PRESETS,
    ComplexConfig,
    DecomposedConfig,
    FeatureConfig,
    MagnitudeConfig,
    ReassignedConfig,
    compute_feature,
    config_from_dict,
    feature_config,
    get_preset,
)
from features.decomposed import (
    decomposed_from_mask,
    decomposed_spectrogram,
    expand_decomposed,
    expand_decomposed_torch,
    oracle_irm,
    quantise_mask,
    thresholds,
)
from features.invert import invert_reassigned, invert_zero_phase, pghi, phase_gradients, reassigned_phase
from features.kind import FeatureKind, ModelLayout, StoredArray, get_kind
from features.reassigned import reassigned_spectrogram
from features.stft import check_wave, complex_stft, magnitude, stft_tf

__all__ = [
    "FEATURES",
    "PRESETS",
    "ComplexConfig",
    "DecomposedConfig",
    "FeatureConfig",
    "FeatureKind",
    "MagnitudeConfig",
    "ModelLayout",
    "ReassignedConfig",
    "StoredArray",
    "check_wave",
    "complex_stft",
    "compute_feature",
    "config_from_dict",
    "decomposed_from_mask",
    "decomposed_spectrogram",
    "expand_decomposed",
    "expand_decomposed_torch",
    "feature_config",
    "get_kind",
    "get_preset",
    "invert_reassigned",
    "invert_zero_phase",
    "magnitude",
    "oracle_irm",
    "phase_gradients",
    "pghi",
    "quantise_mask",
    "reassigned_phase",
    "reassigned_spectrogram",
    "stft_tf",
    "thresholds",
]
