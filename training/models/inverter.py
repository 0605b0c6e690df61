"""`reassigned-inverter`: learns the waveform back from the reassigned spectrogram.

Input: the store's `reassigned` features (batch, frames, 3, 41): librosa.reassigned_spectrogram's reassigned
frequency (Hz), reassigned time (s) and magnitude, n_fft 80, hop 20, hamming, center False, fill_nan True,
clip False: the setting of the reassigned-spectrogram inversion work the design brief follows (learning the
inverse of librosa.reassigned_spectrogram with a neural network, trained on waveform MSE). That work
publishes no reference architecture; this is a small CNN of our own design:

1. Each plane is made local to its frame and bin (`normalize`): the frequency as its deviation from the bin
   centre in bins, the time as its deviation from the frame's median reassigned time in hops (absolute
   times grow along an utterance; the median of a frame sits at its centre, where the filled low-energy bins
   are), the magnitude as log(1 + |S|). NaNs (fill_nan False) become zero deviations.
2. Conv1d layers over the bins of each frame with the three planes as channels (stride 2), one Linear per
   frame to `hidden` features, one Conv1d along frames for context.
3. A transposed Conv1d along frames with kernel `block_length` and stride `hop_length` turns each frame into
   a waveform block: with block_length == hop_length (the default, 20) the blocks are concatenated, with a
   longer block they are overlap-added.

Output (batch, (frames - 1) * hop_length + block_length) samples; they start at sample
`sample_offset` = (n_fft - block_length) // 2 of the analysed waveform (the centre of the first frame), so
a training target is `clean[..., offset : offset + model.output_length(frames)]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from stores.config import Config, parse_positive_int
from stores.errors import ConfigError
from training.losses import mapping_mse
from training.models.base import SpecModel, check_batch, parse_int_tuple, register_model, set_field


@dataclass(frozen=True)
class ReassignedInverterConfig(Config):
    n_fft: int = 80
    hop_length: int = 20
    block_length: int = 20  # samples per frame; > hop_length overlap-adds
    sample_rate: int = 16000
    channels: tuple[int, ...] = (32, 64)  # Conv1d over the bins
    kernel_size: int = 5
    hidden: int = 256
    time_kernel: int = 3  # Conv1d along frames (odd; centred)
    normalize: bool = True

    def __post_init__(self) -> None:
        for name in (
            "n_fft",
            "hop_length",
            "block_length",
            "sample_rate",
            "kernel_size",
            "hidden",
            "time_kernel",
        ):
            parse_positive_int(getattr(self, name), name)
        set_field(self, "channels", parse_int_tuple(self.channels, "channels"))
        if not self.hop_length <= self.block_length <= self.n_fft:
            raise ConfigError(
                f"Expected hop_length <= block_length <= n_fft. Got {self.hop_length}, {self.block_length}, "
                f"{self.n_fft} instead."
            )
        if self.time_kernel % 2 == 0:
            raise ConfigError(f"Expected an odd time_kernel. Got {self.time_kernel} instead.")
        if not isinstance(self.normalize, bool):
            raise ConfigError(f"Expected normalize to be true or false. Got {self.normalize!r} instead.")

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1


@register_model("reassigned-inverter")
class ReassignedInverter(SpecModel):
    """Reassigned triple -> waveform (module docstring)."""

    config_class = ReassignedInverterConfig
    accepts = (("reassigned", 3),)
    input_role = "target"  # it learns the clean waveform back from the clean signal's triple
    needs_audio = True
    own_reconstruction = "waveform"
    output = "waveform"

    def __init__(self, config: ReassignedInverterConfig) -> None:
        super().__init__(config)
        c = config
        self.sample_offset = (c.n_fft - c.block_length) // 2
        bin_hz = c.sample_rate / c.n_fft
        self.register_buffer("bin_freqs", torch.arange(c.n_bins) * bin_hz, persistent=False)
        layers: list[nn.Module] = []
        cin, size = 3, c.n_bins
        for cout in c.channels:
            layers += [nn.Conv1d(cin, cout, c.kernel_size, 2, c.kernel_size // 2), nn.ReLU()]
            cin, size = cout, (size + 2 * (c.kernel_size // 2) - c.kernel_size) // 2 + 1
        self.frequency = nn.Sequential(*layers)
        self.frame = nn.Sequential(nn.Linear(cin * size, c.hidden), nn.ReLU())
        self.context = nn.Sequential(
            nn.Conv1d(c.hidden, c.hidden, c.time_kernel, padding=c.time_kernel // 2), nn.ReLU()
        )
        self.synthesis = nn.ConvTranspose1d(c.hidden, 1, c.block_length, c.hop_length)

    def output_length(self, frames: int) -> int:
        return (frames - 1) * self.config.hop_length + self.config.block_length

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 3, bins) planes in Hz, s and magnitude -> frame-local planes (module docstring)."""
        c = self.config
        freq = (x[:, :, 0] - self.bin_freqs.to(x.dtype)) * (c.n_fft / c.sample_rate)
        time = x[:, :, 1]
        centre = torch.nanmedian(time, dim=-1, keepdim=True).values
        time = (time - centre) * (c.sample_rate / c.hop_length)
        mag = torch.log1p(torch.nan_to_num(x[:, :, 2]).clamp_min(0))
        return torch.nan_to_num(torch.stack([freq, time, mag], 2), nan=0.0, posinf=0.0, neginf=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        x = check_batch(x, (3, c.n_bins), "a reassigned batch")
        if c.normalize:
            x = self.normalize(x)
        batch, frames = x.shape[:2]
        h = self.frequency(x.reshape(batch * frames, 3, c.n_bins)).flatten(1)
        h = self.frame(h).reshape(batch, frames, c.hidden).transpose(1, 2)  # (batch, hidden, frames)
        return self.synthesis(self.context(h)).squeeze(1)

    def training_loss(self, batch: dict, normalizer: nn.Module, kind, config) -> torch.Tensor:
        """The waveform against the clean samples under the frames (from the first frame's centre)."""
        estimate = self(batch[self.input_role])
        start = self.sample_offset
        return mapping_mse(estimate, batch["clean"][:, start : start + estimate.shape[-1]])

    def enhance_own(self, features: torch.Tensor, noisy: torch.Tensor) -> tuple:
        """The waveform of the triple, placed at its first frame's centre in a signal as long as `noisy`."""
        wave = self(features)[0].float().cpu().numpy()
        out = np.zeros(noisy.shape[-1], dtype=np.float32)
        n = min(wave.shape[0], out.shape[0] - self.sample_offset)
        out[self.sample_offset : self.sample_offset + n] = wave[:n]
        return out, None
