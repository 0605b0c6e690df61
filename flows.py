"""The Prefect flows of the pipelines, run on Dask, and the verbs that run them: they only compose library
functions. The flows that use models (evaluation, features computed with a first-stage model, the demo's
training) are in `training_flows.py`, so that `ingest`, `pairs` and `features` never import torch.

Each Prefect task is a thin wrapper around one shard function of `pipelines/` or `training/` (a coarse shard
of many utterances that returns counts, never arrays; I/O tasks retry). Flows run on a local Dask cluster
(`--workers N`) or an existing one (`--dask-address`, `--cluster`). The command line (`cli.py`) checks the
arguments, builds the configs, and calls the `run_*` functions here, which start the machinery only when
there is work. Nothing in the library imports this module.
"""

from __future__ import annotations

import os
import sys
import time

import pipelines.runner  # noqa: F401  (first: it sets Prefect's and Dask's environment defaults)

# isort: split
from prefect import flow, get_run_logger, serve, task  # noqa: E402
from prefect.types.entrypoint import EntrypointType  # noqa: E402
from tqdm import tqdm  # noqa: E402

from features.config import feature_config  # noqa: E402
from features.kind import get_kind  # noqa: E402
from pipelines.audio import AudioConfig  # noqa: E402
from pipelines.cluster import RunnerConfig, task_runner  # noqa: E402
from pipelines.corpora import scan_corpus  # noqa: E402
from pipelines.featurize import (  # noqa: E402
    FeaturePlan,
    SignalSet,
    feature_set_uses,
    feature_shard,
    finalize_features,
    plan_features,
)
from pipelines.ingest import ShardSummary, ingest_shard, plan_ingest  # noqa: E402
from pipelines.mixing import (  # noqa: E402  # noqa: E402
    PairConfig,
    check_pairset_config,
    load_sources,
    make_pairs_shard,
    plan_pairs,
)
from pipelines.pairs import given_pairs_shard, given_pairset_name, plan_given_pairs  # noqa: E402
from pipelines.reports import (  # noqa: E402
    FeaturesReport,
    IngestReport,
    PairsReport,
    found_features,
    ingest_report,
    pairs_report,
)
from pipelines.runner import (  # noqa: E402
    auto_shard_size,
    committing,
    ensure_prefect_api,
    holding_rows,
    run_shards,
)
from pipelines.schedule import (  # noqa: E402  # noqa: E402
    DEPLOYMENT,
    NightlyItem,
    deployment_name,
    describe_schedule,
    require_prefect_server,
    store_pairsets,
)
from pipelines.sources import SourceRequest, source_audio_config  # noqa: E402
from pipelines.splits import SplitConfig  # noqa: E402
from stores.config import parse_name  # noqa: E402
from stores.errors import ConfigError, NotFoundError, SpecstoreError  # noqa: E402
from stores.locks import run_lock  # noqa: E402
from stores.objects import object_id  # noqa: E402
from stores.paths import feature_set_group  # noqa: E402
from stores.store import open_store, redact  # noqa: E402

# ---------------------------------------------------------------------------------------------- tasks


@task(name="ingest-shard", retries=2, retry_delay_seconds=2)
def ingest_shard_task(store_root, corpus, reader, audio, splits, shard):
    return holding_rows(ingest_shard, store_root, corpus, reader, shard, audio, splits)


@task(name="given-pairs-shard", retries=2, retry_delay_seconds=2)
def given_pairs_task(store_root, corpus, pairset, audio, shard):
    return holding_rows(given_pairs_shard, store_root, corpus, pairset, shard, audio)


@task(name="pairs-shard", retries=2, retry_delay_seconds=2)
def pairs_shard_task(store_root, pairset, config, sources, shard):
    return holding_rows(make_pairs_shard, store_root, pairset, config, shard, sources)


@task(name="features-shard", retries=2, retry_delay_seconds=2)
def features_shard_task(store_root, spec, mask, shard):
    return holding_rows(feature_shard, store_root, spec, shard, mask)


@task(name="features-finalize", retries=2, retry_delay_seconds=2)
def features_finalize_task(store_root, spec):
    return finalize_features(open_store(store_root, create=False), spec)


# ---------------------------------------------------------------------------------------------- ingest


def ingest_stage(st, reader, source, name, audio, splits, shard_size, progress):
    """Scan, plan and run the ingest shards of one corpus: -> (items, plan, summary of what was added)."""
    items = scan_corpus(reader, source)
    with run_lock(st, f"ingest-{parse_name(name or reader, 'corpus name')}"):
        plan = plan_ingest(st, reader, items, name, shard_size or auto_shard_size(len(items)))
        added = run_shards(
            st,
            ingest_shard_task,
            plan.shards,
            (plan.corpus, reader, audio, splits),
            f"ingest {plan.corpus}",
            progress,
        )
    return items, plan, added


