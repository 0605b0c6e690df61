"""Feature sets: the features of every pair's input and target, computed per pair shard, stored chunked
along time, with per-frequency training statistics; then committed by one `features` row.

`feature_id` = kind + a hash of (feature config, codec, pair set name, fingerprint of the pair set's rows):
a changed config or changed pairs make a new set beside the old; the same ones find the set and compute
nothing. One feature shard per pair shard, so each task reads its pairs' arrays once, whole.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow.dataset as ds
from zarr.codecs import BloscCodec, ZstdCodec

from features import compute_feature, oracle_irm, quantise_mask
from features.config import MODEL_MASK_PREFIX, ORACLE_IRM, FeatureConfig, get_feature
from features.stft import n_frames, stft_magnitude
from pipelines.ingest import Shard, committed_rows
from stores.audio_index import PairReader
from stores.config import parse_choice
from stores.errors import ConfigError, NotFoundError
from stores.scratch import Scratch, work_buffers
from stores.store import ArrayWriter, Store, attrs_json, now_utc

CODECS = {
    "lz4": lambda: BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    "zstd": lambda: ZstdCodec(level=3),
    "blosc-zstd": lambda: BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
    "none": lambda: None,
}
CHUNK_BYTES = 1 << 20  # chunks of about a megabyte or more along time


@functools.cache  # importlib.metadata reads the installed distributions on every call (~0.4 ms; twice a shard)
def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("specstore")
    except PackageNotFoundError:
        return "unknown"


def parse_codec(name: str) -> str:
    return parse_choice(name, CODECS, "--codec")


def resolve_codec(codec: str | None, config: FeatureConfig) -> str:
    """The named codec (checked), or the feature kind's default when None (LZ4; raw for complex)."""
    return parse_codec(get_feature(config.kind).default_codec if codec is None else codec)


