"""Every feature kind, and the inverse STFT, against librosa over the parameters each config accepts, on
real speech and on edge signals: shapes equal, refusals where librosa refuses, NaN (and inf) positions
identical, values within the tolerance each kind documents.

The grid is listed explicitly below. The default run takes every geometry with every padding, on one
signal and one option set each, cycling so that every value of every axis is taken; the full grid
(marker `grid`, `make test-grid`) takes every signal with every option (magnitude, complex, istft), or
every signal and every option each with every geometry and padding (reassigned, decomposed, logmel).

Set SPECSTORE_GRID_REPORT to a file name to have the worst error seen per kind and plane written there.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import warnings

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

import features as F
from features.invert import istft
from features.reassigned import REL_TOL
from features.stft import STFT_TOLERANCE, stft_window
from stores.errors import ConfigError

# (n_fft, win_length, hop_length, window). librosa's own test parametrisations (its tests are not installed
# with it): reassignment with n_fft 128, 255, 256, 512, 1280 (frequencies) and 128, 256, 1024, 2099 (times)
# at hop = n_fft; istft reconstruction with n_fft 1024, 1025, 2048, 4096, hops 128 to 512, hann and
# blackmanharris; window sizes 2^12 and up at hop N/2. Then the framing's edges: odd, even and prime n_fft,
# win_length < n_fft, hops that do not divide n_fft or exceed n_fft / 2, hop = win_length, n_fft 1 and 2.
GEOMETRIES = [
    (512, 512, 256, "hann"),  # magnitude and decomposed defaults
    (1024, 1024, 512, "hann"),  # magnitude-cnn
    (512, 400, 100, "hann"),  # complex default (DCCRN)
    (80, 80, 20, "hamming"),  # reassigned default
    (256, 256, 128, "hamming"),  # issue 25's reflect reproducer
    (128, 128, 128, "hann"),
    (255, 255, 255, "hann"),
    (256, 256, 256, "hann"),
    (1280, 1280, 1280, "hann"),
    (2099, 2099, 2099, "hann"),  # prime
    (1024, 1024, 128, "hann"),
    (1025, 1025, 256, "blackmanharris"),
    (2048, 2048, 512, "blackmanharris"),
    (4096, 4096, 2048, "hann"),
    (81, 81, 20, "hamming"),
    (127, 127, 50, "blackman"),  # prime n_fft, a hop that does not divide it
    (64, 48, 48, "hann"),  # hop = win_length < n_fft
    (64, 47, 13, "triang"),  # odd window in an even n_fft, prime hop
    (17, 17, 5, "boxcar"),
    (16, 10, 9, "bartlett"),  # hop > n_fft / 2
    (33, 20, 17, "hann"),
    (2, 2, 1, "boxcar"),
    (1, 1, 1, "boxcar"),  # one bin
]
# (center, pad_mode): uncentred, and centred with every pad mode the config accepts (features.config.PAD_MODES)
PADDINGS = [(False, "constant"), (True, "constant"), (True, "edge"), (True, "reflect"), (True, "symmetric")]
SIGNALS = [
    "noise",  # white noise, of a length whose centred tail segment is n_fft // 2 long where that can be
    "speech",  # one second of real VoiceBank-DEMAND clean speech
    "noisy-speech",  # its noisy recording
    "zeros",
    "impulses",  # librosa's time-reassignment test: ones at samples 263 and 2633
    "dc",
    "square",  # a clipped square wave
    "tone",  # a cosine at a bin centre
    "chirp",
    "len-1",  # lengths around n_fft: shorter ones are framed when centred, refused otherwise (as librosa)
    "len-half",
    "len-n_fft-1",
    "len-n_fft",
    "len-n_fft+1",
    "empty",  # refused always (librosa frames it with constant padding and an even n_fft only)
]
STFT_DTYPES = ["float32", "float16"]
# (reassign_frequencies, reassign_times, ref_power, fill_nan, clip, sample_rate): librosa's tests take
# ref_power 0 and 1e-6, fill_nan and clip both ways, the three flag pairs and sr from 1 to 22050
REASSIGNED_OPTIONS = [
    (f, t, ref, fill, clip, sr)
    for (f, t), ref, fill, clip, sr in itertools.product(
        [(True, True), (True, False), (False, True)],
        [1e-6, 0.0, 1e-2],
        [False, True],
        [False, True],
        [16000, 22050, 1, 2048],
    )  # fmt: skip
    if sr == 16000 or (ref == 1e-6 and not clip)  # the rate only rescales: not with every other option
]
DECOMPOSED_OPTIONS = [(30, "float32"), (2, "float32"), (256, "float32"), (30, "float16")]  # (n, dtype)
# logmel: (n_mels, fmin, fmax, sample_rate, dtype)
LOGMEL_OPTIONS = [(64, 0.0, None, 16000, "float32"), (128, 20.0, 7600.0, 16000, "float32"),
                  (40, 0.0, None, 22050, "float32"), (8, 300.0, 3400.0, 8000, "float32"),
                  (64, 0.0, None, 16000, "float16")]  # fmt: skip
LOGMEL_TOLERANCE = 2e-3  # dB, features/logmel.py
ISTFT_LENGTHS = [None, "signal"]  # librosa's own length, or the analysed signal's

WORST: dict[str, float] = {}


def cases(options: list, product: bool = True) -> list:
    """pytest params (geometry, padding, signal, option) for every geometry and padding with every signal
    and every option (`product`), or with each signal (one option each) and each option (one signal each),
    cycling; those outside the default run's one (signal, option) per (geometry, padding) marked `grid`."""
    out = {}
    for index, (geometry, padding) in enumerate(itertools.product(GEOMETRIES, PADDINGS)):
        default = (SIGNALS[index % len(SIGNALS)], options[index % len(options)])
        chosen = list(itertools.product(SIGNALS, options)) if product else [
            *((s, options[(index + i) % len(options)]) for i, s in enumerate(SIGNALS)),
            *((SIGNALS[(index + i) % len(SIGNALS)], o) for i, o in enumerate(options)),
        ]  # fmt: skip
        for signal, option in [default, *chosen]:
            out.setdefault((geometry, padding, signal, option), (signal, option) == default)
    return [
        pytest.param(*key, marks=() if default else pytest.mark.grid, id="-".join(map(str, key)))
        for key, default in out.items()
    ]


