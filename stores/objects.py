"""The store's objects as the catalogue names them: a kind and a name, written `KIND:NAME`.

Five kinds of object are committed into a store, each by its own stage: a corpus (`corpus:real`, ingest), a
pair set (`pairs:noisy`), a feature set (`features:<feature_id>`), a model version (`model:<version>`,
training) and an evaluation run (`run:<run_id>`). This module says, for each kind, which rows it owns in
which tables, which commit table commits its shards, where its arrays and files live and which run lock
its writer holds: the catalogue (`stores.catalogue`), removal (`stores.removal`), garbage collection and the
locks all read these facts from here.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from stores.config import parse_choice
from stores.errors import ConfigError
from stores.paths import AUDIO, FEATURES, PAIRS, PREDICTIONS, stored_object

KINDS = ("corpus", "pairs", "features", "model", "run")
# the words `specstore ls` takes for each kind
PLURALS = {"corpora": "corpus", "pairs": "pairs", "features": "features", "models": "model", "runs": "run"}
DESCRIPTIONS = {
    "corpus": "corpus",
    "pairs": "pair set",
    "features": "feature set",
    "model": "model version",
    "run": "evaluation run",
}
# the run lock a kind's writer holds is `<prefix>-<name>` (ingest-real, features-<id>, train-<version>)
LOCK_PREFIXES = {
    "corpus": "ingest",
    "pairs": "pairs",
    "features": "features",
    "model": "train",
    "run": "evaluate",
}
# the group of arrays.zarr holding an object's arrays (models have files: their checkpoints)
ARRAY_TOPS = {"corpus": AUDIO, "pairs": PAIRS, "features": FEATURES, "run": PREDICTIONS}
# the table whose parts commit an object's shards (the others are committed by one row or part)
COMMIT_TABLE = {"corpus": "utterances", "pairs": "pairs", "features": "feature_frames"}
REJECTS_STAGE_PAIRS = "pairs:"  # a pair set's rejects have stage `pairs:<pairset>`; a corpus's `ingest`

# table -> the columns that say which object owns a row (`owner_of_row` reads them)
OWNER_COLUMNS: dict[str, tuple[str, ...]] = {
    "utterances": ("corpus",),
    "rejects": ("corpus", "stage"),
    "pairs": ("pairset",),
    "features": ("feature_id",),
    "feature_frames": ("feature_id",),
    "models": ("model_version",),
    "curves": ("model_version",),
    "predictions": ("run_id",),
    "metrics": ("run_id",),
}


def object_id(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def split_id(text: str) -> tuple[str | None, str]:
    """(kind or None, name) of `KIND:NAME` or a bare name; an unknown kind raises ConfigError."""
    kind, sep, name = text.partition(":")
    if not sep:
        return None, text
    parse_choice(kind, KINDS, "object kind (KIND:ID)")
    if not name:
        raise ConfigError(f"Expected KIND:ID with an id after the colon. Got {text!r} instead.")
    return kind, name


def owned_rows(kind: str, name: str) -> list[tuple[str, dict[str, str]]]:
    """(table, column values) of every row the object owns, in the order they are removed: the commit
    table's first, so that the object's shards are uncommitted before their side rows go."""
    return {
        "corpus": [("utterances", {"corpus": name}), ("rejects", {"corpus": name, "stage": "ingest"})],
        "pairs": [("pairs", {"pairset": name}), ("rejects", {"stage": f"{REJECTS_STAGE_PAIRS}{name}"})],
        "features": [("features", {"feature_id": name}), ("feature_frames", {"feature_id": name})],
        "model": [("models", {"model_version": name}), ("curves", {"model_version": name})],
        "run": [("metrics", {"run_id": name}), ("predictions", {"run_id": name})],
    }[kind]


def _named(kind: str, names) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(pa.scalar(kind), names, ":")


def row_owners(table: str, rows: pa.Table) -> pa.ChunkedArray:
    """The object id owning each row of `table` (`rows` has the table's OWNER_COLUMNS), null where a key is."""
    if table == "rejects":
        stage = rows["stage"]
        of_pairs = pc.fill_null(pc.starts_with(stage, REJECTS_STAGE_PAIRS), False)
        pairset = pc.utf8_slice_codeunits(stage, len(REJECTS_STAGE_PAIRS))
        return pc.if_else(of_pairs, _named("pairs", pairset), _named("corpus", rows["corpus"]))
    kind = {"utterances": "corpus", "pairs": "pairs", "models": "model", "curves": "model"}.get(table)
    kind = kind or ("features" if table in ("features", "feature_frames") else "run")
    return _named(kind, rows[OWNER_COLUMNS[table][0]])


def array_group(kind: str, name: str) -> str | None:
    """The group of arrays.zarr holding all of an object's arrays, or None (models keep files)."""
    top = ARRAY_TOPS.get(kind)
    return None if top is None else stored_object(top, name)


def object_of_array(path: str) -> str | None:
    """The object id owning an array path (`features/<id>/<shard>/input` -> `features:<id>`), or None."""
    top, _, rest = path.partition("/")
    name = rest.split("/", 1)[0]
    kinds = {top_: kind for kind, top_ in ARRAY_TOPS.items()}
    return object_id(kinds[top], name) if top in kinds and name else None


def lock_name(object_id_: str) -> str:
    """The run lock of an object's writer: `features:<id>` -> `features-<id>`."""
    kind, name = split_id(object_id_)
    return f"{LOCK_PREFIXES[kind or '']}-{name}"


def object_of_lock(name: str) -> str | None:
    """The object a run lock's holder writes (`train-<version>` -> `model:<version>`), or None."""
    prefix, _, rest = name.partition("-")
    kinds = {p: kind for kind, p in LOCK_PREFIXES.items()}
    return object_id(kinds[prefix], rest) if prefix in kinds and rest else None
