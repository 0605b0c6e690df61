"""`specstore ls` and `show` on a store with 1,000 objects: the catalogue's work in-process, and the whole
command (a fresh `specstore` process).

    .venv/bin/python benchmarks/bench_catalogue.py [--objects 1000] [--shards 4] [--rounds 7] \
        [--work /tmp/bench-catalogue] [--cli-rounds 3]

The store is synthetic but laid out exactly as the pipelines lay one out, through the same `Store` calls:
corpora, pair sets, feature sets, model versions (one small checkpoint each) and evaluation runs in the
proportions 1 : 5 : 100 : 75 : 69 (4, 20, 400, 300, 276 of 1,000 objects), every corpus, pair set, feature
set and run committed in `--shards` shards, each shard with its table parts and small arrays. Built once
under `--work` and reused. Rounds alternate `ls` and `show` (of a feature set with models and runs made
from it); the figures are medians. `ls` is measured again without the catalogue's cache of the tables'
columns (`stores.scans`: every part read, as the first `ls` on a machine does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stores import open_store  # noqa: E402
from stores.catalogue import Catalogue  # noqa: E402
from stores.commands import LsReport, ShowReport  # noqa: E402
from stores.scans import CACHE_ENV  # noqa: E402
from stores.store import now_utc  # noqa: E402

PROPORTIONS = {"corpus": 4, "pairs": 20, "features": 400, "model": 300, "run": 276}


def counts_for(objects: int) -> dict[str, int]:
    scale = objects / sum(PROPORTIONS.values())
    counts = {k: max(1, round(v * scale)) for k, v in PROPORTIONS.items()}
    counts["run"] += objects - sum(counts.values())
    return counts


def _shard_array(st, path: str, frames: int = 64, bins: int = 8) -> None:
    st.write_array(path, np.ones((frames, bins), np.float32), {"kind": "bench"}, (frames,), None)


def build(st, counts: dict[str, int], shards: int) -> dict[str, list[str]]:
    now, names = now_utc(), {}
    names["corpus"] = [f"corpus{k}" for k in range(counts["corpus"])]
    for corpus in names["corpus"]:
        for s in range(shards):
            shard = f"ingest-{corpus}-{s:012d}"
            st.write_audio_array(f"audio/{corpus}/{shard}", np.zeros(4096, np.float32), {"kind": "audio"})
            rows = [{"corpus": corpus, "utterance_id": f"u{s}-{u}", "split": "train", "array": f"audio/{corpus}/{shard}",
                     "offset": u * 1024, "num_samples": 1024, "shard": shard, "created_at": now} for u in range(4)]  # fmt: skip
            st.commit({"rejects": [], "utterances": rows}, "utterances", shard)
    names["pairs"] = [f"pairs{k}" for k in range(counts["pairs"])]
    for k, pairset in enumerate(names["pairs"]):
        corpus = names["corpus"][k % len(names["corpus"])]
        st.set_group_attrs(f"pairs/{pairset}", {"config": {"corpus": corpus, "noise": names["corpus"][0]}})
        for s in range(shards):
            shard = f"pairs-{pairset}-{s:012d}"
            for role in ("input", "clean", "noise"):
                st.write_audio_array(
                    f"pairs/{pairset}/{shard}/{role}", np.zeros(4096, np.float32), {"kind": "pair"}
                )
            rows = [{"pairset": pairset, "corpus": corpus, "utterance_id": f"u{s}-{u}", "split": "train",
                     "kind": "noisy", "array": f"pairs/{pairset}/{shard}", "offset": u * 1024, "num_samples": 1024,
                     "roles": "input,clean,noise", "shard": shard, "created_at": now} for u in range(4)]  # fmt: skip
            st.commit({"rejects": [], "pairs": rows}, "pairs", shard)
    names["features"] = [f"magnitude-{k:012x}" for k in range(counts["features"])]
    for k, fid in enumerate(names["features"]):
        pairset = names["pairs"][k % len(names["pairs"])]
        for s in range(shards):
            shard = f"features-{fid}-{s:012d}"
            _shard_array(st, f"features/{fid}/{shard}/input")
            _shard_array(st, f"features/{fid}/{shard}/target")
            rows = [{"feature_id": fid, "pairset": pairset, "utterance_id": f"u{s}-{u}", "split": "train",
                     "array": f"features/{fid}/{shard}", "frame_offset": 16 * u, "num_frames": 16,
                     "num_samples": 1024, "shard": shard, "created_at": now} for u in range(4)]  # fmt: skip
            st.commit({"feature_frames": rows}, "feature_frames", shard)
        spec = {
            "feature": {"kind": "magnitude", "n_fft": 512, "hop_length": 256},
            "model": None,
            "codec": "lz4",
        }
        st.write_part("features", f"part-{fid}", [{"feature_id": fid, "kind": "magnitude", "pairset": pairset,
                      "config_json": json.dumps(spec), "created_at": now}])  # fmt: skip
    names["model"] = [f"crn-{k:012x}" for k in range(counts["model"])]
    for k, version in enumerate(names["model"]):
        fid = names["features"][k % len(names["features"])]
        st.fs.makedirs(f"{st.path}/checkpoints/{version}", exist_ok=True)
        st.fs.pipe_file(f"{st.path}/checkpoints/{version}/epoch-0001.pt", b"\0" * 4096)
        st.write_part(
            "curves", f"part-{version}", [{"model_version": version, "epoch": 1, "created_at": now}]
        )
        st.write_part("models", f"part-{version}", [{"model_version": version, "architecture": "crn", "feature_id": fid,
                      "config_json": "{}", "epochs": 1, "created_at": now}])  # fmt: skip
    names["run"] = [f"run-20260101T000000-{k:06x}" for k in range(counts["run"])]
    for k, run in enumerate(names["run"]):
        version, pairset = names["model"][k % len(names["model"])], names["pairs"][k % len(names["pairs"])]
        for s in range(shards):
            shard = f"pairs-{pairset}-{s:012d}"
            st.write_audio_array(
                f"predictions/{run}/{shard}/wave", np.zeros(4096, np.float32), {"kind": "predictions"}
            )
            key = {"run_id": run, "pairset": pairset, "split": "test", "created_at": now}
            predictions = [{**key, "model_version": version, "utterance_id": f"u{s}-{u}", "shard": f"{run}-{shard}",
                            "array": f"predictions/{run}/{shard}", "offset": 1024 * u, "num_samples": 1024} for u in range(4)]  # fmt: skip
            metrics = [{**key, "model": m, "model_version": v, "utterance_id": f"u{s}-{u}", "snr": 1.0}
                       for u in range(4) for m, v in (("noisy", None), ("crn", version))]  # fmt: skip
            st.write_part("predictions", f"part-{run}-{shard}", predictions)
            st.write_part("metrics", f"part-{run}-{shard}", metrics)
    return names


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cli-rounds", type=int, default=3)
    parser.add_argument("--work", default="/tmp/bench-catalogue")
    args = parser.parse_args()
    folder = Path(args.work) / f"store-{args.objects}x{args.shards}"
    counts = counts_for(args.objects)
    if not (folder / "built.json").exists():
        started = time.perf_counter()
        names = build(open_store(folder), counts, args.shards)
        (folder / "built.json").write_text(json.dumps(names))
        print(f"built {folder} in {time.perf_counter() - started:.0f} s")
    names = json.loads((folder / "built.json").read_text())
    st = open_store(folder, create=False)
    files = len(st.fs.find(st.path))
    shown = f"features:{names['features'][0]}"
    Catalogue(st)  # warm-up: imports, the feature kinds' plugin, the page cache
    ls_times, show_times = [], []
    for _ in range(args.rounds):
        ls_times.append(timed(lambda: LsReport(Catalogue(st).select(), "table", []).lines()))
        show_times.append(timed(lambda: ShowReport((c := Catalogue(st)).resolve(shown), c, "table").lines()))
    cold = []
    for _ in range(2):  # every part read, as on a machine that never listed this store
        with tempfile.TemporaryDirectory() as empty:
            os.environ[CACHE_ENV] = empty
            cold.append(timed(lambda: LsReport(Catalogue(st).select(), "table", []).lines()))
    os.environ.pop(CACHE_ENV)
    catalogue = Catalogue(st)
    print(f"{len(catalogue.objects)} objects ({counts}), {args.shards} shards each, {files} files")
    print(f"ls   (in process): {summary(ls_times)}")
    print(f"show (in process): {summary(show_times)}")
    print(f"ls   (in process, no cache of the tables' columns yet): {summary(cold)}")
    for verb, extra in (("ls", []), ("show", [shown])):
        command = [sys.executable, "-m", "cli", verb, *extra, "--store", str(folder)]
        print(f"specstore {verb} (a fresh process): {summary(run_times(command, args.cli_rounds))}")
    startup = run_times([sys.executable, "-c", "import cli"], args.cli_rounds)
    print(f"python -c 'import cli' (the command's start-up alone): {summary(startup)}")


def run_times(command: list[str], rounds: int) -> list[float]:
    return [
        timed(lambda: subprocess.run(command, cwd=ROOT, capture_output=True, check=True))
        for _ in range(rounds)
    ]


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times):.3f} s ({', '.join(f'{t:.3f}' for t in times)})"


if __name__ == "__main__":
    main()
