"""The Prefect flows that use models, run on Dask, and the verbs that run them: evaluation, feature sets
whose kind needs a first-stage model, and the demo's chain. Apart from `flows.py` so that the pipeline verbs
(`ingest`, `pairs`, `features` of kinds that need no model) never import torch (seconds,
docs/BENCHMARKS.md "Command start-up"). Nothing in the library imports this module.
"""

from __future__ import annotations

import time
from pathlib import Path

import pipelines.runner  # noqa: F401  (first: it sets Prefect's and Dask's environment defaults)

# isort: split
from prefect import flow, task  # noqa: E402
from tqdm import tqdm  # noqa: E402

from features.config import feature_config  # noqa: E402
from flows import features_flow, ingest_flow, pairs_flow, run_flow  # noqa: E402
from pipelines.cluster import RunnerConfig  # noqa: E402
from pipelines.demo import generate_demo_corpus  # noqa: E402
from pipelines.featurize import FeaturePlan, SignalSet  # noqa: E402
from pipelines.mixing import PairConfig  # noqa: E402
from pipelines.reports import found_features  # noqa: E402
from pipelines.runner import ShardRunner  # noqa: E402
from pipelines.sources import parse_source  # noqa: E402
from stores.locks import run_lock  # noqa: E402
from stores.objects import lock_name, object_id  # noqa: E402
from stores.paths import checkpoint_folder  # noqa: E402
from stores.store import open_store  # noqa: E402
from training.enhance import check_target, make_enhancer  # noqa: E402
from training.evaluate import (  # noqa: E402
    EvaluateReport,
    enhance_shard,
    metrics_shard,
    new_run,
    plan_evaluation,
    write_plots,
)
from training.inference import mask_model_for  # noqa: E402
from training.listening import write_report  # noqa: E402
from training.results import format_table, summarize  # noqa: E402
from training.trainer import TrainConfig, train  # noqa: E402


@task(name="metrics-shard", retries=2, retry_delay_seconds=2)
def metrics_task(store_root, run, shard, rows):
    return metrics_shard(open_store(store_root, create=False), run, shard, rows)


# ---------------------------------------------------------------------------------------------- evaluate


@flow(name="evaluate")
def evaluate_flow(
    store: str,
    version: str | None,
    pairset: str,
    split: str = "test",
    reconstruction: str = "auto",
    plots: str | None = None,
    plot_ids: list[str] | None = None,
    device: str = "cpu",
    progress: bool = True,
    method: str | None = None,
    feature_id: str | None = None,
) -> EvaluateReport:
    """Enhance a pair set's split in this process (a model version loaded once, on its device, or a method
    with the config of `feature_id`) while Dask workers compute each finished shard's metrics; everything
    goes under a new run id."""
    started = time.perf_counter()
    st = open_store(store, create=False)
    enhancer = make_enhancer(st, version, method, feature_id, reconstruction, device)
    run = new_run(enhancer, pairset, split)
    used = object_id("model", version) if version else object_id("features", feature_id)
    # the run's lock records what it reads: `specstore rm` leaves the model and the pair set alone meanwhile
    with run_lock(st, lock_name(object_id("run", run.run_id)), uses=(used, object_id("pairs", pairset))):
        shards = plan_evaluation(st, pairset, split)
        futures, runner = [], ShardRunner()
        total = sum(len(s.items) for s in shards)
        with tqdm(total=total, desc=f"evaluate {run.version}", unit="utt", disable=not progress) as bar:
            for shard in shards:
                rows = enhance_shard(st, run, enhancer, shard)
                futures.append(runner.submit(metrics_task, st.root, run, shard, rows))
                bar.update(len(rows))
        for _ in runner.results(futures):
            pass
    written = write_plots(st, run, plots, plot_ids) if plots else []
    return EvaluateReport(run.run_id, run.version, pairset, split, st, written, time.perf_counter() - started)


def run_evaluate(store: str, target: dict, runner: RunnerConfig, **options):
    """`specstore evaluate`: a version, method or feature set that does not exist fails before any server
    starts (`target`: version, method, feature_id, reconstruction)."""
    check_target(open_store(store, create=False), **target)
    return run_flow(evaluate_flow, runner, store=store, **target, **options)


# ---------------------------------------------------------------------------------------------- features


def run_features(store: str, plan: FeaturePlan, runner: RunnerConfig, progress: bool):
    """`specstore features` of a kind that needs a first-stage model: the model is loaded (and checked to
    be a mask model on the kind's layout) before any server or cluster starts."""
    if plan.complete:
        return found_features(plan)
    mask = mask_model_for(open_store(store, create=False), plan.spec.config)
    return run_flow(
        features_flow, runner, store=store, source=plan.spec.source, config=plan.spec.config,
        codec=plan.spec.codec, progress=progress, mask=mask,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- demo

# The demo's model: the CRN architecture at a width that trains in about a minute on 2 CPU cores
DEMO_MODEL = {"channels": [8, 16, 32, 32, 32]}


def run_demo(store: str, source: str, epochs: int, runner: RunnerConfig, progress: bool, say=print) -> int:
    """The whole chain on the generated demo corpus: ingest, noisy pairs, features, a short training,
    evaluation, the results table, and the listening report (its path is the last line)."""
    corpus = generate_demo_corpus(source)
    say(f"demo corpus: speech {corpus.speech}, noise {corpus.noise}, room impulse responses {corpus.rir}")
    say(
        "\n".join(
            run_flow(
                ingest_flow, runner, store=store, corpus="demo", source=source, progress=progress
            ).lines()
        )
    )
    noise = parse_source("noise", "demo", str(corpus.noise))
    config = PairConfig(corpus="demo", kind="noisy", noise=noise.corpus, snr=(-5.0, 20.0), seed=0)
    pairs = run_flow(
        pairs_flow,
        runner,
        store=store,
        pairset="demo-noisy",
        config=config,
        sources=(noise,),
        progress=progress,
    )
    say("\n".join(pairs.lines()))
    source_set, magnitude = SignalSet("demo-noisy"), feature_config("magnitude")
    features = run_flow(
        features_flow, runner, store=store, source=source_set, config=magnitude, progress=progress
    )
    say("\n".join(features.lines()))
    st = open_store(store, create=False)
    train_config = TrainConfig(
        model="crn", feature_id=features.feature_id, model_args=DEMO_MODEL, epochs=epochs, batch_size=8,
        segment=100, lr=2e-3, seed=0,
    )  # fmt: skip
    version = train(st, train_config, "auto", progress=progress)
    say(f"trained {version} ({epochs} epochs; curves: {checkpoint_folder(st.path, version)}/curves.png)")
    plots = str(Path(st.path) / "plots")
    report = run_flow(
        evaluate_flow, runner, store=store, version=version, pairset="demo-noisy", split="test", plots=plots,
        progress=progress,
    )  # fmt: skip
    say("\n".join(report.lines()))
    say(f"results (specstore results --store {store}):")
    table = summarize(st.table("metrics"), group_by=("model", "model_version"))
    keep = [
        c
        for c in table.column_names
        if c in ("model", "model_version") or c.endswith(("_mean", "_ci_low", "_ci_high"))
    ]
    say(format_table(table.select(keep), "table"))
    say(f"store: {st.root}; spectrogram PNGs in {plots}")
    page = write_report(st, report.run_id, Path(st.path) / "report", overwrite=True)
    say(f"listening report (open it in a browser): {page.path}")
    return 0
