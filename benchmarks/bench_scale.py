"""Cost per item at LibriSpeech sizes: every step of the pipeline on corpora of many short utterances.

    .venv/bin/python benchmarks/bench_scale.py --sizes 2000 10000 50000 --work /tmp/bench-scale \
        [--steps ingest,rerun,pairs,features,loader,evaluate,verify,ls] [--results-rows 1000000] \
        [--profile DIR]

Each size N gets a corpus in WORK/corpus-N (made when missing) in the LibriSpeech layout and shape:
`<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac` with one `.trans.txt` per chapter, about N/122
speakers and N/49 chapters (LibriSpeech's 960 h set: 281,241 utterances, ~2,300 speakers, ~5,700
chapters), 85 % of the speakers in train-clean-100, the rest split between dev-clean and test-clean. Every
utterance is 0.25 s at 16 kHz (16-bit FLAC), so that the item count, not the audio hours, is large. The
speech comes from the demo generator (`pipelines.demo_speech.synthesise`): a pool of 256 utterances,
each file one of them at its own gain (so every file differs); noise is the demo's (`generate_noise`, four
kinds, 20 s each). Disk, measured: 6.5 KiB per utterance for the corpus (one FLAC file each) and 85 KiB
per utterance for the store (audio, pairs, magnitude features): 50,000 items 0.3 + 4.1 GiB, 281,241 items
about 1.8 + 23 GiB.

Then, in a fresh store WORK/store-N, each step runs as its own process (`specstore ...`, or a small Python
program for the loader and evaluation planning), timed from outside: wall time, time per item, and the
peak resident memory of the process (Dask workers are threads of it, the default). Steps: `ingest`,
`rerun` (the same ingest again: nothing to do), `pairs` (noisy, the demo noise), `features` (magnitude),
`loader` (one training epoch's set-up, `make_loader`, and up to 1,000 steps of 16 segments of 8 frames),
`evaluate` (`plan_evaluation` of the test split), `verify`, `ls`. `results` runs once on
`--results-rows` generated metric rows (written into the metrics table directly, as
`benchmarks/bench_results.py` makes them: evaluating a million utterances here would take days).
`--compare REV --store DIR` instead times, in alternated rounds in this process, `verify_store` and three pair
shards (`make_pairs_shard`, into a scratch pair set `bench-ab`, replaced each round) of this tree beside
the same functions of git revision REV (its `stores/verify.py` and `pipelines/mixing.py` imported as their
own modules), on an existing store made by this script; medians of wall and CPU time.
`--summarize LOG` prints a Markdown table of the JSON lines of such a run's output (marginal costs included).
`--s3` puts the stores on a moto S3 server (as the tests use) started by this script, in a bucket `bench`.
`--profile DIR` runs every step under cProfile (DIR/<step>-<N>.prof; slower, so figures are not kept).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# the tree whose code runs (each step is a process started here): a long run is best started from a copy,
# `git archive HEAD | tar -x -C COPY` with `.venv` linked in, so that edits meanwhile change nothing in it
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PY = str(REPO / ".venv" / "bin" / "python")
RATE, SECONDS, POOL = 16000, 0.25, 256
PER_SPEAKER, PER_CHAPTER = 122, 49  # LibriSpeech 960 h: 281,241 / ~2,300 speakers, / ~5,700 chapters
STEPS = ("ingest", "rerun", "pairs", "features", "loader", "evaluate", "verify", "ls")

LOADER = """
import sys, time
from training.stream import StreamConfig, make_loader
from stores.store import open_store
store = sys.argv[1]
st = open_store(store, create=False)
fid = st.read_table("features", columns=["feature_id"])["feature_id"][0].as_py()
t = time.perf_counter()
loader = make_loader(store, StreamConfig(feature_id=fid, segment=8), batch_size=16, num_workers=1)
setup = time.perf_counter() - t
t, steps = time.perf_counter(), 0
for _batch in loader:
    steps += 1
    if steps == 1000:
        break
print(f"loader: set-up {setup:.2f} s, {steps} steps in {time.perf_counter() - t:.2f} s")
"""

PLAN = """
import sys, time
from stores.store import open_store
from training.evaluate import plan_evaluation
t = time.perf_counter()
shards = plan_evaluation(open_store(sys.argv[1], create=False), "noisy", "test")
print(f"evaluate planning: {len(shards)} shards, {sum(len(s.items) for s in shards)} pairs in "
      f"{time.perf_counter() - t:.2f} s")
