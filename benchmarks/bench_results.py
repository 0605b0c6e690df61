"""What `specstore results` costs on a large `metrics` table: `summarize` + `format_table` of this tree's
`training.results` (DuckDB) beside another revision's (default `main`: pyarrow, numpy and scipy), in
alternating rounds on the same store, medians of wall and CPU time reported; then the same call in a new
process (its imports included, as a command pays them), and the whole `specstore results` command of this tree.

    .venv/bin/python benchmarks/bench_results.py --work /tmp/bench-results --rows 100000 1000000 --rounds 5

Each size gets its own store (WORK/rows-N), made when missing: `--parts` Parquet parts under
`tables/metrics/`, written by `Store.write_part` as evaluation writes them. The rows are evaluation runs of
`--runs` model versions (five models, three pair sets, test and valid splits), each on its own utterances,
beside the run's `noisy` rows: every column of the schema, a few PESQ refusals (null, with a note) and
infinite SNRs. Both implementations must give the same summary (checked each size) before any timing counts.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_scale import load_revision as load_module_at  # noqa: E402

MODELS = ("crn", "cnn1d", "unet", "dccrn", "wiener")
PAIRSETS = ("noisy-test", "voicebank-demand-given", "reverb-test")
SPLITS = ("test", "valid")
WHERE = "split == 'test' and model != 'noisy'"


def metrics_rows(rows: int, runs: int, seed: int = 0) -> pa.Table:
    """`rows` metrics rows: `runs` evaluation runs, each a model version's rows and its noisy inputs'."""
    from stores.schema import table_schema
    from training.metrics import METRIC_NAMES

    rng = np.random.default_rng(seed)
    per_run = rows // (2 * runs)
    run = np.repeat(np.arange(runs), 2 * per_run)
    is_noisy = np.tile(np.repeat([True, False], per_run), runs)
    utterance = np.tile(np.arange(per_run), 2 * runs) + run * per_run
    n = run.size
    model = np.where(is_noisy, "noisy", np.array(MODELS)[run % len(MODELS)])
    version = np.array([f"{MODELS[r % len(MODELS)]}-{r:012x}" for r in range(runs)])[run]
    columns = {
        "run_id": np.array([f"run-{r:04d}" for r in range(runs)])[run],
        "model": model,
        "model_version": pa.array(version, mask=is_noisy),
        "pairset": np.array(PAIRSETS)[run % len(PAIRSETS)],
        "split": np.array(SPLITS)[(run // len(PAIRSETS)) % len(SPLITS)],
        "utterance_id": np.char.add("utt-", utterance.astype(str)),
    }
    for i, metric in enumerate(METRIC_NAMES):
        columns[metric] = rng.normal(2.0 + i, 1.0, n) + np.where(is_noisy, 0.0, 0.8)
    refused = rng.random(n) < 0.01
    columns["pesq_wb"] = pa.array(columns["pesq_wb"], mask=refused)
    columns["snr"][rng.random(n) < 0.001] = math.inf
    columns["reconstruction"] = pa.array(np.full(n, "noisy-phase"), mask=is_noisy)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    columns["created_at"] = pa.array([start + timedelta(minutes=int(r)) for r in range(runs)])
    columns["created_at"] = columns["created_at"].take(pa.array(run))
    columns["notes"] = pa.array(np.full(n, '{"pesq_wb": "no utterance detected"}'), mask=~refused)
    return pa.table(columns).cast(table_schema("metrics"))


def make_store(root: Path, rows: int, runs: int, parts: int):
    from stores import open_store

    if (root / "tables" / "metrics").exists():
        return open_store(root, create=False)
    store = open_store(root)
    table = metrics_rows(rows, runs)
    edges = np.linspace(0, table.num_rows, parts + 1).astype(int)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        store.write_part("metrics", f"part-bench-{i:04d}", table.slice(a, b - a))
    return store


def load_revision(ref: str):
    """`training/results.py` as of git revision `ref`, imported as its own module."""
    return load_module_at(ref, "training/results.py")


def same_summary(mine: pa.Table, theirs: pa.Table) -> bool:
    if mine.column_names != theirs.column_names or mine.num_rows != theirs.num_rows:
        return False
    for name in mine.column_names:
        a, b = mine.column(name).to_pylist(), theirs.column(name).to_pylist()
        for x, y in zip(a, b, strict=True):
            if isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
                    return False
            elif x != y:
                return False
    return True


def timed(module, store, where: str | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all the process's threads) of one summary and its text table. The CPU
    figure moves less than the wall time on a machine that others load."""
    start, cpu = time.perf_counter(), time.process_time()
    module.format_table(module.summarize(store.table("metrics"), where=where), "table")
    return time.perf_counter() - start, time.process_time() - cpu


