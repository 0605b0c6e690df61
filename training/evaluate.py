"""Evaluation: enhance every utterance of a pair set's split with a trained model version (or a method,
`training.enhance`), store the predictions under a new run (never replacing an older one), and compute
per-utterance metrics for the model and for the unprocessed input (model `noisy`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds

from stores.audio_index import PairReader
from stores.commits import Shard, rows_by_shard
from stores.errors import NotFoundError
from stores.paths import member, prediction_group
from stores.store import Store, attrs_json, now_utc
from training.enhance import Enhancer, MethodEnhancer
from training.metrics import METRIC_NAMES, compute_metrics
from training.plots import plot_spectrograms
from training.results import format_table, summarize

PAIR_COLUMNS = ["utterance_id", "split", "num_samples", "array", "offset", "roles", "corpus"]


def new_run_id() -> str:
    return f"run-{now_utc().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class EvalRun:
    run_id: str
    version: str
    architecture: str
    pairset: str
    split: str
    reconstruction: str


def new_run(enhancer: Enhancer | MethodEnhancer, pairset: str, split: str) -> EvalRun:
    """A new run of `enhancer` (a model version or a method) on a pair set's split."""
    return EvalRun(new_run_id(), enhancer.version, enhancer.name, pairset, split, enhancer.reconstruction)


def plan_evaluation(store: Store, pairset: str, split: str) -> list[Shard]:
    """Shards (one per pair shard) of the pair set's utterances in `split`."""
    rows = store.committed_rows("pairs", PAIR_COLUMNS, pairset=pairset, split=split)
    if not rows:
        raise NotFoundError(f"Expected {split} pairs in pair set {pairset!r}. Got none.")
    return [Shard(s, items) for s, items in rows_by_shard(rows).items()]


def enhance_shard(
    store: Store, run: EvalRun, enhancer: Enhancer | MethodEnhancer, shard: Shard
) -> list[dict]:
    """Enhance one shard's utterances and store the predictions; -> the `predictions` rows."""
    group = prediction_group(run.run_id, shard.shard_id)
    waves, specs, rows, offset, frame = [], [], [], 0, 0
    now = now_utc()
    for pair, signals in PairReader(store).signals(shard.items):
        wave, spec = enhancer(signals)
        frames = 0 if spec is None else spec.shape[0]
        rows.append(
            {
                "run_id": run.run_id,
                "model_version": run.version,
                "pairset": run.pairset,
                "split": run.split,
                "utterance_id": pair["utterance_id"],
                "array": group,
                "offset": offset,
                "num_samples": wave.shape[0],
                "frame_offset": frame,
                "num_frames": frames,
                "reconstruction": run.reconstruction,
                "shard": f"{run.run_id}-{shard.shard_id}",
                "created_at": now,
            }
        )
        waves.append(wave)
        offset += wave.shape[0]
        if spec is not None:
            specs.append(spec.astype(np.float32))
            frame += frames
    lineage = attrs_json(
        {
            "kind": "predictions",
            "run_id": run.run_id,
            "model_version": run.version,
            "pairset": run.pairset,
            "split": run.split,
            "reconstruction": run.reconstruction,
        }
    )
    store.write_audio_array(member(group, "wave"), np.concatenate(waves), lineage)
    if specs:
        data = np.concatenate(specs)
        store.write_array(
            member(group, "spec"), data, lineage, (max(1, (1 << 20) // max(1, data[:1].nbytes)),), None
        )
    return rows


def metrics_shard(store: Store, run: EvalRun, shard: Shard, rows: list[dict]) -> int:
    """Metrics of the model's predictions and of the unprocessed inputs for one shard, then commit the
    shard (its `metrics` part, after its `predictions` part)."""
    predictions = {r["utterance_id"]: r for r in rows}
    wave = store.read_array(member(rows[0]["array"], "wave"))
    out, now = [], now_utc()
    for pair, signals in PairReader(store).signals(shard.items, ("input", "clean")):
        pred = predictions[pair["utterance_id"]]
        enhanced = wave[pred["offset"] : pred["offset"] + pred["num_samples"]]
        for model, version, estimate in (
            ("noisy", None, signals["input"]),
            (run.architecture, run.version, enhanced),
        ):
            result = compute_metrics(signals["clean"], estimate)
            out.append(
                {
                    "run_id": run.run_id,
                    "model": model,
                    "model_version": version,
                    "reconstruction": run.reconstruction if version is not None else None,
                    "pairset": run.pairset,
                    "split": run.split,
                    "utterance_id": pair["utterance_id"],
                    **result.values(),
                    "notes": json.dumps(result.notes, sort_keys=True) if result.notes else None,
                    "created_at": now,
                }
            )
    part = f"{run.run_id}-{shard.shard_id}"
    store.write_part("predictions", f"part-{part}", rows)
    store.write_part("metrics", f"part-{part}", out)
    return len(out)


def evaluate_serially(
    store: Store, enhancer: Enhancer | MethodEnhancer, pairset: str, split: str = "test"
) -> str:
    """The evaluate flow's work in this process, shard after shard (no Prefect, no Dask): for notebooks and
    tests. Returns the new run's id."""
    run = new_run(enhancer, pairset, split)
    for shard in plan_evaluation(store, pairset, split):
        metrics_shard(store, run, shard, enhance_shard(store, run, enhancer, shard))
    return run.run_id


def write_plots(st, run, folder: str, plot_ids: list[str] | None) -> list[str]:
    """One PNG per utterance asked for (default: the first three): clean / input / enhanced spectrograms."""
    rows = {
        r["utterance_id"]: r
        for r in st.read_table("predictions", filter=ds.field("run_id") == run.run_id).to_pylist()
    }
    ids = plot_ids or sorted(rows)[:3]
    unknown = [u for u in ids if u not in rows]
    if unknown:
        raise NotFoundError(
            f"Expected utterances of run {run.run_id} to plot. Got unknown {unknown} instead."
        )
    Path(folder).mkdir(parents=True, exist_ok=True)
    written = []
    for uid in ids:
        row = rows[uid]
        enhanced = st.read_samples(member(row["array"], "wave"), row["offset"], row["num_samples"])
        clean, noisy = st.audio(run.pairset, uid, "clean"), st.audio(run.pairset, uid, "input")
        path = Path(folder) / f"{run.run_id}-{uid}.png"
        plot_spectrograms(clean, noisy, enhanced, path, title=f"{run.version} on {uid}")
        written.append(str(path))
    return written


@dataclass
class EvaluateReport:
    run_id: str
    version: str
    pairset: str
    split: str
    store: object
    plots: list[str]
    seconds: float

    def lines(self) -> list[str]:
        data = self.store.table("metrics").to_table(filter=ds.field("run_id") == self.run_id)
        table = summarize(data, group_by=("model",), metrics=METRIC_NAMES)
        keep = [
            c for c in table.column_names if c == "model" or c.endswith("_mean") or c.endswith("_delta_mean")
        ]
        out = [
            f"run {self.run_id}: model {self.version} on {self.pairset}/{self.split}, "
            f"{data.num_rows // 2} utterances, {self.seconds:.1f} s",
            format_table(table.select(keep), "table"),
        ]
        if self.plots:
            out.append(f"spectrogram plots: {', '.join(self.plots)}")
        return out
