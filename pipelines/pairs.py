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
from pipelines.ingest import Shard, ShardSummary, committed_rows, reject_row, shard_id_for
from pipelines.synthesis import snr_db
from stores.config import parse_name
from stores.store import Store, attrs_json, now_utc


def given_pairset_name(corpus: str) -> str:
    return f"{corpus}-given"


def plan_given_pairs(
    store: Store, corpus: str, items: Iterable[SourceItem], pairset: str | None = None, shard_size: int = 64
) -> tuple[str, list[Shard]]:
    """Shards of committed utterances that have a given degraded file and no committed pair yet."""
    pairset = parse_name(pairset or given_pairset_name(corpus), "pair set name")
    committed = {
        r["utterance_id"]
        for r in committed_rows(
            store, "utterances", "utterances", "corpus", corpus, ["utterance_id", "source_path"]
        )
    }
    done = {
        r["utterance_id"]
        for r in committed_rows(store, "pairs", "pairs", "pairset", pairset, ["utterance_id"])
    }
    done |= {
        r["utterance_id"]
        for r in committed_rows(store, "rejects", "pairs", "corpus", corpus, ["utterance_id", "stage"])
        if r["stage"] == f"pairs:{pairset}"
    }
    todo = [
        i for i in items if "given" in i.given and i.utterance_id in committed and i.utterance_id not in done
    ]
    todo.sort(key=lambda i: i.utterance_id)
    shards = [
        Shard(shard_id_for("given", pairset, [i.utterance_id for i in block]), block)
        for block in (todo[k : k + shard_size] for k in range(0, len(todo), shard_size))
    ]
    return pairset, shards


def given_pairs_shard(
    store: Store, corpus: str, pairset: str, shard: Shard, audio: AudioConfig
) -> ShardSummary:
    summary, now, stage = ShardSummary(shard.shard_id), now_utc(), f"pairs:{pairset}"
    ids = [i.utterance_id for i in shard.items]
    utts = {
        r["utterance_id"]: r
        for r in store.read_table(
            "utterances", filter=(ds.field("corpus") == corpus) & ds.field("utterance_id").isin(ids)
        ).to_pylist()
    }
    group = f"pairs/{pairset}/{shard.shard_id}"
    rows, rejects, inputs, offset = [], [], [], 0
    for item in shard.items:
        utt, path = utts[item.utterance_id], item.given["given"]
        try:
            noisy = load_audio(path, audio).samples
            if noisy.shape[0] != utt["num_samples"]:
                raise Rejected(
                    "length mismatch", f"{noisy.shape[0]} samples, the clean file has {utt['num_samples']}"
                )
        except Rejected as rej:
            rejects.append(
                reject_row(
                    corpus,
                    SourceItem(item.utterance_id, item.speaker_id, path),
                    rej.reason,
                    rej.detail,
                    stage,
                    shard.shard_id,
                    now,
                )
            )
            continue
        clean = store.read_samples(utt["array"], utt["offset"], utt["num_samples"])
        rows.append(
            {
                "pairset": pairset,
                "corpus": corpus,
                "utterance_id": item.utterance_id,
                "split": utt["split"],
                "kind": "given",
                "snr_db_achieved": snr_db(clean, noisy),
                "gain_db": 0.0,
                "source_path": path,
                "num_samples": utt["num_samples"],
                "array": group,
                "offset": offset,
                "roles": "input",
                "shard": shard.shard_id,
                "created_at": now,
            }
        )
        inputs.append(noisy)
        offset += noisy.shape[0]
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
        store.write_audio_array(f"{group}/input", np.concatenate(inputs), attrs_json(lineage))
    store.commit({"rejects": rejects, "pairs": rows}, "pairs", shard.shard_id)
    summary.utterances, summary.seconds = len(rows), offset / audio.sample_rate
    summary.rejects.update(r["reason"] for r in rejects)
    return summary
