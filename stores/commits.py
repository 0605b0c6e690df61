"""The commit protocol's vocabulary: shards, their ids, and which rows of a table are committed.

A task (one shard) writes its arrays; its rows are then committed, on their own or with other shards' in a
batch (`commit_shards`; a flow's driver batches the shards its tasks finished, `GroupCommit`): the side-table
parts first, then one commit-table part last whose Parquet footer lists the shards it commits (the commit
record). Every part is staged and moved into place, so a reader never sees half a file, and a shard is
committed when a commit-table part lists it, even with zero rows. Parts are few: one per batch, not one per
shard. A side-table row counts when the commit part of the same name lists its shard, so the rows of a batch
that never committed (a killed driver's side parts) are invisible to every reader that goes through
`committed_rows`, and so are the rows of an object being removed (`stores.tombstones`). Parts written before
the footer record (`part-<shard>`, one shard each) are read as committing the shard their name gives.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from stores.errors import NotFoundError
from stores.scans import listed_parts
from stores.schema import rows_to_table, table_schema
from stores.tombstones import committed_columns, without_removed

# table -> the tables whose parts commit its rows: ingest shards commit in `utterances`, pair shards in
# `pairs` (given pairs write `rejects` too), feature shards in `feature_frames`
COMMITTED_BY: dict[str, tuple[str, ...]] = {
    "utterances": ("utterances",),
    "rejects": ("utterances", "pairs"),
    "pairs": ("pairs",),
    "feature_frames": ("feature_frames",),
}
# the tables whose parts commit shards (what `verify` checks shard by shard)
COMMIT_TABLES = ("utterances", "pairs", "feature_frames")
# commit table -> the side tables whose parts are written beside its parts, under the same names
SIDE_TABLES = {t: tuple(s for s, by in COMMITTED_BY.items() if t in by and s != t) for t in COMMIT_TABLES}
SHARDS_KEY = b"specstore.shards"  # a commit part's footer key: the JSON list of the shards it commits
ATTEMPTS = 5  # a listing that meets a part replaced or removed since starts again


@dataclass
class Shard:
    """One task's share of a stage: its id (stable across reruns) and its items: a list, or the rows of an
    Arrow table (a plan of many rows holds them so; `shard_rows` makes the dicts where the shard runs)."""

    shard_id: str
    items: list[Any] | pa.Table
    # items refused before any work (duplicate or unsafe ids): (item, reason, detail)
    prerejected: list[tuple[Any, str, str]] = field(default_factory=list)


def shard_rows(shard: Shard) -> list:
    """A shard's items as a list (rows planned as an Arrow table become dicts here)."""
    return shard.items.to_pylist() if isinstance(shard.items, pa.Table) else shard.items


def table_shards(stage: str, name: str, table: pa.Table, id_column: str, shard_size: int, pending=None):
    """Shards of a sorted Arrow table's rows: blocks of `shard_size` rows over all of them, less the rows
    whose `pending` mask (an Arrow boolean array; None: all) is false, each block a shard named after its
    pending ids, its rows copied out of the table (a slice would carry the whole table's buffers into a
    pickle). The blocks do not depend on what is pending, so a rerun after a kill names the unfinished
    shards as before."""
    shards = []
    for start in range(0, table.num_rows, shard_size):
        block = table.slice(start, shard_size)
        if pending is not None:
            block = block.filter(pending.slice(start, shard_size))
        if block.num_rows:
            ids = block[id_column].to_pylist()
            shards.append(Shard(shard_id_for(stage, name, ids), block.take(pa.array(range(block.num_rows)))))
    return shards


def shard_id_for(stage: str, name: str, members: Iterable[str]) -> str:
    """`<stage>-<name>-<hash of the members>`: after a killed run the unfinished shards get the same ids
    again and overwrite their own leftovers."""
    digest = hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:12]
    return f"{stage}-{name}-{digest}"


def key_filter(keys: dict[str, object]) -> ds.Expression | None:
    """A dataset filter: every column of `keys` equal to its value (None without keys)."""
    expression = None
    for column, value in keys.items():
        term = ds.field(column) == value
        expression = term if expression is None else expression & term
    return expression


def committed_rows(store, table: str, columns: list[str] | None = None, **keys: object) -> list[dict]:
    """Rows of `table` whose columns equal `keys` (e.g. `corpus="demo"`) and whose shard is committed by the
    commit part of their own part's name, less those of objects being removed; `columns` (with `shard`
    always) or every column."""
    return committed_table(store, table, columns, **keys).to_pylist()


def committed_table(store, table: str, columns: list[str] | None = None, **keys: object) -> pa.Table:
    """`committed_rows` as an Arrow table: what a plan of hundreds of thousands of rows holds instead of a
    dict per row (several times less memory)."""
    commit_tables = COMMITTED_BY.get(table)
    if commit_tables is None:
        raise NotFoundError(
            f"Expected a table committed by shards, one of {', '.join(COMMITTED_BY)}. Got {table!r} instead."
        )
    committed: dict[str, set[str]] = {}
    for commit_table in commit_tables:
        for part, shards in part_shards(store, commit_table).items():
            committed.setdefault(part, set()).update(shards)
    wanted = None if columns is None else list(dict.fromkeys([*columns, "shard"]))
    read = committed_columns(table, wanted) or list(table_schema(table).names)
    rows = without_removed(store, table, _read_committed(store, table, read, key_filter(keys), committed))
    return (rows if wanted is None else rows.select(wanted)).combine_chunks()


