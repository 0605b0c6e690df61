"""Prefect flows, run on Dask, and the `specstore` command line.

Flows only compose library functions from `pipelines/` and `stores/`; each Prefect task is a coarse shard of
many utterances that returns counts, never arrays. Tasks run through prefect-dask on a local Dask cluster
(`--workers N`) or an existing one (`--dask-address tcp://HOST:PORT`).
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import pipelines.runner  # noqa: F401  (first: it sets Prefect's and Dask's environment defaults)

# isort: split
from prefect import flow, task  # noqa: E402
from tqdm import tqdm  # noqa: E402

from features import feature_config  # noqa: E402
from features.config import FeatureConfig  # noqa: E402
from pipelines.audio import AudioConfig  # noqa: E402
from pipelines.cli import build_parser  # noqa: E402
from pipelines.cluster import task_runner  # noqa: E402
from pipelines.corpora import get_reader, parse_source, scan_corpus  # noqa: E402
from pipelines.featurize import feature_shard, finalize_features, plan_features  # noqa: E402
from pipelines.ingest import ShardSummary, committed_rows, ingest_shard, plan_ingest  # noqa: E402
from pipelines.mixing import (  # noqa: E402
    SIMULATE,
    PairConfig,
    check_pairset_config,
    load_sources,
    make_pairs_shard,
    pairset_rows,
    plan_pairs,
    source_audio_config,
)
from pipelines.pairs import given_pairs_shard, given_pairset_name, plan_given_pairs  # noqa: E402
from pipelines.reports import EvaluateReport, FeaturesReport, IngestReport, PairsReport, summarize  # noqa: E402
from pipelines.runner import ShardRunner, auto_shard_size, ensure_prefect_api, run_shards  # noqa: E402
from pipelines.splits import SplitConfig, parse_split_fractions  # noqa: E402
from stores.config import parse_name, parse_positive_int, parse_range  # noqa: E402
from stores.errors import ConfigError, NotFoundError, SpecstoreError  # noqa: E402
from stores.locks import run_lock  # noqa: E402
from stores.store import open_store, redact  # noqa: E402

# ---------------------------------------------------------------------------------------------- ingest


@task(name="ingest-shard", retries=2, retry_delay_seconds=2)
def ingest_shard_task(store_root, corpus, reader, audio, splits, shard):
    return ingest_shard(open_store(store_root, create=False), corpus, reader, shard, audio, splits)


@task(name="given-pairs-shard", retries=2, retry_delay_seconds=2)
def given_pairs_task(store_root, corpus, pairset, audio, shard):
    return given_pairs_shard(open_store(store_root, create=False), corpus, pairset, shard, audio)


def ingest_stage(st, reader, source, name, audio, splits, shard_size, progress):
    """Scan, plan and run the ingest shards of one corpus: -> (items, plan, summary of what was added)."""
    items = scan_corpus(reader, source)
    with run_lock(st, f"ingest-{parse_name(name or reader, 'corpus name')}"):
        plan = plan_ingest(st, reader, items, name, shard_size or auto_shard_size(len(items)))
        added = run_shards(
            ingest_shard_task,
            plan.shards,
            (st.root, plan.corpus, reader, audio, splits),
            f"ingest {plan.corpus}",
            progress,
        )
    return items, plan, added


@flow(name="ingest")
def ingest_flow(
    store: str,
    corpus: str,
    source: str,
    name: str | None = None,
    audio: AudioConfig | None = None,
    splits: SplitConfig | None = None,
    shard_size: int | None = None,
    progress: bool = True,
) -> IngestReport:
    """Ingest a corpus: scan, shard, decode on Dask, commit; then the corpus's given pairs, if any."""
    started = time.perf_counter()
    audio, splits = audio or AudioConfig(), splits or SplitConfig()
    st = open_store(store, sample_rate=audio.sample_rate)
    items, plan, added = ingest_stage(st, corpus, source, name, audio, splits, shard_size, progress)
    shard_size = shard_size or auto_shard_size(len(items))
    pairset, pair_shards = None, []
    if any(i.given for i in items):
        with run_lock(st, f"pairs-{given_pairset_name(plan.corpus)}"):
            pairset, pair_shards = plan_given_pairs(st, plan.corpus, items, shard_size=shard_size)
            added_pairs = run_shards(
                given_pairs_task,
                pair_shards,
                (st.root, plan.corpus, pairset, audio),
                f"pairs {pairset}",
                progress,
            )
        added.rejects.update(added_pairs.rejects)
    return summarize(st, plan.corpus, added, plan.already_done, pairset, time.perf_counter() - started)