def fresh_process_seconds(which: str, ref: str, root: Path, where: str | None, rounds: int) -> float:
    """One `summarize` + `format_table` in a new interpreter, its module's imports included (what each
    command pays), timed from inside the process; median of `rounds` processes."""
    times = []
    for _ in range(rounds):
        command = [sys.executable, __file__, "--one-shot", which, "--baseline", ref, "--work", str(root)]
        out = subprocess.run(command + (["--where", where] if where else []), capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr)
        times.append(float(out.stdout.split()[-1]))
    return statistics.median(times)


def one_shot(which: str, ref: str, root: Path, where: str | None) -> None:
    start = time.perf_counter()
    from stores import open_store

    module = load_revision(ref) if which == "baseline" else importlib.import_module("training.results")
    module.format_table(
        module.summarize(open_store(root, create=False).table("metrics"), where=where), "table"
    )
    print(time.perf_counter() - start)


def command_seconds(root: Path, where: str | None, rounds: int) -> float:
    command = [str(REPO / ".venv" / "bin" / "specstore"), "results", "--store", str(root)]
    command += ["--where", where] if where else []
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def spread(times: list[float]) -> str:
    return f"{statistics.median(times):.3f} s ({min(times):.3f}-{max(times):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default="/tmp/bench-results")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--parts", type=int, default=100)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", default="main", help="the git revision to compare with")
    parser.add_argument("--one-shot", choices=("baseline", "current"), help=argparse.SUPPRESS)
    parser.add_argument("--where", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_shot:
        one_shot(args.one_shot, args.baseline, Path(args.work), args.where)
        return

    import training.results as current

    baseline = load_revision(args.baseline)
    print(
        f"| rows | filter | {args.baseline}, warm | this tree, warm | ratio | {args.baseline}, CPU "
        f"| this tree, CPU | {args.baseline}, new process | this tree, new process | whole command, this tree |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for rows in args.rows:
        root = Path(args.work) / f"rows-{rows}"
        store = make_store(root, rows, args.runs, args.parts)
        for where in (None, WHERE):
            mine = current.summarize(store.table("metrics"), where=where)
            if not same_summary(mine, baseline.summarize(store.table("metrics"), where=where)):
                raise SystemExit(f"the two summaries differ at {rows} rows, where={where!r}")
            times: dict[str, list[float]] = {"baseline": [], "current": []}
            cpu: dict[str, list[float]] = {"baseline": [], "current": []}
            for _ in range(args.rounds):
                for which, module in (("baseline", baseline), ("current", current)):
                    wall, used = timed(module, store, where)
                    times[which].append(wall)
                    cpu[which].append(used)
            ratio = statistics.median(times["baseline"]) / statistics.median(times["current"])
            fresh = {w: fresh_process_seconds(w, args.baseline, root, where, args.rounds) for w in times}
            command = command_seconds(root, where, args.rounds)
            print(
                f"| {rows:,} | {'`' + where + '`' if where else 'none'} | {spread(times['baseline'])} "
                f"| {spread(times['current'])} | {ratio:.2f} | {statistics.median(cpu['baseline']):.2f} s "
                f"| {statistics.median(cpu['current']):.2f} s | {fresh['baseline']:.2f} s "
                f"| {fresh['current']:.2f} s | {command:.2f} s |",
                flush=True,
            )


if __name__ == "__main__":
    main()
