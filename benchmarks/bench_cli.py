"""What a `specstore` command costs as a whole process: start-up, the persistent Prefect server, and the work,
beside lhotse's feature extraction on the same files.

    .venv/bin/python benchmarks/bench_cli.py --work /tmp/bench-cli --rounds 3 \
        --lhotse-python /tmp/lhotse-venv/bin/python

Every measurement is one command started as a new process, timed from start to exit, in alternated rounds
(each round runs every measurement once, in the same order), and reported as the median over rounds, with
the load average seen during the rounds (the machine is shared):

- `specstore VERB --help` of every verb;
- `specstore results` on a store with 100,000 metric rows (`benchmarks/bench_results.py` makes it);
- a no-op `specstore features` rerun (the set is committed: no Prefect, no server, no cluster), and a no-op
  `specstore pairs` rerun (`noisy` pairs of that corpus with the real noise recordings, made once);
- the first flow command (`ingest` of 10 minutes) with the Prefect server stopped (cold; its database
  exists) and the same command with it running (warm); the first start with a new database is reported once;
- end to end on 10 minutes and one hour of speech (files of 10 s at 16 kHz cut from the real clean
  recordings of ../shared/data/real/clean): specstore `ingest` + `features --corpus NAME --kind magnitude
  --n-fft 512 --win 400 --hop 160` (warm server, a new store each round) against lhotse's
  `compute_and_store_features(Spectrogram(), num_jobs=2)` with its `LilcomChunkyWriter` as a whole command
  (`benchmarks/lhotse_features.py`, run by the Python of a separate environment: lhotse is not a specstore
  dependency). Make that environment with the constraints file's torch pin (no CUDA wheels):

      python3 -m venv /tmp/lhotse-venv
      /tmp/lhotse-venv/bin/pip install -c constraints.txt lhotse torch==2.13.0 urllib3 lilcom

  (lhotse 1.33 imports urllib3 without declaring it, and its LilcomChunkyWriter needs lilcom). Without
  `--lhotse-python`, or where it cannot import lhotse, the comparison is skipped with a message saying why.
  A speed comparison only: lhotse's features are Kaldi-style log power spectra, specstore's magnitudes.

With `--baseline-tree DIR` (another revision's source, e.g. `git archive main | tar -x -C DIR`), the start-up
measurements (help, results, the no-op rerun) run as `python -m cli` in this tree and in DIR, alternated, with
this tree's environment; `--startup-only` skips the flows and lhotse:

    .venv/bin/python benchmarks/bench_cli.py --work /tmp/bench-startup --rounds 3 --startup-only \
        --baseline-tree /tmp/main-src
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parent.parent
SPECSTORE = str(REPO / ".venv" / "bin" / "specstore")
VERBS = (
    "ingest", "pairs", "features", "train", "evaluate", "results", "verify", "ls", "show", "rm", "gc", "du",
    "serve", "demo", "download", "prefect-server",
)  # fmt: skip
FEATURES = ["--kind", "magnitude", "--n-fft", "512", "--win", "400", "--hop", "160"]
PAIRS = ["--name", "noisy", "--corpus", "speech", "--kind", "noisy"]
SR, FILE_S = 16000, 10.0


def timed(command: list[str], env: dict | None = None, check: bool = True) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def make_speech(real: Path, dest: Path, files: int) -> Path:
    """`files` WAVs of 10 s at 16 kHz, each a different stretch of the real clean recordings, looped."""
    if dest.exists() and len(list(dest.glob("*.wav"))) == files:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    parts = []
    for path in sorted(real.glob("*")):
        if path.suffix.lower() in (".wav", ".flac"):
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
            parts.append(soxr.resample(audio.mean(axis=1), rate, SR))
    speech = np.concatenate(parts)
    n = int(SR * FILE_S)
    for i in range(files):
        start = (i * 7919 * SR // 10) % len(speech)  # a different stretch per file
        piece = np.take(speech, np.arange(start, start + n), mode="wrap")
        sf.write(dest / f"utt-{i:04d}.wav", piece, SR, subtype="PCM_16")
    return dest


def specstore_end_to_end(source: Path, store: Path, env: dict) -> tuple[float, float]:
    shutil.rmtree(store, ignore_errors=True)
    ingest = timed([SPECSTORE, "ingest", "--store", str(store), "--corpus", "folder", "--source", str(source),
                    "--name", "speech", "--quiet"], env)  # fmt: skip
    features = timed(
        [SPECSTORE, "features", "--store", str(store), "--corpus", "speech", *FEATURES, "--quiet"], env
    )
    return ingest, features


def pairs_command(store: Path, real: Path) -> list[str]:
    # --real is the clean speech folder; the noise recordings are its sibling
    return ["pairs", "--store", str(store), *PAIRS, "--noise", str(real.parent / "noise"), "--quiet"]


def with_pairs(store: Path, real: Path, env: dict) -> Path:
    """`store` with the `noisy` pair set of the no-op pairs rerun (made once; a rerun finds it)."""
    subprocess.run([SPECSTORE, *pairs_command(store, real)], env=env, check=True, capture_output=True)
    return store


def lhotse_works(python: str | None) -> str | None:
    """None when `python` can run the lhotse side, else why not."""
    if not python:
        return "no --lhotse-python given"
    if not Path(python).exists():
        return f"{python} does not exist"
    done = subprocess.run([python, "-c", "import lhotse, lilcom"], capture_output=True, text=True)
    return None if done.returncode == 0 else f"{python} cannot import lhotse: {done.stderr.strip()[-300:]}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def server(action: str, env: dict) -> None:
    subprocess.run([SPECSTORE, "prefect-server", action], capture_output=True, env=env, check=False)


def prepare(args, env: dict) -> dict:
    """The stores and corpora the rounds use, and the one-off figures (a new server database)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_results import make_store  # the 100,000-row metrics store of that benchmark

    work, real = Path(args.work), Path(args.real)
    make_store(work / "results-100k", 100_000, 40, 40)
    if args.startup_only:
        noop = work / "noop-store"
        if not noop.exists():
            specstore_end_to_end(make_speech(real, work / "speech-10min", 60), noop, env)
        return {"noop": with_pairs(noop, real, env)}
    sets = {"10 min": make_speech(real, work / "speech-10min", 60)}
    if not args.skip_hour:
        sets["1 h"] = make_speech(real, work / "speech-1h", 360)
    server("stop", env)  # a server of an earlier run of this benchmark: its database goes with the folder
    shutil.rmtree(env["SPECSTORE_PREFECT_HOME"], ignore_errors=True)
    new_db = timed([SPECSTORE, "prefect-server", "start"], env)
    noop = work / "noop-store"
    specstore_end_to_end(sets["10 min"], noop, env)
    return {"sets": sets, "noop": with_pairs(noop, real, env), "new_database_start_s": new_db}


