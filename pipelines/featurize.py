"""Feature sets: the features of every pair of a pair set (roles `input` and `target`) or of every clean
utterance of a corpus (role `clean`), computed per shard, stored chunked along time, with per-frequency
training statistics; then committed by one `features` row.

`feature_id` = kind + a hash of (feature config, codec, signal set, fingerprint of its committed rows): a
changed config or changed pairs make a new set beside the old; the same ones find the set and compute
nothing. One feature shard per pair (or ingest) shard, so each task reads its arrays once. What a kind
stores and computes per role is the kind's (`features.kind`); a kind whose stored arrays need a trained model
(decomposed sets with a first-stage mask) is handed that model as a function by the caller.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from zarr.codecs import BloscCodec, ZstdCodec

from features.kind import FeatureKind, MaskFn, get_kind
from features.stft import n_frames
from pipelines.statistics import reduce_sums, stat_sums
from stores.audio_index import PairReader, UtteranceReader
from stores.commits import Commit, Shard, shard_rows, table_by_shard
from stores.config import parse_choice
from stores.errors import ConfigError, NotFoundError
from stores.objects import object_id
from stores.paths import feature_group, feature_stats, feature_sums, member
from stores.scratch import Scratch, work_buffers
from stores.store import Store, attrs_json, now_utc

CODECS = {
    "lz4": lambda: BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    "zstd": lambda: ZstdCodec(level=3),
    "blosc-zstd": lambda: BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    "none": lambda: None,
}
CHUNK_BYTES = 1 << 20  # chunks of about a megabyte or more along time
BATCH_SAMPLES = 1 << 20  # audio samples per batch of a feature shard's rows (about a minute at 16 kHz)
ROW_COLUMNS = ["utterance_id", "split", "num_samples", "array", "offset", "corpus"]


@functools.cache  # importlib.metadata reads the installed distributions on every call; twice a shard
def code_version() -> str:
    try:
        return version("specstore")
    except PackageNotFoundError:
        return "unknown"


def parse_codec(name: str) -> str:
    return parse_choice(name, CODECS, "--codec")


def resolve_codec(codec: str | None, config) -> str:
    """The named codec (checked), or the feature kind's default when None."""
    return parse_codec(get_kind(config.kind).default_codec if codec is None else codec)


@dataclass(frozen=True)
class SignalSet:
    """What a feature set is computed over: a pair set's pairs, or (`corpus`) a corpus's utterances."""

    name: str
    corpus: bool = False

    @property
    def label(self) -> str:
        return f"corpus {self.name}" if self.corpus else f"pair set {self.name}"

    @property
    def hash_input(self) -> str:
        # a pair set's own name, as before corpus sets existed, so that existing sets are found again
        return f"corpus:{self.name}" if self.corpus else self.name

    @property
    def object_id(self) -> str:
        """The catalogue's id of what the set is computed over (`pairs:<name>`, `corpus:<name>`)."""
        return object_id("corpus" if self.corpus else "pairs", self.name)

    def rows(self, store: Store) -> pa.Table:
        """The committed rows the set is computed from (an Arrow table: a set may have 281,241 of them)."""
        if self.corpus:
            return store.committed_table("utterances", ROW_COLUMNS, corpus=self.name)
        return store.committed_table("pairs", [*ROW_COLUMNS, "roles"], pairset=self.name)

    def reader(self, store: Store, scratch: Scratch | None = None):
        return UtteranceReader(store, scratch) if self.corpus else PairReader(store, scratch)


def feature_set_uses(source: SignalSet, config) -> tuple[str, ...]:
    """What a feature set is computed from: its signal set and the model its kind may need (what its
    writer's run lock records, so that `specstore rm` leaves them alone meanwhile)."""
    model = get_kind(config.kind).needed_model(config)
    return (source.object_id, *((object_id("model", model),) if model else ()))


