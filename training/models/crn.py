"""`crn`: the convolutional recurrent network of Tan & Wang, "A Convolutional Recurrent Neural Network for
Real-Time Speech Enhancement" (Interspeech 2018), also the decomposition model of Shi et al. (Interspeech
2022) when given an n-channel decomposed input.

* Encoder: five Conv2d layers, kernel (2, 3) over (frames, bins), stride (1, 2), 16, 32, 64, 128, 256
  channels, each followed by batch norm and ELU. Causal along time: one zero frame is padded at the start,
  so output frame t sees input frames t-1 and t.
* The 256 x F' encoder output of each frame (F' = 4 for the paper's 161 bins, 7 for 257:
  257 -> 128 -> 63 -> 31 -> 15 -> 7 by floor((F - 3) / 2) + 1) is flattened and fed to two LSTM layers of
  256 * F' units (1024 in the paper, 1792 for 257 bins), then reshaped back.
* Decoder: five transposed Conv2d layers with the same kernel and stride, each taking its input concatenated
  with the encoder output of the same scale (so twice the channels), 128, 64, 32, 16, 1 channels; batch norm
  and ELU except in the last. Frequency output padding restores the encoder sizes (the paper's 79 -> 80);
  along time the extra frame of the transposed convolution is dropped from the end, which keeps it causal.
* Output: a sigmoid mask or a softplus magnitude (the paper's mapping).

With the paper's 161 bins this has 17.58 M parameters, the number in the paper's table.

Input: (batch, frames, bins) magnitudes (`in_channels` 1) or (batch, frames, n, bins) decomposed channels
(`in_channels` n: channel 0 = |Y|, channel i = 1[M > i/n]·|Y|). Output: (batch, frames, bins).
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

KERNEL = (2, 3)
STRIDE = (1, 2)


def encoder_sizes(n_bins: int, layers: int) -> list[int]:
    """Bins at the input of each encoder layer and after the last: floor((F - 3) / 2) + 1 per layer."""
    sizes = [n_bins]
    for _ in range(layers):
        sizes.append((sizes[-1] - KERNEL[1]) // STRIDE[1] + 1)
    return sizes


class DropLastFrame(nn.Module):
    """Drops the frame a (2, .) transposed convolution adds at the end: output t then depends on inputs
    t and t - 1 only (causal)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :-1]


@dataclass(frozen=True)
class CRNConfig(Config):
    n_bins: int = 257
    in_channels: int = 1  # 1: magnitude; n > 1: Shi et al.'s n-channel decomposed input
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    lstm_layers: int = 2
    output: str = "mask"  # "mask" (sigmoid) or "mapping" (softplus)

    def __post_init__(self) -> None:
        parse_positive_int(self.n_bins, "n_bins")
        parse_positive_int(self.in_channels, "in_channels")
        set_field(self, "channels", parse_int_tuple(self.channels, "channels"))
        parse_positive_int(self.lstm_layers, "lstm_layers")
        check_output(self.output, ("mask", "mapping"))
        sizes = encoder_sizes(self.n_bins, len(self.channels))
        if sizes[-1] < 1:
            least = 1
            for _ in self.channels:
                least = 2 * least + 1
            raise ConfigError(
                f"Expected n_bins >= {least} for {len(self.channels)} encoder layers of stride 2. "
                f"Got {self.n_bins} instead."
            )


@register_model("crn")
class CRN(SpecModel):
    """Convolutional recurrent network (module docstring)."""

    config_class = CRNConfig
    # magnitude without channels, decomposed n-channel magnitude (Shi et al.), or log-mel bands
    accepts = (("magnitude", None), ("log-power", 0))
    output = "mask"

    def __init__(self, config: CRNConfig) -> None:
        super().__init__(config)
        self.output = config.output
        chans = config.channels
        self.sizes = encoder_sizes(config.n_bins, len(chans))
        self.encoder = nn.ModuleList()
        cin = config.in_channels
        for cout in chans:
            self.encoder.append(
                nn.Sequential(nn.Conv2d(cin, cout, KERNEL, STRIDE), nn.BatchNorm2d(cout), nn.ELU())
            )
            cin = cout
        self.lstm_units = chans[-1] * self.sizes[-1]
        self.lstm = nn.LSTM(self.lstm_units, self.lstm_units, config.lstm_layers, batch_first=True)
        self.decoder = nn.ModuleList()
        outs = [*reversed(chans[:-1]), 1]
        for i, cout in enumerate(outs):
            level = (
                len(chans) - 1 - i
            )  # encoder layer whose output is the skip, and whose input size we restore
            f_in, target = self.sizes[level + 1], self.sizes[level]
            pad = target - ((f_in - 1) * STRIDE[1] + KERNEL[1])
            deconv = nn.ConvTranspose2d(2 * chans[level], cout, KERNEL, STRIDE, output_padding=(0, pad))
            post = [] if i == len(outs) - 1 else [nn.BatchNorm2d(cout), nn.ELU()]
            self.decoder.append(nn.Sequential(deconv, DropLastFrame(), *post))
        self.activation = activation_for(config.output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.in_channels == 1:
            h = check_batch(x, (c.n_bins,), "a magnitude batch").unsqueeze(1)
        else:
            h = check_batch(x, (c.in_channels, c.n_bins), "a decomposed batch").transpose(1, 2)
        frames = h.shape[2]  # h: (batch, channels, frames, bins)
        skips = []
        for layer in self.encoder:
            h = layer(F.pad(h, (0, 0, KERNEL[0] - 1, 0)))
            skips.append(h)
        batch, chans, _, bins = h.shape
        seq = h.permute(0, 2, 1, 3).reshape(batch, frames, chans * bins)
        seq, _ = self.lstm(seq)
        h = seq.reshape(batch, frames, chans, bins).permute(0, 2, 1, 3)
        for i, layer in enumerate(self.decoder):
            h = layer(torch.cat([h, skips[-1 - i]], dim=1))
        return self.activation(h[:, 0])
