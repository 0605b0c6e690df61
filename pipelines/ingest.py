"""Ingest: plan shards from a corpus scan, then turn each shard into one committed piece of the store.

The functions here are the library; `flows.py` only wraps `ingest_shard` and `given_pairs_shard` in Prefect
tasks. Shards are coarse (many utterances) because each Prefect task costs milliseconds to seconds.

Reruns: an item is done when its shard is committed (its `utterances` part exists). Shards are blocks of the
full sorted scan and a shard's id is a hash of its pending members, so after a killed run the unfinished
shards get the same ids again and replace their own leftovers; a finished ingest plans nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc

from pipelines.audio import AudioConfig, LoadedAudio, Rejected, load_audio, samples_sha256
from pipelines.corpora import SourceItem, utf8_text
from pipelines.isolation import Loader, load_each
from pipelines.splits import SplitConfig, speaker_split
from stores.commits import Commit, Shard, shard_id_for
from stores.config import is_safe_name, parse_name, parse_positive_int
from stores.inflight import in_flight
from stores.paths import audio_array
from stores.store import Store, attrs_json, now_utc

DEFAULT_SHARD_SIZE = 64


@dataclass
class ShardSummary:
    shard_id: str
    utterances: int = 0
    seconds: float = 0.0
    clipped: int = 0
    rejects: Counter = field(default_factory=Counter)

    def merge(self, other: ShardSummary) -> None:
        self.utterances += other.utterances
        self.seconds += other.seconds
        self.clipped += other.clipped
        self.rejects.update(other.rejects)


@dataclass
class IngestPlan:
    corpus: str
    reader: str
    shards: list[Shard]
    already_done: int
    scanned: int


def _classify(items: list[SourceItem], done_ids: dict[str, str], done_paths: set[str]):
    """-> (pending items, prerejected, number already done). First file wins an id; later ones are refused."""
    seen: dict[str, str] = {}
    pending, prerejected, already = [], [], 0
    for item in items:
        if utf8_text(item.source_path) in done_paths:
            already += 1
            continue
        if item.problem is not None:
            prerejected.append((item, *item.problem))
            continue
        if utf8_text(item.source_path) != item.source_path:
            prerejected.append(
                (item, "unsupported file name", "the path is not valid UTF-8 (shown with \\x escapes)")
            )
            continue
        if not is_safe_name(item.utterance_id):
            prerejected.append(
                (item, "unsafe utterance id", f"{item.utterance_id!r} could escape the store's paths")
            )
            continue
        other = seen.get(item.utterance_id) or done_ids.get(item.utterance_id)
        if other is not None:
            prerejected.append((item, "duplicate utterance id", f"{item.utterance_id!r} is already {other}"))
            continue
        seen[item.utterance_id] = item.source_path
        pending.append(item)
    return pending, prerejected, already


def plan_ingest(
    store: Store,
    reader: str,
    items: Iterable[SourceItem],
    corpus: str | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> IngestPlan:
    """Shards of the items not yet committed for `corpus` (default: the reader's name)."""
    corpus = parse_name(corpus or reader, "corpus name")
    parse_positive_int(shard_size, "shard_size")
    items = sorted(items, key=lambda i: (i.source_path, i.utterance_id))
    # columns, not a dict per committed row: a rerun over 281,241 files held hundreds of MB in those
    done = store.committed_table("utterances", ["utterance_id", "source_path"], corpus=corpus)
    rejected = store.committed_table("rejects", ["source_path", "stage"], corpus=corpus)
    done_paths = done["source_path"].to_pylist()
    done_ids = dict(zip(done["utterance_id"].to_pylist(), done_paths, strict=True))
    rejected = rejected.filter(pc.equal(rejected["stage"], "ingest"))["source_path"]
    done_paths = set(done_paths) | set(rejected.to_pylist())
    shards = []
    for start in range(0, len(items), shard_size):
        block = items[start : start + shard_size]
        pending, prerejected, _ = _classify(block, done_ids, done_paths)
        # ids seen in earlier blocks count as taken too
        for item in pending:
            done_ids.setdefault(item.utterance_id, item.source_path)
        if pending or prerejected:
            members = [utf8_text(i.source_path) for i in [*pending, *(i for i, _, _ in prerejected)]]
            shards.append(Shard(shard_id_for("ingest", corpus, members), pending, prerejected))
    already = len(items) - sum(len(s.items) + len(s.prerejected) for s in shards)
    return IngestPlan(corpus, reader, shards, already, len(items))


def reject_row(corpus: str, item: SourceItem, reason: str, detail: str, stage: str, shard: str, now) -> dict:
    """A `rejects` row; paths, ids and details that are not valid UTF-8 are written with `\\x` escapes."""
    return {
        "corpus": corpus,
        "source_path": utf8_text(item.source_path),
        "reason": reason,
        "detail": utf8_text(detail),
        "utterance_id": utf8_text(item.utterance_id),
        "stage": stage,
        "shard": shard,
        "created_at": now,
    }


def _utterance_row(corpus: str, item: SourceItem, loaded: LoadedAudio, audio: AudioConfig, splits) -> dict:
    """The row of one decoded utterance, without its place in the shard's array."""
    n = int(loaded.samples.shape[0])
    return {
        "corpus": corpus,
        "utterance_id": item.utterance_id,
        "speaker_id": item.speaker_id,
        "split": item.split or speaker_split(item.speaker_id, splits),
        "source_path": item.source_path,
        "sample_rate": audio.sample_rate,
        "num_samples": n,
        "duration_s": n / audio.sample_rate,
        "transcript": item.transcript,
        "sha256": samples_sha256(loaded.samples),
        "source_sha256": loaded.source_sha256,
        "source_sample_rate": loaded.source_sample_rate,
        "source_channels": loaded.source_channels,
        "peak": loaded.peak,
        "clipped_samples": loaded.clipped_samples,
    }


def _audio_lineage(corpus, reader, shard: Shard, audio: AudioConfig, splits: SplitConfig, count: int) -> dict:
    return {
        "kind": "audio",
        "corpus": corpus,
        "reader": reader,
        "shard": shard.shard_id,
        "audio_config": audio.to_dict(),
        "splits": splits.to_dict(),
        "utterances": count,
    }


def ingest_shard(
    store: Store,
    corpus: str,
    reader: str,
    shard: Shard,
    audio: AudioConfig,
    splits: SplitConfig = SplitConfig(),
    loader: Loader = load_audio,
    commit: Commit | None = None,
) -> ShardSummary:
    """Decode one shard, write its audio as one array, then commit its rows. Returns counts, not audio.

    The shard is marked in flight until it commits; if an earlier attempt died in it (a decoder's native
    crash ends the process), its files are decoded one by one in a child process and a file that kills
    the child is rejected (`pipelines.isolation`). `loader` is for tests that inject such a crash. `commit`: how its rows are committed (`stores.commits.Commit`)."""
    summary, now = ShardSummary(shard.shard_id), now_utc()
    array_path = audio_array(corpus, shard.shard_id)
    rejects = [reject_row(corpus, i, r, d, "ingest", shard.shard_id, now) for i, r, d in shard.prerejected]
    rows, chunks, offset = [], [], 0
    with in_flight(store, shard.shard_id) as crashed:
        loaded_each = load_each([i.source_path for i in shard.items], audio, crashed, loader)
        for item, loaded in zip(shard.items, loaded_each, strict=True):
            if isinstance(loaded, Rejected):
                rejects.append(
                    reject_row(corpus, item, loaded.reason, loaded.detail, "ingest", shard.shard_id, now)
                )
                continue
            row = _utterance_row(corpus, item, loaded, audio, splits)
            rows.append(
                {**row, "array": array_path, "offset": offset, "shard": shard.shard_id, "created_at": now}
            )
            chunks.append(loaded.samples)
            offset += row["num_samples"]
            summary.clipped += int(loaded.clipped_samples > 0)
        if chunks:
            lineage = _audio_lineage(corpus, reader, shard, audio, splits, len(rows))
            store.write_audio_array(array_path, np.concatenate(chunks), attrs_json(lineage))
        (commit or store.commit)({"rejects": rejects, "utterances": rows}, "utterances", shard.shard_id)
    summary.utterances = len(rows)
    summary.seconds = offset / audio.sample_rate
    summary.rejects.update(r["reason"] for r in rejects)
    return summary