def run_ingest(args) -> IngestReport:
    # every argument is checked before the (seconds-long) start of the Prefect server and Dask cluster
    audio = AudioConfig(sample_rate=args.sample_rate, mono=args.mono, min_duration_s=args.min_duration)
    splits = parse_split_fractions(args.splits) if args.splits else SplitConfig()
    get_reader(args.corpus)
    parse_name(args.name or args.corpus, "corpus name")
    if args.corpus != "demo":
        parse_source(args.source)
    if args.shard_size is not None:
        parse_positive_int(args.shard_size, "--shard-size")
    open_store(args.store, sample_rate=audio.sample_rate)
    runner = task_runner(args)
    ensure_prefect_api()
    return ingest_flow.with_options(task_runner=runner)(
        store=args.store,
        corpus=args.corpus,
        source=args.source,
        name=args.name,
        audio=audio,
        splits=splits,
        shard_size=args.shard_size,
        progress=not args.quiet,
    )


# ---------------------------------------------------------------------------------------------- pairs


@task(name="pairs-shard", retries=2, retry_delay_seconds=2)
def pairs_shard_task(store_root, pairset, config, sources, shard):
    return make_pairs_shard(open_store(store_root, create=False), pairset, config, shard, sources)


def source_corpus_name(role: str, source: str | None) -> str | None:
    """The store corpus a --noise/--rir argument becomes: `noise-demo`, `rir-<folder name>`, or simulate."""
    if source in (None, SIMULATE):
        return source
    base = "demo" if source == "demo" else re.sub(r"[^A-Za-z0-9._+-]", "-", Path(source).resolve().name)
    return parse_name(f"{role}-{base}", f"--{role} corpus name")


def prepare_source(st, role: str, source: str | None, demo_source: str, progress: bool) -> str | None:
    """Ingest a noise or RIR folder (validated and resampled like speech) and return its corpus name."""
    name = source_corpus_name(role, source)
    if source in (None, SIMULATE):
        return name
    folder = source
    if source == "demo":
        from pipelines.demo import generate_demo_corpus

        corpus = generate_demo_corpus(demo_source)
        folder = str(corpus.noise if role == "noise" else corpus.rir)
    audio = source_audio_config(role, st.sample_rate)
    ingest_stage(st, "folder", folder, name, audio, SplitConfig(), None, progress)
    return name


@flow(name="pairs")
def pairs_flow(
    store: str,
    pairset: str,
    config: PairConfig,
    noise_source: str | None = None,
    rir_source: str | None = None,
    demo_source: str = "demo-data",
    shard_size: int | None = None,
    progress: bool = True,
) -> PairsReport:
    """Make a pair set: ingest the noise/RIR sources if needed, then one task per shard of utterances."""
    started = time.perf_counter()
    st = open_store(store, create=False)
    config = replace(
        config,
        noise=prepare_source(st, "noise", noise_source, demo_source, progress),
        rir=prepare_source(st, "rir", rir_source, demo_source, progress),
    )
    with run_lock(st, f"pairs-{parse_name(pairset, 'pair set name')}"):
        check_pairset_config(st, pairset, config)
        sources = load_sources(st, config)
        n = len(committed_rows(st, "utterances", "utterances", "corpus", config.corpus, ["utterance_id"]))
        shards = plan_pairs(st, pairset, config, shard_size or auto_shard_size(n * config.copies))
        added = run_shards(
            pairs_shard_task, shards, (st.root, pairset, config, sources), f"pairs {pairset}", progress
        )
    return PairsReport(pairset, config.kind, added, pairset_rows(st, pairset), time.perf_counter() - started)


