"""`specstore verify`: check every committed piece of a store, and find what no commit owns.

Checked for each committed shard (an `utterances`, `pairs` or `feature_frames` part): its arrays exist, every
chunk of them is present, their values match the checksum recorded when they were written, and every row's
slice lies inside its array. Committed feature sets must have their statistics. Leftovers that no commit
owns (staging files, arrays and side-table parts of shards that never committed) are reported too.

Repair (`pipelines.repair`) removes leftovers and uncommits damaged shards, then recomputes them from the
lineage their rows and attributes record.

An object with a removal record (`specstore rm` running, or killed) is not checked: its partly removed
pieces are not damage. The unfinished removal is reported instead, and `--repair` (like a rerun of `rm`,
or `specstore gc`) finishes it.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import zarr

from stores.arrays import CHECKSUM_ATTR
from stores.chunks import array_checksum
from stores.commits import COMMIT_TABLES, COMMITTED_BY, part_shards, table_by_shard
from stores.paths import AUDIO, FEATURES, PAIRS, STATS, SUMS_PREFIX, feature_stats, member
from stores.schema import SCHEMAS
from stores.store import STAGING, Store
from stores.tombstones import pending


@dataclass(frozen=True)
class Problem:
    kind: str  # damaged | leftover | pending
    what: str  # the array, table part or feature set affected
    detail: str
    table: str | None = None  # for damaged shards: the commit table and shard
    shard: str | None = None
    object: str | None = None  # for a pending removal: the object id

    def line(self) -> str:
        return f"{self.kind}: {self.what}: {self.detail}"


def _shard_arrays(table: str, row: dict) -> list[str]:
    if table == "utterances":
        return [row["array"]]
    if table == "pairs":
        return [member(row["array"], role) for role in (row["roles"] or "").split(",") if role]
    return []  # feature shards: every array under the group, found by listing


class _Nodes:
    """Array shapes and group members, each looked up once per verify: a zarr lookup costs about a
    millisecond, and rows share their shard's few arrays (looking them up per row made verify cost
    ~20 ms per item)."""

    def __init__(self, store: Store) -> None:
        self.store, self._shapes, self._groups = store, {}, {}

    def shape(self, path: str) -> tuple[int, ...] | None:
        """The array's shape, None where there is no array."""
        if path not in self._shapes:
            try:
                node = self.store.arrays[path]
            except KeyError:
                node = None
            self._shapes[path] = None if node is None or isinstance(node, zarr.Group) else node.shape
        return self._shapes[path]

    def group_arrays(self, group: str) -> list[str]:
        if group not in self._groups:
            try:
                node = self.store.arrays[group]
            except KeyError:
                node = None
            arrays = [] if not isinstance(node, zarr.Group) else node.arrays()
            self._groups[group] = [member(group, name) for name, _ in arrays]
        return self._groups[group]


def missing_chunks(store: Store, path: str) -> list[str]:
    """The chunk (or shard) keys of the array's grid with no file: `c.0.0` (`c/0/0` in stores written
    before chunk keys used dots)."""
    array = store.arrays[path]
    stored = array.shards or array.chunks  # a sharded array stores one file per shard
    grid = [range(math.ceil(s / c)) if s else range(0) for s, c in zip(array.shape, stored, strict=True)]
    prefix = store.array_location(path) + "/"
    present = {p[len(prefix) :] for p in store.fs.find(prefix.rstrip("/"))}
    expected = (array.metadata.encode_chunk_key(idx) for idx in itertools.product(*grid))
    return [key for key in expected if key not in present]


