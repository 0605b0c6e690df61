"""Generated training pairs: noisy, reverberant and reverberant+noisy inputs for a corpus's clean speech.

One pair set is one `PairConfig` (recorded on the pair set's group and in every row). Each utterance's
random draws come from a generator seeded by the pair set's seed and the utterance id, in a fixed order, so
a pair is bit-identical whatever the shard or worker that made it. The stored signals are the exact ones the
SNR was set on: `input = clean + noise` (float32), with `snr_db_achieved` measured from the stored arrays.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.ingest import ShardSummary
from pipelines.splits import SPLITS
from pipelines.synthesis import (
    apply_level,
    energy,
    measure_t60,
    noise_segment,
    reverberate,
    scale_to_snr,
    simulate_rir,
    snr_db,
    utterance_rng,
)
from stores.audio_index import UtteranceReader
from stores.commits import Commit, Shard, shard_rows, table_shards
from stores.config import Config, parse_choice, parse_name
from stores.errors import ConfigError, NotFoundError
from stores.paths import member, pair_group, pairset_group
from stores.store import Store, attrs_json, now_utc

KINDS = ("noisy", "reverb", "reverb+noisy")
TARGETS = ("dry", "early")
SIMULATE = "simulate"


@dataclass(frozen=True)
class PairConfig(Config):
    """How a pair set is made. `noise` and `rir` name corpora in the store (ingested noise recordings and
    measured RIRs); `rir` may be `simulate` (pyroomacoustics rooms sampled to hit the T60 range)."""

    corpus: str
    kind: str = "noisy"
    noise: str | None = None
    rir: str | None = None
    snr: tuple[float, float] = (-5.0, 20.0)
    t60: tuple[float, float] = (0.2, 1.0)
    level: tuple[float, float] = (-35.0, -15.0)  # dBFS, RMS of the input
    seed: int = 0
    splits: tuple[str, ...] = SPLITS
    target: str = "dry"
    copies: int = 1  # pairs per utterance (different draws): more training data from a small corpus

    def __post_init__(self) -> None:
        parse_name(self.corpus, "corpus name")
        parse_choice(self.kind, KINDS, "--kind")
        parse_choice(self.target, TARGETS, "--target")
        if "noisy" in self.kind and not self.noise:
            raise ConfigError(
                f"Expected --noise (a folder or demo) for kind {self.kind!r}. Got none instead."
            )
        if "reverb" in self.kind and not self.rir:
            raise ConfigError(
                f"Expected --rir (a folder or simulate) for kind {self.kind!r}. Got none instead."
            )
        for name, (low, high) in (("--snr", self.snr), ("--t60", self.t60), ("--level", self.level)):
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ConfigError(f"Expected {name} as LOW:HIGH with LOW <= HIGH. Got {low}:{high} instead.")
        if self.t60[0] <= 0 or self.t60[1] > 3:
            raise ConfigError(f"Expected --t60 within (0, 3] s. Got {self.t60[0]}:{self.t60[1]} instead.")
        if self.level[1] >= 0:
            raise ConfigError(f"Expected --level below 0 dBFS. Got {self.level[0]}:{self.level[1]} instead.")
        for split in self.splits:
            parse_choice(split, SPLITS, "a split")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"Expected --seed to be a non-negative integer. Got {self.seed!r} instead.")
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or not 1 <= self.copies <= 1000:
            raise ConfigError(f"Expected --copies to be an integer in 1..1000. Got {self.copies!r} instead.")


def copy_id(utterance_id: str, copy: int) -> str:
    """The pair id of an utterance's `copy`-th pair: copy 0 keeps the utterance's id."""
    return utterance_id if copy == 0 else f"{utterance_id}+{copy}"


def with_copies(utterances: pa.Table, copies: int) -> pa.Table:
    """Each utterance row `copies` times, as pair items (`pair_id`: `copy_id`'s, and `copy` for the draws'
    record)."""
    copy = np.tile(np.arange(copies, dtype=np.int64), utterances.num_rows)
    # one copy each (the default): the rows as they are, not a second table of them
    rows = (
        utterances
        if copies == 1
        else utterances.take(pa.array(np.repeat(np.arange(utterances.num_rows), copies)))
    )
    ids = rows["utterance_id"]
    suffixed = pc.binary_join_element_wise(ids, pc.cast(pa.array(copy), pa.string()), "+")
    pair_ids = pc.if_else(pa.array(copy == 0), ids, suffixed)
    return rows.append_column("pair_id", pair_ids).append_column("copy", pa.array(copy))


@dataclass
class Sources:
    """The noise recordings and measured RIRs a pair set draws from (utterance rows, sorted by id)."""

    noises: list[dict]
    rirs: list[dict]


def load_sources(store: Store, config: PairConfig) -> Sources:
    def rows(corpus: str | None) -> list[dict]:
        if not corpus or corpus == SIMULATE:
            return []
        found = store.committed_rows(
            "utterances", ["utterance_id", "array", "offset", "num_samples"], corpus=corpus
        )
        if not found:
            raise NotFoundError(
                f"Expected usable recordings in corpus {corpus!r}. Got none (all rejected or absent)."
            )
        return sorted(found, key=lambda r: r["utterance_id"])

    return Sources(
        rows(config.noise if "noisy" in config.kind else None),
        rows(config.rir if "reverb" in config.kind else None),
    )


def check_pairset_config(store: Store, pairset: str, config: PairConfig) -> None:
    """A pair set name stands for one config: a rerun must ask for the same one (recorded here)."""
    check_recorded_config(store, pairset, config)
    store.set_group_attrs(pairset_group(pairset), {"config": attrs_json(config.to_dict()), "kind": "pairset"})


def check_recorded_config(store: Store, pairset: str, config: PairConfig) -> None:
    """Refuse a config other than the one recorded for `pairset` (a new pair set has none); writes nothing."""
    attrs = store.group_attrs(pairset_group(pairset))
    recorded = attrs.get("config") if attrs is not None else None
    if recorded is not None and recorded != attrs_json(config.to_dict()):
        raise ConfigError(
            f"Expected the recorded config of pair set {pairset!r} (or a new --name). Got a different one "
            f"instead: recorded {json.dumps(recorded, sort_keys=True)}"
        )


def plan_pairs(store: Store, pairset: str, config: PairConfig, shard_size: int) -> list[Shard]:
    """Shards of the corpus's committed utterances (in the asked splits) that have no committed pair: blocks
    of the utterances sorted by id (with their copies), each less its pairs already made. Held as Arrow
    rows (`stores.commits.table_shards`): a dict per utterance of a 281,241-utterance corpus held the
    driver's memory by the hundreds of MB."""
    items, pending = pair_items(store, pairset, config)
    return table_shards("pairs", pairset, items, "pair_id", shard_size, pending)