def run_pairs(args) -> PairsReport:
    # the config is checked (with placeholder source names) before the server and cluster start
    config = PairConfig(
        corpus=args.corpus,
        kind=args.kind,
        noise=source_corpus_name("noise", args.noise),
        rir=source_corpus_name("rir", args.rir),
        snr=parse_range(args.snr, "--snr"),
        t60=parse_range(args.t60, "--t60"),
        level=parse_range(args.level, "--level"),
        seed=args.seed,
        splits=tuple(s.strip() for s in args.splits.split(",") if s.strip()),
        target=args.target,
        copies=args.copies,
    )
    parse_name(args.name, "pair set name")
    for role, value in (("noise", args.noise), ("rir", args.rir)):
        if value not in (None, "demo", SIMULATE) and not Path(value).is_dir():
            raise NotFoundError(
                f"Expected --{role} to be a folder, demo{' or simulate' if role == 'rir' else ''}. "
                f"Got {value!r} instead (no such folder)."
            )
    if args.noise == SIMULATE:
        raise ConfigError("Expected --noise to be a folder or demo. Got 'simulate' instead.")
    st = open_store(args.store, create=False)
    if not committed_rows(st, "utterances", "utterances", "corpus", args.corpus, ["utterance_id"]):
        raise NotFoundError(
            f"Expected an ingested corpus. Got {args.corpus!r} instead (no utterances in the store)."
        )
    runner = task_runner(args)
    ensure_prefect_api()
    return pairs_flow.with_options(task_runner=runner)(
        store=args.store,
        pairset=args.name,
        config=config,
        noise_source=args.noise,
        rir_source=args.rir,
        demo_source=args.demo_source,
        shard_size=args.shard_size,
        progress=not args.quiet,
    )


# ---------------------------------------------------------------------------------------------- features


@task(name="features-shard", retries=2, retry_delay_seconds=2)
def features_shard_task(store_root, spec, shard):
    return feature_shard(open_store(store_root, create=False), spec, shard)


@task(name="features-finalize", retries=2, retry_delay_seconds=2)
def features_finalize_task(store_root, spec):
    return finalize_features(open_store(store_root, create=False), spec)


@flow(name="features")
def features_flow(
    store: str, pairset: str, config: FeatureConfig, codec: str | None = None, progress: bool = True
):
    """Compute a feature set of a pair set (input and target of every pair), then its statistics."""
    started = time.perf_counter()
    st = open_store(store, create=False)
    plan = plan_features(st, pairset, config, codec)
    if plan.complete:
        return FeaturesReport(
            plan.spec.feature_id, config.kind, False, plan.pairs, ShardSummary("all"), 0, 0.0
        )
    with run_lock(st, f"features-{plan.spec.feature_id}"):
        plan = plan_features(st, pairset, config, codec)  # again: another run may have finished it meanwhile
        results = list(_run_feature_shards(st, plan, progress))
        if not plan.complete:
            # in the flow's thread: a task run through prefect-dask costs ~0.25 s of CPU, as much as the work
            features_finalize_task(st.root, plan.spec)
    added = ShardSummary(
        "all", utterances=sum(r.utterances for r in results), seconds=sum(r.seconds for r in results)
    )
    group = f"{st.path}/arrays.zarr/features/{plan.spec.feature_id}"
    return FeaturesReport(
        plan.spec.feature_id,
        config.kind,
        True,
        plan.pairs,
        added,
        int(st.fs.du(group)),
        time.perf_counter() - started,
    )


def _run_feature_shards(st, plan, progress):
    runner = ShardRunner()
    futures = [runner.submit(features_shard_task, st.root, plan.spec, shard) for shard in plan.shards]
    with tqdm(
        total=sum(len(s.items) for s in plan.shards),
        desc=f"features {plan.spec.feature_id}",
        unit="pair",
        disable=not progress,
    ) as bar:
        for result in runner.results(futures):
            bar.update(result.utterances)
            yield result


def feature_config_from_args(args) -> FeatureConfig:
    overrides = {
        key: value
        for key, value in (
            ("n_fft", args.n_fft),
            ("hop_length", args.hop),
            ("win_length", args.win),
            ("window", args.window),
            ("center", args.center),
            ("dtype", args.dtype),
            ("n", args.n),
            ("mask", args.mask),
            ("fill_nan", args.fill_nan),
            ("clip", args.clip),
        )
        if value is not None
    }
    return feature_config(args.kind, **overrides)


def run_features(args) -> FeaturesReport:
    config = feature_config_from_args(args)
    st = open_store(args.store, create=False)
    plan = plan_features(st, args.pairs, replace(config, sample_rate=st.sample_rate), args.codec)
    if plan.complete:  # found: no server, no cluster
        return FeaturesReport(
            plan.spec.feature_id, config.kind, False, plan.pairs, ShardSummary("all"), 0, 0.0
        )
    runner = task_runner(args)
    ensure_prefect_api()
    return features_flow.with_options(task_runner=runner)(
        store=args.store,
        pairset=args.pairs,
        config=plan.spec.config,
        codec=plan.spec.codec,
        progress=not args.quiet,
    )