def _read_committed(store, table: str, columns: list[str], where, committed: dict[str, set[str]]) -> pa.Table:
    """The rows (`columns`, matching `where`) of each part of `table` named as a commit part, of the shards
    that part commits. Part by part, so that no row carries its part's name: a string per row cost tens of
    MB at 281,241 rows. A part removed since the listing makes the read start again."""
    schema = table_schema(table)
    for attempt in range(ATTEMPTS):
        names = [n for n in listed_parts(store, table) if committed.get(part_of(n))]
        pieces = []
        try:
            for name in names:
                path = f"{store.table_path(table)}/{name}"
                part = ds.dataset(path, format="parquet", filesystem=store.fs, schema=schema)
                rows = part.to_table(columns=columns, filter=where)
                shards = pa.array(sorted(committed[part_of(name)]), pa.string())
                pieces.append(rows.filter(pc.is_in(rows["shard"], shards)))
        except FileNotFoundError:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        return pa.concat_tables(pieces) if pieces else schema.empty_table().select(columns)
    raise AssertionError("unreachable")


def part_of(path: str) -> str:
    """A part's name (no folder, no `.parquet`) from its path."""
    return path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".parquet")


# ---------------------------------------------------------------------------------------------- records

# (part path, part version) -> the shards it commits: a part is only ever replaced by moving a new file into
# place, so a version (size, mtime and inode; an ETag on object stores) names one footer for good
_FOOTERS: dict[tuple[str, str], tuple[str, ...]] = {}


def part_shards(store, commit_table: str) -> dict[str, tuple[str, ...]]:
    """{part name: the shards it commits} of a commit table, each footer read once per part version."""
    for attempt in range(ATTEMPTS):
        try:
            listing = listed_parts(store, commit_table)
            return {part_of(n): _footer_shards(store, commit_table, n, v) for n, (_, v) in listing.items()}
        except FileNotFoundError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _footer_shards(store, table: str, file_name: str, version: str) -> tuple[str, ...]:
    path = f"{store.table_path(table)}/{file_name}"
    key = (f"{store.root}|{path}", version)
    if key not in _FOOTERS:
        name = part_of(file_name)
        legacy = (name[len("part-") :],) if name.startswith("part-") else ()
        # a part removed meanwhile raises FileNotFoundError: the listing starts again
        _FOOTERS[key] = _footer_list(store, path) or legacy
    return _FOOTERS[key]


def _footer_list(store, path: str) -> tuple[str, ...]:
    """The shards a part's footer lists (() where it lists none)."""
    with store.fs.open(path, "rb") as handle:
        listed = (pq.read_metadata(handle).metadata or {}).get(SHARDS_KEY)
    return tuple(json.loads(listed)) if listed else ()


def part_footer_shards(store, commit_table: str, name: str) -> tuple[str, ...]:
    """The shards one commit part lists in its footer (() where it lists none or is gone)."""
    try:
        return _footer_list(store, f"{store.table_path(commit_table)}/{name}.parquet")
    except FileNotFoundError:
        return ()


def committed_values(store, table: str, column: str, **keys: object) -> set:
    """The distinct values of one column of `table`'s committed rows (`committed_table`)."""
    return set(committed_table(store, table, [column], **keys)[column].to_pylist())


def committed_shards(store, commit_table: str) -> set[str]:
    return {s for shards in part_shards(store, commit_table).values() for s in shards}


def table_by_shard(rows: pa.Table, order: str = "offset") -> dict[str, pa.Table]:
    """`rows_by_shard` of an Arrow table: each shard's rows copied out in storage order, shards sorted."""
    rows = rows.sort_by([("shard", "ascending"), (order, "ascending")])
    shards = rows["shard"].to_numpy(zero_copy_only=False)
    starts = [0, *(np.flatnonzero(shards[1:] != shards[:-1]) + 1), len(shards)]
    return {shards[a]: rows.take(pa.array(range(a, b))) for a, b in itertools.pairwise(starts) if b > a}


def rows_by_shard(rows: list[dict], order: str = "offset") -> dict[str, list[dict]]:
    """Rows grouped by the shard that made them, each group in storage order (`order`), shards sorted."""
    groups: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["shard"], r[order])):
        groups.setdefault(row["shard"], []).append(row)
    return groups


# ---------------------------------------------------------------------------------------------- writing


@dataclass
class ShardRows:
    """One shard's rows of each table (its commit table's and side tables'), ready to commit."""

    shard_id: str
    commit_table: str
    tables: dict[str, list[dict] | pa.Table]


