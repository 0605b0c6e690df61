"""`specstore verify --repair`: remove what no commit owns, and recompute damaged shards from the lineage
their rows and attributes record (a shard is uncommitted first, so a crash mid-repair leaves nothing a
reader can see). Feature sets whose shards are recomputed are uncommitted and finalised again.

A feature set whose stored arrays need a trained model (a decomposed set's first-stage mask) gets it from
the caller's `mask_for(config)`, since this layer does not load models.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pyarrow.dataset as ds

from features.config import config_from_dict
from pipelines.audio import AudioConfig
from pipelines.corpora import SourceItem
from pipelines.featurize import SignalSet, feature_shard, finalize_features, plan_features
from pipelines.ingest import ingest_shard
from pipelines.mixing import PairConfig, load_sources, make_pairs_shard
from pipelines.pairs import given_pairs_shard
from pipelines.splits import SplitConfig
from stores.commits import Shard
from stores.errors import IntegrityError
from stores.paths import corpus_group, feature_set_group, member, pairset_group
from stores.removal import finish
from stores.store import Store
from stores.tombstones import read_record
from stores.verify import Problem

MaskFor = Callable[[object], object]  # a feature config -> the mask function its kind needs, or None


def _remove(store: Store, path: str) -> None:
    if store.fs.exists(path):
        store.fs.rm(path, recursive=True)


def _lineage(store: Store, paths: list[str]) -> dict:
    for path in paths:
        try:
            return store.array_attrs(path)
        except (KeyError, ValueError, FileNotFoundError):
            continue
    raise IntegrityError(f"Expected recorded lineage on one of {paths}. Got none readable.")


def _shard_rows(store: Store, table: str, shard: str) -> list[dict]:
    return store.read_table(table, filter=ds.field("shard") == shard).to_pylist()


def _arrays_under(store: Store, group: str, leaf: str | None = None) -> list[str]:
    """The arrays of a group's members (`leaf`: the array of that name inside each member group)."""
    members = store.group_members(group)
    if leaf is None:
        return [member(group, name) for name, what in members.items() if what == "array"]
    return [member(member(group, name), leaf) for name, what in members.items() if what == "group"]


def repair_ingest_shard(store: Store, shard: str) -> str:
    rows = _shard_rows(store, "utterances", shard)
    corpus = rows[0]["corpus"]
    lineage = _lineage(store, [rows[0]["array"], *_arrays_under(store, corpus_group(corpus))])
    items = [
        SourceItem(r["utterance_id"], r["speaker_id"], r["source_path"], r["split"], r["transcript"])
        for r in rows
    ]
    store.uncommit("utterances", [shard])
    store.remove_array(rows[0]["array"])
    audio = AudioConfig.from_dict(lineage["audio_config"])
    splits = SplitConfig.from_dict(lineage["splits"])
    ingest_shard(store, corpus, lineage["reader"], Shard(shard, items), audio, splits)
    return f"recomputed utterances shard {shard} ({len(items)} utterances from their source files)"


def _repair_given_pairs(store: Store, rows: list[dict], shard: str) -> None:
    pairset, corpus = rows[0]["pairset"], rows[0]["corpus"]
    audio = AudioConfig.from_dict(
        _lineage(store, _arrays_under(store, pairset_group(pairset), "input"))["audio_config"]
    )
    items = [
        SourceItem(r["utterance_id"], "", r["source_path"], r["split"], None, {"given": r["source_path"]})
        for r in rows
    ]
    given_pairs_shard(store, corpus, pairset, Shard(shard, items), audio)


def _repair_generated_pairs(store: Store, rows: list[dict], shard: str) -> None:
    pairset, corpus = rows[0]["pairset"], rows[0]["corpus"]
    config = PairConfig.from_dict(store.group_attrs(pairset_group(pairset))["config"])
    # a copy's row names its source utterance in params_json (`pairs --copies`); others are their own
    sources = {r["utterance_id"]: json.loads(r["params_json"] or "{}") for r in rows}
    ids = {pair: p.get("utterance_id", pair) for pair, p in sources.items()}
    utts = store.read_table(
        "utterances",
        filter=(ds.field("corpus") == corpus) & ds.field("utterance_id").isin(sorted(set(ids.values()))),
    )
    by_id = {u["utterance_id"]: u for u in utts.to_pylist()}
    items = [{**by_id[ids[pair]], "pair_id": pair, "copy": sources[pair].get("copy", 0)} for pair in sources]
    make_pairs_shard(store, pairset, config, Shard(shard, items), load_sources(store, config))


