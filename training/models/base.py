"""The model registry, the base class every model derives from, and the config checks they share.

A model is registered under its contract name (`cnn1d`, `cnn2d`, `unet`, `crn`, `dccrn`,
`reassigned-inverter`), owns a frozen config dataclass (`config_class`, a `stores.config.Config`) and is built
from it alone, so that a checkpoint ({architecture, config, state_dict}) is enough to rebuild it.

Each model says what it consumes and produces:

* `input_kind`: the feature kind of its input batch ("magnitude", "complex", "reassigned", "decomposed");
  `input_kinds` (class attribute): every kind some config of the class consumes, for checks made before
  building (`crn`: magnitude, or decomposed with `in_channels` n; `unet`: magnitude or complex);
* `output`: "mask" (multiply the noisy magnitude by it), "mapping" (the clean magnitude or spectrum
  itself), "crm" (a complex ratio mask, applied inside the model) or "waveform";
* `waveform_io`: True when `forward` takes and returns waveforms (DCCRN computes its STFT inside).

Batches are time-major, like the store's features: (batch, frames, bins) for magnitude,
(batch, frames, 2, bins) complex, (batch, frames, n, bins) decomposed, (batch, frames, 3, bins) reassigned.
Both attributes are class defaults, set per instance where the config decides them (e.g. `crn` with
`in_channels > 1` consumes "decomposed" features).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from stores.config import Config, Registry, parse_choice, parse_positive_int
from stores.errors import ConfigError

MODELS: Registry[type[SpecModel]] = Registry("model")

INPUT_KINDS = ("magnitude", "complex", "reassigned", "decomposed")
OUTPUTS = ("mask", "mapping", "crm", "waveform")


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
    input_kind: str = "magnitude"
    input_kinds: ClassVar[tuple[str, ...]] = ("magnitude",)
    output: str = "mapping"
    waveform_io: bool = False

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
    "INPUT_KINDS",
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