# ---------------------------------------------------------------------------------------------- evaluate


@task(name="metrics-shard", retries=2, retry_delay_seconds=2)
def metrics_task(store_root, run, shard, rows):
    from training.evaluate import metrics_shard

    return metrics_shard(open_store(store_root, create=False), run, shard, rows)


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
    from training.evaluate import enhance_shard, make_enhancer, new_run, plan_evaluation, write_plots

    started = time.perf_counter()
    st = open_store(store, create=False)
    enhancer = make_enhancer(st, version, method, feature_id, reconstruction, device)
    run = new_run(enhancer, pairset, split)
    shards = plan_evaluation(st, pairset, split)
    futures, runner = [], ShardRunner()
    with tqdm(
        total=sum(len(s.items) for s in shards),
        desc=f"evaluate {run.version}",
        unit="utt",
        disable=not progress,
    ) as bar:
        for shard in shards:
            rows = enhance_shard(st, run, enhancer, shard)
            futures.append(runner.submit(metrics_task, st.root, run, shard, rows))
            bar.update(len(rows))
    for _ in runner.results(futures):
        pass
    written = write_plots(st, run, plots, plot_ids) if plots else []
    return EvaluateReport(run.run_id, run.version, pairset, split, st, written, time.perf_counter() - started)


def run_evaluate(args) -> EvaluateReport:
    from training.evaluate import check_target
    from training.trainer import resolve_device

    device = resolve_device(args.device)
    st = open_store(args.store, create=False)
    # a version, method or feature set that does not exist fails before any server starts
    check_target(st, args.model_version, args.method, args.features, args.reconstruction)
    runner = task_runner(args)
    ensure_prefect_api()
    plot_ids = [u.strip() for u in args.plot_ids.split(",") if u.strip()] if args.plot_ids else None
    return evaluate_flow.with_options(task_runner=runner)(
        store=args.store,
        version=args.model_version,
        pairset=args.pairs,
        split=args.split,
        reconstruction=args.reconstruction,
        plots=args.plots,
        plot_ids=plot_ids,
        device=str(device),
        progress=not args.quiet,
        method=args.method,
        feature_id=args.features,
    )


# ---------------------------------------------------------------------------------------------- command line


def cmd_ingest(args) -> int:
    for line in run_ingest(args).lines():
        print(line)
    return 0


def cmd_pairs(args) -> int:
    for line in run_pairs(args).lines():
        print(line)
    return 0


def cmd_features(args) -> int:
    for line in run_features(args).lines():
        print(line)
    return 0


def parse_model_args(pairs: list[str]) -> dict:
    import json

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"Expected --model-arg KEY=VALUE. Got {pair!r} instead.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare word is a string
    return out


def cmd_train(args) -> int:
    from training.trainer import TrainConfig, train

    config = TrainConfig(
        model=args.model,
        feature_id=args.features,
        model_args=parse_model_args(args.model_arg),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        amsgrad=args.amsgrad,
        clip_grad=args.clip_grad,
        accumulate=args.accumulate,
        segment=args.segment,
        seed=args.seed,
        patience=args.patience,
        max_steps=args.max_steps,
        num_workers=args.loader_workers,
    )
    version = train(open_store(args.store, create=False), config, args.device, args.resume, not args.quiet)
    print(version)
    return 0


def cmd_evaluate(args) -> int:
    for line in run_evaluate(args).lines():
        print(line)
    return 0


def cmd_results(args) -> int:
    from training.results import brief, format_table, plot_results, summarize

    st = open_store(args.store, create=False)
    group_by = tuple(c.strip() for c in args.group_by.split(",") if c.strip())
    chosen = {"metrics": [m.strip() for m in args.metrics.split(",") if m.strip()]} if args.metrics else {}
    table = summarize(st.table("metrics"), group_by=group_by, where=args.where, **chosen)
    if args.brief:
        table = brief(table)
    print(format_table(table, args.format))
    if args.plot:
        print(f"plot: {plot_results(table, args.plot, args.metric)}")
    return 0


