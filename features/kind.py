"""What a feature kind means, in one place: the `FeatureKind` every kind module subclasses and registers.

A kind declares
- its config class and the pure function `compute(wave, config) -> array` (time-major);
- what a feature shard stores per role (`stored`: array names, per-frame shapes, dtypes; the codec default),
  how those arrays are computed from an utterance's or a pair's signals (`compute_stored`), and how they are
  expanded on read, in numpy (`expand`, what `st.features(id).read` returns) and in torch on the device
  (`expand_torch`);
- what a model sees of it (`model_layout`: channels, bins, value domain and the STFT behind it), what a model
  learns on it (`training_target`) and how a model's output on it becomes a waveform (`reconstruct`, or a
  clear refusal).

Roles: `input` (of a pair's degraded input) and `target` (of its clean target) for a pair set's features,
`clean` for a corpus's. Models name the layouts they accept (`training.models`), never kind names, so a new
kind is one module here and its registration.

The registry is `stores.layouts.FEATURE_KINDS` (declared by `stores`, which reads feature sets through the
`stored_names` / `expand` hooks with configs as dicts, filled here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from stores.config import Config
from stores.errors import ConfigError
from stores.layouts import CORPUS_ROLES, FEATURE_KINDS, PAIR_ROLES

# the signal each feature role is computed from
SIGNAL_OF_ROLE = {"input": "input", "target": "clean", "clean": "clean"}
DOMAINS = ("magnitude", "log-power", "complex", "reassigned")
MaskFn = Callable[[np.ndarray], np.ndarray]  # a first-stage model: |Y| (frames, bins) -> mask in [0, 1]


@dataclass(frozen=True)
class StoredArray:
    """One array a feature shard stores: its shape after the frame axis and its dtype."""

    tail: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class ModelLayout:
    """What a model sees of a kind's input features, per frame: `channels` 0 for (frames, bins), c for
    (frames, c, bins); the value `domain` (one of DOMAINS); the STFT the features come from (`n_fft`,
    `hop_length`, `win_length`, `window`, `center`, `sample_rate`), which models with an STFT of their
    own use and first-stage mask models must share."""

    channels: int
    bins: int
    domain: str
    stft: dict[str, Any]

    def describe(self) -> str:
        shape = f"{self.bins} bins" if not self.channels else f"{self.channels} channels x {self.bins} bins"
        return f"{self.domain} features of {shape}"


def stft_settings(config: Any) -> dict[str, Any]:
    keys = ("n_fft", "hop_length", "win_length", "window", "center", "sample_rate")
    return {k: getattr(config, k) for k in keys}


class FeatureKind:
    """Base class of the registered kinds; defaults fit a kind that stores one array per role, the value
    of `compute` on the role's signal."""

    name: ClassVar[str]
    config_cls: ClassVar[type]
    description: ClassVar[str] = ""
    default_codec: ClassVar[str] = "lz4"  # the store's codec when none is named
    corpus_features: ClassVar[bool] = True  # whether a corpus's clean utterances alone can be featurised
    outputs: ClassVar[tuple[str, ...]] = ()  # model outputs it has a training target for (first: default)

    # ------------------------------------------------------------------ the pure function
    def compute(self, wave: Any, config: Any, out: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def config(self, value: Any = None, **overrides: Any) -> Any:
        """A validated config of this kind: from a config, its `to_dict`, or the defaults with overrides."""
        if isinstance(value, self.config_cls):
            return value
        if isinstance(value, dict):
            return self.config_cls.from_dict(value)
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(
                f"Expected options of {self.name!r} ({', '.join(sorted(names))}). Got unknown {unknown} instead."
            )
        return self.config_cls(**overrides)

    # ------------------------------------------------------------------ what a shard stores
    def roles(self, corpus: bool) -> tuple[str, ...]:
        """The roles of a set over a corpus (`clean`) or a pair set (`input`, `target`)."""
        if corpus and not self.corpus_features:
            raise ConfigError(
                f"Expected a pair set for {self.name} features (they need the noisy input). Got a corpus."
            )
        return CORPUS_ROLES if corpus else PAIR_ROLES

    def stored(self, config: Any, role: str) -> dict[str, StoredArray]:
        """{array name: its per-frame shape and dtype} of `role` (names are unique across roles)."""
        probe = self.compute(np.zeros(config.n_fft, dtype=np.float32), config)  # one frame
        return {role: StoredArray(probe.shape[1:], probe.dtype)}

    def signals_needed(self, config: Any, roles: tuple[str, ...], mask: MaskFn | None) -> tuple[str, ...]:
        """The signals (`input`, `clean`, `noise`) the stored arrays of `roles` are computed from."""
        return tuple(dict.fromkeys(SIGNAL_OF_ROLE[r] for r in roles))

    def compute_stored(
        self, signals: dict[str, np.ndarray], config: Any, role: str, out: dict | None = None, mask=None
    ) -> dict[str, np.ndarray]:
        """The stored arrays of `role` for one utterance or pair, written into `out`'s arrays when given."""
        out = out or {}
        return {role: self.compute(signals[SIGNAL_OF_ROLE[role]], config, out.get(role))}

    def needed_model(self, config: Any) -> str | None:
        """The model version whose output the stored arrays need (e.g. a first-stage mask), or None."""
        return None

    def mask_layout(self, config: Any) -> ModelLayout | None:
        """What the needed first-stage mask model must consume (None when no model is needed)."""
        return None

    def needs_reference(self, config: Any) -> str | None:
        """Why a model's `input` cannot be computed from a noisy recording alone, or None when it can."""
        return None

    # ------------------------------------------------------------------ reading (stores' protocol)
    def stored_names(self, config: Any, role: str) -> tuple[str, ...]:
        return tuple(self.stored(self.config(config), role))

    def model_of(self, config: Any) -> str | None:
        if type(self).needed_model is FeatureKind.needed_model:
            return None  # no model, whatever the config: not worth validating it (`ls` asks of every set)
        return self.needed_model(self.config(config))

    def expand(self, stored: dict[str, np.ndarray], config: Any, role: str) -> np.ndarray:
        """What a reader gets of `role` from its stored arrays (numpy)."""
        return stored[role]

    def expand_torch(self, stored: dict[str, Any], config: Any, role: str) -> Any:
        """`expand` for torch tensors on any device (training batches: (batch, frames, ...))."""
        return stored[role]

    # ------------------------------------------------------------------ models
    def model_layout(self, config: Any) -> ModelLayout:
        raise NotImplementedError

    def training_target(self, batch: dict[str, Any], output: str, config: Any) -> tuple[Any, Any]:
        """(scale, target) for a model whose output is `output` (`mask` or `mapping`): the loss compares
        output · scale (output itself when scale is None) with target. Batches hold expanded roles."""
        raise ConfigError(
            f"Expected a model that learns from {self.name} features on its own terms. Got a {output} model "
            "instead."
        )

    def model_input(
        self, signals: dict[str, np.ndarray], config: Any, mask: MaskFn | None = None
    ) -> np.ndarray:
        """A model's (unnormalised) input for one recording: the expanded `input` role."""
        stored = self.compute_stored(signals, config, "input", mask=mask)
        return self.expand(stored, config, "input")

    def reconstructions(self, output: str) -> tuple[str, ...]:
        """The ways a model output of this kind becomes a waveform (the first is the default)."""
        return ()

    def reconstruct(
        self, out: np.ndarray, output: str, noisy: np.ndarray, config: Any, reconstruction: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """(waveform as long as `noisy`, the enhanced spectrogram stored beside it) from a model's output on
        one recording's features."""
        raise ConfigError(
            f"Expected features a model output can be turned back into audio from. Got {self.name}, which "
            "only a model making its own waveform can use."
        )


def register_kind(kind: FeatureKind) -> FeatureKind:
    """Register a kind instance under its name (in `stores.layouts.FEATURE_KINDS`)."""
    return FEATURE_KINDS.register(kind.name)(kind)


def get_kind(name: str) -> FeatureKind:
    """The registered kind; NotFoundError listing the valid names for an unknown one."""
    return FEATURE_KINDS.get(name)  # type: ignore[return-value]


def check_config(value: Any) -> Config:
    """A feature config object of a registered kind (from itself or its `to_dict`)."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    if kind is None:
        raise ConfigError(f"Expected a feature config with a 'kind'. Got {value!r} instead.")
    return get_kind(kind).config(value)
