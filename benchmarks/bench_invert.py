"""Inverting the reassigned spectrogram of real clean speech (seed config: 80/80/20 hamming, center False,
NaN filled): PGHI (`features.invert_reassigned`) beside the zero-phase baseline and Griffin-Lim on the same
magnitudes (librosa.griffinlim, random initial phase, seed 0), each compared with the original signal.

    .venv/bin/python benchmarks/bench_invert.py [--data ../shared/data/real] [--limit N] [--gl-iters 100]

Metrics: `training.metrics` (snr, si_snr, lsd, pesq_wb, stoi) and `rot20`, the SNR of the analytic signals
after one best phase rotation per 20 ms block: the reassigned triple does not determine the sign (x and -x
give the same triple) nor the absolute phase of each stretch of speech, which waveform SNR and SI-SNR
penalise; rot20 shows whether the waveform is right up to that. Every 16 kHz file of clean/ and
voicebank-demand/clean_testset_wav/ is used; the means are printed last.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

from features import ReassignedConfig, invert_reassigned, invert_zero_phase, reassigned
from features.invert import griffin_lim as invert_griffin_lim
from training.metrics import compute_metrics

NAMES = ("snr", "si_snr", "lsd", "pesq_wb", "stoi", "rot20", "seconds")


def rotation_snr(clean: np.ndarray, estimate: np.ndarray, block: int = 320) -> float:
    """SNR (dB) of the analytic signals after one best phase rotation per block of `block` samples."""
    a = scipy.signal.hilbert(clean.astype(np.float64))
    b = scipy.signal.hilbert(estimate.astype(np.float64))
    n = a.size // block * block
    a, b = a[:n].reshape(-1, block), b[:n].reshape(-1, block)
    c = np.sum(np.conj(b) * a, axis=1)
    c = c / np.maximum(np.abs(c), 1e-30)
    return float(10 * np.log10(np.sum(np.abs(a) ** 2) / np.sum(np.abs(a - c[:, None] * b) ** 2)))


def griffin_lim(triple: np.ndarray, config: ReassignedConfig, length: int, iters: int) -> np.ndarray:
    return invert_griffin_lim(triple[:, 2].astype(np.float64), config, length, n_iter=iters)


def scores(clean: np.ndarray, estimate: np.ndarray, seconds: float) -> dict[str, float]:
    values = compute_metrics(clean, estimate, metrics=("snr", "si_snr", "lsd", "pesq_wb", "stoi")).values()
    values = {k: (np.nan if v is None else v) for k, v in values.items()}
    return values | {"rot20": rotation_snr(clean, estimate), "seconds": seconds}


def files(root: Path) -> list[Path]:
    found = sorted((root / "clean").glob("*")) + sorted(
        (root / "voicebank-demand" / "clean_testset_wav").glob("*.wav")
    )
    return [p for p in found if p.suffix in (".wav", ".flac") and sf.info(p).samplerate == 16000]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/real")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--gl-iters", type=int, default=100)
    args = parser.parse_args()
    config = ReassignedConfig()
    invert_reassigned(reassigned(np.ones(400, np.float32), config), config)  # imports librosa, warms numba
    rows: dict[str, list[dict]] = {"pghi": [], "zero-phase": [], f"griffin-lim{args.gl_iters}": []}
    for path in files(args.data)[: args.limit]:
        clean = sf.read(path, dtype="float32")[0]
        clean = clean if clean.ndim == 1 else clean.mean(axis=1)
        triple = reassigned(clean, config)
        runs = {
            "pghi": lambda t=triple, n=clean.size: invert_reassigned(t, config, n),
            "zero-phase": lambda t=triple, n=clean.size: invert_zero_phase(t, config, n),
            f"griffin-lim{args.gl_iters}": lambda t=triple, n=clean.size: griffin_lim(
                t, config, n, args.gl_iters
            ),
        }
        for name, run in runs.items():
            started = time.perf_counter()
            estimate = run()
            rows[name].append(scores(clean, estimate, time.perf_counter() - started))
            cells = " ".join(f"{k} {rows[name][-1][k]:7.2f}" for k in NAMES)
            print(f"{path.name[:36]:36s} {clean.size / 16000:5.1f} s  {name:14s} {cells}", flush=True)
    print(f"\nmeans over {len(rows['pghi'])} files:")
    for name, found in rows.items():
        cells = " ".join(f"{k} {np.nanmean([r[k] for r in found]):7.2f}" for k in NAMES)
        print(f"{name:14s} {cells}")


if __name__ == "__main__":
    main()