@pytest.fixture(scope="module", autouse=True)
def worst_errors():
    yield WORST
    if os.environ.get("SPECSTORE_GRID_REPORT"):
        with open(os.environ["SPECSTORE_GRID_REPORT"], "w") as report:
            json.dump(WORST, report, indent=1, sort_keys=True)


def note(name: str, error: float) -> None:
    WORST[name] = max(WORST.get(name, 0.0), error)


def tail_length(n_fft: int, hop: int) -> int:
    """About 8·n_fft samples, such that librosa's centred tail segment is exactly n_fft // 2 samples long
    ((length - n_fft/2) % hop == hop - n_fft/2: even n_fft, hop >= n_fft/2), else 8·n_fft + 1."""
    half, base = n_fft // 2, 8 * max(n_fft, 64)
    if n_fft % 2 or hop < half or half == 0:
        return base + 1
    return base + (hop - half - (base - half)) % hop


def synthetic(name: str, n_fft: int, hop: int, sr: int) -> np.ndarray:
    length = tail_length(n_fft, hop)
    n = np.arange(max(length, 4096) if name == "impulses" else length)
    if name.startswith("len-") or name in ("noise", "empty"):
        sizes = {"len-1": 1, "len-half": n_fft // 2, "len-n_fft-1": n_fft - 1, "len-n_fft": n_fft}
        sizes |= {"len-n_fft+1": n_fft + 1, "noise": length, "empty": 0}
        wave = 0.3 * np.random.default_rng(25).standard_normal(sizes[name])
    elif name == "impulses":
        wave = np.isin(n, [263, 2633]).astype(float)
    else:
        t = n / sr
        f0, f1 = 0.001 * sr, 0.45 * sr
        wave = {
            "zeros": 0 * t,
            "dc": 0.5 + 0 * t,
            "square": np.clip(1.5 * np.sign(np.sin(2 * np.pi * 3 * n / max(n_fft, 8))), -1, 1),
            "tone": 0.5 * np.cos(2 * np.pi * max(1, n_fft // 4) * n / n_fft),
            "chirp": 0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1]))),
        }[name]
    return wave.astype(np.float32)