def check_array(store: Store, path: str, checksums: bool) -> list[str]:
    """Problems of one stored array: absent, chunks missing, checksum mismatch."""
    if path not in store.arrays:
        return [f"array {path} is missing"]
    missing = missing_chunks(store, path)
    if missing:
        return [
            f"array {path} misses chunk{'s' if len(missing) > 1 else ''} {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        ]
    attrs = store.arrays[path].attrs
    # stores written before the CRC-32C checksum recorded a sha256 of the same values
    algorithm = CHECKSUM_ATTR if CHECKSUM_ATTR in attrs else "sha256"
    recorded = attrs.get(algorithm)
    if not checksums or not recorded:
        return []
    try:
        values = np.asarray(store.arrays[path][:])
    except Exception as exc:  # a chunk of the wrong size or codec: any decoding failure is damage
        return [f"array {path} cannot be decoded ({type(exc).__name__}: {exc})"]
    if array_checksum(values, algorithm) != recorded:
        return [f"array {path} does not match the checksum recorded when it was written"]
    return []


def _check_rows(nodes: _Nodes, table: str, rows: list[dict]) -> list[str]:
    problems = []
    for row in rows:
        if table == "utterances":
            spans = [(row["array"], row["offset"], row["num_samples"])]
        elif table == "pairs":
            spans = [(p, row["offset"], row["num_samples"]) for p in _shard_arrays(table, row)]
        else:
            spans = [
                (p, row["frame_offset"], row["num_frames"])
                for p in nodes.group_arrays(row["array"])
                if not p.rsplit("/", 1)[-1].startswith(SUMS_PREFIX)
            ]
        for path, offset, n in spans:
            shape = nodes.shape(path)
            if shape is not None and offset + n > shape[0]:
                problems.append(f"row {row['utterance_id']} reads {path}[{offset}:{offset + n}] past its end")
    return problems


# what verify reads of each commit table's rows
ROW_COLUMNS = {
    "utterances": ["shard", "utterance_id", "array", "offset", "num_samples"],
    "pairs": ["shard", "utterance_id", "array", "offset", "num_samples", "roles"],
    "feature_frames": ["shard", "utterance_id", "array", "frame_offset", "num_frames"],
}


def verify_commits(store: Store, table: str, checksums: bool) -> list[Problem]:
    # grouped as Arrow tables, each made into dicts when its shard is checked: a dict per row of a
    # 281,241-row table kept alive for the whole check made every garbage collection slower
    by_shard = table_by_shard(store.read_table(table, columns=ROW_COLUMNS[table]), order="utterance_id")
    problems, nodes = [], _Nodes(store)
    for shard in sorted(store.committed_shards(table)):
        rows = by_shard[shard].to_pylist() if shard in by_shard else []
        groups = {r["array"] for r in rows} if table == "feature_frames" else set()
        paths = sorted(
            {p for r in rows for p in _shard_arrays(table, r)}
            | {p for g in groups for p in nodes.group_arrays(g)}
        )
        if table == "feature_frames" and rows and not paths:
            paths = [member(rows[0]["array"], "input")]  # the whole group is gone
        found = [m for p in paths for m in check_array(store, p, checksums)] + _check_rows(nodes, table, rows)
        problems += [Problem("damaged", f"{table} shard {shard}", m, table, shard) for m in found]
    return problems


def verify_feature_sets(store: Store) -> list[Problem]:
    problems = []
    frames = store.read_table("feature_frames", columns=["feature_id", "shard"]).to_pylist()
    committed = store.committed_shards("feature_frames")
    with_shards = {f["feature_id"] for f in frames if f["shard"] in committed}
    for row in store.read_table("features").to_pylist():
        spec = json.loads(row["config_json"])
        fid = row["feature_id"]
        if fid not in with_shards:
            problems.append(
                Problem("damaged", f"feature set {fid}", "has no committed shards", "features", fid)
            )
        for role in spec.get("stats_frames") or {}:
            for stat in ("mean", "std"):
                path = feature_stats(fid, role, stat)
                for message in check_array(store, path, True):
                    problems.append(Problem("damaged", f"feature set {fid}", message, "features", fid))
    return problems


def find_leftovers(store: Store) -> list[Problem]:
    problems = []
    for table in SCHEMAS:
        staging = f"{store.table_path(table)}/{STAGING}"
        if store.fs.exists(staging):
            for path in store.fs.ls(staging, detail=False):
                problems.append(Problem("leftover", path, "a table part whose write never finished"))
    parts = {t: part_shards(store, t) for t in COMMIT_TABLES}
    committed = {s for t in COMMIT_TABLES for shards in parts[t].values() for s in shards}
    commit_parts = {name for t in COMMITTED_BY["rejects"] for name in parts[t]}
    for part in store.part_names("rejects"):
        if part not in commit_parts:
            problems.append(Problem("leftover", f"rejects/{part}", "rejects of shards that never committed"))
    for top in (AUDIO, PAIRS, FEATURES):
        if top not in store.arrays:
            continue
        for name, group in store.arrays[top].groups():
            for shard, _ in group.members():
                if shard not in committed and shard != STATS:
                    problems.append(
                        Problem(
                            "leftover",
                            member(member(top, name), shard),
                            "arrays of a shard that never committed",
                        )
                    )
    return problems


def outside_removals(problems: list[Problem], records: list[dict]) -> list[Problem]:
    """The problems that are not pieces of objects being removed."""
    shards = {s for r in records for shards in r["uncommit"].values() for s in shards}
    groups = [g for r in records for g in r["arrays"]]
    objects = {r["object"] for r in records}

    def removed(p: Problem) -> bool:
        return (
            p.shard in shards
            or (p.table == "features" and f"features:{p.shard}" in objects)
            or p.what in {f"rejects/part-{s}" for s in shards}
            or any(p.what == g or p.what.startswith(f"{g}/") for g in groups)
        )

    return [p for p in problems if not removed(p)]


def verify_store(store: Store, checksums: bool = True) -> list[Problem]:
    records = pending(store)
    problems = []
    for table in COMMIT_TABLES:
        problems += verify_commits(store, table, checksums)
    problems += verify_feature_sets(store)
    problems += find_leftovers(store)
    problems = outside_removals(problems, records)
    for record in records:
        problems.append(
            Problem(
                "pending",
                f"removal of {record['object']}",
                "an rm that did not finish: rerun specstore rm, or run specstore gc or verify --repair",
                object=record["object"],
            )  # fmt: skip
        )
    return problems