"""


def make_corpus(folder: Path, n: int) -> Path:
    """The LibriSpeech-shaped corpus of `n` utterances (made once; `folder/done` marks a finished one)."""
    import soundfile as sf

    from pipelines.demo import DemoConfig, speaker_profiles
    from pipelines.demo_speech import synthesise

    speech = folder / "LibriSpeech"
    if (folder / "done").exists():
        return speech
    profiles = speaker_profiles(DemoConfig(speakers=8))
    pool = []
    for k in range(POOL):
        rng = np.random.default_rng([7, k])
        p = profiles[k % len(profiles)]
        audio, _ = synthesise(rng, SECONDS, RATE, tuple(p["pitch_range"]), p["tract_scale"])
        audio = np.resize(audio, int(SECONDS * RATE))  # exactly 0.25 s (the ingest minimum)
        pool.append(0.5 * audio / max(1e-6, float(np.max(np.abs(audio)))))
    speakers = max(3, round(n / PER_SPEAKER))
    chapters = max(speakers, round(n / PER_CHAPTER))
    held = max(1, round(0.075 * speakers))
    started = time.perf_counter()
    for c in range(chapters):
        spk = c % speakers
        subset = "dev-clean" if spk < held else "test-clean" if spk < 2 * held else "train-clean-100"
        ids = range(c, n, chapters)  # utterance indices of this chapter
        chapter = folder / "LibriSpeech" / subset / str(100 + spk) / str(1000 + c)
        chapter.mkdir(parents=True, exist_ok=True)
        lines = []
        for j, i in enumerate(ids):
            uid = f"{100 + spk}-{1000 + c}-{j:04d}"
            gain = 0.3 + 0.6 * ((i * 0.6180339887) % 1.0)
            sf.write(chapter / f"{uid}.flac", (gain * pool[i % POOL]).astype(np.float32), RATE, "PCM_16")
            lines.append(f"{uid} SOME WORDS")
        (chapter / f"{100 + spk}-{1000 + c}.trans.txt").write_text("\n".join(lines) + "\n")
    (folder / "done").write_text(f"{n}\n")
    print(f"corpus {n}: {speakers} speakers, {chapters} chapters in {time.perf_counter() - started:.0f} s")
    return speech


def make_noise(folder: Path) -> Path:
    from scipy.io import wavfile

    from pipelines.demo import generate_noise

    if not folder.exists():
        folder.mkdir(parents=True)
        for k, kind in enumerate(("white", "pink", "babble", "fan")):
            audio = generate_noise(kind, np.random.default_rng([3, k]), 20.0, RATE)
            wavfile.write(folder / f"{kind}.wav", RATE, audio)
    return folder


def run(argv: list[str], profile: Path | None, allowed=(0,)) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MiB, output) of one process; another exit status than `allowed` stops here.
    CPU time (user + system, every thread) is reported beside wall time: on a shared machine it varies
    much less with the load."""
    if profile is not None:
        argv = [PY, "-m", "cProfile", "-o", str(profile), *argv[1:]]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    out = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in allowed:
        print(out)
        raise SystemExit(f"{argv} failed")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out


def step_argv(step: str, store, speech: Path, noise: Path) -> list[str]:
    cli = [PY, "-m", "cli"]
    ingest = [*cli, "ingest", "--store", str(store), "--corpus", "librispeech", "--source", str(speech)]
    return {
        "ingest": [*ingest, "--name", "ls", "--quiet"],
        "rerun": [*ingest, "--name", "ls", "--quiet"],
        "pairs": [*cli, "pairs", "--store", str(store), "--corpus", "ls", "--kind", "noisy", "--name", "noisy",
                  "--noise", str(noise), "--quiet"],
        "features": [*cli, "features", "--store", str(store), "--pairs", "noisy", "--kind", "magnitude",
                     "--quiet"],
        "loader": [PY, "-c", LOADER, str(store)],
        "evaluate": [PY, "-c", PLAN, str(store)],
        "verify": [*cli, "verify", "--store", str(store)],
        "ls": [*cli, "ls", "--store", str(store)],
    }[step]  # fmt: skip


