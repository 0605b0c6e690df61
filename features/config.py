"""Feature configs, the feature registry and the dispatch from a config to its function.

A config's fields are librosa's parameter names (`n_fft`, `hop_length`, `win_length`, `window`, `center`,
`pad_mode`, `fill_nan`, `clip`, ...) plus `kind`, so that `config_json` reads like the reference call it
must equal. `win_length=None` is resolved to `n_fft` on construction: two configs that compute the same
thing have the same `to_dict` and the same hash.

Each kind module (`stft`, `reassigned`, `decomposed`, `logmel`) registers its `FeatureKind` (`features.kind`)
when imported; importing anything from `features` imports them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.kind import check_config, get_kind
from stores.config import Config, is_safe_name, parse_choice, parse_positive_int
from stores.errors import ConfigError, NotFoundError
from stores.layouts import FEATURE_KINDS

FEATURES = FEATURE_KINDS  # the kinds registered by the modules of this package

DTYPES = ("float32", "float16")
# np.pad modes librosa.stft accepts for centred frames (it refuses wrap, maximum, mean, median, minimum).
# librosa pads a head and a tail segment separately when their frames do not overlap, which for reflect is
# not always the whole signal's padding: features.stft pads as librosa does (`_librosa_padded`).
PAD_MODES = ("constant", "edge", "reflect", "symmetric")
ORACLE_IRM = "oracle-irm"
MODEL_MASK_PREFIX = "model:"
MAX_DECOMPOSED_N = 256  # levels are stored as uint8: L <= n - 1 <= 255


def _parse_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"Expected {what} to be true or false. Got {value!r} instead.")
    return value


def check_kind(config: Any, kind: str) -> None:
    if config.kind != kind:
        raise ConfigError(f"Expected kind {kind!r} for {type(config).__name__}. Got {config.kind!r} instead.")


# Window names scipy.signal.get_window accepts without parameters (tests/features/test_config.py checks each):
# these need no scipy import to be checked; any other name is checked by scipy itself.
PLAIN_WINDOWS = frozenset(
    ("hann", "hamming", "blackman", "bartlett", "boxcar", "triang", "blackmanharris", "nuttall", "flattop")
)


def _check_window(window: object, win_length: int) -> None:
    # Only names (JSON strings): scipy's tuple specs and arrays do not round-trip through config_json.
    if not isinstance(window, str):
        raise ConfigError(f"Expected window to be a window name such as 'hann'. Got {window!r} instead.")
    if window in PLAIN_WINDOWS:
        return
    import scipy.signal  # here, not at the top: it takes about a second to import, and configs are made
    # by verbs (a no-op `features` rerun) that never compute a window

    try:
        scipy.signal.get_window(window, win_length, fftbins=True)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"Expected window to be a name scipy.signal.get_window accepts without parameters (hann, hamming, "
            f"blackman, ...). Got {window!r} instead ({exc})."
        ) from None


def check_stft_config(config: Any) -> None:
    """Checks shared by every STFT-based config; resolves win_length=None to n_fft."""
    parse_positive_int(config.n_fft, "n_fft")
    if config.win_length is None:
        object.__setattr__(config, "win_length", config.n_fft)
    parse_positive_int(config.win_length, "win_length")
    parse_positive_int(config.hop_length, "hop_length")
    if config.win_length > config.n_fft:
        raise ConfigError(
            f"Expected win_length <= n_fft ({config.n_fft}). Got win_length={config.win_length} instead."
        )
    if config.hop_length > config.win_length:
        raise ConfigError(
            f"Expected hop_length <= win_length ({config.win_length}), or frames would skip samples. "
            f"Got hop_length={config.hop_length} instead."
        )
    _check_window(config.window, config.win_length)
    _parse_bool(config.center, "center")
    parse_choice(config.pad_mode, PAD_MODES, "pad_mode")
    parse_positive_int(config.sample_rate, "sample_rate")
    parse_choice(config.dtype, DTYPES, "dtype")


@dataclass(frozen=True)
class StftConfig(Config):
    """The STFT settings every spectrogram kind has (librosa's names); each kind's config sets its own
    defaults and `kind`, and adds its own fields."""

    kind: str = ""
    n_fft: int = 512
    hop_length: int = 256
    win_length: int | None = None  # None -> n_fft
    window: str = "hann"
    center: bool = True
    pad_mode: str = "constant"
    sample_rate: int = 16000
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_kind(self, type(self).kind)  # the class's default: a config is of its own kind only
        check_stft_config(self)


@dataclass(frozen=True)
class MagnitudeConfig(StftConfig):
    """|STFT|: (frames, n_fft // 2 + 1) = |librosa.stft(...)|.T"""

    kind: str = "magnitude"


@dataclass(frozen=True)
class ComplexConfig(StftConfig):
    """STFT real and imaginary planes: (frames, 2, n_fft // 2 + 1). Defaults: DCCRN."""

    kind: str = "complex"
    hop_length: int = 100
    win_length: int | None = 400


@dataclass(frozen=True)
class ReassignedConfig(StftConfig):
    """librosa.reassigned_spectrogram's (frequency Hz, time s, magnitude) as planes: (frames, 3, bins)."""

    kind: str = "reassigned"
    n_fft: int = 80
    hop_length: int = 20
    win_length: int | None = 80
    window: str = "hamming"
    center: bool = False
    reassign_frequencies: bool = True
    reassign_times: bool = True
    ref_power: float = 1e-6
    fill_nan: bool = True
    clip: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dtype != "float32":
            # float16 has ~8 ms resolution at 10 s and cannot hold times past 65504 s: the time plane
            # would be destroyed, not just rounded.
            raise ConfigError(
                f"Expected dtype 'float32' for reassigned features. Got {self.dtype!r} instead."
            )
        for name in ("reassign_frequencies", "reassign_times", "fill_nan", "clip"):
            _parse_bool(getattr(self, name), name)
        if not (self.reassign_frequencies or self.reassign_times):
            raise ConfigError(
                "Expected reassign_frequencies or reassign_times (or both) to be true. Got both false instead."
            )
        value = self.ref_power
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise ConfigError(f"Expected ref_power to be a finite number >= 0. Got {value!r} instead.")
        object.__setattr__(self, "ref_power", float(value))


@dataclass(frozen=True)
class DecomposedConfig(StftConfig):
    """Shi et al. (Interspeech 2022): channel 0 = |Y|, channel i = 1[M > i/n]·|Y|: (frames, n, bins).

    `mask` is `oracle-irm` (computed from the clean and noise waves) or `model:<version>` (a first-stage
    model's estimate, applied by the pipeline with `decomposed_from_mask`).
    """

    kind: str = "decomposed"
    n: int = 30
    mask: str = ORACLE_IRM

    def __post_init__(self) -> None:
        super().__post_init__()
        check_decomposed_n(self.n)
        mask = self.mask
        model_ok = (
            isinstance(mask, str)
            and mask.startswith(MODEL_MASK_PREFIX)
            and is_safe_name(mask[len(MODEL_MASK_PREFIX) :])
        )
        if mask != ORACLE_IRM and not model_ok:
            raise ConfigError(
                f"Expected mask to be {ORACLE_IRM!r} or 'model:<version>' (a model version of letters, digits, "
                f"'.', '_', '+' or '-'). Got {mask!r} instead."
            )


def check_decomposed_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 2 <= n <= MAX_DECOMPOSED_N:
        raise ConfigError(
            f"Expected n (decomposed channels) to be an integer from 2 to {MAX_DECOMPOSED_N}. Got {n!r} instead."
        )
    return int(n)


FeatureConfig = MagnitudeConfig | ComplexConfig | ReassignedConfig | DecomposedConfig


def feature_config(kind: str, **overrides: Any) -> Any:
    """A validated config of `kind` with the defaults replaced by `overrides` (librosa's names)."""
    return get_kind(kind).config(**overrides)


def config_from_dict(data: dict[str, Any]) -> Any:
    """A config from its `to_dict` (or `config_json`), dispatching on its `kind`."""
    if not isinstance(data, dict):
        raise ConfigError(f"Expected a feature config with a 'kind'. Got {data!r} instead.")
    return check_config(data)


def compute_feature(wave: np.ndarray, config: Any, out: np.ndarray | None = None) -> np.ndarray:
    """The feature `config` describes, computed from `wave` (for `decomposed`: the (noisy, clean, noise) waves),
    written into `out` (an array of the feature's shape and dtype) when given."""
    kind = get_kind(getattr(config, "kind", None))
    if not isinstance(config, kind.config_cls):
        raise ConfigError(f"Expected a {kind.config_cls.__name__}. Got {type(config).__name__} instead.")
    return kind.compute(wave, config, out)


PRESETS: dict[str, FeatureConfig] = {
    "magnitude-crn": MagnitudeConfig(),  # 257 bins: the CRN papers
    "magnitude-cnn": MagnitudeConfig(n_fft=1024, hop_length=512),  # 513 bins: the 1-D/2-D CNN work
    "complex-dccrn": ComplexConfig(),
    "reassigned-inversion": ReassignedConfig(),
    "decomposed-30": DecomposedConfig(),
}


def get_preset(name: str) -> FeatureConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise NotFoundError(
            f"Expected a feature preset name, one of {', '.join(sorted(PRESETS))}. Got {name!r} instead."
        ) from None
