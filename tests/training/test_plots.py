import numpy as np
import pytest

from stores.errors import ConfigError
from stores.schema import rows_to_table
from training.plots import plot_results, plot_spectrograms
from training.results import summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(models=("noisy", "crn")):
    """One run of each model on five utterances (crn 1 dB above its noisy input)."""
    rows = []
    for model in models:
        for i in range(5):
            rows.append(
                {
                    "run_id": "r",
                    "model": model,
                    "model_version": None if model == "noisy" else "v",
                    "pairset": "p",
                    "split": "s",
                    "utterance_id": f"u{i}",
                    "snr": float(i) + (model != "noisy"),
                    "pesq_wb": 1.5 + 0.1 * i + 0.3 * (model != "noisy"),
                }
            )
    return rows_to_table("metrics", rows)


def test_plot_results_writes_a_png(tmp_path):
    summary = summarize(_metrics())
    path = plot_results(summary, tmp_path / "plots" / "pesq.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    # a summary without a baseline has no deltas to draw
    path = plot_results(summarize(_metrics(("crn",))), tmp_path / "snr.png", metric="snr")
    assert path.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ConfigError, match="metric"):
        plot_results(summary, tmp_path / "x.png", metric="mos")


def test_plot_spectrograms_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    clean = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    noisy = clean + 0.05 * rng.standard_normal(clean.size).astype(np.float32)
    path = plot_spectrograms(clean, noisy, 0.9 * clean, tmp_path / "u.png", title="p232_001 crn v1")
    assert path.read_bytes()[:8] == PNG_MAGIC
    path = plot_spectrograms(clean[:100], noisy[:100], None, tmp_path / "short.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ConfigError, match="1-D"):
        plot_spectrograms(np.zeros((2, 10)), noisy, None, tmp_path / "bad.png")