def startup_round(args, env: dict, ready: dict, out: dict) -> None:
    """The start-up measurements as `python -m cli` in this tree and in --baseline-tree, alternated."""
    work = Path(args.work)
    commands = {f"help {verb}": [verb, "--help"] for verb in args.baseline_verbs.split(",")}
    commands["results 100k rows"] = ["results", "--store", str(work / "results-100k")]
    commands["features no-op rerun"] = [
        "features", "--store", str(ready["noop"]), "--corpus", "speech", *FEATURES,
    ]  # fmt: skip
    commands["pairs no-op rerun"] = pairs_command(ready["noop"], Path(args.real))
    python = str(REPO / ".venv" / "bin" / "python")
    for label, command in commands.items():
        for tree, cwd in (("this tree", REPO), ("baseline", Path(args.baseline_tree))):
            started = time.perf_counter()
            done = subprocess.run([python, "-m", "cli", *command], capture_output=True, env=env, cwd=cwd)
            seconds = time.perf_counter() - started
            # a verb the baseline lacks (prefect-server) fails there: no figure
            if done.returncode == 0:
                out.setdefault(f"{label} ({tree})", []).append(seconds)
    out.setdefault("load average (1 min)", []).append(os.getloadavg()[0])


def one_round(args, env: dict, ready: dict, lhotse: str | None, out: dict) -> None:
    work = Path(args.work)
    for verb in VERBS:
        out.setdefault(f"help {verb}", []).append(timed([SPECSTORE, verb, "--help"], env))
    out.setdefault("results 100k rows", []).append(
        timed([SPECSTORE, "results", "--store", str(work / "results-100k")], env)
    )
    out.setdefault("features no-op rerun", []).append(
        timed([SPECSTORE, "features", "--store", str(ready["noop"]), "--corpus", "speech", *FEATURES], env)
    )
    out.setdefault("pairs no-op rerun", []).append(
        timed([SPECSTORE, *pairs_command(ready["noop"], Path(args.real))], env)
    )
    server("stop", env)
    cold = [SPECSTORE, "ingest", "--store", str(work / "cold"), "--corpus", "folder", "--source",
            str(ready["sets"]["10 min"]), "--name", "speech", "--quiet"]  # fmt: skip
    shutil.rmtree(work / "cold", ignore_errors=True)
    out.setdefault("ingest 10 min, cold server", []).append(timed(cold, env))
    shutil.rmtree(work / "cold", ignore_errors=True)
    out.setdefault("ingest 10 min, warm server", []).append(timed(cold, env))
    for label, source in ready["sets"].items():
        ingest, features = specstore_end_to_end(source, work / "e2e-store", env)
        out.setdefault(f"specstore {label}: ingest", []).append(ingest)
        out.setdefault(f"specstore {label}: features", []).append(features)
        out.setdefault(f"specstore {label}: ingest + features", []).append(ingest + features)
        if lhotse:
            shutil.rmtree(work / "lhotse-out", ignore_errors=True)
            script = str(REPO / "benchmarks" / "lhotse_features.py")
            command = [lhotse, script, str(source), str(work / "lhotse-out"), "--jobs", "2"]
            out.setdefault(f"lhotse {label}: whole command", []).append(timed(command))
    out.setdefault("load average (1 min)", []).append(os.getloadavg()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/bench-cli")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--real", default=str(REPO.parent / "shared" / "data" / "real" / "clean"))
    parser.add_argument("--lhotse-python", default=None, help="the Python of an environment with lhotse")
    parser.add_argument("--skip-hour", action="store_true", help="only the 10-minute set end to end")
    parser.add_argument("--baseline-tree", default=None, help="another revision's source: start-up beside it")
    parser.add_argument("--startup-only", action="store_true", help="only the start-up measurements")
    parser.add_argument(
        "--baseline-verbs",
        default="ingest,features,train,results,ls",
        help="the --help timed beside the baseline",
    )
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["SPECSTORE_PREFECT_HOME"] = str(Path(args.work) / "prefect-state")
    why_not = lhotse_works(args.lhotse_python)
    if why_not:
        print(f"lhotse comparison skipped: {why_not}")
    lhotse = None if why_not else args.lhotse_python
    ready = prepare(args, env)
    out: dict[str, list[float]] = {}
    try:
        for r in range(args.rounds):
            if args.baseline_tree:
                startup_round(args, env, ready, out)
            if not args.startup_only:
                one_round(args, env, ready, lhotse, out)
            print(f"round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        server("stop", env)
    summary = {k: {"median": median(v), "all": v} for k, v in out.items()}
    if "new_database_start_s" in ready:
        summary["prefect-server start, new database"] = {"median": ready["new_database_start_s"], "all": []}
    Path(args.work, "bench_cli.json").write_text(json.dumps(summary, indent=1))
    print(f"| measurement | median of {args.rounds} (s) | rounds (s) |\n|---|---|---|")
    for key, value in summary.items():
        rounds = ", ".join(f"{x:.2f}" for x in value["all"])
        print(f"| {key} | {value['median']:.2f} | {rounds} |")


if __name__ == "__main__":
    main()
