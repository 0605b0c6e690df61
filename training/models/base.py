"""The model registry, the base class every model derives from, and the config checks they share.

A model is registered under its contract name (`cnn1d`, `cnn2d`, `unet`, `crn`, `dccrn`,
`reassigned-inverter`), owns a frozen config dataclass (`config_class`, a `stores.config.Config`) and is built
from it alone, so that a checkpoint ({architecture, config, state_dict}) is enough to rebuild it.

Each model says what it consumes and produces, in terms of feature *layouts* (`features.kind.ModelLayout`:
value domain, channels, bins), never feature kind names:

* `accepts`: the (domain, channels) pairs the class takes (channels None: any count; 0 means a batch
  without a channel axis), checked before building; `config_args(layout)` sizes the config from the
  layout (bins, channels, the STFT of models with their own);
* `output`: "mask" (a gain on the input's bins or bands), "mapping" (the clean magnitude or spectrum itself),
  "crm" (a complex ratio mask applied inside the model) or "waveform";
* `training_loss(batch, normalizer, kind, config)`: by default the feature kind's target
  (`FeatureKind.training_target`) against the output; models that learn a waveform override it;
* `own_reconstruction`: None when the feature kind turns the output back into audio, else what the model
  does itself ("complex": DCCRN's in-graph iSTFT; "waveform": the inverter), with `enhance_own`.

Batches are time-major, like the store's features: (batch, frames, bins) without channels,
(batch, frames, channels, bins) with them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from stores.config import Config, Registry, parse_choice, parse_positive_int
from stores.errors import ConfigError
from training.losses import mapping_mse

MODELS: Registry[type[SpecModel]] = Registry("model")

OUTPUTS = ("mask", "mapping", "crm", "waveform")
# config fields a layout sizes, where a model's config has them
LAYOUT_FIELDS = ("n_bins", "in_channels", "n_fft", "hop_length", "win_length", "sample_rate")


def register_model(name: str):
    """Class decorator: registers a `SpecModel` subclass under `name` and records the name on it."""

    def decorate(cls: type[SpecModel]) -> type[SpecModel]:
        cls.name = name
        return MODELS.register(name)(cls)

    return decorate


class SpecModel(nn.Module):
    """Base class: `config_class(...)` -> `Model(config)`; `model.config` is kept for checkpoints."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type]
    accepts: ClassVar[tuple[tuple[str, int | None], ...]] = (("magnitude", 0),)
    input_role: ClassVar[str] = "input"  # the feature role it consumes
    needs_audio: ClassVar[bool] = False  # trained against the clean waveform
    own_reconstruction: ClassVar[str | None] = None
    output: str = "mapping"

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"Expected a {self.config_class.__name__} for model {self.name!r}. "
                f"Got {type(config).__name__} instead."
            )
        self.config = config

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def check_layout(cls, layout) -> None:
        """ConfigError unless the class takes features of this layout."""
        for domain, channels in cls.accepts:
            if layout.domain == domain and (channels is None or layout.channels == channels):
                return
        wanted = " or ".join(
            f"{d} features" + ("" if c is None else " without channels" if c == 0 else f" of {c} channels")
            for d, c in cls.accepts
        )
        raise ConfigError(f"Expected {wanted} for model {cls.name!r}. Got {layout.describe()} instead.")

    @classmethod
    def config_args(cls, layout) -> dict[str, Any]:
        """The config fields a feature layout decides (bins, channels, the STFT), for those the config has."""
        values = {"n_bins": layout.bins, "in_channels": max(1, layout.channels), **layout.stft}
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        return {k: values[k] for k in LAYOUT_FIELDS if k in fields and values.get(k) is not None}

    def training_loss(self, batch: dict, normalizer: nn.Module, kind, config) -> torch.Tensor:
        """The loss of one prepared batch (roles expanded): the kind's target against the output."""
        scale, target = kind.training_target(batch, self.output, config)
        out = self(normalizer(batch[self.input_role]))
        return mapping_mse(out if scale is None else out * scale, target)

    def enhance_own(self, features: torch.Tensor, noisy: torch.Tensor) -> tuple[Any, Any]:
        """(waveform, spectrogram or None) of a model with its own reconstruction, from its input features
        (1, frames, ...) and the noisy waveform (1, samples)."""
        raise NotImplementedError


def model_class(name: str) -> type[SpecModel]:
    """The registered model class `name`; unknown names raise NotFoundError listing the valid ones."""
    return MODELS.get(name)


def build_model(name: str, **config_kwargs: Any) -> SpecModel:
    """The registered model `name` built from its config's fields; unknown names raise NotFoundError
    listing the valid ones, unknown or invalid fields ConfigError."""
    cls = MODELS.get(name)
    config = cls.config_class.from_dict(config_kwargs)
    return cls(config)


# ---------------------------------------------------------------------------------------------- checks


def parse_int_tuple(value: object, what: str, *, min_len: int = 1, even: bool = False) -> tuple[int, ...]:
    """A non-empty tuple (or list) of positive integers; `even` also asks each to be even."""
    ok = isinstance(value, tuple | list) and len(value) >= min_len
    if ok:
        for v in value:  # type: ignore[union-attr]
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0 or (even and v % 2):
                ok = False
    if not ok:
        kind = "positive even integers" if even else "positive integers"
        raise ConfigError(
            f"Expected {what} to be a list of at least {min_len} {kind}. Got {value!r} instead."
        )
    return tuple(value)  # type: ignore[arg-type]


def parse_fraction(value: object, what: str) -> float:
    """A number in [0, 1)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value < 1
    ):
        raise ConfigError(f"Expected {what} to be a number in [0, 1). Got {value!r} instead.")
    return float(value)


def set_field(config: Config, name: str, value: object) -> None:
    """Normalise a field of a frozen config in __post_init__ (e.g. a list to a tuple)."""
    object.__setattr__(config, name, value)


def check_output(value: object, allowed: tuple[str, ...]) -> str:
    return parse_choice(value, allowed, "output")


def check_batch(x: object, trailing: tuple[int, ...], what: str) -> torch.Tensor:
    """A floating tensor shaped (batch, frames, *trailing); the error names the expected layout."""
    shape = tuple(getattr(x, "shape", ()))
    ok = (
        isinstance(x, torch.Tensor)
        and x.is_floating_point()
        and len(shape) == 2 + len(trailing)
        and shape[2:] == trailing
        and shape[1] > 0
    )
    if not ok:
        layout = ", ".join(["batch", "frames", *map(str, trailing)])
        got = f"a {type(x).__name__} of shape {shape}" if shape else repr(type(x).__name__)
        raise ConfigError(f"Expected {what} as a float tensor ({layout}). Got {got} instead.")
    return x  # type: ignore[return-value]


def activation_for(output: str) -> nn.Module:
    """Final non-linearity: sigmoid for a mask, softplus for a (non-negative) magnitude estimate."""
    return nn.Sigmoid() if output == "mask" else nn.Softplus()


__all__ = [
    "MODELS",
    "OUTPUTS",
    "SpecModel",
    "build_model",
    "check_batch",
    "model_class",
    "parse_choice",
    "parse_int_tuple",
    "parse_positive_int",
    "register_model",
]
