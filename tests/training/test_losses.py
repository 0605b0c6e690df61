import math

import numpy as np
import pytest
import torch

from stores.errors import ConfigError, NotFoundError
from training.losses import (
    LOSSES,
    MR_STFT_RESOLUTIONS,
    fit_resolution,
    get_loss,
    mapping_mse,
    mr_stft_loss,
    si_snr,
    si_snr_loss,
    signal_approximation,
)


def waves(n=2, length=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, length, generator=g, dtype=torch.float64)


def test_registry_names():
    assert LOSSES.names() == ["mapping-mse", "mr-stft", "si-snr", "signal-approximation"]
    with pytest.raises(NotFoundError, match="Expected a loss name, one of mapping-mse"):
        get_loss("l1")


def test_si_snr_equals_a_hand_computation():
    s, noise = waves(seed=1)[0].numpy(), waves(seed=2)[0].numpy()
    est = 0.8 * s + 0.3 * noise + 0.05
    s0, e0 = s - s.mean(), est - est.mean()
    target = (e0 @ s0) / (s0 @ s0) * s0
    expected = 10 * math.log10((target @ target) / ((e0 - target) @ (e0 - target)))
    got = si_snr(torch.from_numpy(est), torch.from_numpy(s))
    assert got.shape == () and float(got) == pytest.approx(expected, abs=1e-9)
    assert float(si_snr_loss(torch.from_numpy(est)[None], torch.from_numpy(s)[None])) == pytest.approx(
        -expected
    )


def test_si_snr_is_scale_and_offset_invariant():
    s = waves()
    est = s + 0.5 * waves(seed=3)
    base = si_snr(est, s)
    assert base.shape == (2,)
    for scale in (0.01, 3.0, 250.0, -1.0):  # any non-zero scale: the projection absorbs the sign too
        torch.testing.assert_close(si_snr(scale * est, s), base)
        torch.testing.assert_close(si_snr(est, scale * s), base)
    torch.testing.assert_close(si_snr(est + 1.5, s - 0.2), base)  # zero-mean first


def test_negative_si_snr_of_a_perfect_estimate_is_very_negative():
    s = waves().float()
    assert float(si_snr_loss(s, s)) < -60
    assert float(si_snr_loss(s + 0.1 * waves(seed=4).float(), s)) > -30


def test_mr_stft_is_zero_for_identical_inputs_and_positive_otherwise():
    s = waves(length=8000).float()
    assert float(mr_stft_loss(s, s)) == 0.0
    noisy = s + 0.1 * waves(length=8000, seed=5).float()
    worse = s + 1.0 * waves(length=8000, seed=5).float()
    assert 0 < float(mr_stft_loss(noisy, s)) < float(mr_stft_loss(worse, s))
    estimate = noisy.clone().requires_grad_()
    mr_stft_loss(estimate, s).backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0


def test_mr_stft_uses_the_parallel_wavegan_resolutions_scaled_to_short_signals():
    assert MR_STFT_RESOLUTIONS == ((512, 50, 240), (1024, 120, 600), (2048, 240, 1200))
    assert fit_resolution(2048, 240, 1200, 16000) == (2048, 240, 1200)
    assert fit_resolution(2048, 240, 1200, 1000) == (512, 60, 300)
    short = waves(length=600).float()
    assert float(mr_stft_loss(short, short)) == 0.0
    assert float(mr_stft_loss(short * 0.5, short)) > 0


def test_mr_stft_equals_a_hand_computation_at_one_resolution():
    est, ref = waves(1, 3000, seed=6).float(), waves(1, 3000, seed=7).float()
    window = torch.hann_window(240)

    def mag(x):
        spec = torch.stft(x, 512, 50, 240, window, return_complex=True)
        return torch.sqrt(torch.clamp(spec.real**2 + spec.imag**2, min=1e-7))

    a, b = mag(est), mag(ref)
    expected = ((b - a).square().sum().sqrt() / b.square().sum().sqrt()) + (a.log() - b.log()).abs().mean()
    got = mr_stft_loss(est, ref, resolutions=((512, 50, 240),))
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_mask_mse_equals_a_hand_computation():
    rng = np.random.default_rng(0)
    mask, noisy, clean = (rng.random((2, 3, 5)) for _ in range(3))
    expected = np.mean((mask * noisy - clean) ** 2)
    t = [torch.from_numpy(a) for a in (mask, noisy, clean)]
    assert float(signal_approximation(*t)) == pytest.approx(expected)
    assert float(get_loss("signal-approximation")(t[0], t[2], noisy=t[1])) == pytest.approx(expected)
    assert float(mapping_mse(t[0], t[2])) == pytest.approx(np.mean((mask - clean) ** 2))
    assert float(get_loss("mapping-mse")(t[0], t[2])) == pytest.approx(np.mean((mask - clean) ** 2))


def test_losses_reject_mismatched_shapes_and_missing_inputs():
    with pytest.raises(ConfigError, match="Expected the noisy magnitude"):
        get_loss("signal-approximation")(torch.ones(2, 3), torch.ones(2, 3))
    with pytest.raises(ConfigError, match="Expected estimate and target waveforms of the same shape"):
        si_snr(torch.ones(2, 100), torch.ones(2, 99))
    with pytest.raises(ConfigError, match="Expected"):
        mapping_mse(torch.ones(2, 3), torch.ones(3, 2))
    with pytest.raises(ConfigError, match="Expected waveforms of at least 2 samples"):
        mr_stft_loss(torch.ones(1), torch.ones(1))