def given_pairs_stage(st, items, corpus, audio, shard_size, progress) -> tuple[str | None, ShardSummary]:
    """The corpus's own degraded files (VoiceBank-DEMAND's noisy set) as its given pair set, if any."""
    if not any(i.given for i in items):
        return None, ShardSummary("all")
    with run_lock(st, f"pairs-{given_pairset_name(corpus)}", uses=(object_id("corpus", corpus),)):
        pairset, shards = plan_given_pairs(st, corpus, items, shard_size=shard_size)
        added = run_shards(
            st, given_pairs_task, shards, (corpus, pairset, audio), f"pairs {pairset}", progress
        )
    return pairset, added


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
    pairset, pairs = given_pairs_stage(
        st, items, plan.corpus, audio, shard_size or auto_shard_size(len(items)), progress
    )
    added.rejects.update(pairs.rejects)
    return ingest_report(st, plan.corpus, added, plan.already_done, pairset, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------- pairs


def ingest_sources(st, sources: tuple[SourceRequest, ...], progress: bool) -> None:
    """Ingest the noise and RIR folders a pair set draws from (validated and resampled like speech)."""
    for request in sources:
        if request.folder is not None:
            audio = source_audio_config(request.role, st.sample_rate)
            ingest_stage(st, "folder", request.folder, request.corpus, audio, SplitConfig(), None, progress)


@flow(name="pairs")
def pairs_flow(
    store: str,
    pairset: str,
    config: PairConfig,
    sources: tuple[SourceRequest, ...] = (),
    shard_size: int | None = None,
    progress: bool = True,
) -> PairsReport:
    """Make a pair set: ingest its noise/RIR folders where needed, then one task per shard of utterances."""
    started = time.perf_counter()
    st = open_store(store, create=False)
    ingest_sources(st, sources, progress)
    uses = tuple(object_id("corpus", c) for c in (config.corpus, config.noise, config.rir) if c)
    with run_lock(st, f"pairs-{parse_name(pairset, 'pair set name')}", uses=uses):
        check_pairset_config(st, pairset, config)
        sources = load_sources(st, config)
        n = st.committed_table("utterances", ["utterance_id"], corpus=config.corpus).num_rows
        shards = plan_pairs(st, pairset, config, shard_size or auto_shard_size(n * config.copies))
        added = run_shards(
            st, pairs_shard_task, shards, (pairset, config, sources), f"pairs {pairset}", progress
        )
    return pairs_report(st, pairset, config.kind, added, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------- features


@flow(name="features")
def features_flow(
    store: str, source: SignalSet, config, codec: str | None = None, progress: bool = True, mask=None
):
    """Compute a feature set of a pair set (input and target of every pair) or of a corpus (its clean
    utterances), then its statistics. `mask`: the first-stage model a kind may need, loaded by the caller
    (`training_flows.run_features`: torch is imported only where a model is used)."""
    started = time.perf_counter()
    st = open_store(store, create=False)
    plan = plan_features(st, source, config, codec)
    if plan.complete:
        return found_features(plan)
    feature_id, plan = plan.spec.feature_id, None  # planned again under the lock: one plan held at a time
    needed = get_kind(config.kind).needed_model(config)
    if needed is not None and mask is None:
        raise ConfigError(
            f"Expected the first-stage model {needed!r} of these {config.kind} features loaded "
            "(training_flows.run_features). Got none."
        )
    with run_lock(st, f"features-{feature_id}", uses=feature_set_uses(source, config)):
        plan = plan_features(st, source, config, codec)  # again: another run may have finished it meanwhile
        results = list(_run_feature_shards(st, plan, mask, progress))
        if not plan.complete:
            # in the flow's thread: a task submitted through prefect-dask costs as much CPU as the work
            features_finalize_task(st.root, plan.spec)
    added = ShardSummary(
        "all", utterances=sum(r.utterances for r in results), seconds=sum(r.seconds for r in results)
    )
    stored = int(st.fs.du(st.array_location(feature_set_group(plan.spec.feature_id))))
    elapsed = time.perf_counter() - started
    return FeaturesReport(plan.spec.feature_id, config.kind, True, plan.pairs, added, stored, elapsed)


def _run_feature_shards(st, plan, mask, progress):
    total = sum(len(s.items) for s in plan.shards)
    with tqdm(total=total, desc=f"features {plan.spec.feature_id}", unit="utt", disable=not progress) as bar:
        for result in committing(st, features_shard_task, (plan.spec, mask), plan.shards):
            bar.update(result.utterances)
            yield result


# ---------------------------------------------------------------------------------------------- verbs


def run_flow(flow_fn, runner: RunnerConfig, **parameters):
    """Run a flow on the task runner `runner` describes, with one Prefect server for this process."""
    task_runner_ = task_runner(runner)
    ensure_prefect_api()
    return flow_fn.with_options(task_runner=task_runner_)(**parameters)


def run_features(store: str, plan: FeaturePlan, runner: RunnerConfig, progress: bool):
    """`specstore features` of a plan (`pipelines.commands.features_plan`): a set already committed is
    reported with no server and no cluster started."""
    if plan.complete:
        return found_features(plan)
    return run_flow(
        features_flow, runner, store=store, source=plan.spec.source, config=plan.spec.config,
        codec=plan.spec.codec, progress=progress,
    )  # fmt: skip


def run_pairs(
    store: str, pairset: str, config: PairConfig, sources, shard_size, runner: RunnerConfig, progress
):
    """`specstore pairs`: the corpus must be ingested; the noise/RIR folders are ingested by the flow."""
    st = open_store(store, create=False)
    if not st.committed_table("utterances", ["utterance_id"], corpus=config.corpus).num_rows:
        raise NotFoundError(
            f"Expected an ingested corpus. Got {config.corpus!r} instead (no utterances in the store)."
        )
    return run_flow(
        pairs_flow, runner, store=store, pairset=pairset, config=config, sources=tuple(sources),
        shard_size=shard_size, progress=progress,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- scheduled


@flow(name=DEPLOYMENT)
def nightly_features_flow(
    store: str,
    kinds: list[str] | None = None,
    pairsets: list[str] | None = None,
    codec: str | None = None,
    runner: dict | None = None,
) -> list[NightlyItem]:
    """Compute the missing feature sets (seed-default configs of `kinds`) of `pairsets` (default: every
    pair set in the store), each by the `features` flow as a subflow on the configured Dask cluster
    (`runner`: a `RunnerConfig` as a dict, since deployment parameters are JSON)."""
    logger = get_run_logger()
    st = open_store(store, create=False)
    done: list[NightlyItem] = []
    for pairset in pairsets or store_pairsets(st):
        for kind in kinds or ["magnitude"]:
            item = nightly_item(st, pairset, kind, codec, RunnerConfig(**(runner or {})))
            done.append(item)
            logger.info(item.line())
    return done


def nightly_item(st, pairset: str, kind: str, codec: str | None, runner: RunnerConfig) -> NightlyItem:
    """One (pair set, kind) of a nightly run: present, computed, or skipped with the reason."""
    try:
        config = feature_config(kind, sample_rate=st.sample_rate)
        plan = plan_features(st, SignalSet(pairset), config, codec)
        if plan.complete:
            return NightlyItem(pairset, kind, "present", plan.spec.feature_id)
        # a pairs run still writing this pair set holds its lock: compute next time, not half a set
        with run_lock(st, f"pairs-{pairset}"):
            pass
        report = features_flow.with_options(task_runner=task_runner(runner))(
            store=st.root, source=SignalSet(pairset), config=plan.spec.config, codec=codec, progress=False
        )
        item = NightlyItem(pairset, kind, "computed" if report.computed else "present", report.feature_id)
        if report.computed:
            item.detail = f"{report.pairs} pairs in {report.seconds:.1f} s"
        return item
    except SpecstoreError as exc:  # one pair set's problem does not stop the others
        return NightlyItem(pairset, kind, "skipped", None, str(exc))


def run_serve(parameters: dict, schedule: dict | None, name: str | None) -> int:
    """`specstore serve`: serve the nightly deployment until interrupted, or (`schedule` None: --once) run
    it now."""
    if schedule is None:
        ensure_prefect_api()
        items = nightly_features_flow(**parameters)
        for item in items:
            print(item.line())
        print(f"nightly features of {redact(parameters['store'])}: {len(items)} checked")
        return 1 if any(i.status == "skipped" for i in items) else 0
    require_prefect_server()
    deployment = build_deployment(parameters, schedule, name)
    api = redact(os.environ.get("PREFECT_API_URL", ""))
    print(
        f"serving deployment {DEPLOYMENT}/{deployment.name}: missing {', '.join(parameters['kinds'])} feature "
        f"sets of {redact(parameters['store'])}, {describe_schedule(schedule)}; Prefect API {api}; Ctrl-C stops"
    )
    sys.stdout.flush()
    # one flow run at a time: a slow run delays the next instead of racing it for the same locks
    serve(deployment, limit=1, print_starting_message=False)
    return 0


def build_deployment(parameters: dict, schedule: dict, name: str | None):
    """The nightly flow as a deployment on `schedule` ({"cron": ...} or {"interval": seconds})."""
    return nightly_features_flow.to_deployment(
        name=deployment_name(name, parameters["store"]),
        parameters=parameters,
        description=f"compute missing {', '.join(parameters['kinds'])} feature sets",
        entrypoint_type=EntrypointType.MODULE_PATH,
        **schedule,
    )
