"""Training pairs. This module holds the `given` kind: a corpus's own degraded files (VoiceBank-DEMAND's
noisy set) stored as a pair set beside the clean utterances, with the achieved SNR measured on the exact
stored signals. Generated noisy and reverberant pairs build on the same shard/commit mechanism.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow.dataset as ds

from pipelines.audio import AudioConfig, Rejected, load_audio
from pipelines.corpora import SourceItem
from pipelines.ingest import ShardSummary, reject_row
from pipelines.isolation import Loader, load_each
from pipelines.synthesis import snr_db
from stores.commits import Commit, Shard, committed_values, shard_id_for
from stores.config import parse_name
from stores.inflight import in_flight
from stores.paths import member, pair_group
from stores.store import Store, attrs_json, now_utc


def given_pairset_name(corpus: str) -> str:
    return f"{corpus}-given"


def plan_given_pairs(
    store: Store, corpus: str, items: Iterable[SourceItem], pairset: str | None = None, shard_size: int = 64
) -> tuple[str, list[Shard]]:
    """Shards of committed utterances that have a given degraded file and no committed pair yet."""
    pairset = parse_name(pairset or given_pairset_name(corpus), "pair set name")
    committed = committed_values(store, "utterances", "utterance_id", corpus=corpus)
    done = committed_values(store, "pairs", "utterance_id", pairset=pairset)
    done |= committed_values(store, "rejects", "utterance_id", corpus=corpus, stage=f"pairs:{pairset}")
    todo = [
        i for i in items if "given" in i.given and i.utterance_id in committed and i.utterance_id not in done
    ]
    todo.sort(key=lambda i: i.utterance_id)
    shards = [
        Shard(shard_id_for("given", pairset, [i.utterance_id for i in block]), block)
        for block in (todo[k : k + shard_size] for k in range(0, len(todo), shard_size))
    ]
    return pairset, shards


def _given_input(loaded, utt: dict):
    """The decoded degraded file, or its Rejected (also when its length differs from the clean file's)."""
    if not isinstance(loaded, Rejected) and loaded.samples.shape[0] != utt["num_samples"]:
        return Rejected(
            "length mismatch", f"{loaded.samples.shape[0]} samples, the clean file has {utt['num_samples']}"
        )
    return loaded


def _given_row(pairset: str, utt: dict, path: str, snr: float) -> dict:
    """The `pairs` row of one given pair, without its place in the shard's array."""
    return {
        "pairset": pairset,
        "corpus": utt["corpus"],
        "utterance_id": utt["utterance_id"],
        "split": utt["split"],
        "kind": "given",
        "snr_db_achieved": snr,
        "gain_db": 0.0,
        "source_path": path,
        "num_samples": utt["num_samples"],
        "roles": "input",
    }


def given_pairs_shard(
    store: Store,
    corpus: str,
    pairset: str,
    shard: Shard,
    audio: AudioConfig,
    loader: Loader = load_audio,
    commit: Commit | None = None,
) -> ShardSummary:
    """Decode one shard's given degraded files and commit them as pairs. Marked in flight like an ingest
    shard: after a crash, its files are decoded one by one in a child process (`pipelines.isolation`).
    `commit`: how its rows are committed (`stores.commits.Commit`)."""
    summary, now, stage = ShardSummary(shard.shard_id), now_utc(), f"pairs:{pairset}"
    ids = [i.utterance_id for i in shard.items]
    utts = {
        r["utterance_id"]: r
        for r in store.read_table(
            "utterances", filter=(ds.field("corpus") == corpus) & ds.field("utterance_id").isin(ids)
        ).to_pylist()
    }
    group = pair_group(pairset, shard.shard_id)
    rows, rejects, inputs, offset = [], [], [], 0
    with in_flight(store, shard.shard_id) as crashed:
        paths = [item.given["given"] for item in shard.items]
        for item, path, loaded in zip(
            shard.items, paths, load_each(paths, audio, crashed, loader), strict=True
        ):
            utt = utts[item.utterance_id]
            noisy = _given_input(loaded, utt)
            if isinstance(noisy, Rejected):
                source = SourceItem(item.utterance_id, item.speaker_id, path)
                rejects.append(
                    reject_row(corpus, source, noisy.reason, noisy.detail, stage, shard.shard_id, now)
                )
                continue
            clean = store.read_samples(utt["array"], utt["offset"], utt["num_samples"])
            row = _given_row(pairset, utt, path, snr_db(clean, noisy.samples))
            rows.append({**row, "array": group, "offset": offset, "shard": shard.shard_id, "created_at": now})
            inputs.append(noisy.samples)
            offset += noisy.samples.shape[0]
        _commit_given(store, corpus, pairset, shard, audio, group, inputs, rows, rejects, commit)
    summary.utterances, summary.seconds = len(rows), offset / audio.sample_rate
    summary.rejects.update(r["reason"] for r in rejects)
    return summary


def _commit_given(store, corpus, pairset, shard, audio, group, inputs, rows, rejects, commit) -> None:
    if inputs:
        lineage = {
            "kind": "pairs",
            "pair_kind": "given",
            "pairset": pairset,
            "corpus": corpus,
            "shard": shard.shard_id,
            "audio_config": audio.to_dict(),
            "role": "input",
        }
        store.write_audio_array(member(group, "input"), np.concatenate(inputs), attrs_json(lineage))
    (commit or store.commit)({"rejects": rejects, "pairs": rows}, "pairs", shard.shard_id)
