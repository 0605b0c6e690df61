"""Pure feature functions `(wave, config) -> array` (time-major: frames first) and their configs.

Importing the package registers every kind in `FEATURES`: magnitude, complex, reassigned, decomposed.
`features.invert` turns a reassigned triple back into a waveform (phase-gradient heap integration).
The functions `features.reassigned` and `features.decomposed` share their modules' names and shadow them as
package attributes; import module-level names with `from features.reassigned import PLANES`.
"""

from features.config import (
    FEATURES,
    PRESETS,
    ComplexConfig,
    DecomposedConfig,
    FeatureConfig,
    FeatureKind,
    MagnitudeConfig,
    ReassignedConfig,
    compute_feature,
    config_from_dict,
    feature_config,
    get_feature,
    get_preset,
)
from features.decomposed import (
    decomposed,
    decomposed_from_mask,
    expand_decomposed,
    expand_decomposed_torch,
    oracle_irm,
    quantise_mask,
    thresholds,
)
from features.invert import invert_reassigned, invert_zero_phase, pghi, phase_gradients, reassigned_phase
from features.reassigned import reassigned
from features.stft import check_wave, complex_stft, magnitude, stft_tf

__all__ = [
    "FEATURES",
    "PRESETS",
    "ComplexConfig",
    "DecomposedConfig",
    "FeatureConfig",
    "FeatureKind",
    "MagnitudeConfig",
    "ReassignedConfig",
    "check_wave",
    "complex_stft",
    "compute_feature",
    "config_from_dict",
    "decomposed",
    "decomposed_from_mask",
    "expand_decomposed",
    "expand_decomposed_torch",
    "feature_config",
    "get_feature",
    "get_preset",
    "invert_reassigned",
    "invert_zero_phase",
    "magnitude",
    "oracle_irm",
    "phase_gradients",
    "pghi",
    "quantise_mask",
    "reassigned",
    "reassigned_phase",
    "stft_tf",
    "thresholds",
]
