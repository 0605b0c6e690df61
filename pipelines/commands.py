"""The pipeline verbs' arguments turned into configs (`pipelines/arguments.py` defines the arguments, `cli.py`
composes the parser and dispatches): `ingest`, `pairs`, `features`, `serve`, and where a flow's tasks run.
Every argument is checked here, before any server or cluster starts."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pyarrow.compute as pc

from features.config import feature_config
from features.kind import get_kind
from pipelines.audio import AudioConfig
from pipelines.cluster import RunnerConfig
from pipelines.corpora import get_reader, parse_source, scan_corpus
from pipelines.featurize import FeaturePlan, SignalSet, plan_features
from pipelines.ingest import ShardSummary, plan_ingest
from pipelines.mixing import PairConfig, check_recorded_config, pair_items
from pipelines.pairs import plan_given_pairs
from pipelines.reports import IngestReport, ingest_report, pairs_report
from pipelines.sources import SourceRequest
from pipelines.sources import parse_source as parse_pair_source
from pipelines.splits import SplitConfig, parse_split_fractions
from stores.config import parse_assignments, parse_name, parse_positive_int, parse_range
from stores.errors import NotFoundError
from stores.store import open_store


def runner_config(args) -> RunnerConfig:
    config = args.cluster_config
    return RunnerConfig(
        args.workers,
        args.dask_address,
        bool(args.threads),
        args.cluster,
        os.path.abspath(config) if config else None,
    )


def ingest_configs(args) -> tuple[AudioConfig, SplitConfig]:
    """The audio and split configs of `specstore ingest`, with the reader, name, source and store checked."""
    audio = AudioConfig(
        sample_rate=args.sample_rate,
        mono=args.mono,
        min_duration_s=args.min_duration,
        max_duration_s=args.max_duration,
    )
    splits = parse_split_fractions(args.splits) if args.splits else SplitConfig()
    get_reader(args.corpus)
    parse_name(args.name or args.corpus, "corpus name")
    if args.corpus != "demo":
        parse_source(args.source)
    if args.shard_size is not None:
        parse_positive_int(args.shard_size, "--shard-size")
    open_store(args.store, sample_rate=audio.sample_rate)
    return audio, splits


def ingest_done(args, audio: AudioConfig) -> IngestReport | None:
    """The report of a rerun of `specstore ingest` with nothing left to do (every file committed or
    rejected, every given pair made), found before Prefect, Dask or a server is loaded or started; None
    when there is work. A corpus with no committed utterance has work: it is not scanned twice."""
    started = time.perf_counter()
    st = open_store(args.store, sample_rate=audio.sample_rate)
    corpus = args.name or args.corpus
    if not st.committed_table("utterances", ["utterance_id"], corpus=corpus).num_rows:
        return None
    items = scan_corpus(args.corpus, args.source)
    plan = plan_ingest(st, args.corpus, items, corpus)
    if plan.shards:
        return None
    pairset = None
    if any(i.given for i in items):
        pairset, shards = plan_given_pairs(st, plan.corpus, items)
        if shards:
            return None
    return ingest_report(
        st, plan.corpus, ShardSummary("all"), plan.already_done, pairset, time.perf_counter() - started
    )


def pairs_done(store: str, pairset: str, config: PairConfig, sources: tuple[SourceRequest, ...]):
    """The report of a rerun of `specstore pairs` with nothing left to do (its noise and RIR folders
    ingested, every utterance of the asked splits paired), found before Prefect, Dask or a server is loaded
    or started; None when there is work or when the flow should say what is wrong (no store, no corpus). A
    pair set asked with another config is refused here, as the flow would."""
    started = time.perf_counter()
    try:
        st = open_store(store, create=False)
    except NotFoundError:
        return None
    if not st.committed_table("utterances", ["utterance_id"], corpus=config.corpus).num_rows:
        return None
    for request in sources:
        if request.folder is not None:
            items = scan_corpus("folder", request.folder)
            if plan_ingest(st, "folder", items, request.corpus).shards:
                return None
    check_recorded_config(st, pairset, config)
    if pc.any(pair_items(st, pairset, config)[1]).as_py():  # a pair to make: the flow plans its shards
        return None
    return pairs_report(st, pairset, config.kind, ShardSummary("all"), time.perf_counter() - started)


def needs_model(plan: FeaturePlan) -> bool:
    """Whether the plan's kind computes its stored arrays with a model (a first-stage mask)."""
    return get_kind(plan.spec.config.kind).needed_model(plan.spec.config) is not None


def feature_config_from_args(args, sample_rate: int | None = None):
    options = {
        "n_fft": args.n_fft, "hop_length": args.hop, "win_length": args.win, "window": args.window,
        "center": args.center, "dtype": args.dtype, "n": args.n, "mask": args.mask, "fill_nan": args.fill_nan,
        "clip": args.clip, "sample_rate": sample_rate,
    }  # fmt: skip
    options = {k: v for k, v in options.items() if v is not None}
    return feature_config(args.kind, **options, **parse_assignments(args.options, "--set"))


def signal_set_from_args(args) -> SignalSet:
    return SignalSet(args.corpus, corpus=True) if args.corpus else SignalSet(args.pairs)


def features_plan(args) -> FeaturePlan:
    """The plan of `specstore features` at the store's sample rate: a set already committed is found here,
    before Prefect, Dask or a server is loaded or started."""
    st = open_store(args.store, create=False)
    config = replace(feature_config_from_args(args), sample_rate=st.sample_rate)
    return plan_features(st, signal_set_from_args(args), config, args.codec)


def wants_demo_sources(args) -> bool:
    return "demo" in (args.noise, args.rir)


def pair_config_from_args(args, demo=None):
    """(PairConfig, the noise/RIR sources to ingest): checked before any server or cluster starts. `demo`:
    the generated demo corpus (`pipelines.demo.generate_demo_corpus`) where --noise/--rir name it."""
    parse_name(args.name, "pair set name")
    noise = parse_pair_source("noise", args.noise, str(demo.noise) if demo else None)
    rir = parse_pair_source("rir", args.rir, str(demo.rir) if demo else None)
    config = PairConfig(
        corpus=args.corpus, kind=args.kind, noise=noise.corpus if noise else None,
        rir=rir.corpus if rir else None, snr=parse_range(args.snr, "--snr"), t60=parse_range(args.t60, "--t60"),
        level=parse_range(args.level, "--level"), seed=args.seed,
        splits=tuple(s.strip() for s in args.splits.split(",") if s.strip()), target=args.target,
        copies=args.copies,
    )  # fmt: skip
    return config, tuple(s for s in (noise, rir) if s is not None)


def serve_parameters(args) -> dict:
    """The nightly flow's parameters, checked (JSON values: they go to the Prefect API)."""
    st = open_store(args.store, create=False)
    kinds = list(dict.fromkeys(args.kinds or ["magnitude"]))
    for kind in kinds:
        feature_config(kind)
    return {
        "store": st.root,
        "kinds": kinds,
        "pairsets": list(dict.fromkeys(args.pairsets)) if args.pairsets else None,
        "codec": args.codec,
        "runner": runner_config(args).to_dict(),
    }
