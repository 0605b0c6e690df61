import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

import features as F
from stores.errors import ConfigError

N = 30


def definition(magnitude, mask, n):
    """Channel 0 = |Y|, channel i = 1[M > i/n]·|Y|, one channel at a time, straight from the paper."""
    channels = [magnitude]
    for i in range(1, n):
        channels.append(np.where(mask.astype(np.float64) > i / n, magnitude, 0).astype(magnitude.dtype))
    return np.stack(channels, axis=-2)


def masks_with_thresholds(n, shape=(40, 257), seed=0):
    """Random masks in [-0.1, 1.1] with many values exactly at, and one float step either side of, i/n."""
    rng = np.random.default_rng(seed)
    mask = rng.uniform(-0.1, 1.1, size=shape)
    t = np.arange(0, n + 1) / n
    edges = np.concatenate([t, np.nextafter(t, -1), np.nextafter(t, 2)])
    picks = rng.random(shape) < 0.5
    mask[picks] = rng.choice(edges, size=int(picks.sum()))
    return mask


@pytest.mark.parametrize("n", [2, 3, 7, 30, 256])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_channels_equal_the_definition(n, dtype):
    rng = np.random.default_rng(n)
    mask = masks_with_thresholds(n).astype(dtype)
    magnitude = rng.gamma(1.0, size=mask.shape).astype(np.float32)
    dense = F.decomposed_from_mask(magnitude, mask, n)
    assert dense.shape == (40, n, 257) and dense.dtype == np.float32
    assert np.array_equal(dense, definition(magnitude, mask, n))


@pytest.mark.parametrize("n", [2, 3, 7, 30, 255, 256])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_quantise_then_expand_round_trips_exactly(n, dtype):
    mask = masks_with_thresholds(n, seed=n).astype(dtype)
    magnitude = np.random.default_rng(1).gamma(1.0, size=mask.shape).astype(np.float32)
    levels = F.quantise_mask(mask, n)
    assert levels.dtype == np.uint8 and levels.shape == mask.shape
    assert int(levels.max()) <= n - 1
    assert np.array_equal(
        F.expand_decomposed(magnitude, levels, n), F.decomposed_from_mask(magnitude, mask, n)
    )


@pytest.mark.parametrize("n", [2, 30, 256])
def test_threshold_indicator_is_level_prefix(n):
    # the storage form's claim: 1[M > i/n] == 1[i <= L] with L = #{i in 1..n-1 : M > i/n}, for every i,
    # on values exactly at every threshold and one float step either side
    mask = masks_with_thresholds(n, shape=(5000,), seed=7)
    levels = F.quantise_mask(mask, n).astype(int)
    count = sum((mask > i / n).astype(int) for i in range(1, n))
    assert np.array_equal(levels, count)
    for i in range(1, n):
        assert np.array_equal(mask > i / n, i <= levels)
    at = np.arange(1, n) / n
    assert np.array_equal(F.quantise_mask(at, n), np.arange(0, n - 1))  # M == i/n is not above i/n
    assert np.array_equal(F.quantise_mask(np.nextafter(at, 2), n), np.arange(1, n))


def test_torch_expansion_equals_numpy():
    mask = masks_with_thresholds(N, shape=(3, 40, 257))  # a batch of utterances
    magnitude = np.random.default_rng(2).gamma(1.0, size=mask.shape).astype(np.float32)
    levels = F.quantise_mask(mask, N)
    dense = F.expand_decomposed(magnitude, levels, N)
    assert dense.shape == (3, 40, N, 257)
    got = F.expand_decomposed_torch(torch.from_numpy(magnitude), torch.from_numpy(levels), N)
    assert got.dtype == torch.float32 and np.array_equal(got.numpy(), dense)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_expansion_on_cuda_equals_numpy():
    mask = masks_with_thresholds(N)
    magnitude = np.random.default_rng(2).gamma(1.0, size=mask.shape).astype(np.float32)
    levels = F.quantise_mask(mask, N)
    got = F.expand_decomposed_torch(torch.from_numpy(magnitude).cuda(), torch.from_numpy(levels), N)
    assert got.device.type == "cuda"
    assert np.array_equal(got.cpu().numpy(), F.expand_decomposed(magnitude, levels, N))