def start_moto() -> str:
    """A moto S3 server on 127.0.0.1 (as tests/test_s3.py starts one) with a bucket `bench`; this process and
    its children point at it through the standard AWS environment variables. -> the bucket's URL."""
    import logging
    import socket

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )  # fmt: skip
    s3fs.S3FileSystem().mkdir("bench")
    return "s3://bench"


def store_shape(store) -> tuple[int, int]:
    """(Parquet parts, files) of a store."""
    if str(store).startswith("s3://"):
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        files = s3fs.S3FileSystem().find(str(store))
        return sum(1 for f in files if "/tables/" in f and f.endswith(".parquet")), len(files)
    parts = sum(1 for _ in (store / "tables").rglob("*.parquet"))
    files = sum(len(f) for _, _, f in os.walk(store))
    return parts, files


def results_rows(work: Path, rows: int) -> None:
    from bench_results import metrics_rows

    from stores.store import open_store

    store = work / f"results-{rows}"
    if not (store / "done").exists():
        st = open_store(store)
        table = metrics_rows(rows, 40)
        for k, start in enumerate(range(0, table.num_rows, 25_000)):  # 40 runs' worth of parts
            st.write_part("metrics", f"part-{k:04d}", table.slice(start, 25_000))
        (store / "done").write_text("")
    argv = [PY, "-m", "cli", "results", "--store", str(store)]
    walls = []
    for _ in range(3):
        wall, _, rss, out = run(argv, None)
        walls.append(wall)
    print(f"results over {rows:,} metric rows: {sorted(walls)[1]:.2f} s (median of 3), {rss:.0f} MiB")