def commit_part_name(shard_ids: list[str]) -> str:
    """`part-<shard>` for one shard (a rerun of it replaces its parts), `part-batch-<hash of the ids>` for
    several."""
    if len(shard_ids) == 1:
        return f"part-{shard_ids[0]}"
    return "part-batch-" + hashlib.sha256("\n".join(sorted(shard_ids)).encode()).hexdigest()[:16]


def commit_shards(store, batch: list[ShardRows]) -> str:
    """Commit shards of one commit table together: the side-table parts first, then the one commit part
    whose footer lists them all. -> the parts' name. A side table with no rows gets no part (most ingest
    shards reject nothing); one left under this name by an earlier, killed write is removed instead."""
    ids = [s.shard_id for s in batch]
    table = batch[0].commit_table
    if len(set(ids)) != len(ids) or any(s.commit_table != table for s in batch):
        raise ValueError(f"Expected distinct shards of one commit table. Got {ids} instead.")
    name = commit_part_name(ids)
    for side in sorted({t for s in batch for t in s.tables} - {table}):
        rows = _concat(side, [s.tables.get(side, []) for s in batch])
        if rows.num_rows:
            store.write_part(side, name, rows)
        else:
            store.remove_part(side, name)
    rows = _concat(table, [s.tables.get(table, []) for s in batch])
    store.write_part(table, name, rows, metadata={SHARDS_KEY: json.dumps(sorted(ids)).encode()})
    return name


def _concat(table: str, parts: list[list[dict] | pa.Table]) -> pa.Table:
    schema = table_schema(table)
    tables = [p if isinstance(p, pa.Table) else rows_to_table(table, p) for p in parts]
    return pa.concat_tables([t.cast(schema) for t in tables]) if tables else rows_to_table(table, [])


def uncommit(store, commit_table: str, shards: Iterable[str]) -> int:
    """Uncommit shards: each commit part listing some of them is rewritten without them (their rows and
    their ids) or removed when it lists no other; then their rows leave the side parts of the same names.
    -> the bytes freed. Readers see a shard committed with its rows, or neither."""
    gone, freed = set(shards), 0
    for name, listed in part_shards(store, commit_table).items():
        hit = gone & set(listed)
        if hit:
            freed += _drop_shards(store, commit_table, name, hit, set(listed) - hit)
            for side in SIDE_TABLES[commit_table]:
                freed += _drop_shards(store, side, name, hit, None)
    return freed


def _drop_shards(store, table: str, name: str, hit: set[str], left: set[str] | None) -> int:
    """Rewrite part `name` of `table` without the rows of the shards `hit` (`left`: the shards its footer
    lists afterwards, None for a side part); removed when nothing is left. -> bytes freed."""
    path = f"{store.table_path(table)}/{name}.parquet"
    try:
        before = store.fs.size(path)
        rows = ds.dataset(path, format="parquet", filesystem=store.fs, schema=table_schema(table)).to_table()
    except FileNotFoundError:
        return 0
    kept = rows.filter(pc.invert(pc.is_in(rows["shard"], pa.array(sorted(hit), pa.string()))))
    if not (left or (left is None and kept.num_rows)):
        return store.remove_part(table, name)
    if left is None and kept.num_rows == rows.num_rows:
        return 0
    metadata = None if left is None else {SHARDS_KEY: json.dumps(sorted(left)).encode()}
    store.write_part(table, name, kept, metadata=metadata)
    return before - store.fs.size(path)


class HeldCommit:
    """A shard function's `commit` that keeps the shard's rows instead of writing them: a flow's task returns
    them (`held`) and the flow's driver commits them with other shards' (`GroupCommit`)."""

    def __init__(self) -> None:
        self.held: ShardRows | None = None

    def __call__(self, tables: dict, commit_table: str, shard_id: str) -> None:
        self.held = ShardRows(shard_id, commit_table, tables)


class GroupCommit:
    """Commits the rows of finished shards a batch at a time: when `max_shards` are held or `max_seconds`
    have passed since the last commit, and when the context ends (an error included: finished shards are
    kept; the rerun plans only the others). A killed driver loses the held batch, which a rerun redoes."""

    def __init__(self, store, max_shards: int = 64, max_seconds: float = 30.0) -> None:
        self.store, self.max_shards, self.max_seconds = store, max_shards, max_seconds
        self.held: dict[str, list[ShardRows]] = {}
        self.last = time.monotonic()

    def add(self, rows: ShardRows | None) -> None:
        if rows is not None:
            self.held.setdefault(rows.commit_table, []).append(rows)
        due = time.monotonic() - self.last >= self.max_seconds
        if due or sum(map(len, self.held.values())) >= self.max_shards:
            self.flush()

    def flush(self) -> None:
        for table in sorted(self.held):
            commit_shards(self.store, self.held[table])
        self.held, self.last = {}, time.monotonic()

    def __enter__(self) -> GroupCommit:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()


# How a shard function commits its rows: (tables, commit table, shard id). Default `store.commit` (now, in
# the shard's own part); a flow's task passes a `HeldCommit`, whose rows the driver commits in its batches.
Commit = Callable[[dict, str, str], None]
