"""`specstore verify --repair`: remove what no commit owns, and recompute damaged shards from the lineage
their rows and attributes record (a shard is uncommitted first, so a crash mid-repair leaves nothing a
reader can see). Feature sets whose shards are recomputed are uncommitted and finalised again.
"""

from __future__ import annotations

import json

import pyarrow.dataset as ds

from pipelines.audio import AudioConfig
from pipelines.corpora import SourceItem
from pipelines.ingest import Shard, ingest_shard
from pipelines.splits import SplitConfig
from stores.errors import IntegrityError
from stores.store import Store
from stores.verify import Problem


def _remove(store: Store, path: str) -> None:
    if store.fs.exists(path):
        store.fs.rm(path, recursive=True)


def _remove_array(store: Store, path: str) -> None:
    _remove(store, f"{store.path}/arrays.zarr/{path}")


def _lineage(store: Store, paths: list[str]) -> dict:
    for path in paths:
        try:
            return dict(store.arrays[path].attrs)
        except (KeyError, ValueError):
            continue
    raise IntegrityError(f"Expected recorded lineage on one of {paths}. Got none readable.")


def _shard_rows(store: Store, table: str, shard: str) -> list[dict]:
    return store.read_table(table, filter=ds.field("shard") == shard).to_pylist()


def _uncommit(store: Store, table: str, shard: str) -> None:
    _remove(store, f"{store.table_path(table)}/part-{shard}.parquet")


def repair_ingest_shard(store: Store, shard: str) -> str:
    rows = _shard_rows(store, "utterances", shard)
    corpus = rows[0]["corpus"]
    group = f"audio/{corpus}"
    siblings = (
        [f"{group}/{name}" for name, _ in store.arrays[group].arrays()] if group in store.arrays else []
    )
    lineage = _lineage(store, [rows[0]["array"], *siblings])
    items = [
        SourceItem(r["utterance_id"], r["speaker_id"], r["source_path"], r["split"], r["transcript"])
        for r in rows
    ]
    _uncommit(store, "utterances", shard)
    _remove_array(store, rows[0]["array"])
    audio = AudioConfig.from_dict(lineage["audio_config"])
    ingest_shard(
        store, corpus, lineage["reader"], Shard(shard, items), audio, SplitConfig.from_dict(lineage["splits"])
    )
    return f"recomputed utterances shard {shard} ({len(items)} utterances from their source files)"


def repair_pairs_shard(store: Store, shard: str) -> str:
    from pipelines.mixing import PairConfig, load_sources, make_pairs_shard
    from pipelines.pairs import given_pairs_shard

    rows = _shard_rows(store, "pairs", shard)
    pairset, corpus = rows[0]["pairset"], rows[0]["corpus"]
    _uncommit(store, "pairs", shard)
    _remove_array(store, rows[0]["array"])
    if rows[0]["kind"] == "given":
        lineage_paths = [
            f"pairs/{pairset}/{name}/input" for name, _ in store.arrays[f"pairs/{pairset}"].groups()
        ]
        audio = AudioConfig.from_dict(_lineage(store, lineage_paths)["audio_config"])
        items = [
            SourceItem(r["utterance_id"], "", r["source_path"], r["split"], None, {"given": r["source_path"]})
            for r in rows
        ]
        given_pairs_shard(store, corpus, pairset, Shard(shard, items), audio)
    else:
        config = PairConfig.from_dict(dict(store.arrays[f"pairs/{pairset}"].attrs)["config"])
        # a copy's row names its source utterance in params_json (`pairs --copies`); others are their own
        sources = {r["utterance_id"]: json.loads(r["params_json"] or "{}") for r in rows}
        ids = {pair: p.get("utterance_id", pair) for pair, p in sources.items()}
        utts = store.read_table(
            "utterances",
            filter=(ds.field("corpus") == corpus) & ds.field("utterance_id").isin(sorted(set(ids.values()))),
        )
        by_id = {u["utterance_id"]: u for u in utts.to_pylist()}
        items = [
            {**by_id[ids[pair]], "pair_id": pair, "copy": sources[pair].get("copy", 0)} for pair in sources
        ]
        make_pairs_shard(store, pairset, config, Shard(shard, items), load_sources(store, config))
    return f"recomputed pairs shard {shard} of {pairset} ({len(rows)} pairs)"


def repair_feature_shards(store: Store, feature_id: str) -> str:
    """Uncommit the set, recompute its missing shards and finalise it again."""
    from pipelines.featurize import feature_shard, finalize_features, plan_features

    rows = store.read_table("features", filter=ds.field("feature_id") == feature_id).to_pylist()
    if rows:
        spec_json = json.loads(rows[0]["config_json"])
        pairset = rows[0]["pairset"]
    else:  # the row is gone: the lineage is on the arrays
        attrs = _lineage(
            store,
            [f"features/{feature_id}/{n}/input" for n, _ in store.arrays[f"features/{feature_id}"].groups()],
        )
        spec_json, pairset = {"feature": attrs["config"], "codec": attrs["codec"]}, attrs["pairset"]
    from features import config_from_dict

    _remove(store, f"{store.table_path('features')}/part-{feature_id}.parquet")
    plan = plan_features(store, pairset, config_from_dict(spec_json["feature"]), spec_json["codec"])
    if plan.spec.feature_id != feature_id:
        return f"feature set {feature_id} is stale (its pair set changed): uncommitted, compute a new one"
    for shard in plan.shards:
        feature_shard(store, plan.spec, shard)
    finalize_features(store, plan.spec)
    return f"recomputed {len(plan.shards)} shard(s) of feature set {feature_id} and its statistics"


def repair(store: Store, problems: list[Problem]) -> list[str]:
    actions = []
    for problem in problems:
        if problem.kind == "leftover":
            path = problem.what
            if path.startswith("rejects/"):
                _remove(store, f"{store.table_path('rejects')}/{path.split('/', 1)[1]}.parquet")
            elif path.startswith(("audio/", "pairs/", "features/")):
                _remove_array(store, path)
            else:
                _remove(store, path)
            actions.append(f"removed {path}")
    damaged = sorted({(p.table, p.shard) for p in problems if p.kind == "damaged"})
    feature_sets = set()
    for table, shard in damaged:
        if table == "utterances":
            actions.append(repair_ingest_shard(store, shard))
        elif table == "pairs":
            actions.append(repair_pairs_shard(store, shard))
        elif table == "feature_frames":
            rows = _shard_rows(store, "feature_frames", shard)
            _uncommit(store, "feature_frames", shard)
            _remove_array(store, rows[0]["array"])
            feature_sets.add(rows[0]["feature_id"])
        elif table == "features":
            feature_sets.add(shard)
    for feature_id in sorted(feature_sets):
        actions.append(repair_feature_shards(store, feature_id))
    return actions