def pair_items(store: Store, pairset: str, config: PairConfig) -> tuple[pa.Table, pa.Array]:
    """(every pair item of the corpus's committed utterances in the asked splits, sorted by id with their
    copies; the mask of those without a committed pair)."""
    parse_name(pairset, "pair set name")
    columns = ["utterance_id", "speaker_id", "split", "array", "offset", "num_samples"]
    utts = store.committed_table("utterances", columns, corpus=config.corpus)
    if not utts.num_rows:
        raise NotFoundError(f"Expected an ingested corpus. Got {config.corpus!r} instead (no utterances).")
    done = store.committed_table("pairs", ["utterance_id"], pairset=pairset)["utterance_id"]
    utts = utts.filter(pc.is_in(utts["split"], pa.array(list(config.splits), pa.string())))
    items = with_copies(utts.sort_by("utterance_id"), config.copies)
    return items, pc.invert(pc.is_in(items["pair_id"], done))


class _Cache:
    """Per-shard reads of noise recordings and RIRs (and RIR T60s), each loaded once."""

    def __init__(self, store: Store):
        self.store, self.audio, self.t60 = store, {}, {}

    def samples(self, row: dict) -> np.ndarray:
        key = row["utterance_id"]
        if key not in self.audio:
            self.audio[key] = self.store.read_samples(row["array"], row["offset"], row["num_samples"])
        return self.audio[key]

    def rir_t60(self, row: dict, sample_rate: int) -> float:
        key = row["utterance_id"]
        if key not in self.t60:
            self.t60[key] = measure_t60(self.samples(row), sample_rate)
        return self.t60[key]


def make_pair(
    clean: np.ndarray,
    utterance_id: str,
    config: PairConfig,
    sources: Sources,
    cache: _Cache,
    sample_rate: int,
) -> tuple[dict[str, np.ndarray], dict]:
    """One pair: -> ({input, clean, noise} float32, row fields). Draw order is fixed: level, snr, noise,
    noise offset, rir."""
    rng = utterance_rng(config.seed, utterance_id)
    level = float(rng.uniform(*config.level))
    snr = float(rng.uniform(*config.snr)) if "noisy" in config.kind else None
    fields: dict = {"snr_db_target": snr, "level_dbfs": level, "seed": config.seed}
    params: dict = {}
    speech, target = clean.astype(np.float64), clean.astype(np.float64)
    if "reverb" in config.kind:
        rir = _draw_rir(rng, config, sources, cache, sample_rate, fields, params)
        speech, target = reverberate(clean, rir, sample_rate, config.target)
    additive = np.zeros_like(speech)
    if snr is not None:
        row = sources.noises[int(rng.integers(len(sources.noises)))]
        segment, offset = _audible_segment(
            cache.samples(row), clean.shape[0], rng, sample_rate, row["utterance_id"]
        )
        additive = scale_to_snr(speech, segment, snr)
        fields.update(noise_id=row["utterance_id"], noise_offset=offset)
    (inp, tgt, speech_scaled, add_scaled), gain_db, limited = apply_level(
        speech + additive, target, level, [speech, additive]
    )
    clean32, input32 = tgt.astype(np.float32), inp.astype(np.float32)
    if snr is not None and "reverb" in config.kind:
        # reverb+noisy: the SNR is taken against the reverberant speech, not the dry target
        params["snr_db_vs_reverberant"] = 10 * math.log10(energy(speech_scaled) / energy(add_scaled))
    fields.update(
        snr_db_achieved=snr_db(clean32, input32),
        gain_db=gain_db,
        clip_prevented=limited,
        target=config.target if "reverb" in config.kind else "clean",
        kind=config.kind,
        params_json=json.dumps(params, sort_keys=True),
    )
    return {"input": input32, "clean": clean32, "noise": input32 - clean32}, fields


