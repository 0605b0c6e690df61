"""Fuzz campaign: mutated real recordings through `load_audio`, each in a child process, with outcome counts,
time and memory per file.

    nice -n 10 .venv/bin/python benchmarks/fuzz_audio.py --count 100000 --seed 24 --workers 2 \
        --jsonl /tmp/fuzz.jsonl

Each outcome is appended to `--jsonl` as it comes; a stopped campaign continues with `--start N` (the next
index) into the same file, and `--report-only` prints the counts of every outcome kept there.

Bases: every WAV and FLAC of ../shared/data/real plus three real utterances re-encoded as FLAC, Ogg
Vorbis, Opus, MP3, AIFF, float WAV, W64, CAF (ALAC), AU (u-law) and stereo WAV. Mutations
(`pipelines.fuzzing`): bit flips in the first 256 bytes, truncation, random bytes anywhere, a 32-bit header
field set to 0 / 1 / 2^31-1 / 2^32-1 / random, a splice of two files, a repeated chunk. File i of seed s is
always the same bytes (`hostile_file(bases, s, i)`), so any outcome can be reproduced alone.

First (alone with `--limits-only`): the issue's two files and constant-level FLACs crafted to make the
loader do the most that the default limits allow, each in a fresh child process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipelines.audio import AudioConfig, memory_bound
from pipelines.fuzzing import (
    Outcome,
    campaign_bases,
    measure_load,
    outcome_counts,
    run_campaign,
    with_flac_total_frames,
    with_wav_sample_rate,
    write_constant_flac,
)
from pipelines.isolation import ChildCaller
from pipelines.testing import real_data_root

FAILURES = ("exception", "crash", "hang")


def report(outcomes, bases: int, wall: float, config: AudioConfig) -> None:
    counts = outcome_counts(outcomes)
    seconds = np.array([o.seconds for o in outcomes])
    cpu = np.array([o.cpu_seconds for o in outcomes])
    rss = np.array([o.rss_growth for o in outcomes]) / 2**20
    traced = np.array([o.traced_peak for o in outcomes]) / 2**20
    print(f"{len(outcomes):,} files from {bases} bases" + (f" in {wall:.0f} s" if wall else ""))
    print("\n| outcome | files |\n|---|---|")
    for result, n in counts.most_common():
        print(f"| {result} | {n:,} |")
    print("\n| mutation | files | decoded | rejected |\n|---|---|---|---|")
    by_mutation = Counter(o.mutation for o in outcomes)
    decoded = Counter(o.mutation for o in outcomes if o.result == "decoded")
    for mutation, n in sorted(by_mutation.items()):
        print(f"| {mutation} | {n:,} | {decoded[mutation]:,} | {n - decoded[mutation]:,} |")
    failures = [o for o in outcomes if o.result.startswith(FAILURES)]
    print(f"\nexceptions other than Rejected, crashes, hangs: {len(failures)}")
    for o in failures[:20]:
        print("  ", o)
    print(
        f"time per file: median {np.median(seconds) * 1e3:.1f} ms, p99 {np.percentile(seconds, 99) * 1e3:.1f} ms, "
        f"max {seconds.max() * 1e3:.0f} ms; files over 2 s: {int((seconds > 2).sum())}"
    )
    print(
        f"CPU per file: median {np.median(cpu) * 1e3:.1f} ms, p99 {np.percentile(cpu, 99) * 1e3:.1f} ms, "
        f"max {cpu.max() * 1e3:.0f} ms"
    )
    print(
        f"peak resident growth per file: median {np.median(rss):.1f} MiB, max {rss.max():.1f} MiB; "
        f"traced (numpy/Python) peak max {traced.max():.1f} MiB; "
        f"memory_bound(AudioConfig()) = {memory_bound(config) / 2**20:.1f} MiB"
    )
    for label, key in (("slowest", "seconds"), ("largest", "rss_growth")):
        worst = max(outcomes, key=lambda o: getattr(o, key))
        print(f"{label}: {worst}")


# (name, sample rate, seconds, channels): constant-level FLACs at the default limits (600 s)
AT_THE_LIMITS = (
    ("16 kHz, 599 s (the largest output)", 16000, 599, 1),
    ("4 kHz, 599 s (4x upsampling)", 4000, 599, 1),
    ("384 kHz, 599 s (the most samples to decode)", 384000, 599, 1),
    ("48 kHz, 8 channels, 599 s", 48000, 599, 8),
    ("16 kHz, 601 s (over the limit)", 16000, 601, 1),
)


def limits_report(real: Path, work: Path, config: AudioConfig) -> None:
    """The issue's two files and files crafted to make the loader do the most its limits allow, each
    loaded alone in a fresh child process."""
    work.mkdir(parents=True, exist_ok=True)
    wav = (real / "clean/pyroomacoustics__cmu_arctic_us_aew_a0001.wav").read_bytes()
    flac = (real / "clean/lhotse__2412-153948-0001.flac").read_bytes()
    files = {
        "WAV, sample rate 1 Hz (issue 24)": work / "rate-1hz.wav",
        "FLAC declaring 68,719,443,936 frames (issue 24)": work / "frames-68g.flac",
    }
    files["WAV, sample rate 1 Hz (issue 24)"].write_bytes(with_wav_sample_rate(wav, 1))
    files["FLAC declaring 68,719,443,936 frames (issue 24)"].write_bytes(
        with_flac_total_frames(flac, 68_719_443_936)
    )
    for name, rate, seconds, channels in AT_THE_LIMITS:
        files[name] = write_constant_flac(work / f"{rate}-{seconds}-{channels}.flac", rate, seconds, channels)
    print("\n| file | size | outcome | wall | CPU | peak resident growth |\n|---|---|---|---|---|---|")
    for name, path in files.items():
        with ChildCaller() as child:
            o = child.call(measure_load, str(path), config)
        print(
            f"| {name} | {path.stat().st_size / 1024:,.0f} KiB | {o.result} | {o.seconds:.2f} s | "
            f"{o.cpu_seconds:.2f} s | {o.rss_growth / 2**20:.1f} MiB |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2, help="child processes at a time")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds before a file counts as a hang")
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--jsonl", default=None, help="append every outcome here, one JSON line each")
    parser.add_argument("--start", type=int, default=0, help="first file index (to continue a campaign)")
    parser.add_argument("--indices", default=None, help="comma-separated file indices: measure only these")
    parser.add_argument("--report-only", action="store_true", help="only the report of the --jsonl file")
    parser.add_argument("--limits-only", action="store_true", help="only the files at the limits")
    args = parser.parse_args()
    real = real_data_root()
    if real is None:
        raise SystemExit("Expected the real recordings in ../shared/data/real. Got none instead.")
    work = Path(args.work or tempfile.mkdtemp(prefix="specstore-fuzz-"))
    config = AudioConfig()
    if args.report_only:
        kept = [Outcome(**json.loads(line)) for line in Path(args.jsonl).read_text().splitlines() if line]
        report(sorted(kept, key=lambda o: o.index), len(campaign_bases(real, work / "bases")), 0.0, config)
        return
    if args.indices:  # files of a campaign measured again, alone (e.g. the slowest of a run)
        bases = campaign_bases(real, work / "bases")
        for index in (int(i) for i in args.indices.split(",")):
            print(run_campaign(bases, 1, args.seed, work, 1, config, args.timeout, start=index)[0])
        return
    limits_report(real, work / "limits", config)
    if args.limits_only:
        return
    bases = campaign_bases(real, work / "bases")
    started, lock = time.perf_counter(), threading.Lock()
    keep = open(args.jsonl, "a") if args.jsonl else None  # noqa: SIM115 (closed below, after every share)

    def done(outcome: Outcome) -> None:
        with lock:  # the shares' threads report here
            bar.update()
            if keep is not None:
                keep.write(json.dumps(dataclasses.asdict(outcome)) + "\n")
                keep.flush()

    with tqdm(total=args.count, unit="file", mininterval=30) as bar:
        outcomes = run_campaign(
            bases, args.count, args.seed, work, args.workers, config, args.timeout, done, args.start
        )
    if keep is not None:
        keep.close()
    report(outcomes, len(bases), time.perf_counter() - started, config)


if __name__ == "__main__":
    main()