def repair_pairs_shard(store: Store, shard: str) -> str:
    rows = _shard_rows(store, "pairs", shard)
    store.uncommit("pairs", [shard])
    store.remove_array(rows[0]["array"])
    if rows[0]["kind"] == "given":
        _repair_given_pairs(store, rows, shard)
    else:
        _repair_generated_pairs(store, rows, shard)
    return f"recomputed pairs shard {shard} of {rows[0]['pairset']} ({len(rows)} pairs)"


def _feature_set_lineage(store: Store, feature_id: str) -> tuple[dict, SignalSet]:
    """(the set's config_json spec, what it was computed over), from its row or, without one, its arrays."""
    rows = store.read_table("features", filter=ds.field("feature_id") == feature_id).to_pylist()
    if rows:
        row = rows[0]
        corpus = row.get("corpus")
        return json.loads(row["config_json"]), SignalSet(corpus or row["pairset"], corpus is not None)
    attrs = _lineage(
        store,
        _arrays_under(store, feature_set_group(feature_id), "input")
        + _arrays_under(store, feature_set_group(feature_id), "clean"),
    )
    source = SignalSet(attrs.get("corpus") or attrs["pairset"], attrs.get("corpus") is not None)
    return {"feature": attrs["config"], "codec": attrs["codec"]}, source


def repair_feature_shards(store: Store, feature_id: str, mask_for: MaskFor | None = None) -> str:
    """Uncommit the set, recompute its missing shards and finalise it again."""
    spec_json, source = _feature_set_lineage(store, feature_id)
    store.remove_rows("features", {"feature_id": feature_id})
    config = config_from_dict(spec_json["feature"])
    plan = plan_features(store, source, config, spec_json["codec"])
    if plan.spec.feature_id != feature_id:
        return f"feature set {feature_id} is stale (its rows changed): uncommitted, compute a new one"
    mask = mask_for(config) if mask_for is not None else None
    for shard in plan.shards:
        feature_shard(store, plan.spec, shard, mask)
    finalize_features(store, plan.spec)
    return f"recomputed {len(plan.shards)} shard(s) of feature set {feature_id} and its statistics"


def _remove_leftover(store: Store, path: str) -> None:
    if path.startswith("rejects/"):
        _remove(store, f"{store.table_path('rejects')}/{path.split('/', 1)[1]}.parquet")
    elif path.startswith(("audio/", "pairs/", "features/")):
        store.remove_array(path)
    else:
        _remove(store, path)


def repair(store: Store, problems: list[Problem], mask_for: MaskFor | None = None) -> list[str]:
    actions = []
    for problem in problems:
        record = read_record(store, problem.object) if problem.kind == "pending" else None
        if record is not None:
            actions.append(f"finished the removal of {problem.object} ({finish(store, record)} bytes freed)")
        if problem.kind == "leftover":
            _remove_leftover(store, problem.what)
            actions.append(f"removed {problem.what}")
    feature_sets = set()
    for table, shard in sorted({(p.table, p.shard) for p in problems if p.kind == "damaged"}):
        if table == "utterances":
            actions.append(repair_ingest_shard(store, shard))
        elif table == "pairs":
            actions.append(repair_pairs_shard(store, shard))
        elif table == "feature_frames":
            rows = _shard_rows(store, "feature_frames", shard)
            store.uncommit("feature_frames", [shard])
            store.remove_array(rows[0]["array"])
            feature_sets.add(rows[0]["feature_id"])
        elif table == "features":
            feature_sets.add(shard)
    for feature_id in sorted(feature_sets):
        actions.append(repair_feature_shards(store, feature_id, mask_for))
    return actions