def test_storage_is_magnitude_plus_one_byte_per_cell():
    mask = masks_with_thresholds(N, shape=(200, 257))
    magnitude = np.random.default_rng(4).gamma(1.0, size=mask.shape).astype(np.float32)
    dense = F.decomposed_from_mask(magnitude, mask, N)
    compact = magnitude.nbytes + F.quantise_mask(mask, N).nbytes
    assert (dense.nbytes, compact) == (200 * 257 * N * 4, 200 * 257 * 5)
    assert dense.nbytes / compact == pytest.approx(N * 4 / (4 + 1))  # 24x smaller for n = 30


def test_oracle_irm():
    clean = np.array([[0.0, 3.0, 0.0, 1.0, 1e-30, 1e20]], dtype=np.float32)
    noise = np.array([[0.0, 4.0, 2.0, 0.0, 1e-30, 1e20]], dtype=np.float32)
    mask = F.oracle_irm(clean, noise)
    assert mask.dtype == np.float32
    # 0/0 -> 0 (no speech energy to keep); no underflow or overflow in the squares
    assert np.allclose(mask, [[0.0, 0.6, 0.0, 1.0, np.sqrt(0.5), np.sqrt(0.5)]])
    with pytest.raises(ConfigError, match="Expected clean and noise magnitudes of the same shape"):
        F.oracle_irm(clean, noise[:, :2])


def test_decomposed_from_real_waves_uses_the_oracle_irm(real_data):
    root = real_data / "voicebank-demand"
    noisy, _ = sf.read(root / "noisy_testset_wav" / "p232_002.wav", dtype="float32")
    clean, _ = sf.read(root / "clean_testset_wav" / "p232_002.wav", dtype="float32")
    noise = noisy - clean
    cfg = F.PRESETS["decomposed-30"]
    dense = F.decomposed_spectrogram((noisy, clean, noise), cfg)
    assert np.array_equal(dense, F.compute_feature(np.stack([noisy, clean, noise]), cfg))

    def mag(wave):
        return np.abs(librosa.stft(wave, n_fft=512, hop_length=256)).T

    expected = definition(mag(noisy), F.oracle_irm(mag(clean), mag(noise)), N)
    assert dense.shape == expected.shape == (mag(noisy).shape[0], N, 257)
    assert np.array_equal(dense, expected)
    # channel 0 is |Y| in librosa's arithmetic; the magnitude feature's float32 arithmetic is within 1e-6
    plain = F.magnitude(noisy, F.MagnitudeConfig())
    assert np.abs(dense[:, 0] - plain).max() <= 1e-6 * dense[:, 0].max()
    assert 0 < (dense[:, -1] > 0).mean() < (dense[:, 1] > 0).mean() < 1  # channels thin out as i grows
    half = F.decomposed_spectrogram((noisy, clean, noise), F.DecomposedConfig(dtype="float16"))
    assert half.dtype == np.float16 and np.array_equal(half, dense.astype(np.float16))


def test_bad_decomposed_inputs():
    wave = np.zeros(2000, dtype=np.float32)
    with pytest.raises(
        ConfigError, match="Expected mask 'oracle-irm' to compute decomposed features from waves"
    ):
        F.decomposed_spectrogram((wave, wave, wave), F.DecomposedConfig(mask="model:crn-1"))
    with pytest.raises(ConfigError, match="Expected \\(noisy, clean, noise\\) waves"):
        F.decomposed_spectrogram((wave, wave), F.DecomposedConfig())
    with pytest.raises(ConfigError, match="Expected noisy, clean and noise waves of the same length"):
        F.decomposed_spectrogram((wave, wave, wave[:1000]), F.DecomposedConfig())
    mag = np.ones((4, 5), dtype=np.float32)
    with pytest.raises(ConfigError, match="Expected a finite mask"):
        F.quantise_mask(np.full((4, 5), np.nan), N)
    with pytest.raises(ConfigError, match="Expected magnitude and mask of the same shape"):
        F.decomposed_from_mask(mag, np.ones((4, 6)), N)
    with pytest.raises(ConfigError, match="Expected uint8 levels"):
        F.expand_decomposed(mag, np.ones((4, 5), dtype=np.int64), N)
    with pytest.raises(ConfigError, match="Expected levels from 0 to n-1=29. Got a level of 30"):
        F.expand_decomposed(mag, np.full((4, 5), 30, dtype=np.uint8), N)
    with pytest.raises(ConfigError, match="from 2 to 256"):
        F.quantise_mask(np.ones(3), 1)
    with pytest.raises(ConfigError, match="Expected uint8 levels"):
        F.expand_decomposed_torch(torch.ones(4, 5), torch.ones(4, 5), N)
