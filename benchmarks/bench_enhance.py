"""`specstore enhance` on long recordings: peak memory for 1 minute and 60 minutes of audio, and throughput
(seconds of audio per wall-clock second) of crn and dccrn on CPU.

Each measurement is one `specstore enhance` command in a fresh process (its peak resident set, ru_maxrss,
taken by a wrapper in that process), so nothing carries over between them; rounds alternate the 1-minute
and 60-minute recordings. The recordings are real speech (the clean recordings of ../shared/data/real
repeated) mixed with a real noise recording at 5 dB SNR, written in pieces.

    .venv/bin/python benchmarks/bench_enhance.py [--rounds 3] [--long-minutes 60] [--folder /tmp/bench-enhance]

Models: the memory runs use a tiny crn (what is measured is the block path, not the model's size); the
throughput runs the paper-sized crn (Tan & Wang, 257 bins) and DCCRN-CL, trained for one step (their
weights do not change the cost). Figures: docs/BENCHMARKS.md, "Enhancement".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features import feature_config  # noqa: E402
from pipelines.testing import build_demo_store, real_data_root  # noqa: E402
from training.trainer import TrainConfig, train  # noqa: E402

WRAPPER = """
import json, resource, sys, time
sys.argv = ["specstore", *sys.argv[1:]]
from cli import main
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
start, cpu_start = time.perf_counter(), cpu()
code = main(sys.argv[1:])
print(json.dumps({"code": code, "seconds": time.perf_counter() - start, "cpu_seconds": cpu() - cpu_start,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_recording(path: Path, minutes: float, rate: int = 16000) -> Path:
    """Real speech + real noise at 5 dB SNR, `minutes` long, written a minute at a time."""
    if path.exists():
        return path
    real = real_data_root()
    if real is None:
        sys.exit("real recordings not found (../shared/data/real)")
    speech = np.concatenate(
        [sf.read(p, dtype="float32")[0] for p in sorted((real / "clean").glob("speechbrain__*.wav"))]
    )
    noise = sf.read(real / "noise" / "pyroomacoustics__doing_the_dishes.wav", dtype="float32")[0]
    minute = np.resize(speech, 60 * rate)
    noise = np.resize(noise, 60 * rate)
    mix = minute + noise * np.sqrt(np.mean(minute**2) / np.mean(noise**2) / 10**0.5)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as out:
        whole, rest = divmod(minutes, 1)
        for _ in range(int(whole)):
            out.write(mix)
        out.write(mix[: int(rest * 60 * rate)])
    return path


def prepare(folder: Path) -> tuple[str, dict[str, str]]:
    """A small demo store with a tiny crn, a paper-sized crn and DCCRN-CL; cached in `folder`."""
    marker = folder / "models.json"
    if marker.exists():
        saved = json.loads(marker.read_text())
        return saved["store"], saved["versions"]
    store, ids = build_demo_store(
        folder / "demo",
        {"mag": feature_config("magnitude"), "cpx": feature_config("complex")},
        speakers=2,
        utterances=2,
    )
    configs = {
        "crn-tiny": ("crn", ids["mag"], {"channels": [4, 8, 8, 8, 8]}),
        "crn": ("crn", ids["mag"], {}),
        "dccrn": ("dccrn", ids["cpx"], {}),
    }
    versions = {}
    for label, (model, feature_id, args) in configs.items():
        config = TrainConfig(
            model=model,
            feature_id=feature_id,
            model_args=args,
            epochs=1,
            max_steps=1,
            batch_size=2,
            segment=20,
        )
        versions[label] = train(store, config, device="cpu", progress=False)
    marker.write_text(json.dumps({"store": store.root, "versions": versions}))
    return store.root, versions


def enhance(store: str, version: str, recording: Path, out: Path, *extra: str) -> dict:
    args = [
        "enhance",
        "--store",
        store,
        "--model-version",
        version,
        str(recording),
        "--out",
        str(out),
        "--overwrite",
        "--quiet",
        "--device",
        "cpu",
        *extra,
    ]
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"enhance failed:\n{done.stdout}\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        sys.exit(f"enhance failed:\n{done.stdout}\n{done.stderr}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long-minutes", type=float, default=60.0)
    parser.add_argument("--long-rounds", type=int, default=1, help="runs of the long recording")
    parser.add_argument("--throughput-minutes", type=float, default=1.0)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bench-enhance"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    store, versions = prepare(args.folder)
    short = write_recording(args.folder / "minute-1.wav", 1.0)
    long = write_recording(args.folder / f"minute-{args.long_minutes:g}.wav", args.long_minutes)
    through = write_recording(
        args.folder / f"minute-{args.throughput_minutes:g}.wav", args.throughput_minutes
    )
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} CPUs; torch threads default")
    memory: dict[str, list[dict]] = {"1 min": [], f"{args.long_minutes:g} min": []}
    speed: dict[str, list[dict]] = {"crn": [], "dccrn": []}
    enhance(store, versions["crn-tiny"], short, args.folder / "out")  # warm-up: first use of the store
    for round_ in range(args.rounds):
        runs = [("1 min", short)] + (
            [(f"{args.long_minutes:g} min", long)] if round_ < args.long_rounds else []
        )
        for label, recording in runs:
            result = enhance(store, versions["crn-tiny"], recording, args.folder / "out")
            memory[label].append(result)
            print(
                f"round {round_}: crn-tiny {label}: peak {result['peak_mib']:.0f} MiB, {result['seconds']:.1f} s wall, "
                f"{result['cpu_seconds']:.1f} s CPU, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        for model in speed:
            result = enhance(store, versions[model], through, args.folder / "out")
            speed[model].append(result)
            audio = args.throughput_minutes * 60
            print(
                f"round {round_}: {model} on {audio:g} s: {result['seconds']:.1f} s wall ({audio / result['seconds']:.2f}x), "
                f"{result['cpu_seconds']:.1f} s CPU ({audio / result['cpu_seconds']:.2f} audio s per CPU s), "
                f"peak {result['peak_mib']:.0f} MiB, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()}")
    print("medians:")
    peaks = {label: statistics.median(r["peak_mib"] for r in results) for label, results in memory.items()}
    for label, peak in peaks.items():
        print(f"  peak memory, {label}: {peak:.0f} MiB")
    low, high = min(peaks.values()), max(peaks.values())
    print(f"  long / short peak: {high / low:.3f}")
    audio = args.throughput_minutes * 60
    for model, results in speed.items():
        wall = statistics.median(audio / r["seconds"] for r in results)
        per_cpu = statistics.median(audio / r["cpu_seconds"] for r in results)
        print(f"  {model}: {wall:.2f} s of audio per wall second, {per_cpu:.2f} per CPU second (CPU)")


if __name__ == "__main__":
    main()