def rows_fingerprint(rows: pa.Table) -> str:
    """What the feature set was computed from: every committed row (id, split, length, the shard that made
    it), as the sorted lines `id:split:length:shard` (a missing split reads `None`); the split is in
    because the training statistics depend on it."""
    columns = [rows["utterance_id"], rows["split"], pc.cast(rows["num_samples"], pa.string()), rows["shard"]]
    lines = pc.binary_join_element_wise(*columns, ":", null_handling="replace", null_replacement="None")
    return hashlib.sha256("\n".join(sorted(lines.to_pylist())).encode()).hexdigest()


def feature_id_for(config, codec: str, source: SignalSet, fingerprint: str) -> str:
    return f"{config.kind}-{config.config_hash(codec, source.hash_input, fingerprint, length=12)}"


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a shard task needs to know about its feature set."""

    feature_id: str
    config: object
    codec: str
    source: SignalSet
    fingerprint: str

    @property
    def kind(self) -> FeatureKind:
        return get_kind(self.config.kind)

    @property
    def roles(self) -> tuple[str, ...]:
        return self.kind.roles(self.source.corpus)

    def lineage(self) -> dict:
        return {
            "kind": "features",
            "feature_id": self.feature_id,
            "pairset": None if self.source.corpus else self.source.name,
            "corpus": self.source.name if self.source.corpus else None,
            "config": self.config.to_dict(),
            "codec": self.codec,
            "pairs_fingerprint": self.fingerprint,
            "code_version": code_version(),
        }


@dataclass
class FeaturePlan:
    spec: FeatureSpec
    shards: list[Shard]
    complete: bool  # the set is committed already: nothing to compute
    pairs: int = 0  # rows (pairs or utterances) the set covers


@dataclass
class FeatureShardResult:
    """What a shard returns: counts, never features."""

    shard_id: str
    utterances: int = 0
    frames: int = 0
    seconds: float = 0.0


def plan_features(store: Store, source: SignalSet, config, codec: str | None = None) -> FeaturePlan:
    """The feature set of `config` over `source` stored with `codec` (None: the kind's default): its spec
    and the shards still to compute (none when the set is committed)."""
    codec = resolve_codec(codec, config)
    if config.sample_rate != store.sample_rate:
        raise ConfigError(
            f"Expected sample_rate {store.sample_rate} (the store's). Got {config.sample_rate} instead."
        )
    get_kind(config.kind).roles(source.corpus)  # a kind that needs pairs refuses a corpus
    rows = source.rows(store)
    if not rows.num_rows:
        raise NotFoundError(f"Expected a {source.label} with committed rows. Got none.")
    fingerprint = rows_fingerprint(rows)
    spec = FeatureSpec(feature_id_for(config, codec, source, fingerprint), config, codec, source, fingerprint)
    if store.read_table("features", filter=ds.field("feature_id") == spec.feature_id).num_rows:
        return FeaturePlan(spec, [], True, rows.num_rows)
    done = store.committed_shards("feature_frames")
    shards = [
        Shard(shard_name(spec, s), items)
        for s, items in table_by_shard(rows).items()
        if shard_name(spec, s) not in done
    ]
    return FeaturePlan(spec, shards, False, rows.num_rows)


def shard_name(spec: FeatureSpec, source_shard: str) -> str:
    return f"{spec.feature_id}-{source_shard}"


def _frames_row(spec: FeatureSpec, shard: Shard, row: dict, frame: int, n: int, now) -> dict:
    return {
        "feature_id": spec.feature_id,
        "pairset": None if spec.source.corpus else spec.source.name,
        "utterance_id": row["utterance_id"],
        "split": row["split"],
        "array": feature_group(spec.feature_id, shard.shard_id),
        "frame_offset": frame,
        "num_frames": n,
        "num_samples": row["num_samples"],
        "shard": shard.shard_id,
        "created_at": now,
    }


def stored_shapes(spec: FeatureSpec) -> dict:
    """{array name: StoredArray} of every role of the set."""
    kind = spec.kind
    return {name: array for role in spec.roles for name, array in kind.stored(spec.config, role).items()}


def feature_shard(
    store: Store,
    spec: FeatureSpec,
    shard: Shard,
    mask: MaskFn | None = None,
    commit: Commit | None = None,
) -> FeatureShardResult:
    """Compute, write and commit one shard of a feature set, a batch of its rows at a time (about
    BATCH_SAMPLES of audio each): a worker thread holds one batch's audio and features and a chunk per
    array, whatever the shard's size, in memory kept from its previous batch (`stores.scratch`: fresh memory
    costs page faults). The shard's partial sums of the training statistics are stored with it (not
    returned), so a rerun after a kill still sees every shard's. `mask`: the first-stage model a kind
    needs (`FeatureKind.needed_model`). `commit`: how its rows are committed (`stores.commits.Commit`)."""
    result, now = FeatureShardResult(shard.shard_id), now_utc()
    kind, config = spec.kind, spec.config
    if kind.needed_model(config) and mask is None:
        raise ConfigError(
            f"Expected the mask model {kind.needed_model(config)!r} for {spec.feature_id}. Got none."
        )
    signals_needed = kind.signals_needed(config, spec.roles, mask)
    shapes, rows, sums = stored_shapes(spec), [], {}
    with work_buffers(("feature-shard",), Scratch) as scratch, contextlib.ExitStack() as stack:
        writers = {
            n: stack.enter_context(w) for n, w in shard_writers(store, spec, shard.shard_id, shapes).items()
        }
        reader = spec.source.reader(store, scratch)
        for batch in row_batches(shard_rows(shard)):
            counts = [n_frames(row["num_samples"], config) for row in batch]
            arrays = {n: scratch.array(n, (sum(counts), *a.tail), a.dtype) for n, a in shapes.items()}
            signals = reader.signals(batch, signals_needed)
            train_runs = batch_features(signals, counts, spec, mask, arrays)
            first = writers[spec.roles[0]].rows
            for row, start, n in zip(batch, itertools.accumulate([0, *counts]), counts, strict=False):
                rows.append(_frames_row(spec, shard, row, first + start, n, now))
                result.seconds += row["num_samples"] / store.sample_rate
            for role in spec.roles:
                part = sum_runs(arrays[role], train_runs)
                if part is not None:
                    sums[role] = sums[role] + part if role in sums else part
            for name, writer in writers.items():
                writer.append(arrays[name])
    write_shard_sums(store, spec, shard.shard_id, sums)
    (commit or store.commit)({"feature_frames": rows}, "feature_frames", shard.shard_id)
    result.utterances, result.frames = len(rows), sum(r["num_frames"] for r in rows)
    return result


def row_batches(rows: list[dict]) -> Iterator[list[dict]]:
    """Consecutive rows, about BATCH_SAMPLES of audio a batch (a longer one is a batch of its own)."""
    batch, samples = [], 0
    for row in rows:
        batch.append(row)
        samples += row["num_samples"]
        if samples >= BATCH_SAMPLES:
            yield batch
            batch, samples = [], 0
    if batch:
        yield batch


def batch_features(signals, counts: list[int], spec: FeatureSpec, mask, arrays: dict[str, np.ndarray]):
    """Each row's stored arrays into `arrays` (the batch's frames, in order) -> the [start, end) frames of
    the batch's runs of consecutive training rows."""
    kind, train_runs, frame = spec.kind, [], 0
    for (row, row_signals), n in zip(signals, counts, strict=True):
        out = {name: values[frame : frame + n] for name, values in arrays.items()}
        for role in spec.roles:
            try:
                kind.compute_stored(row_signals, spec.config, role, out, mask)
            except ConfigError as exc:  # name the utterance: the kind cannot know it
                raise type(exc)(f"{row['utterance_id']} ({role}): {exc}") from exc
        if row["split"] == "train":
            if train_runs and train_runs[-1][1] == frame:
                train_runs[-1][1] = frame + n
            else:
                train_runs.append([frame, frame + n])
        frame += n
    return train_runs


