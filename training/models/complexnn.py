"""Complex-valued layers of DCCRN (Hu et al., Interspeech 2020), on real tensors whose channel (or feature)
axis holds the real parts first and the imaginary parts second.

A complex layer W = W_r + i W_i applied to X = X_r + i X_i gives (W_r X_r - W_i X_i) + i (W_r X_i + W_i X_r),
each product an ordinary real layer; the real and imaginary halves go through each real layer as one
batch. Channel counts are real + imaginary, as in the DCCRN code (a 256-channel layer is 128 complex
channels).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Layer = Callable[[torch.Tensor], torch.Tensor]


def complex_apply(real_layer: Layer, imag_layer: Layer, x: torch.Tensor, dim: int) -> torch.Tensor:
    """(W_r + i W_i)(X_r + i X_i), with X split in halves along `dim` and the result concatenated back."""
    xr, xi = torch.chunk(x, 2, dim)
    both = torch.cat([xr, xi], 0)
    rr, ri = torch.chunk(real_layer(both), 2, 0)  # W_r X_r, W_r X_i
    ir, ii = torch.chunk(imag_layer(both), 2, 0)  # W_i X_r, W_i X_i
    return torch.cat([rr - ii, ri + ir], dim)


def complex_cat(parts: list[torch.Tensor], dim: int) -> torch.Tensor:
    """Concatenates complex tensors: all real halves, then all imaginary halves."""
    halves = [torch.chunk(p, 2, dim) for p in parts]
    return torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim)


def _init(layer: nn.Module) -> nn.Module:
    nn.init.normal_(layer.weight, std=0.05)  # as the DCCRN code initialises its complex convolutions
    nn.init.zeros_(layer.bias)
    return layer


class ComplexConv2d(nn.Module):
    """Complex Conv2d on (batch, channels, bins, frames); causal along frames (kernel_t - 1 zero frames
    padded at the start), `padding` zeros on both sides of the bins."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding: int) -> None:
        super().__init__()
        self.time_pad = kernel_size[1] - 1
        self.real = _init(nn.Conv2d(in_channels // 2, out_channels // 2, kernel_size, stride, (padding, 0)))
        self.imag = _init(nn.Conv2d(in_channels // 2, out_channels // 2, kernel_size, stride, (padding, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return complex_apply(self.real, self.imag, F.pad(x, (self.time_pad, 0)), 1)


class ComplexConvTranspose2d(nn.Module):
    """Complex ConvTranspose2d on (batch, channels, bins, frames); the kernel_t - 1 frames the transposed
    convolution adds are dropped from the end, so output frame t depends on input frames <= t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding: int) -> None:
        super().__init__()
        self.extra = kernel_size[1] - 1
        args = (in_channels // 2, out_channels // 2, kernel_size, stride, (padding, 0), (stride[0] - 1, 0))
        self.real = _init(nn.ConvTranspose2d(*args))
        self.imag = _init(nn.ConvTranspose2d(*args))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = complex_apply(self.real, self.imag, x, 1)
        return out[..., : out.shape[-1] - self.extra]


class ComplexLSTM(nn.Module):
    """One complex LSTM layer (DCCRN's "NavieComplexLSTM"): a real and an imaginary LSTM, each of
    hidden_size // 2 units, combined as a complex product; optionally a complex-pair of Linear projections.
    Input and output (batch, frames, features) with real features first."""

    def __init__(self, input_size: int, hidden_size: int, projection: int | None = None) -> None:
        super().__init__()
        self.real = nn.LSTM(input_size // 2, hidden_size // 2, batch_first=True)
        self.imag = nn.LSTM(input_size // 2, hidden_size // 2, batch_first=True)
        self.proj_real = nn.Linear(hidden_size // 2, projection // 2) if projection else None
        self.proj_imag = nn.Linear(hidden_size // 2, projection // 2) if projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = complex_apply(lambda t: self.real(t)[0], lambda t: self.imag(t)[0], x, -1)
        if self.proj_real is None:
            return out
        real, imag = torch.chunk(out, 2, -1)
        return torch.cat([self.proj_real(real), self.proj_imag(imag)], -1)
