"""Training losses, by registry name.

Every registered loss is called as `loss(output, target, noisy=None) -> scalar tensor`, where `output` is
what the model returns (a mask, a magnitude, a waveform) and `noisy` the model's input magnitude where the
loss needs it:

| name | output | target | value |
|---|---|---|---|
| `mapping-mse` | magnitude estimate | clean magnitude | mean((Ŝ − \\|S\\|)²) |
| `signal-approximation` | mask M̂ | clean magnitude | mean((M̂·\\|Y\\| − \\|S\\|)²) (needs `noisy` = \\|Y\\|) |
| `si-snr` | waveform | clean waveform | −mean SI-SNR (dB), as in DCCRN |
| `mr-stft` | waveform | clean waveform | multi-resolution STFT loss of Parallel WaveGAN |

Means are over every element, so the values do not grow with the batch or the signal length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from stores.config import Registry
from stores.errors import ConfigError

Loss = Callable[..., torch.Tensor]
LOSSES: Registry[Loss] = Registry("loss")

EPS = 1e-8
# Parallel WaveGAN (Yamamoto et al., ICASSP 2020), table of resolutions: (n_fft, hop, window)
MR_STFT_RESOLUTIONS = ((512, 50, 240), (1024, 120, 600), (2048, 240, 1200))


def _same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ConfigError(
            f"Expected {what} of the same shape. Got {tuple(a.shape)} and {tuple(b.shape)} instead."
        )


# ---------------------------------------------------------------------------------------------- magnitude


def mapping_mse(estimate: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Plain mapping: mean((Ŝ − |S|)²)."""
    _same_shape(estimate, clean, "estimate and clean magnitude")
    return F.mse_loss(estimate, clean)


def signal_approximation(mask: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Mask form (signal approximation): mean((M̂·|Y| − |S|)²)."""
    _same_shape(mask, noisy, "mask and noisy magnitude")
    _same_shape(mask, clean, "mask and clean magnitude")
    return F.mse_loss(mask * noisy, clean)


# ---------------------------------------------------------------------------------------------- waveform


def si_snr(estimate: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Scale-invariant SNR in dB over the last axis, as in DCCRN: both signals made zero-mean,
    s_target = <ŝ, s> s / ||s||², e = ŝ − s_target, SI-SNR = 10 log10(||s_target||² / ||e||²).
    Returns one value per signal (the leading axes); `eps` keeps silent signals finite."""
    _same_shape(estimate, target, "estimate and target waveforms")
    estimate = estimate - estimate.mean(-1, keepdim=True)
    target = target - target.mean(-1, keepdim=True)
    scale = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
    s_target = scale * target
    noise = estimate - s_target
    return 10 * torch.log10((s_target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def si_snr_loss(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """−mean SI-SNR: lower is better; a perfect estimate gives about −10·log10(||s||² / eps)."""
    return -si_snr(estimate, target).mean()


def _stft_magnitude(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    window = torch.hann_window(win, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, win, window, return_complex=True)
    return torch.sqrt(torch.clamp(spec.real.pow(2) + spec.imag.pow(2), min=1e-7))


def fit_resolution(n_fft: int, hop: int, win: int, length: int) -> tuple[int, int, int]:
    """A resolution scaled to the signal length: n_fft, hop and window halved until n_fft fits in
    `length` samples (the reflect padding of a centred STFT needs n_fft // 2 < length)."""
    while n_fft > length and n_fft > 2:
        n_fft, hop, win = n_fft // 2, max(1, hop // 2), max(1, win // 2)
    return n_fft, hop, win


def mr_stft_loss(
    estimate: torch.Tensor,
    target: torch.Tensor,
    resolutions: Sequence[tuple[int, int, int]] = MR_STFT_RESOLUTIONS,
) -> torch.Tensor:
    """Multi-resolution STFT loss of Parallel WaveGAN: per (n_fft, hop, window) resolution the spectral
    convergence ||(|S| − |Ŝ|)||_F / ||S||_F plus the mean absolute difference of the log magnitudes,
    averaged over the resolutions. Waveforms (..., samples); resolutions longer than the signal are scaled
    down to it (`fit_resolution`). Zero for identical inputs."""
    _same_shape(estimate, target, "estimate and target waveforms")
    if estimate.ndim == 0 or estimate.shape[-1] < 2:
        raise ConfigError(
            f"Expected waveforms of at least 2 samples. Got shape {tuple(estimate.shape)} instead."
        )
    length = estimate.shape[-1]
    est, ref = estimate.reshape(-1, length).float(), target.reshape(-1, length).float()
    total = est.new_zeros(())
    for n_fft, hop, win in resolutions:
        n_fft, hop, win = fit_resolution(n_fft, hop, win, length)
        est_mag = _stft_magnitude(est, n_fft, hop, win)
        ref_mag = _stft_magnitude(ref, n_fft, hop, win)
        convergence = torch.linalg.norm(ref_mag - est_mag) / torch.linalg.norm(ref_mag)
        log_mag = F.l1_loss(torch.log(est_mag), torch.log(ref_mag))
        total = total + convergence + log_mag
    return total / len(resolutions)


# ---------------------------------------------------------------------------------------------- registry


@LOSSES.register("mapping-mse")
def _mapping_mse(
    output: torch.Tensor, target: torch.Tensor, noisy: torch.Tensor | None = None
) -> torch.Tensor:
    return mapping_mse(output, target)


@LOSSES.register("signal-approximation")
def _signal_approximation(
    output: torch.Tensor, target: torch.Tensor, noisy: torch.Tensor | None = None
) -> torch.Tensor:
    if noisy is None:
        raise ConfigError(
            "Expected the noisy magnitude (noisy=...) for the signal-approximation loss. Got None instead."
        )
    return signal_approximation(output, noisy, target)


@LOSSES.register("si-snr")
def _si_snr(output: torch.Tensor, target: torch.Tensor, noisy: torch.Tensor | None = None) -> torch.Tensor:
    return si_snr_loss(output, target)


@LOSSES.register("mr-stft")
def _mr_stft(output: torch.Tensor, target: torch.Tensor, noisy: torch.Tensor | None = None) -> torch.Tensor:
    return mr_stft_loss(output, target)


def get_loss(name: str) -> Loss:
    """The registered loss `name`; unknown names raise NotFoundError listing the valid ones."""
    return LOSSES.get(name)
