"""Ingest throughput: `specstore ingest` (Prefect flow on a local 2-worker Dask cluster) beside a plain
single-process `soundfile.read` + `soxr.resample` loop over the same files.

    .venv/bin/python benchmarks/bench_ingest.py [--minutes 32] [--workers 2] [--work DIR]

The demo corpus is generated at 22.05 kHz so that both paths resample to the store's 16 kHz.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import soundfile as sf
import soxr


def plain_loop(paths: list[Path], rate: int) -> float:
    """The obvious alternative: read and resample every file in one process; returns seconds of audio."""
    seconds = 0.0
    for path in paths:
        data, sr = sf.read(path, dtype="float32")
        out = soxr.resample(data, sr, rate, quality="HQ")
        seconds += out.shape[0] / rate
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=32.0, help="approximate audio minutes to generate")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--processes", action="store_true", help="local Dask workers as processes")
    args = parser.parse_args()

    import cli
    from pipelines.demo import DemoConfig, generate_demo_corpus

    work = Path(args.work or tempfile.mkdtemp(prefix="specstore-bench-"))
    per_speaker = 40
    speakers = max(3, round(args.minutes * 60 / 4.0 / per_speaker))  # utterances average 4 s
    config = DemoConfig(speakers=speakers, utterances_per_speaker=per_speaker, sample_rate=22050, seed=7)
    started = time.perf_counter()
    corpus = generate_demo_corpus(work / "corpus", config)
    print(
        f"generated {speakers} speakers x {per_speaker} utterances in {time.perf_counter() - started:.1f} s"
    )
    paths = sorted(corpus.speech.rglob("*.flac"))

    started = time.perf_counter()
    seconds = plain_loop(paths, 16000)
    plain = time.perf_counter() - started
    hours = seconds / 3600
    print(f"audio: {len(paths)} files, {seconds / 60:.1f} min")
    print(f"plain loop (1 process, sf.read + soxr): {plain:.1f} s, {hours / (plain / 60):.2f} audio h/min")

    shutil.rmtree(work / "store", ignore_errors=True)
    argv = [
        "ingest",
        "--store",
        str(work / "store"),
        "--corpus",
        "librispeech",
        "--source",
        str(corpus.speech),
        "--name",
        "bench",
        "--workers",
        str(args.workers),
        "--quiet",
    ] + (["--processes"] if args.processes else [])
    ns = cli.build_parser().parse_args(argv)
    started = time.perf_counter()
    report = cli.cmd_ingest(ns)
    total = time.perf_counter() - started
    flow = report.seconds
    print(
        f"specstore ingest ({args.workers} workers): {total:.1f} s end to end "
        f"({hours / (total / 60):.2f} audio h/min), {flow:.1f} s inside the flow ({hours / (flow / 60):.2f} audio h/min)"
    )
    print(f"ratio plain/specstore: {plain / total:.2f} end to end, {plain / flow:.2f} inside the flow")
    print(
        f"stored {report.utterances} utterances, {report.hours:.3f} h, rejects {dict(report.rejects) or 'none'}"
    )


if __name__ == "__main__":
    main()
