"""PNG plots of evaluation results: a summary's means with their intervals, and one utterance's spectrograms.

matplotlib (and scipy for the STFT) are imported inside the functions: importing them takes longer than
everything else `specstore results` does, and most commands never draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from stores.errors import ConfigError
from training.metrics import SAMPLE_RATE
from training.results import BASELINE, group_columns


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def plot_results(table: pa.Table, path: str | Path, metric: str = "pesq_wb") -> Path:
    """A PNG bar chart of a `summarize` result: each group's mean `metric` with its 95% CI and, where the
    table has it, the mean improvement over `noisy` beside it."""
    from matplotlib.figure import Figure  # slow to import: only when a plot is drawn (module docstring)

    if f"{metric}_mean" not in table.column_names:
        have = sorted(
            {c[: -len("_mean")] for c in table.column_names if c.endswith("_mean") and "_delta" not in c}
        )
        raise ConfigError(
            f"Expected a metric of this summary ({', '.join(have) or 'none'}). Got {metric!r} instead."
        )
    keys = group_columns(table)
    labels = []
    for row in table.select(keys).to_pylist() if keys else [{}] * table.num_rows:
        labels.append("\n".join(str(row[k]) for k in keys if row[k] is not None) or "all")

    def bars(ax, prefix: str, title: str) -> None:
        mean = np.array([np.nan if v is None else v for v in table.column(f"{prefix}_mean").to_pylist()])
        low = np.array([np.nan if v is None else v for v in table.column(f"{prefix}_ci_low").to_pylist()])
        high = np.array([np.nan if v is None else v for v in table.column(f"{prefix}_ci_high").to_pylist()])
        x = np.arange(len(labels))
        err = np.nan_to_num(np.stack([mean - low, high - mean]), nan=0.0)
        ax.bar(x, np.nan_to_num(mean, nan=0.0), yerr=err, capsize=4, color="tab:blue", alpha=0.8)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_title(title)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.grid(axis="y", alpha=0.3)

    with_delta = (
        f"{metric}_delta_mean" in table.column_names
        and table.column(f"{metric}_delta_mean").null_count < table.num_rows
    )
    width = max(6.0, 1.2 * max(1, table.num_rows)) * (2 if with_delta else 1)
    fig = Figure(figsize=(min(width, 30.0), 4.5))
    axes = fig.subplots(1, 2 if with_delta else 1, squeeze=False)[0]
    bars(axes[0], metric, f"{metric}: mean, 95% CI")
    if with_delta:
        bars(axes[1], f"{metric}_delta", f"{metric}: improvement over {BASELINE}, 95% CI")
    fig.tight_layout()
    return _save(fig, path)


def _log_spectrogram(
    x: np.ndarray, sr: int, n_fft: int, hop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.signal import stft  # slow to import: only when a plot is drawn (module docstring)

    f, t, z = stft(x, fs=sr, nperseg=n_fft, noverlap=n_fft - hop, boundary=None, padded=True)
    return f, t, 20.0 * np.log10(np.abs(z) + 1e-8)


def plot_spectrograms(
    clean: np.ndarray,
    noisy: np.ndarray,
    enhanced: np.ndarray | None,
    path: str | Path,
    sr: int = SAMPLE_RATE,
    title: str | None = None,
    n_fft: int = 512,
    hop: int = 128,
    dynamic_range_db: float = 80.0,
) -> Path:
    """A PNG of log-magnitude spectrograms (dB), one row each: clean, input, enhanced (left out when None),
    on one colour scale (the loudest bin to `dynamic_range_db` below it)."""
    from matplotlib.figure import Figure  # slow to import: only when a plot is drawn (module docstring)

    rows = [("clean", clean), ("input", noisy)] + ([("enhanced", enhanced)] if enhanced is not None else [])
    specs = []
    for name, x in rows:
        a = np.asarray(x)
        if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise ConfigError(
                f"Expected the {name} signal as a non-empty 1-D waveform. Got shape {a.shape} instead."
            )
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if a.size < n_fft:
            a = np.pad(a, (0, n_fft - a.size))
        specs.append((name, *_log_spectrogram(a, sr, n_fft, hop)))
    vmax = max(float(s[3].max()) for s in specs)
    fig = Figure(figsize=(10.0, 2.6 * len(specs) + (0.4 if title else 0.0)))
    axes = fig.subplots(len(specs), 1, squeeze=False, sharex=True)[:, 0]
    image = None
    for ax, (name, f, t, db) in zip(axes, specs, strict=True):
        image = ax.pcolormesh(
            t, f / 1000.0, db, shading="auto", vmin=vmax - dynamic_range_db, vmax=vmax, cmap="magma"
        )
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=10, loc="left")
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    fig.colorbar(image, ax=list(axes), label="dB")
    return _save(fig, path)