def load_revision(ref: str, path: str):
    """The module at `path` as of git revision `ref`, imported under its own name."""
    import importlib.util
    import tempfile

    source = subprocess.run(
        ["git", "show", f"{ref}:{path}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    file = Path(tempfile.mkdtemp()) / f"{Path(path).stem}_{ref.replace('/', '_')}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def compare(ref: str, store_root: Path, rounds: int) -> None:
    """Alternated rounds: verify and three pair shards, this tree's code and `ref`'s."""
    import statistics

    import features  # noqa: F401  (the feature kinds, as the command line loads them)
    import pipelines.mixing as mixing
    import stores.verify as verify
    from stores.store import open_store

    old = {
        "verify": load_revision(ref, "stores/verify.py"),
        "mixing": load_revision(ref, "pipelines/mixing.py"),
    }
    new = {"verify": verify, "mixing": mixing}
    st = open_store(store_root, create=False)
    config = mixing.PairConfig.from_dict(st.group_attrs("pairs/noisy")["config"])
    sources = mixing.load_sources(st, config)
    shards = mixing.plan_pairs(st, "bench-ab", config, 128)[:3]
    mixing.check_pairset_config(st, "bench-ab", config)
    times: dict = {}
    for k in range(rounds):
        for label, code in (("new", new), ("old", old)) if k % 2 else (("old", old), ("new", new)):
            for what, fn in (
                ("verify", lambda c=code: c["verify"].verify_store(st)),
                ("3 pair shards", lambda c=code: [c["mixing"].make_pairs_shard(st, "bench-ab", config, s, sources) for s in shards]),
            ):  # fmt: skip
                wall, cpu = time.perf_counter(), time.process_time()
                fn()
                times.setdefault((what, label), []).append(
                    (time.perf_counter() - wall, time.process_time() - cpu)
                )
    for (what, label), values in sorted(times.items()):
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"{what:14s} {label} ({ref if label == 'old' else 'this tree'}): {wall:.2f} s wall, {cpu:.2f} s CPU "
              f"(median of {rounds}, load {os.getloadavg()[0]:.1f})")  # fmt: skip


def start_prefect_server() -> None:
    """One Prefect server for every step (each step's own temporary server costs seconds to start and, on a
    loaded machine, may time out): its start-up is a fixed cost, not a cost per item."""
    if os.environ.get("PREFECT_API_URL"):
        return
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here
    from prefect.server.api.server import SubprocessASGIServer

    for attempt in range(3):
        try:
            server = SubprocessASGIServer()
            server.start(timeout=120)
            os.environ["PREFECT_API_URL"] = server.api_url
            return
        except RuntimeError:
            if attempt == 2:
                raise


def summarize(log: Path) -> None:
    """A Markdown table of the JSON lines in `log`: per step, wall (CPU) seconds [the flow's own wall time,
    where the command prints it] and peak MiB at each size,
    and the marginal wall (CPU) ms per item between consecutive sizes, where fixed start-up costs cancel."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    sizes = sorted({r["n"] for r in records})
    by = {(r["step"], r["n"]): r for r in records}
    head = [f"{n:,} items: wall (CPU) s, peak MiB" for n in sizes]
    head += [f"marginal ms/item {a:,}->{b:,}: wall (CPU)" for a, b in zip(sizes, sizes[1:], strict=False)]
    if len(sizes) >= 3:  # the targets: the last marginal and peak against the ones before
        head += ["last marginal / the one before: wall (CPU)", f"peak {sizes[-1]:,} / {sizes[-2]:,}"]
    print("| step | " + " | ".join(head) + " |")
    print("|---" * (len(head) + 1) + "|")
    for step in dict.fromkeys(r["step"] for r in records):
        cells = []
        for n in sizes:
            r = by.get((step, n))
            inside = re.search(r"wall time ([0-9.]+) s", r["last"]) if r else None
            flow = f" [{inside.group(1)} in the flow]" if inside else ""
            cells.append(f"{r['wall_s']:.1f} ({r['cpu_s']:.1f}){flow}, {r['peak_mib']}" if r else "-")
        marginals = [
            _marginal(by.get((step, a)), by.get((step, b)), b - a) for a, b in itertools.pairwise(sizes)
        ]
        cells += [f"{m[0]:.2f} ({m[1]:.2f})" if m else "-" for m in marginals]
        if len(sizes) >= 3:
            last, before = marginals[-1], marginals[-2]
            ratio = lambda x, y: f"{x / y:.2f}" if y > 0 else "-"  # noqa: E731 (a negative marginal: noise)
            cells.append(
                f"{ratio(last[0], before[0])} ({ratio(last[1], before[1])})" if last and before else "-"
            )
            a, b = by.get((step, sizes[-2])), by.get((step, sizes[-1]))
            cells.append(f"{b['peak_mib'] / a['peak_mib']:.2f}" if a and b else "-")
        print(f"| {step} | " + " | ".join(cells) + " |")


def _marginal(a: dict | None, b: dict | None, items: int) -> tuple[float, float] | None:
    """(wall, CPU) ms per item from record `a` to record `b`."""
    if not (a and b):
        return None
    return 1000 * (b["wall_s"] - a["wall_s"]) / items, 1000 * (b["cpu_s"] - a["cpu_s"]) / items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-scale"))
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--results-rows", type=int, default=0)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--compare", default=None, help="a git revision: alternated rounds (see above)")
    parser.add_argument("--store", type=Path, default=None, help="the store of --compare")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--summarize", type=Path, default=None, help="a log of this script: a table")
    parser.add_argument("--s3", action="store_true", help="stores on a moto S3 server started here")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.store, args.rounds)
        return
    if args.summarize:
        summarize(args.summarize)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    start_prefect_server()
    noise = make_noise(args.work / "noise")
    bucket = start_moto() if args.s3 else None
    steps = [s for s in args.steps.split(",") if s]
    for n in args.sizes:
        speech = make_corpus(args.work / f"corpus-{n}", n)
        store = f"{bucket}/store-{n}" if bucket else args.work / f"store-{n}"
        if "ingest" in steps and not bucket:
            subprocess.run(["rm", "-rf", str(store)], check=True)
        for step in steps:
            prof = args.profile / f"{step}-{n}.prof" if args.profile else None
            if prof:
                args.profile.mkdir(parents=True, exist_ok=True)
            load = os.getloadavg()[0]
            # verify exits 1 on problems: its last line, shown, says how many
            wall, cpu, rss, out = run(
                step_argv(step, store, speech, noise), prof, (0, 1) if step == "verify" else (0,)
            )
            parts, files = store_shape(store)
            last = out.strip().splitlines()[-1] if out.strip() else ""
            record = dict(n=n, step=step, wall_s=round(wall, 2), ms_per_item=round(1000 * wall / n, 3),
                          cpu_s=round(cpu, 2),
                          peak_mib=round(rss), load=round(load, 2), parts=parts, files=files, last=last[:120])  # fmt: skip
            print(json.dumps(record), flush=True)
    if args.results_rows:
        results_rows(args.work, args.results_rows)


if __name__ == "__main__":
    main()