def sum_runs(values: np.ndarray, train_runs: list[list[int]]) -> np.ndarray | None:
    """The partial sums of the training statistics over the training frames, summed per run of
    consecutive training rows (a handful of numpy calls per batch, not hundreds); None without any."""
    parts = [stat_sums(values[start:end]) for start, end in train_runs]
    return functools.reduce(np.add, parts) if parts else None


def shard_writers(store: Store, spec: FeatureSpec, shard_id: str, shapes: dict) -> dict:
    """A writer per stored array of a shard, chunked along time (about CHUNK_BYTES a chunk)."""
    group, lineage, writers = feature_group(spec.feature_id, shard_id), spec.lineage(), {}
    for name, array in shapes.items():
        chunk = max(1, -(-CHUNK_BYTES // (math.prod(array.tail) * array.dtype.itemsize)))
        attrs = attrs_json({**lineage, "role": name, "shard": shard_id, "dtype": str(array.dtype)})
        writers[name] = store.array_writer(
            member(group, name), array.tail, array.dtype, chunk, attrs, CODECS[spec.codec]()
        )
    return writers


def write_shard_sums(store: Store, spec: FeatureSpec, shard_id: str, sums: dict[str, np.ndarray]) -> None:
    """A shard's partial sums of the training statistics, beside its arrays."""
    lineage = attrs_json({**spec.lineage(), "statistic": "partial sums"})
    for role, values in sums.items():
        store.write_array(
            feature_sums(spec.feature_id, shard_id, role), values, lineage, values.shape[:1], None
        )


def write_statistics(store: Store, spec: FeatureSpec) -> dict[str, int]:
    """Reduce every committed shard's partial sums to per-frequency mean and std: {role: frames seen}."""
    # the set's committed shards, from the commit parts' footers (its shards are named `<feature id>-...`):
    # reading the set's rows for them cost about 1 KB of memory per utterance
    prefix = shard_name(spec, "")
    shards = {s for s in store.committed_shards("feature_frames") if s.startswith(prefix)}
    stats, lineage = {}, spec.lineage()
    for role in spec.roles:
        paths = [feature_sums(spec.feature_id, s, role) for s in sorted(shards)]
        parts = [store.read_array(p) for p in paths if store.has_array(p)]
        if not parts:
            continue  # no training rows (e.g. a test-only pair set): the set has no statistics
        mean, std, count = reduce_sums(parts)
        for name, values in (("mean", mean), ("std", std)):
            attrs = attrs_json(
                {**lineage, "statistic": name, "role": role, "split": "train", "frames": count}
            )
            path = feature_stats(spec.feature_id, role, name)
            store.write_array(path, values.astype(np.float32), attrs, values.shape[:1], None)
        stats[role] = count
    return stats


def finalize_features(store: Store, spec: FeatureSpec) -> dict:
    """Write the statistics, then commit the set (its `features` row, written last)."""
    stats = write_statistics(store, spec)
    spec_json = {
        "feature": spec.config.to_dict(),
        # the model whose output the stored arrays hold (a first-stage mask), or None: the catalogue's lineage
        "model": get_kind(spec.config.kind).needed_model(spec.config),
        "codec": spec.codec,
        "pairs_fingerprint": spec.fingerprint,
        "stats_frames": stats,
    }
    row = {
        "feature_id": spec.feature_id,
        "kind": spec.config.kind,
        "pairset": None if spec.source.corpus else spec.source.name,
        "corpus": spec.source.name if spec.source.corpus else None,
        "config_json": json.dumps(attrs_json(spec_json), sort_keys=True),
        "created_at": now_utc(),
        "code_version": code_version(),
    }
    store.write_part("features", f"part-{spec.feature_id}", [row])
    return stats