def pairs_fingerprint(rows: Iterable[dict]) -> str:
    """What the feature set was computed from: every committed pair (id, split, length, the shard that made
    it); the split is in because the training statistics depend on it."""
    lines = sorted(f"{r['utterance_id']}:{r['split']}:{r['num_samples']}:{r['shard']}" for r in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def feature_id_for(config: FeatureConfig, codec: str, pairset: str, fingerprint: str) -> str:
    return f"{config.kind}-{config.config_hash(codec, pairset, fingerprint, length=12)}"


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a shard task needs to know about its feature set."""

    feature_id: str
    config: FeatureConfig
    codec: str
    pairset: str
    fingerprint: str

    def lineage(self) -> dict:
        return {
            "kind": "features",
            "feature_id": self.feature_id,
            "pairset": self.pairset,
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
    pairs: int = 0


@dataclass
class FeatureShardResult:
    """What a shard returns: counts, never features."""

    shard_id: str
    utterances: int = 0
    frames: int = 0
    seconds: float = 0.0


def committed_pairs(store: Store, pairset: str) -> list[dict]:
    """The committed pair rows of a pair set, with what reading their signals needs."""
    columns = ["utterance_id", "split", "num_samples", "array", "offset", "roles", "corpus"]
    return committed_rows(store, "pairs", "pairs", "pairset", pairset, columns)


def by_pair_shard(rows: list[dict]) -> dict[str, list[dict]]:
    """Pair rows grouped by the shard that made them, each group in storage order."""
    groups: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["shard"], r["offset"])):
        groups.setdefault(row["shard"], []).append(row)
    return groups


def plan_features(store: Store, pairset: str, config: FeatureConfig, codec: str | None = None) -> FeaturePlan:
    """The feature set of `config` over `pairset` stored with `codec` (None: the kind's default): its spec
    and the shards still to compute (none when the set is committed)."""
    codec = resolve_codec(codec, config)
    if config.sample_rate != store.sample_rate:
        raise ConfigError(
            f"Expected sample_rate {store.sample_rate} (the store's). Got {config.sample_rate} instead."
        )
    if config.kind == "decomposed" and config.mask != ORACLE_IRM:
        check_mask_model(store, config)
    rows = committed_pairs(store, pairset)
    if not rows:
        raise NotFoundError(f"Expected a pair set with committed pairs. Got {pairset!r} instead (none).")
    fingerprint = pairs_fingerprint(rows)
    spec = FeatureSpec(
        feature_id_for(config, codec, pairset, fingerprint), config, codec, pairset, fingerprint
    )
    if store.read_table("features", filter=ds.field("feature_id") == spec.feature_id).num_rows:
        return FeaturePlan(spec, [], True, len(rows))
    done = store.committed_shards("feature_frames")
    by_shard = by_pair_shard(rows)
    shards = [
        Shard(shard_name(spec, s), items)
        for s, items in sorted(by_shard.items())
        if shard_name(spec, s) not in done
    ]
    return FeaturePlan(spec, shards, False, len(rows))


def shard_name(spec: FeatureSpec, pair_shard: str) -> str:
    return f"{spec.feature_id}-{pair_shard}"


def check_mask_model(store: Store, config: FeatureConfig) -> None:
    """A `model:<version>` mask source must be a trained mask model on the same STFT as these features."""
    from training.inference import load_version, stft_config

    model, _, row = load_version(store, config.mask[len(MODEL_MASK_PREFIX) :])
    if model.output != "mask" or model.input_kind != "magnitude":
        raise ConfigError(
            f"Expected a mask model on magnitude features for {config.mask!r}. Got "
            f"{row['architecture']} ({model.input_kind} -> {model.output}) instead."
        )
    theirs, ours = (
        stft_config(store, row),
        {
            k: getattr(config, k)
            for k in ("n_fft", "hop_length", "win_length", "window", "center", "sample_rate")
        },
    )
    if theirs != ours:
        raise ConfigError(f"Expected the mask model's STFT {theirs}. Got {ours} instead.")


class MaskSource:
    """Where a decomposed feature set's mask comes from: the oracle IRM, or a first-stage model (loaded once
    per shard task)."""

    def __init__(self, store: Store, config: FeatureConfig) -> None:
        self.model, self.decomposed = None, config.kind == "decomposed"
        if config.kind == "decomposed" and config.mask != ORACLE_IRM:
            from training.inference import load_version

            self.model, self.normalizer, _ = load_version(store, config.mask[len(MODEL_MASK_PREFIX) :])

    @property
    def oracle_needs_noise(self) -> bool:
        return self.decomposed and self.model is None

    def __call__(self, noisy: np.ndarray, clean: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        if self.model is None:
            return oracle_irm(clean, noise)
        from training.inference import predict_mask

        return predict_mask(self.model, self.normalizer, noisy)


def stored_shapes(config: FeatureConfig) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The arrays a feature shard stores, each as (shape after the frame axis, dtype)."""
    if config.kind == "decomposed":
        bins = (config.n_fft // 2 + 1,)
        dtype = np.dtype(config.dtype)
        return {"input": (bins, dtype), "levels": (bins, np.dtype(np.uint8)), "target": (bins, dtype)}
    probe = compute_feature(np.zeros(config.n_fft, dtype=np.float32), config)  # one frame
    return {role: (probe.shape[1:], probe.dtype) for role in ("input", "target")}


def _into(out: dict[str, np.ndarray], name: str, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if name not in out:
        return values.astype(dtype, copy=False)
    np.copyto(out[name], values, casting="same_kind")
    return out[name]


def pair_features(
    signals: dict[str, np.ndarray], config: FeatureConfig, mask=None, out: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """The stored arrays of one pair: {input, target} (+ `levels` for decomposed), time-major; written into
    `out`'s arrays (of `stored_shapes`, this pair's frames) when given."""
    out = out or {}
    if config.kind != "decomposed":
        return {
            "input": compute_feature(signals["input"], config, out.get("input")),
            "target": compute_feature(signals["clean"], config, out.get("target")),
        }
    # decomposed: store |Y| and the quantised mask level; the n channels are expanded on read
    noisy, clean = (stft_magnitude(signals[r], config) for r in ("input", "clean"))
    oracle = mask is None or mask.model is None
    noise = stft_magnitude(signals["noise"], config) if oracle else None  # only the oracle IRM needs it
    values = oracle_irm(clean, noise) if oracle else mask(noisy, clean, noise)
    dtype = np.dtype(config.dtype)
    return {
        "input": _into(out, "input", noisy, dtype),
        "levels": _into(out, "levels", quantise_mask(values, config.n), np.dtype(np.uint8)),
        "target": _into(out, "target", clean, dtype),
    }


STAT_BLOCK_BYTES = 1 << 20  # float64 rows per block of the training sums: cache-sized


def _stat_sums(x: np.ndarray) -> np.ndarray:
    """[count, sum, sum of squares] per (channel, bin) over frames, accumulated in float64; NaN-aware
    (reassigned features may hold NaN): a column whose float64 sums are not finite (they cannot overflow)
    held NaN or inf, and only those columns are summed again without them.

    The frames are cast to float64 a cache-sized block at a time and summed there: 1.4-1.5x faster than
    numpy's float64-accumulating reductions over the float32 array (which cast in small buffers), the same
    float64 arithmetic. (Float32 sums about each column's first value were tried: 1.0-1.2x, not worth the
    error analysis.)"""
    flat = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    count = np.full(flat.shape[1], float(flat.shape[0]))
    total, squares = np.zeros(flat.shape[1]), np.zeros(flat.shape[1])
    rows = max(1, STAT_BLOCK_BYTES // (8 * max(1, flat.shape[1])))
    work = np.empty((min(rows, flat.shape[0]), flat.shape[1]))
    for start in range(0, flat.shape[0], rows):
        block = work[: min(rows, flat.shape[0] - start)]
        np.copyto(block, flat[start : start + rows])
        total += block.sum(axis=0)
        squares += np.einsum("ti,ti->i", block, block)
    bad = ~(np.isfinite(total) & np.isfinite(squares))
    if bad.any():
        values = flat[:, bad]
        finite = np.isfinite(values)
        values = np.where(finite, values, 0)
        count[bad] = finite.sum(axis=0, dtype=np.float64)
        total[bad] = values.sum(axis=0, dtype=np.float64)
        squares[bad] = np.einsum("ti,ti->i", values, values, dtype=np.float64)
    return np.stack([count, total, squares]).reshape((3, *x.shape[1:]))


def _frames_row(spec: FeatureSpec, shard: Shard, pair: dict, frame: int, n: int, now) -> dict:
    return {
        "feature_id": spec.feature_id,
        "pairset": spec.pairset,
        "utterance_id": pair["utterance_id"],
        "split": pair["split"],
        "array": f"features/{spec.feature_id}/{shard.shard_id}",
        "frame_offset": frame,
        "num_frames": n,
        "num_samples": pair["num_samples"],
        "shard": shard.shard_id,
        "created_at": now,
    }


def feature_shard(store: Store, spec: FeatureSpec, shard: Shard) -> FeatureShardResult:
    """Compute, write and commit one shard of a feature set, a batch of its pairs at a time (about
    BATCH_SAMPLES of audio each): a worker thread holds one batch's audio and features and a chunk per
    array, whatever the shard's size (pair shards grow with the corpus, up to 128 pairs), in memory kept
    from its previous batch (`stores.scratch`: fresh memory costs page faults, measured 9 % of a magnitude
    or complex shard's CPU for the features alone). The shard's partial sums of the training statistics
    are stored with it (not returned), so a rerun after a kill still sees every shard's."""
    result, now = FeatureShardResult(shard.shard_id), now_utc()
    mask = MaskSource(store, spec.config)
    # decomposed oracle masks need the noise too; everything else only the input and the clean target
    roles = ("input", "clean", "noise") if mask.oracle_needs_noise else ("input", "clean")
    shapes, rows, sums = stored_shapes(spec.config), [], {}
    with work_buffers(("feature-shard",), Scratch) as scratch, contextlib.ExitStack() as stack:
        writers = {
            n: stack.enter_context(w) for n, w in shard_writers(store, spec, shard.shard_id, shapes).items()
        }
        reader = PairReader(store, scratch)
        for batch in pair_batches(shard.items):
            counts = [n_frames(pair["num_samples"], spec.config) for pair in batch]
            arrays = {
                name: scratch.array(name, (sum(counts), *tail), dtype)
                for name, (tail, dtype) in shapes.items()
            }
            train_runs = batch_features(reader.signals(batch, roles), counts, spec.config, mask, arrays)
            frame = writers["input"].rows
            for pair, start, n in zip(batch, itertools.accumulate([0, *counts]), counts, strict=False):
                rows.append(_frames_row(spec, shard, pair, frame + start, n, now))
                result.seconds += pair["num_samples"] / store.sample_rate
            for role, part in _train_sums(arrays, train_runs).items():
                sums[role] = sums[role] + part if role in sums else part
            for name, writer in writers.items():
                writer.append(arrays[name])
    write_shard_sums(store, spec, shard.shard_id, sums)
    store.commit({"feature_frames": rows}, "feature_frames", shard.shard_id)
    result.utterances, result.frames = len(rows), sum(r["num_frames"] for r in rows)
    return result


BATCH_SAMPLES = 1 << 20  # audio samples per batch of a feature shard's pairs (~65 s at 16 kHz)


def pair_batches(pairs: list[dict]) -> Iterator[list[dict]]:
    """Consecutive pairs, about BATCH_SAMPLES of audio a batch (a longer pair is a batch of its own)."""
    batch, samples = [], 0
    for pair in pairs:
        batch.append(pair)
        samples += pair["num_samples"]
        if samples >= BATCH_SAMPLES:
            yield batch
            batch, samples = [], 0
    if batch:
        yield batch


def batch_features(signals, counts: list[int], config: FeatureConfig, mask, arrays: dict[str, np.ndarray]):
    """Each pair's features into `arrays` (the batch's frames, in order) -> the [start, end) frames of the
    batch's runs of consecutive training pairs."""
    train_runs: list[list[int]] = []
    frame = 0
    for (pair, pair_signals), n in zip(signals, counts, strict=True):
        pair_features(pair_signals, config, mask, {name: v[frame : frame + n] for name, v in arrays.items()})
        if pair["split"] == "train":
            if train_runs and train_runs[-1][1] == frame:
                train_runs[-1][1] = frame + n
            else:
                train_runs.append([frame, frame + n])
        frame += n
    return train_runs


def _train_sums(arrays: dict[str, np.ndarray], train_runs: list[list[int]]) -> dict[str, np.ndarray]:
    """The partial sums of the input and target features over the training frames, summed per run of
    consecutive training pairs, not per pair: a handful of numpy calls per batch, not hundreds."""
    sums: dict[str, np.ndarray] = {}
    for role, (start, end) in itertools.product(("input", "target"), train_runs):
        part = _stat_sums(arrays[role][start:end])
        sums[role] = sums[role] + part if role in sums else part
    return sums


def shard_writers(
    store: Store, spec: FeatureSpec, shard_id: str, shapes: dict[str, tuple[tuple[int, ...], np.dtype]]
) -> dict[str, ArrayWriter]:
    """A writer per stored array of a shard (`stored_shapes`), chunked along time (about CHUNK_BYTES a
    chunk)."""
    group, lineage, writers = f"features/{spec.feature_id}/{shard_id}", spec.lineage(), {}
    for name, (tail, dtype) in shapes.items():
        chunk = max(1, -(-CHUNK_BYTES // (math.prod(tail) * dtype.itemsize)))
        attrs = attrs_json({**lineage, "role": name, "shard": shard_id, "dtype": str(dtype)})
        writers[name] = store.array_writer(f"{group}/{name}", tail, dtype, chunk, attrs, CODECS[spec.codec]())
    return writers


def write_shard_sums(store: Store, spec: FeatureSpec, shard_id: str, sums: dict[str, np.ndarray]) -> None:
    """A shard's partial sums of the training statistics, beside its arrays."""
    group, lineage = f"features/{spec.feature_id}/{shard_id}", spec.lineage()
    for role, values in sums.items():
        store.write_array(
            f"{group}/sums_{role}",
            values,
            attrs_json({**lineage, "statistic": "partial sums"}),
            values.shape[:1],
            None,
        )


def finalize_features(store: Store, spec: FeatureSpec) -> dict:
    """Reduce every committed shard's partial sums to per-frequency mean and std, then commit the set
    (its `features` row, written last)."""
    shards = {
        r["shard"]
        for r in committed_rows(
            store, "feature_frames", "feature_frames", "feature_id", spec.feature_id, ["utterance_id"]
        )
    }
    stats, group, lineage = {}, f"features/{spec.feature_id}/stats", spec.lineage()
    for role in ("input", "target"):
        parts = [
            store.read_array(p)
            for s in sorted(shards)
            if store.has_array(p := f"features/{spec.feature_id}/{s}/sums_{role}")
        ]
        if not parts:
            continue  # no training pairs (e.g. a test-only pair set): the set has no statistics
        count, total, squares = np.sum(parts, axis=0)
        mean = total / np.maximum(count, 1)
        std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0.0))
        for name, values in (("mean", mean), ("std", std)):
            attrs = attrs_json(
                {**lineage, "statistic": name, "role": role, "split": "train", "frames": int(count.max())}
            )
            store.write_array(
                f"{group}/{role}_{name}", values.astype(np.float32), attrs, values.shape[:1], None
            )
        stats[role] = int(count.max())
    config_json = json.dumps(
        attrs_json(
            {
                "feature": spec.config.to_dict(),
                "codec": spec.codec,
                "pairs_fingerprint": spec.fingerprint,
                "stats_frames": stats,
            }
        ),
        sort_keys=True,
    )
    store.write_part(
        "features",
        f"part-{spec.feature_id}",
        [
            {
                "feature_id": spec.feature_id,
                "kind": spec.config.kind,
                "pairset": spec.pairset,
                "config_json": config_json,
                "created_at": now_utc(),
                "code_version": code_version(),
            }
        ],
    )
    return stats
