"""Feature throughput: librosa's reference calls beside `features`' batched implementations, on 60 s of real
speech (the VoiceBank-DEMAND clean test files concatenated, wrapping round to the start if they are short).

    .venv/bin/python benchmarks/bench_features.py [--seconds 60] [--repeats 15] [--data ../shared/data/real]
                                                  [--kinds reassigned,magnitude,complex] [--pad-mode constant]

`--pad-mode` sets the magnitude and complex presets' padding (they are centred; reassigned's preset is not).
Each line gives the median wall time of `--repeats` alternating runs (after one warm-up) and librosa's time divided by
ours; every pair is also checked for equality so that the speed is not bought with a different answer. Everything runs
in this one process on one thread (numpy's and scipy.fft's FFTs are single-threaded by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

import features as F
from features.stft import stft_magnitude


def load_speech(root: Path, seconds: float) -> tuple[np.ndarray, int]:
    paths = sorted((root / "voicebank-demand" / "clean_testset_wav").glob("*.wav"))
    if not paths:
        raise SystemExit(f"no clean_testset_wav files under {root}")
    parts, rate = [], None
    for path in paths:
        data, rate = sf.read(path, dtype="float32")
        parts.append(data if data.ndim == 1 else data.mean(axis=1))
    speech = np.concatenate(parts)
    need = int(seconds * rate)
    return np.resize(speech, need), rate  # np.resize repeats from the start when short


def median_times(ref: Callable[[], object], ours: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of each, timed alternately so that load changes hit both alike."""
    ref(), ours()
    t_ref, t_ours = [], []
    for _ in range(repeats):
        for fn, times in ((ref, t_ref), (ours, t_ours)):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    return statistics.median(t_ref), statistics.median(t_ours)


