"""`dccrn`: Deep Complex Convolution Recurrent Network, Hu et al., "DCCRN: Deep Complex Convolution Recurrent
Network for Phase-Aware Speech Enhancement" (Interspeech 2020, arXiv:2008.00264), built after the structure
of the authors' code (github.com/huyanxin/DeepComplexCRN, dc_crn.py).

* STFT inside the model: hann window 400, hop 100, n_fft 512 (257 bins; the DC bin is left out of the
  network and gets a zero mask). `forward(wave)` -> enhanced wave (trained on SI-SNR, `training.losses`);
  `forward_spec` works on the (batch, frames, 2, 257) complex features of the store (centred STFT with
  zero padding, like librosa.stft), `stft`/`istft` convert.
* Encoder: six complex Conv2d layers, kernel (5, 2) over (bins, frames), stride (2, 1), causal along time,
  each with batch norm and PReLU; decoder: six complex transposed convolutions taking the complex
  concatenation with the encoder output of the same scale (batch norm and PReLU except the last).
  Channels count real + imaginary, as in that code: (16, 32, 64, 128, 256, 256) for DCCRN-R/C/E and
  (32, 64, 128, 256, 256, 256) for DCCRN-CL (the code's DCCRN-CL setting), which gives the paper's 3.7 M
  parameters for each variant.
* Between them, over the 256·4 features of each frame: DCCRN-R/C/E a real two-layer LSTM of 256 units and a
  Linear back to the features; DCCRN-CL two complex LSTM layers of 128 + 128 units, the last projected back.
* Complex ratio mask M applied to the noisy spectrum Y: "R" (real and imaginary parts separately),
  "C" (complex product M·Y), "E" (|S| = tanh(|M|)·|Y|, phase(S) = phase(Y) + phase(M); computed as
  tanh(|M|)/|M| · M·Y, the same number without atan2). DCCRN-CL uses "E".

Two deliberate departures from that code: the transposed convolutions drop their extra frame at the end
rather than the start (the code's choice lets each decoder layer look one frame ahead, against the paper's
causal claim), and the output waveform is not clamped to [-1, 1] (the clamp zeroes gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stores.config import Config, parse_choice, parse_positive_int
from stores.errors import ConfigError
from training.losses import si_snr_loss
from training.models.base import SpecModel, check_batch, parse_int_tuple, register_model, set_field
from training.models.complexnn import ComplexConv2d, ComplexConvTranspose2d, ComplexLSTM, complex_cat

VARIANTS = ("R", "C", "E", "CL")
DEFAULT_CHANNELS = {"CL": (32, 64, 128, 256, 256, 256)}
BASE_CHANNELS = (16, 32, 64, 128, 256, 256)
EPS = 1e-8


@dataclass(frozen=True)
class DCCRNConfig(Config):
    variant: str = "CL"  # R, C, E: real LSTM and that mask mode; CL: complex LSTM, mask mode E
    channels: tuple[int, ...] | None = None  # real + imaginary; None: the variant's (module docstring)
    kernel_size: int = 5  # along bins; 2 along frames
    rnn_layers: int = 2
    rnn_units: int = 256  # real LSTM units; for CL real + imaginary (128 + 128)
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 100

    def __post_init__(self) -> None:
        parse_choice(self.variant, VARIANTS, "variant")
        if self.channels is None:
            set_field(self, "channels", DEFAULT_CHANNELS.get(self.variant, BASE_CHANNELS))
        set_field(self, "channels", parse_int_tuple(self.channels, "channels", even=True))
        for name in ("kernel_size", "rnn_layers", "rnn_units", "n_fft", "win_length", "hop_length"):
            parse_positive_int(getattr(self, name), name)
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"Expected an odd kernel_size. Got {self.kernel_size} instead.")
        if self.variant == "CL" and self.rnn_units % 2:
            raise ConfigError(f"Expected an even rnn_units for DCCRN-CL. Got {self.rnn_units} instead.")
        if not self.hop_length <= self.win_length <= self.n_fft:
            raise ConfigError(
                f"Expected hop_length <= win_length <= n_fft. Got {self.hop_length}, {self.win_length}, "
                f"{self.n_fft} instead."
            )
        step = 2 ** len(self.channels)
        if (self.n_fft // 2) % step:
            raise ConfigError(
                f"Expected n_fft // 2 divisible by 2**{len(self.channels)} = {step} (one halving per "
                f"encoder layer). Got n_fft={self.n_fft} instead."
            )

    @property
    def masking_mode(self) -> str:
        return "E" if self.variant == "CL" else self.variant


@register_model("dccrn")
class DCCRN(SpecModel):
    """DCCRN (module docstring). `forward(wave)`: (batch, samples) -> (batch, samples)."""

    config_class = DCCRNConfig
    accepts = (("complex", 2),)
    output = "crm"
    own_reconstruction = "complex"  # its own STFT, complex mask and iSTFT

    def __init__(self, config: DCCRNConfig) -> None:
        super().__init__(config)
        c = config
        chans = (2, *(c.channels or ()))  # channels: resolved by the config
        kernel, stride, pad = (c.kernel_size, 2), (2, 1), c.kernel_size // 2
        self.register_buffer("window", torch.hann_window(c.win_length), persistent=False)
        self.encoder = nn.ModuleList()
        for i in range(len(chans) - 1):
            conv = ComplexConv2d(chans[i], chans[i + 1], kernel, stride, pad)
            self.encoder.append(nn.Sequential(conv, nn.BatchNorm2d(chans[i + 1]), nn.PReLU()))
        self.hidden_bins = (c.n_fft // 2) // 2 ** len(c.channels)
        features = self.hidden_bins * chans[-1]
        if c.variant == "CL":
            self.rnn = nn.Sequential(
                *(
                    ComplexLSTM(
                        features if i == 0 else c.rnn_units,
                        c.rnn_units,
                        projection=features if i == c.rnn_layers - 1 else None,
                    )
                    for i in range(c.rnn_layers)
                )
            )
            self.transform = None
        else:
            self.rnn = nn.LSTM(features, c.rnn_units, c.rnn_layers, batch_first=True)
            self.transform = nn.Linear(c.rnn_units, features)
        self.decoder = nn.ModuleList()
        for i in range(len(chans) - 1, 0, -1):
            deconv = ComplexConvTranspose2d(2 * chans[i], chans[i - 1], kernel, stride, pad)
            post = [nn.BatchNorm2d(chans[i - 1]), nn.PReLU()] if i > 1 else []
            self.decoder.append(nn.Sequential(deconv, *post))

    # ------------------------------------------------------------------------------------------- STFT

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, frames, 2, n_fft // 2 + 1) float32 real/imaginary planes."""
        c = self.config
        with torch.autocast(wave.device.type, enabled=False):
            spec = torch.stft(
                wave.float(), c.n_fft, c.hop_length, c.win_length, self.window.float(),
                center=True, pad_mode="constant", return_complex=True,
            )  # fmt: skip
        return torch.stack([spec.real, spec.imag], 1).permute(0, 3, 1, 2)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """(batch, frames, 2, bins) -> (batch, length) waveform, the inverse of `stft`."""
        c = self.config
        with torch.autocast(spec.device.type, enabled=False):
            z = torch.complex(spec[:, :, 0].float(), spec[:, :, 1].float()).transpose(1, 2)
            return torch.istft(
                z, c.n_fft, c.hop_length, c.win_length, self.window.float(), center=True, length=length
            )

    # -------------------------------------------------------------------------------------- network

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        shape = tuple(getattr(wave, "shape", ()))
        if not (isinstance(wave, torch.Tensor) and wave.is_floating_point() and len(shape) == 2 and shape[1]):
            raise ConfigError(f"Expected a waveform batch (batch, samples). Got shape {shape} instead.")
        return self.istft(self.forward_spec(self.stft(wave)), wave.shape[-1])

    def forward_spec(self, x: torch.Tensor) -> torch.Tensor:
        """Complex spectrum (batch, frames, 2, bins) -> enhanced spectrum of the same shape."""
        bins = self.config.n_fft // 2 + 1
        x = check_batch(x, (2, bins), "a complex batch")
        spec = x.permute(0, 2, 3, 1)  # (batch, 2, bins, frames)
        h = spec[:, :, 1:]  # the DC bin stays out of the network
        skips = []
        for layer in self.encoder:
            h = layer(h)
            skips.append(h)
        batch, chans, hbins, frames = h.shape
        seq = h.permute(0, 3, 1, 2).reshape(batch, frames, chans * hbins)  # real features first
        seq = self.rnn(seq) if self.transform is None else self.transform(self.rnn(seq)[0])
        h = seq.reshape(batch, frames, chans, hbins).permute(0, 2, 3, 1)
        for i, layer in enumerate(self.decoder):
            h = layer(complex_cat([h, skips[-1 - i]], 1))
        mask = F.pad(h.float(), (0, 0, 1, 0))  # zero mask on the DC bin
        return self.apply_mask(mask, spec.float()).permute(0, 3, 1, 2)

    def training_loss(self, batch: dict, normalizer: nn.Module, kind, config) -> torch.Tensor:
        """SI-SNR on waveforms, as in DCCRN: the enhanced and the clean spectrum both through the iSTFT."""
        length = (batch["input"].shape[1] - 1) * self.config.hop_length
        enhanced = self.istft(self.forward_spec(batch["input"]), length)
        return si_snr_loss(enhanced, self.istft(batch["target"], length))

    def enhance_own(self, features: torch.Tensor, noisy: torch.Tensor) -> tuple:
        """From the noisy waveform, through the model's own STFT (features are not needed)."""
        spec = self.forward_spec(self.stft(noisy))
        wave = self.istft(spec, noisy.shape[-1])
        return wave[0].float().cpu().numpy(), spec[0].float().cpu().numpy()

    def apply_mask(self, mask: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
        """(batch, 2, bins, frames) mask and noisy spectrum -> enhanced spectrum, per the masking mode."""
        mr, mi = mask[:, 0], mask[:, 1]
        yr, yi = spec[:, 0], spec[:, 1]
        mode = self.config.masking_mode
        if mode == "R":
            return torch.stack([mr * yr, mi * yi], 1)
        real, imag = mr * yr - mi * yi, mr * yi + mi * yr
        if mode == "E":
            mag = torch.sqrt(mr * mr + mi * mi + EPS)
            gain = torch.tanh(mag) / mag
            real, imag = gain * real, gain * imag
        return torch.stack([real, imag], 1)
