"""Feature functions utterance by utterance on one thread and on two (as the features flow's shard threads
run them), on the real VoiceBank-DEMAND clean test files: how far threads scale on this machine, and what
the reassigned block size (`features.reassigned.BLOCK_VALUES`) does to that.

    .venv/bin/python benchmarks/bench_feature_threads.py [--seconds 900] [--repeats 7]
                                                          [--kinds magnitude,complex,reassigned]
                                                          [--blocks 16,18] [--data ../shared/data/real]

Each line gives the median wall time of `--repeats` rounds (kinds, block sizes and thread counts
interleaved within a round, after one warm-up) and the two-thread speed-up. Work buffers are per thread,
so every configuration is warmed before it is timed.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from features import compute_feature, feature_config

# the module, not the function `features` exports under the same name
reassigned_module = importlib.import_module("features.reassigned")


def load_utterances(root: Path, seconds: float) -> list[np.ndarray]:
    """The clean test files, cycled until they hold `seconds` of speech (the flow's work is many short
    utterances, so they are kept apart, not concatenated)."""
    paths = sorted((root / "voicebank-demand" / "clean_testset_wav").glob("*.wav"))
    if not paths:
        raise SystemExit(f"no clean_testset_wav files under {root}")
    files = [sf.read(path, dtype="float32") for path in paths]
    utterances, total = [], 0.0
    while total < seconds:
        data, rate = files[len(utterances) % len(files)]
        utterances.append(data)
        total += len(data) / rate
    return utterances


def run(utterances: list[np.ndarray], kind: str, threads: int, pool: ThreadPoolExecutor) -> float:
    config = feature_config(kind)
    parts = [utterances[i::threads] for i in range(threads)]
    started = time.perf_counter()
    list(pool.map(lambda part: [compute_feature(u, config) for u in part], parts))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=900.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--kinds", default="magnitude,complex,reassigned")
    parser.add_argument("--blocks", default="16,18", help="log2 of reassigned BLOCK_VALUES to compare")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/real"))
    args = parser.parse_args()
    utterances = load_utterances(Path(args.data), args.seconds)
    print(f"{len(utterances)} utterances (the {args.data} VoiceBank clean test files, cycled)")
    cases = [
        (kind, block)
        for kind in args.kinds.split(",")
        for block in ([int(b) for b in args.blocks.split(",")] if kind == "reassigned" else [None])
    ]
    default_block = reassigned_module.BLOCK_VALUES
    times: dict[tuple, list[float]] = {}
    with ThreadPoolExecutor(2) as pool:
        for round_ in range(args.repeats + 1):
            for kind, block in cases:
                reassigned_module.BLOCK_VALUES = default_block if block is None else 1 << block
                for threads in (1, 2):
                    elapsed = run(utterances, kind, threads, pool)
                    if round_:  # the first round warms every configuration's buffers
                        times.setdefault((kind, block, threads), []).append(elapsed)
    reassigned_module.BLOCK_VALUES = default_block
    for kind, block in cases:
        one, two = (statistics.median(times[(kind, block, n)]) for n in (1, 2))
        label = kind if block is None else f"{kind} (BLOCK_VALUES 2**{block})"
        print(f"{label:36s} 1 thread {one:6.3f} s   2 threads {two:6.3f} s   speed-up {one / two:4.2f}x")


if __name__ == "__main__":
    main()
