"""Removal records (tombstones): an object being removed is gone for every reader from the moment its record
exists, before any of its data is touched.

Corpora, pair sets and runs are committed shard by shard and have no single row whose removal would make
them disappear at once; so `specstore rm` first writes one record per object under
`ROOT/tables/_removals/<kind>/<name>.json` (staged and moved into place, like a table part), and every
reader of committed data honours it: `committed_rows`, `st.features()`, `st.audio()`, loading a model
version, and the run locks of writers that use the object. Then the data goes, then the rows, then the
record. The record holds the whole plan of the removal (arrays, files, shards, rows), so a killed `rm` is
finished from it by a rerun or by `specstore gc` even after the rows it was planned from are gone.
"""

from __future__ import annotations

import contextlib
import json
import uuid

import pyarrow as pa
import pyarrow.compute as pc

from stores.errors import NotFoundError
from stores.objects import DESCRIPTIONS, OWNER_COLUMNS, row_owners, split_id

REMOVALS = "_removals"


def removals_folder(store) -> str:
    return f"{store.path}/tables/{REMOVALS}"


def record_path(store, object_id: str) -> str:
    kind, name = split_id(object_id)
    return f"{removals_folder(store)}/{kind}/{name}.json"


def write_record(store, record: dict) -> None:
    """Write an object's removal record atomically (a staging name readers ignore, then a move)."""
    path = record_path(store, record["object"])
    folder, base = path.rsplit("/", 1)
    staging = f"{folder}/.{base}.{uuid.uuid4().hex}.tmp"
    store.fs.makedirs(folder, exist_ok=True)
    store.fs.pipe_file(staging, json.dumps(record, sort_keys=True).encode())
    store.fs.mv(staging, path)


def remove_record(store, object_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        store.fs.rm(record_path(store, object_id))


def read_record(store, object_id: str) -> dict | None:
    try:
        return json.loads(store.fs.cat_file(record_path(store, object_id)))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _record_files(store) -> list[str]:
    try:
        found = store.fs.find(removals_folder(store))
    except FileNotFoundError:
        return []
    return [p for p in found if p.endswith(".json") and not p.rsplit("/", 1)[-1].startswith(".")]


def removed_ids(store) -> set[str]:
    """The ids of every object with a removal record (one listing)."""
    ids = set()
    for path in _record_files(store):
        kind, name = path.rsplit("/", 2)[-2:]
        ids.add(f"{kind}:{name[: -len('.json')]}")
    return ids


def pending(store) -> list[dict]:
    """The removal records present (a removal running now, or one that was killed), oldest plan first."""
    records = []
    for path in _record_files(store):
        try:
            records.append(json.loads(store.fs.cat_file(path)))
        except (FileNotFoundError, json.JSONDecodeError):
            continue  # finished meanwhile
    return sorted(records, key=lambda r: (r.get("planned", ""), r.get("order", 0)))


def is_removed(store, object_id: str) -> bool:
    return store.fs.exists(record_path(store, object_id))


def check_present(store, object_id: str) -> None:
    """Raise NotFoundError when the object is being removed (or was, by an `rm` not finished yet)."""
    if is_removed(store, object_id):
        kind, name = split_id(object_id)
        raise NotFoundError(
            f"Expected a {DESCRIPTIONS[kind or '']} of the store. Got {name!r} instead, which is being removed."
        )


def committed_columns(table: str, columns: list[str] | None) -> list[str] | None:
    """`columns` plus those that say which object owns a row of `table` (None: every column)."""
    return None if columns is None else list(dict.fromkeys([*columns, *OWNER_COLUMNS.get(table, ())]))


def without_removed(store, table: str, rows: pa.Table) -> pa.Table:
    """`rows` of `table` (with its owner columns: `committed_columns`) less those of objects being removed."""
    removed = removed_ids(store)
    if not removed or not rows.num_rows:
        return rows
    gone = pc.fill_null(pc.is_in(row_owners(table, rows), pa.array(sorted(removed))), False)
    return rows.filter(pc.invert(gone))