@functools.lru_cache(maxsize=4)
def voicebank(folder: str) -> np.ndarray:
    from pipelines.testing import real_data_root

    wave, rate = sf.read(real_data_root() / "voicebank-demand" / folder / "p232_013.wav", dtype="float32")
    assert rate == 16000
    return wave[8000:24000]  # one second of speech


def signal(request, name: str, geometry: tuple, sr: int = 16000) -> np.ndarray:
    if name in ("speech", "noisy-speech"):
        request.getfixturevalue("real_data")  # skips where the recordings are absent
        return voicebank("clean_testset_wav" if name == "speech" else "noisy_testset_wav")
    return synthetic(name, geometry[0], geometry[2], sr)


def stft_args(geometry: tuple, padding: tuple) -> dict:
    n_fft, win_length, hop_length, window = geometry
    center, pad_mode = padding
    return dict(n_fft=n_fft, win_length=win_length, hop_length=hop_length, window=window, center=center,
                pad_mode=pad_mode)  # fmt: skip


def librosa_or_none(compute):
    """librosa's result, or None where librosa refuses the input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_fft larger than the signal; divide by zero in reassignment
        try:
            return compute()
        except (librosa.ParameterError, ValueError):
            return None


def expect_refusal(ref, wave: np.ndarray, compute) -> bool:
    """True (having checked that ours refuses too) where librosa refuses the input, or where it is empty
    (refused by the features always)."""
    if ref is not None and wave.size:
        return False
    with pytest.raises(ConfigError):
        compute()
    return True


def relative_error(ours: np.ndarray, ref: np.ndarray, scale: float) -> float:
    if not ours.size:
        return 0.0
    error = float(np.max(np.abs(ours.astype(np.float64) - ref)))
    return error / scale if scale > 0 else (0.0 if error == 0 else np.inf)


# the real clean recordings whose length puts librosa's centred tail segment at n_fft // 2 = 256 samples
TAIL_RECORDINGS = [
    "lhotse__ES2011a.Headset-0-40s-46s.wav",
    "speechbrain__spk1_snt3.wav",
    "speechbrain__spk2_snt2.wav",
]


@pytest.mark.parametrize("source", ["reproducer", *TAIL_RECORDINGS])
def test_reflect_tail_segment_of_half_a_frame_matches_librosa(request, source):
    """Issue 25: with pad_mode="reflect", librosa pads a tail segment of exactly n_fft // 2 samples by
    reflecting it twice; padding the whole signal once gave another last frame (the reproducer's
    magnitude by 6e-3 of the plane's maximum). Every kind's last frame now equals librosa's."""
    if source == "reproducer":  # white noise of 4096 samples, n_fft 256, hop 128, hamming
        geometry = (256, 256, 128, "hamming")
        wave = (0.3 * np.random.default_rng(25).standard_normal(4096)).astype(np.float32)
    else:
        real = request.getfixturevalue("real_data")
        wave, geometry = sf.read(real / "clean" / source, dtype="float32")[0], (512, 512, 256, "hann")
    args = stft_args(geometry, (True, "reflect"))
    n_fft, hop = args["n_fft"], args["hop_length"]
    assert (wave.size - n_fft // 2) % hop == hop - n_fft // 2  # the case
    ref = librosa.stft(wave, **args).T
    # the last frame of the whole signal padded once, in librosa's arithmetic: not librosa's
    start = (len(ref) - 1) * hop
    whole = np.pad(wave, n_fft // 2, mode="reflect")[start : start + n_fft]
    assert not np.array_equal(
        np.fft.rfft(stft_window(F.MagnitudeConfig(**args)) * whole).astype(np.complex64), ref[-1]
    )
    scale = float(np.abs(ref).max())
    assert np.array_equal(F.stft_tf(wave, F.MagnitudeConfig(**args)), ref)
    assert relative_error(F.magnitude(wave, F.MagnitudeConfig(**args))[-1], np.abs(ref[-1]), scale) < 1e-6
    planes = F.complex_stft(wave, F.ComplexConfig(**args))[-1]
    assert (
        max(relative_error(planes[0], ref[-1].real, scale), relative_error(planes[1], ref[-1].imag, scale))
        < 1e-6
    )
    cfg = F.ReassignedConfig(**args, fill_nan=False)
    ours, ref = F.reassigned_spectrogram(wave, cfg), librosa_reassigned(wave, cfg)
    assert_reassigned_matches(ours[-1:], ref[-1:], cfg, len(ref))


@pytest.mark.parametrize("kind", ["magnitude", "complex"])
@pytest.mark.parametrize(("geometry", "padding", "name", "dtype"), cases(STFT_DTYPES))
def test_stft_kinds_match_librosa(request, kind, geometry, padding, name, dtype):
    wave = signal(request, name, geometry)
    cfg = F.feature_config(kind, dtype=dtype, **stft_args(geometry, padding))
    ref = librosa_or_none(lambda: librosa.stft(wave, **stft_args(geometry, padding)))
    if expect_refusal(ref, wave, lambda: F.compute_feature(wave, cfg)):
        return
    ref = ref.T
    ours = F.compute_feature(wave, cfg)
    exact = F.stft_tf(wave, cfg)  # the float64 path of reassigned and decomposed: librosa's arithmetic
    assert exact.shape == ref.shape and np.array_equal(exact, ref)
    if dtype == "float16":  # the float32 values, rounded once
        ours32 = F.compute_feature(wave, F.feature_config(kind, **stft_args(geometry, padding)))
        assert np.array_equal(ours, ours32.astype(np.float16))
        ours = ours32
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    planes = {"magnitude": (ours, np.abs(ref))} if kind == "magnitude" else {
        "real": (ours[:, 0], ref.real), "imag": (ours[:, 1], ref.imag)
    }  # fmt: skip
    for plane, (got, want) in planes.items():
        assert got.shape == want.shape
        error = relative_error(got, want, scale)
        note(f"{kind} {plane}", error)
        assert error <= STFT_TOLERANCE, f"{plane}: error {error:.3g} of the largest |STFT|"


# librosa.reassigned_spectrogram's parameters that ReassignedConfig names alike (sr is its sample_rate)
REASSIGNED_ARGS = ["n_fft", "hop_length", "win_length", "window", "center", "reassign_frequencies",
                   "reassign_times", "ref_power", "fill_nan", "clip", "pad_mode"]  # fmt: skip


def librosa_reassigned(wave: np.ndarray, cfg: F.ReassignedConfig) -> np.ndarray | None:
    args = {name: getattr(cfg, name) for name in REASSIGNED_ARGS}
    planes = librosa_or_none(lambda: librosa.reassigned_spectrogram(y=wave, sr=cfg.sample_rate, **args))
    return None if planes is None else np.stack([np.asarray(p).T for p in planes], axis=1)


def reassigned_scales(cfg: F.ReassignedConfig, frames: int) -> tuple[float, float]:
    """The scales features.reassigned's tolerance is relative to: sr/2 for frequencies, the last frame
    time (at least half a window) for times."""
    offset = 0 if cfg.center else cfg.n_fft // 2
    last = ((frames - 1) * cfg.hop_length + offset) / cfg.sample_rate
    return cfg.sample_rate / 2.0, max(last, cfg.n_fft / (2.0 * cfg.sample_rate))


def assert_reassigned_matches(
    ours: np.ndarray, ref: np.ndarray, cfg: F.ReassignedConfig, frames: int | None = None
) -> None:
    """Magnitudes bit-identical, NaN and inf positions identical, frequencies and times within REL_TOL of
    their scale (for a spectrogram of `frames` frames, default all of them) of float32(librosa)."""
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert np.array_equal(ours[:, 2], ref[:, 2]), "magnitudes differ"
    ref32 = ref.astype(np.float32)
    for index, (plane, scale) in enumerate(
        zip(("frequency", "time"), reassigned_scales(cfg, frames or len(ours)), strict=True)
    ):
        got, want = ours[:, index], ref32[:, index]
        assert np.array_equal(np.isnan(got), np.isnan(want)), f"{plane}: NaN positions differ"
        assert np.array_equal(np.isinf(got), np.isinf(want)), f"{plane}: infinities differ"
        assert np.array_equal(got[np.isinf(got)], want[np.isinf(want)])
        finite = np.isfinite(want)
        error = relative_error(got[finite], want[finite], scale)
        note(f"reassigned {plane}", error)
        assert error <= REL_TOL, f"{plane}: error {error:.3g} of {scale}"


@pytest.mark.parametrize(("geometry", "padding", "name", "option"), cases(REASSIGNED_OPTIONS, product=False))
def test_reassigned_matches_librosa(request, geometry, padding, name, option):
    freqs, times, ref_power, fill_nan, clip, sr = option
    cfg = F.ReassignedConfig(
        **stft_args(geometry, padding), sample_rate=sr, reassign_frequencies=freqs, reassign_times=times,
        ref_power=ref_power, fill_nan=fill_nan, clip=clip,
    )  # fmt: skip
    wave = signal(request, name, geometry, sr)
    ref = librosa_reassigned(wave, cfg)
    if not expect_refusal(ref, wave, lambda: F.reassigned_spectrogram(wave, cfg)):
        assert_reassigned_matches(F.reassigned_spectrogram(wave, cfg), ref, cfg)


def decomposed_reference(waves: list[np.ndarray], cfg: F.DecomposedConfig) -> np.ndarray:
    """The decomposed channels by their definition, from librosa's magnitudes: channel 0 = |Y|, channel i =
    1[M > i/n]·|Y| with the oracle IRM M = sqrt(S² / (S² + N²)) (0 where S = N = 0) in float32."""
    args = stft_args((cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.window), (cfg.center, cfg.pad_mode))
    noisy, clean, noise = (np.abs(librosa.stft(w, **args)).T for w in waves)
    s2, total = clean.astype(np.float64) ** 2, clean.astype(np.float64) ** 2 + noise.astype(np.float64) ** 2
    mask = np.sqrt(np.divide(s2, total, out=np.zeros_like(total), where=total > 0)).astype(np.float32)
    on = mask[:, None, :].astype(np.float64) > (np.arange(1, cfg.n) / cfg.n)[None, :, None]
    dense = np.concatenate([noisy[:, None], np.where(on, noisy[:, None], np.float32(0))], axis=1)
    return dense.astype(cfg.dtype)


@pytest.mark.parametrize(("geometry", "padding", "name", "option"), cases(DECOMPOSED_OPTIONS, product=False))
def test_decomposed_matches_its_definition_on_librosa_magnitudes(request, geometry, padding, name, option):
    n, dtype = option
    cfg = F.DecomposedConfig(**stft_args(geometry, padding), n=n, dtype=dtype)
    if name in ("speech", "noisy-speech"):
        clean, noisy = signal(request, "speech", geometry), signal(request, "noisy-speech", geometry)
    else:
        clean = signal(request, name, geometry)
        noisy = clean + (0.1 * np.random.default_rng(5).standard_normal(clean.size)).astype(np.float32)
    waves = [w[:8000] for w in (noisy, clean, noisy - clean)]  # n = 256 channels: keep the output small
    ref = librosa_or_none(lambda: librosa.stft(waves[0], **stft_args(geometry, padding)))
    if not expect_refusal(ref, waves[0], lambda: F.decomposed_spectrogram(waves, cfg)):
        ours = F.decomposed_spectrogram(waves, cfg)
        assert ours.dtype == np.dtype(dtype) and np.array_equal(ours, decomposed_reference(waves, cfg))
        note("decomposed (bit-identical)", 0.0)


@pytest.mark.parametrize(("geometry", "padding", "name", "option"), cases(LOGMEL_OPTIONS, product=False))
def test_logmel_matches_librosa(request, geometry, padding, name, option):
    n_mels, fmin, fmax, sr, dtype = option
    args = stft_args(geometry, padding)
    cfg = F.feature_config("logmel", **args, n_mels=n_mels, fmin=fmin, fmax=fmax, sample_rate=sr, dtype=dtype)
    wave = signal(request, name, geometry, sr)
    mel = dict(sr=sr, power=2.0, n_mels=n_mels, fmin=fmin, fmax=fmax)
    ref = librosa_or_none(
        lambda: librosa.power_to_db(
            librosa.feature.melspectrogram(y=wave, **args, **mel), amin=1e-10, top_db=None
        )
    )
    if expect_refusal(ref, wave, lambda: F.compute_feature(wave, cfg)):
        return
    ours = F.compute_feature(wave, dataclasses.replace(cfg, dtype="float32"))
    if dtype == "float16":  # the float32 values, rounded once
        assert np.array_equal(F.compute_feature(wave, cfg), ours.astype(np.float16))
    assert ours.shape == ref.T.shape
    error = relative_error(ours, ref.T, 1.0)
    note("logmel dB", error)
    assert error <= LOGMEL_TOLERANCE, f"error {error:.3g} dB"


@pytest.mark.parametrize(("geometry", "padding", "name", "length"), cases(ISTFT_LENGTHS))
def test_istft_matches_librosa_and_reconstructs(request, geometry, padding, name, length):
    n_fft, win_length, hop_length, window = geometry
    cfg = F.MagnitudeConfig(**stft_args(geometry, padding))
    wave = signal(request, name, geometry)
    if wave.size < (1 if cfg.center else n_fft):  # no STFT to invert
        with pytest.raises(ConfigError, match="Expected a waveform of at least"):
            F.stft_tf(wave, cfg)
        return
    spec = F.stft_tf(wave, cfg)
    size = wave.size if length else None
    args = dict(hop_length=hop_length, win_length=win_length, n_fft=n_fft, window=window, center=cfg.center)
    if not scipy_nola(cfg):
        with pytest.raises(ConfigError, match="NOLA"):
            istft(spec, cfg, size)
        return
    ours = istft(spec, cfg, size)
    ref = librosa.istft(spec.T, length=size, **args)
    assert ours.dtype == np.float32 and np.array_equal(ours, ref.astype(np.float32))
    if not ours.size:
        return  # one centred frame of an even n_fft: librosa's own length is 0 samples
    # and it inverts the STFT wherever the windows overlap enough to divide by them
    covered = librosa.filters.window_sumsquare(
        window=window, n_frames=spec.shape[0], win_length=win_length, n_fft=n_fft, hop_length=hop_length
    )[n_fft // 2 if cfg.center else 0 :]
    covered = np.pad(covered, (0, max(0, ours.size - covered.size)))[: ours.size]  # past the frames: 0
    keep = covered > 1e-3 * covered.max()
    scale = float(np.abs(wave).max())
    error = relative_error(ours[keep], wave[: ours.size][keep], scale) if scale else 0.0
    note("istft round trip", error)
    assert error <= 1e-4


def scipy_nola(cfg) -> bool:
    return bool(scipy.signal.check_NOLA(stft_window(cfg), cfg.n_fft, cfg.n_fft - cfg.hop_length))
