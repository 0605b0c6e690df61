"""Convolutional magnitude models on 513-bin spectra (n_fft 1024, hop 512): `cnn1d` and `cnn2d`.

Both follow the 1-D/2-D CNN setting of the design brief (its "1-D/2-D CNN work": 513 bins, a single frame
or a 20-frame causal context). The brief names no paper for the layer sizes; the closest published models
are Park & Lee, "A Fully Convolutional Neural Network for Speech Enhancement" (Interspeech 2017:
convolution along the frequency axis of noisy spectra over a short causal context of frames, mapping to the
clean spectrum of the last frame). The layer sizes below are this project's defaults:

* `cnn1d`: each frame alone; strided Conv1d layers over the bins, then one Linear to the bins.
* `cnn2d`: each frame with its `context - 1` predecessors (20 frames by default; the first frames see zeros),
  strided Conv2d layers over (frames, bins), then one Linear to the bins of the last frame. All frames of a
  sequence are processed in one call by unfolding the causal context, so output t depends on inputs
  t - context + 1 .. t only (in eval mode: in train mode batch norm shares statistics across the batch).

Output: a mask (sigmoid) or a magnitude estimate (softplus), per the `output` field.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stores.config import Config, parse_positive_int
from stores.errors import ConfigError
from training.models.base import (
    SpecModel,
    activation_for,
    check_batch,
    check_output,
    parse_int_tuple,
    register_model,
    set_field,
)


def _conv_size(size: int, kernel: int, stride: int) -> int:
    """Output length of a convolution with padding kernel // 2."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


@dataclass(frozen=True)
class CNN1DConfig(Config):
    n_bins: int = 513
    channels: tuple[int, ...] = (16, 32, 64, 64)
    kernel_size: int = 9
    stride: int = 2
    output: str = "mapping"  # "mapping" (softplus magnitude) or "mask" (sigmoid)

    def __post_init__(self) -> None:
        parse_positive_int(self.n_bins, "n_bins")
        set_field(self, "channels", parse_int_tuple(self.channels, "channels"))
        parse_positive_int(self.kernel_size, "kernel_size")
        parse_positive_int(self.stride, "stride")
        check_output(self.output, ("mapping", "mask"))


@register_model("cnn1d")
class CNN1D(SpecModel):
    """1-D CNN over the frequency bins of single frames (see the module docstring for the sources)."""

    config_class = CNN1DConfig
    accepts = (("magnitude", 0), ("log-power", 0))

    def __init__(self, config: CNN1DConfig) -> None:
        super().__init__(config)
        self.output = config.output
        layers: list[nn.Module] = []
        size, cin = config.n_bins, 1
        for cout in config.channels:
            layers += [
                nn.Conv1d(cin, cout, config.kernel_size, config.stride, padding=config.kernel_size // 2),
                nn.BatchNorm1d(cout),
                nn.ReLU(),
            ]
            size, cin = _conv_size(size, config.kernel_size, config.stride), cout
        self.features = nn.Sequential(*layers)
        self.flat_size = cin * size
        self.head = nn.Linear(self.flat_size, config.n_bins)
        self.activation = activation_for(config.output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_batch(x, (self.config.n_bins,), "a magnitude batch")
        batch, frames, bins = x.shape
        h = self.features(x.reshape(batch * frames, 1, bins))
        out = self.head(h.flatten(1))
        return self.activation(out).reshape(batch, frames, bins)


@dataclass(frozen=True)
class CNN2DConfig(Config):
    n_bins: int = 513
    context: int = 20  # frames seen per prediction, the predicted (last) one included
    channels: tuple[int, ...] = (16, 32, 64, 64)
    kernel_size: tuple[int, ...] = (3, 9)  # (frames, bins)
    stride: tuple[int, ...] = (2, 2)
    output: str = "mapping"

    def __post_init__(self) -> None:
        parse_positive_int(self.n_bins, "n_bins")
        parse_positive_int(self.context, "context")
        set_field(self, "channels", parse_int_tuple(self.channels, "channels"))
        for field in ("kernel_size", "stride"):
            value = parse_int_tuple(getattr(self, field), field)
            if len(value) != 2:
                raise ConfigError(f"Expected {field} as (frames, bins). Got {value!r} instead.")
            set_field(self, field, value)
        check_output(self.output, ("mapping", "mask"))


@register_model("cnn2d")
class CNN2D(SpecModel):
    """2-D CNN over a causal context of frames predicting the last one (module docstring)."""

    config_class = CNN2DConfig
    accepts = (("magnitude", 0), ("log-power", 0))

    def __init__(self, config: CNN2DConfig) -> None:
        super().__init__(config)
        self.output = config.output
        kt, kf = config.kernel_size
        st, sf = config.stride
        layers: list[nn.Module] = []
        frames, bins, cin = config.context, config.n_bins, 1
        for cout in config.channels:
            layers += [
                nn.Conv2d(cin, cout, (kt, kf), (st, sf), padding=(kt // 2, kf // 2)),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
            frames, bins, cin = _conv_size(frames, kt, st), _conv_size(bins, kf, sf), cout
        self.features = nn.Sequential(*layers)
        self.flat_size = cin * frames * bins
        self.head = nn.Linear(self.flat_size, config.n_bins)
        self.activation = activation_for(config.output)

    def contexts(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, bins) -> (batch, frames, context, bins): frame t with its predecessors,
        zeros before the first frame."""
        c = self.config.context
        padded = F.pad(x, (0, 0, c - 1, 0))
        return padded.unfold(1, c, 1).transpose(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_batch(x, (self.config.n_bins,), "a magnitude batch")
        batch, frames, bins = x.shape
        ctx = self.contexts(x).reshape(batch * frames, 1, self.config.context, bins)
        out = self.head(self.features(ctx).flatten(1))
        return self.activation(out).reshape(batch, frames, bins)