SEGMENT_FLOOR_DBFS = (
    -100.0
)  # a segment quieter than this is digital silence (ingest refuses peaks under -60 dBFS)


def _audible_segment(noise: np.ndarray, length: int, rng, sample_rate: int, noise_id: str):
    for _ in range(10):
        segment, offset = noise_segment(noise, length, rng, sample_rate)
        rms = math.sqrt(energy(segment) / max(1, length))
        if rms > 10 ** (SEGMENT_FLOOR_DBFS / 20):
            return segment, offset
    raise ConfigError(f"Expected noise {noise_id!r} to have audible segments. Got 10 silent draws instead.")


def _draw_rir(
    rng, config: PairConfig, sources: Sources, cache: _Cache, sample_rate: int, fields: dict, params: dict
) -> np.ndarray:
    if config.rir == SIMULATE:
        rir, room = simulate_rir(rng, float(rng.uniform(*config.t60)), sample_rate)
        params["room"] = room
        fields.update(rir_id="simulated", t60_s=measure_t60(rir, sample_rate))
        return rir
    row = sources.rirs[int(rng.integers(len(sources.rirs)))]
    fields.update(rir_id=row["utterance_id"], t60_s=cache.rir_t60(row, sample_rate))
    return cache.samples(row)


def make_pairs_shard(
    store: Store,
    pairset: str,
    config: PairConfig,
    shard: Shard,
    sources: Sources,
    commit: Commit | None = None,
) -> ShardSummary:
    """Make and store one shard of pairs, then commit its rows. `commit`: how its rows are committed (`stores.commits.Commit`)."""
    summary, now, sr = ShardSummary(shard.shard_id), now_utc(), store.sample_rate
    group, cache = pair_group(pairset, shard.shard_id), _Cache(store)
    rows, signals, offset = [], {"input": [], "clean": [], "noise": []}, 0
    # each ingest array's span of the shard read once: one read per utterance decoded a whole chunk
    # (2^20 samples) each time, ~6 ms a pair whatever its length
    for utt, read in UtteranceReader(store).signals(shard_rows(shard)):
        clean = read["clean"]
        pair_id = utt["pair_id"]  # the utterance id, or a copy's (plan_pairs, repair)
        pair, fields = make_pair(clean, pair_id, config, sources, cache, sr)
        if utt.get("copy"):  # where a copy came from, for anyone joining pairs to utterances
            params = json.loads(fields["params_json"])
            fields["params_json"] = json.dumps(
                {**params, "copy": utt["copy"], "utterance_id": utt["utterance_id"]}, sort_keys=True
            )
        for role, samples in pair.items():
            signals[role].append(samples)
        rows.append(
            {
                **fields,
                "pairset": pairset,
                "corpus": config.corpus,
                "utterance_id": pair_id,
                "split": utt["split"],
                "num_samples": utt["num_samples"],
                "array": group,
                "offset": offset,
                "roles": "input,clean,noise",
                "shard": shard.shard_id,
                "created_at": now,
            }
        )
        offset += utt["num_samples"]
        summary.clipped += int(fields["clip_prevented"])
    lineage = {
        "kind": "pairs",
        "pairset": pairset,
        "shard": shard.shard_id,
        "config": config.to_dict(),
        "noises": [r["utterance_id"] for r in sources.noises],
        "rirs": [r["utterance_id"] for r in sources.rirs],
    }
    for role, parts in signals.items():
        store.write_audio_array(
            member(group, role), np.concatenate(parts), attrs_json({**lineage, "role": role})
        )
    (commit or store.commit)({"pairs": rows}, "pairs", shard.shard_id)
    summary.utterances, summary.seconds = len(rows), offset / sr
    return summary