def librosa_reassigned(y: np.ndarray, cfg: F.ReassignedConfig) -> np.ndarray:
    """librosa's call, stacked time-major as float32 the way `features.reassigned` returns it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # divide-by-zero; numpy's "where without out"
        planes = librosa.reassigned_spectrogram(
            y=y, sr=cfg.sample_rate, S=None, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
            win_length=cfg.win_length, window=cfg.window, center=cfg.center,
            reassign_frequencies=cfg.reassign_frequencies, reassign_times=cfg.reassign_times,
            ref_power=cfg.ref_power, fill_nan=cfg.fill_nan, clip=cfg.clip, pad_mode=cfg.pad_mode,
        )  # fmt: skip
    return np.stack([np.asarray(p).T for p in planes], axis=1).astype(np.float32)


def librosa_stft(y: np.ndarray, cfg: F.MagnitudeConfig | F.ComplexConfig) -> np.ndarray:
    return librosa.stft(
        y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, window=cfg.window,
        center=cfg.center, pad_mode=cfg.pad_mode,
    )  # fmt: skip


def librosa_magnitude(y: np.ndarray, cfg: F.MagnitudeConfig) -> np.ndarray:
    return np.abs(librosa_stft(y, cfg)).T


def exact_magnitude(y: np.ndarray, cfg: F.MagnitudeConfig) -> np.ndarray:
    """The alternative the `magnitude` feature left: librosa's float64 arithmetic in our batched blocks
    (bit-identical to librosa; the decomposed features and the reassigned magnitude plane use it)."""
    return stft_magnitude(y, cfg)


def exact_complex(y: np.ndarray, cfg: F.ComplexConfig) -> np.ndarray:
    spec = F.stft_tf(y, cfg)
    return np.stack([spec.real, spec.imag], axis=1)


def report(name: str, ref_s: float, ours_s: float, equal: str) -> None:
    print(f"{name:<44} librosa {ref_s * 1e3:8.1f} ms   ours {ours_s * 1e3:8.1f} ms   "
          f"ratio {ref_s / ours_s:5.2f}x   {equal}")  # fmt: skip


def compare(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"SHAPES DIFFER {a.shape} {b.shape}"
    if np.array_equal(a, b, equal_nan=True):
        return "bit-identical"
    finite = np.isfinite(a)
    scale = float(np.abs(a[finite]).max()) or 1.0
    same_nan = np.array_equal(np.isnan(a), np.isnan(b))
    return f"max rel err {float(np.nanmax(np.abs(a - b))) / scale:.1e}, NaN positions equal: {same_nan}"


def compare_reassigned(ref: np.ndarray, ours: np.ndarray) -> str:
    """Per plane: the frequency and time errors relative to the plane's largest finite value, whether the
    magnitudes are bit-identical, whether the NaN positions are the same."""
    if ref.shape != ours.shape:
        return f"SHAPES DIFFER {ref.shape} {ours.shape}"
    errors = []
    for plane in (0, 1):
        a, b = ref[:, plane], ours[:, plane]
        finite = np.isfinite(a)
        scale = float(np.abs(a[finite]).max()) or 1.0
        errors.append(float(np.abs(a[finite].astype(np.float64) - b[finite]).max()) / scale)
    same_nan = np.array_equal(np.isnan(ref), np.isnan(ours))
    magnitudes = "bit-identical" if np.array_equal(ref[:, 2], ours[:, 2]) else "DIFFER"
    return (
        f"rel err freq {errors[0]:.1e} time {errors[1]:.1e}, magnitudes {magnitudes}, "
        f"NaN positions equal: {same_nan}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "real")
    )
    parser.add_argument("--kinds", default="reassigned,magnitude,complex", help="comma-separated subset")
    parser.add_argument("--pad-mode", default="constant", help="magnitude and complex presets' pad_mode")
    args = parser.parse_args()
    kinds = set(args.kinds.split(","))

    y, rate = load_speech(Path(args.data), args.seconds)
    print(
        f"signal: {y.shape[0] / rate:.1f} s at {rate} Hz; librosa {librosa.__version__}, numpy {np.__version__}"
    )

    for kw in ({}, {"fill_nan": False}, {"center": True}) if "reassigned" in kinds else ():
        cfg = F.ReassignedConfig(**kw)
        ref, ours = librosa_reassigned(y, cfg), F.reassigned(y, cfg)
        t_ref, t_ours = median_times(
            lambda cfg=cfg: librosa_reassigned(y, cfg), lambda cfg=cfg: F.reassigned(y, cfg), args.repeats
        )
        report(
            f"reassigned {kw or 'inversion preset'} {ours.shape}",
            t_ref,
            t_ours,
            compare_reassigned(ref, ours),
        )

    for preset in ("magnitude-crn", "magnitude-cnn") if "magnitude" in kinds else ():
        cfg = dataclasses.replace(F.get_preset(preset), pad_mode=args.pad_mode)
        ref, ours = librosa_magnitude(y, cfg), F.magnitude(y, cfg)
        t_ref, t_ours = median_times(
            lambda cfg=cfg: librosa_magnitude(y, cfg), lambda cfg=cfg: F.magnitude(y, cfg), args.repeats
        )
        report(f"magnitude {preset} {ours.shape}", t_ref, t_ours, compare(ref, ours))
        t_ref, t_exact = median_times(
            lambda cfg=cfg: librosa_magnitude(y, cfg), lambda cfg=cfg: exact_magnitude(y, cfg), args.repeats
        )
        report(
            f"  (librosa's float64 arithmetic) {preset}",
            t_ref,
            t_exact,
            compare(ref, exact_magnitude(y, cfg)),
        )

    if "complex" not in kinds:
        return
    cfg = dataclasses.replace(F.get_preset("complex-dccrn"), pad_mode=args.pad_mode)
    spec = librosa_stft(y, cfg)
    t_ref, t_ours = median_times(lambda: librosa_stft(y, cfg), lambda: F.complex_stft(y, cfg), args.repeats)
    ref = np.stack([spec.real.T, spec.imag.T], 1)
    report(f"complex complex-dccrn {ref.shape}", t_ref, t_ours, compare(ref, F.complex_stft(y, cfg)))
    t_ref, t_exact = median_times(lambda: librosa_stft(y, cfg), lambda: exact_complex(y, cfg), args.repeats)
    report(
        "  (librosa's float64 arithmetic) complex-dccrn", t_ref, t_exact, compare(ref, exact_complex(y, cfg))
    )


if __name__ == "__main__":
    main()