def cmd_serve(args) -> int:
    from pipelines.schedule import run_serve

    return run_serve(args)


def cmd_verify(args) -> int:
    from pipelines.repair import repair
    from stores.verify import verify_store

    st = open_store(args.store, create=False)
    problems = verify_store(st, checksums=not args.no_checksums)
    for problem in problems:
        print(problem.line())
    if problems and args.repair:
        for action in repair(st, problems):
            print(f"repair: {action}")
        problems = verify_store(st, checksums=not args.no_checksums)
        for problem in problems:
            print(f"still: {problem.line()}")
    print(f"verify {redact(st.root)}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def cmd_download(args) -> int:
    from pipelines import download

    return download.run(args)


# The demo's model: the CRN architecture at a width that trains in about a minute on 2 CPU cores
DEMO_MODEL = {"channels": [8, 16, 32, 32, 32]}


def cmd_demo(args) -> int:
    """The whole chain on the generated demo corpus: ingest, noisy pairs, features, a short training,
    evaluation, and the results table."""
    from pipelines.demo import generate_demo_corpus
    from training.results import format_table, summarize
    from training.trainer import TrainConfig, train

    corpus = generate_demo_corpus(args.source)
    print(f"demo corpus: speech {corpus.speech}, noise {corpus.noise}, room impulse responses {corpus.rir}")
    ensure_prefect_api()
    progress, runner = not args.quiet, lambda: task_runner(args)
    ingest = ingest_flow.with_options(task_runner=runner())(
        store=args.store, corpus="demo", source=args.source, progress=progress
    )
    print("\n".join(ingest.lines()))
    config = PairConfig(corpus="demo", kind="noisy", noise="noise-demo", snr=(-5.0, 20.0), seed=0)
    pairs = pairs_flow.with_options(task_runner=runner())(
        store=args.store,
        pairset="demo-noisy",
        config=config,
        noise_source="demo",
        demo_source=args.source,
        progress=progress,
    )
    print("\n".join(pairs.lines()))
    features = features_flow.with_options(task_runner=runner())(
        store=args.store, pairset="demo-noisy", config=feature_config("magnitude"), progress=progress
    )
    print("\n".join(features.lines()))
    st = open_store(args.store, create=False)
    train_config = TrainConfig(
        model="crn",
        feature_id=features.feature_id,
        model_args=DEMO_MODEL,
        epochs=args.epochs,
        batch_size=8,
        segment=100,
        lr=2e-3,
        seed=0,
    )
    version = train(st, train_config, "auto", progress=progress)
    print(f"trained {version} ({args.epochs} epochs; curves: {st.path}/checkpoints/{version}/curves.png)")
    plots = str(Path(st.path) / "plots")
    report = evaluate_flow.with_options(task_runner=runner())(
        store=args.store, version=version, pairset="demo-noisy", split="test", plots=plots, progress=progress
    )
    print("\n".join(report.lines()))
    table = summarize(st.table("metrics"), group_by=("model", "model_version"))
    keep = [
        c
        for c in table.column_names
        if c in ("model", "model_version") or c.endswith(("_mean", "_ci_low", "_ci_high"))
    ]
    print("results (specstore results --store " + args.store + "):")
    print(format_table(table.select(keep), "table"))
    print(f"store: {st.root}; spectrogram PNGs in {plots}")
    return 0


COMMANDS = {
    "ingest": cmd_ingest,
    "pairs": cmd_pairs,
    "features": cmd_features,
    "verify": cmd_verify,
    "serve": cmd_serve,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "results": cmd_results,
    "download": cmd_download,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.verb](args)
    except SpecstoreError as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split())  # one line, whatever a library put in its message
        print(f"specstore {args.verb}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"specstore {args.verb}: interrupted", file=sys.stderr)
        return 130


def cli() -> None:
    """The `specstore` command: `main`, then the process ends without the interpreter's finalisation.

    After reading Parquet through fsspec (object stores), pyarrow's C++ thread pools can abort the process
    while the interpreter tears down, with the command's work done and its output printed: "terminate
    called without an active exception", exit -6 (seen once in tests/test_s3.py's runs; apache/arrow#39162,
    #34314, open). Python's atexit handlers (Prefect's temporary server, Dask, logging) still run first."""
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


__all__ = ["ConfigError", "cli", "ingest_flow", "main"]

if __name__ == "__main__":
    cli()
