"""The commit protocol's vocabulary: shards, their ids, and which rows of a table are committed.

A task (one shard) writes its arrays, then its side-table parts, then its commit part last (`Store.commit`);
every part is staged and moved into place, so a reader never sees half a file. A shard is committed when its
commit-table part exists, even with zero rows. Rows of a shard that never committed (a killed task's side
tables) are invisible to every reader that goes through `committed_rows`, and so are the rows of an object
being removed (`stores.tombstones`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from stores.errors import NotFoundError
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


@dataclass
class Shard:
    """One task's share of a stage: its id (stable across reruns) and its items."""

    shard_id: str
    items: list[Any]
    # items refused before any work (duplicate or unsafe ids): (item, reason, detail)
    prerejected: list[tuple[Any, str, str]] = field(default_factory=list)


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
    """Rows of `table` whose columns equal `keys` (e.g. `corpus="demo"`) and whose shard is committed, less
    those of objects being removed; `columns` (with `shard` always) or every column."""
    try:
        commit_tables = COMMITTED_BY[table]
    except KeyError:
        raise NotFoundError(
            f"Expected a table committed by shards, one of {', '.join(COMMITTED_BY)}. Got {table!r} instead."
        ) from None
    committed = set().union(*(store.committed_shards(t) for t in commit_tables))
    wanted = None if columns is None else list(dict.fromkeys([*columns, "shard"]))
    rows = store.read_table(table, filter=key_filter(keys), columns=committed_columns(table, wanted))
    rows = rows.filter(pc.is_in(rows["shard"], pa.array(sorted(committed), pa.string())))
    rows = without_removed(store, table, rows)
    return (rows if wanted is None else rows.select(wanted)).to_pylist()


def rows_by_shard(rows: list[dict], order: str = "offset") -> dict[str, list[dict]]:
    """Rows grouped by the shard that made them, each group in storage order (`order`), shards sorted."""
    groups: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["shard"], r[order])):
        groups.setdefault(row["shard"], []).append(row)
    return groups
