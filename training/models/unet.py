"""`unet`: a U-Net on spectrograms, for dereverberation.

Architecture of Jansson et al., "Singing Voice Separation with Deep U-Net Convolutional Networks"
(ISMIR 2017): an encoder of 5x5 stride-2 convolutions (16, 32, 64, 128, 256, 512 channels, batch norm,
leaky ReLU 0.2), a decoder of 5x5 stride-2 transposed convolutions (batch norm, ReLU, 50 % dropout in the
first three) each taking the concatenation of the previous decoder output and the encoder output of the same
scale. Ernst et al., "Speech Dereverberation Using Fully Convolutional Networks" (EUSIPCO 2018) apply such
a U-Net to reverberant spectrograms, mapping them to the anechoic ones.

Input (batch, frames, bins) magnitudes (`in_channels` 1) or (batch, frames, 2, bins) real/imaginary planes
(`in_channels` 2); the output has the input's shape: a mask (sigmoid) or magnitude (softplus) for one
channel, the real/imaginary spectrum (linear) for two. Frames and bins are zero-padded at the end to a
multiple of 2**depth and the output cropped back, so any size works.
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
    parse_fraction,
    parse_int_tuple,
    register_model,
    set_field,
)


@dataclass(frozen=True)
class UNetConfig(Config):
    n_bins: int = 257
    in_channels: int = 1  # 1: magnitude, 2: real and imaginary planes
    channels: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    kernel_size: int = 5
    dropout: float = 0.5  # in the first three decoder layers
    output: str = "mapping"  # one channel: "mapping" or "mask"; two channels: "mapping" only

    def __post_init__(self) -> None:
        parse_positive_int(self.n_bins, "n_bins")
        if self.in_channels not in (1, 2) or isinstance(self.in_channels, bool):
            raise ConfigError(
                f"Expected in_channels 1 (magnitude) or 2 (real/imag). Got {self.in_channels!r} instead."
            )
        set_field(self, "channels", parse_int_tuple(self.channels, "channels"))
        parse_positive_int(self.kernel_size, "kernel_size")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"Expected an odd kernel_size. Got {self.kernel_size} instead.")
        set_field(self, "dropout", parse_fraction(self.dropout, "dropout"))
        check_output(self.output, ("mapping", "mask") if self.in_channels == 1 else ("mapping",))


@register_model("unet")
class UNet(SpecModel):
    """Spectrogram U-Net (module docstring)."""

    config_class = UNetConfig
    accepts = (("magnitude", 0), ("complex", 2))

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        self.output = config.output
        k, pad = config.kernel_size, config.kernel_size // 2
        chans = config.channels
        self.encoder = nn.ModuleList()
        cin = config.in_channels
        for cout in chans:
            self.encoder.append(
                nn.Sequential(nn.Conv2d(cin, cout, k, 2, pad), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))
            )
            cin = cout
        self.decoder = nn.ModuleList()
        outs = [*reversed(chans[:-1]), config.in_channels]
        for i, cout in enumerate(outs):
            cin = chans[-1] if i == 0 else 2 * chans[-1 - i]
            deconv = nn.ConvTranspose2d(cin, cout, k, 2, pad, output_padding=1)
            if i == len(outs) - 1:
                self.decoder.append(deconv)
            else:
                drop = [nn.Dropout2d(config.dropout)] if i < 3 and config.dropout > 0 else []
                self.decoder.append(nn.Sequential(deconv, nn.BatchNorm2d(cout), nn.ReLU(), *drop))
        self.activation = activation_for(config.output) if config.in_channels == 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        trailing = (c.n_bins,) if c.in_channels == 1 else (2, c.n_bins)
        what = "a magnitude batch" if c.in_channels == 1 else "a complex batch"
        x = check_batch(x, trailing, what)
        h = x.unsqueeze(1) if c.in_channels == 1 else x.transpose(1, 2)  # (B, C, T, F)
        frames, bins = h.shape[-2:]
        step = 2 ** len(c.channels)
        h = F.pad(h, (0, -bins % step, 0, -frames % step))
        skips = []
        for layer in self.encoder:
            h = layer(h)
            skips.append(h)
        for i, layer in enumerate(self.decoder):
            if i > 0:
                h = torch.cat([h, skips[-1 - i]], dim=1)
            h = layer(h)
        h = self.activation(h[..., :frames, :bins])
        return h.squeeze(1) if c.in_channels == 1 else h.transpose(1, 2)
