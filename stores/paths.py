"""Where things live in a store: every array path and folder is built here, nowhere else.

Arrays live in one Zarr v3 group (`ROOT/arrays.zarr`); a shard's arrays sit under a group named after the
shard, so that writers of different tasks never share a chunk or a file.
"""

from __future__ import annotations

import functools

AUDIO, PAIRS, FEATURES, PREDICTIONS = "audio", "pairs", "features", "predictions"
# the top-level groups whose members are per-shard arrays or groups (what `verify` walks)
SHARDED_GROUPS = (AUDIO, PAIRS, FEATURES, PREDICTIONS)
STATS = "stats"  # a feature set's statistics group, beside its shards
SUMS_PREFIX = "sums_"  # a feature shard's partial sums of the training statistics


def member(group: str, name: str) -> str:
    """An array or group inside `group`."""
    return f"{group}/{name}"


def stored_object(top: str, name: str, *shard: str) -> str:
    """The group of a stored object (a corpus under AUDIO, a pair set under PAIRS, a feature set under
    FEATURES, an evaluation run under PREDICTIONS), or with `shard` the group (or array) of one shard."""
    return "/".join((top, name, *shard))


# corpus_group(corpus); audio_array(corpus, shard): one ingest shard's utterances, concatenated along time
corpus_group = audio_array = functools.partial(stored_object, AUDIO)
# pairset_group(pairset) holds the pair set's config; pair_group(pairset, shard): input / clean / noise
pairset_group = pair_group = functools.partial(stored_object, PAIRS)
# feature_set_group(feature_id); feature_group(feature_id, shard): a shard's stored arrays and partial sums
feature_set_group = feature_group = functools.partial(stored_object, FEATURES)
# run_group(run_id); prediction_group(run_id, shard): an evaluation shard's enhanced wave (and spec)
run_group = prediction_group = functools.partial(stored_object, PREDICTIONS)


def feature_sums(feature_id: str, shard: str, role: str) -> str:
    return f"{FEATURES}/{feature_id}/{shard}/{SUMS_PREFIX}{role}"


def feature_stats(feature_id: str, role: str, statistic: str) -> str:
    """A feature set's training-split `mean` or `std` of one role."""
    return f"{FEATURES}/{feature_id}/{STATS}/{role}_{statistic}"


TRAINING_RECORD = "training.json"  # beside a version's checkpoints: what its training reads (for `gc`)


def checkpoint_folder(store_path: str, version: str) -> str:
    """A model version's checkpoints and curves (files, not arrays)."""
    return f"{store_path}/checkpoints/{version}"
