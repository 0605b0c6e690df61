"""`specstore verify`: check every committed piece of a store, and find what no commit owns.

Checked for each committed shard (an `utterances`, `pairs` or `feature_frames` part): its arrays exist, every
chunk of them is present, their values match the checksum recorded when they were written, and every row's
slice lies inside its array. Committed feature sets must have their statistics. Leftovers that no commit
owns (staging files, arrays and side-table parts of shards that never committed) are reported too.

Repair (`pipelines.repair`) removes leftovers and uncommits damaged shards, then recomputes them from the
lineage their rows and attributes record.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from stores.store import CHECKSUM_ATTR, STAGING, Store, array_checksum

# the tables whose parts commit shards
COMMITS = ("utterances", "pairs", "feature_frames")


@dataclass(frozen=True)
class Problem:
    kind: str  # damaged | leftover
    what: str  # the array, table part or feature set affected
    detail: str
    table: str | None = None  # for damaged shards: the commit table and shard
    shard: str | None = None

    def line(self) -> str:
        return f"{self.kind}: {self.what}: {self.detail}"


def _shard_arrays(table: str, row: dict) -> list[str]:
    if table == "utterances":
        return [row["array"]]
    if table == "pairs":
        return [f"{row['array']}/{role}" for role in (row["roles"] or "").split(",") if role]
    return []  # feature shards: every array under the group, found by listing


def _group_arrays(store: Store, group: str) -> list[str]:
    try:
        node = store.arrays[group]
    except KeyError:
        return []
    return [f"{group}/{name}" for name, _ in node.arrays()]


def missing_chunks(store: Store, path: str) -> list[str]:
    """The chunk (or shard) keys of the array's grid with no file: `c.0.0` (`c/0/0` in stores written
    before chunk keys used dots)."""
    array = store.arrays[path]
    stored = array.shards or array.chunks  # a sharded array stores one file per shard
    grid = [range(math.ceil(s / c)) if s else range(0) for s, c in zip(array.shape, stored, strict=True)]
    prefix = f"{store.path}/arrays.zarr/{path}/"
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


def _check_rows(store: Store, table: str, rows: list[dict]) -> list[str]:
    problems = []
    for row in rows:
        if table == "utterances":
            spans = [(row["array"], row["offset"], row["num_samples"])]
        elif table == "pairs":
            spans = [(p, row["offset"], row["num_samples"]) for p in _shard_arrays(table, row)]
        else:
            spans = [
                (p, row["frame_offset"], row["num_frames"])
                for p in _group_arrays(store, row["array"])
                if not p.rsplit("/", 1)[-1].startswith("sums_")
            ]
        for path, offset, n in spans:
            if path in store.arrays and offset + n > store.arrays[path].shape[0]:
                problems.append(f"row {row['utterance_id']} reads {path}[{offset}:{offset + n}] past its end")
    return problems


def verify_commits(store: Store, table: str, checksums: bool) -> list[Problem]:
    rows_by_shard: dict[str, list[dict]] = {}
    for row in store.read_table(table).to_pylist():
        rows_by_shard.setdefault(row["shard"], []).append(row)
    problems = []
    for shard in sorted(store.committed_shards(table)):
        rows = rows_by_shard.get(shard, [])
        paths = sorted(
            {p for r in rows for p in (_shard_arrays(table, r) or _group_arrays(store, r["array"]))}
        )
        if table == "feature_frames" and rows and not paths:
            paths = [f"{rows[0]['array']}/input"]  # the whole group is gone
        found = [m for p in paths for m in check_array(store, p, checksums)] + _check_rows(store, table, rows)
        problems += [Problem("damaged", f"{table} shard {shard}", m, table, shard) for m in found]
    return problems


def verify_feature_sets(store: Store) -> list[Problem]:
    import json

    problems = []
    frames = store.read_table("feature_frames", columns=["feature_id", "shard"]).to_pylist()
    committed = store.committed_shards("feature_frames")
    for row in store.read_table("features").to_pylist():
        spec = json.loads(row["config_json"])
        fid = row["feature_id"]
        if not any(f["feature_id"] == fid and f["shard"] in committed for f in frames):
            problems.append(
                Problem("damaged", f"feature set {fid}", "has no committed shards", "features", fid)
            )
        for role in spec.get("stats_frames") or {}:
            for stat in ("mean", "std"):
                path = f"features/{fid}/stats/{role}_{stat}"
                for message in check_array(store, path, True):
                    problems.append(Problem("damaged", f"feature set {fid}", message, "features", fid))
    return problems


def find_leftovers(store: Store) -> list[Problem]:
    problems = []
    for table in ("utterances", "rejects", "pairs", "feature_frames", "features", "models", "metrics"):
        staging = f"{store.table_path(table)}/{STAGING}"
        if store.fs.exists(staging):
            for path in store.fs.ls(staging, detail=False):
                problems.append(Problem("leftover", path, "a table part whose write never finished"))
    committed = set().union(*(store.committed_shards(t) for t in COMMITS))
    for part in store.part_names("rejects"):
        if part.startswith("part-") and part[5:] not in committed:
            problems.append(Problem("leftover", f"rejects/{part}", "rejects of a shard that never committed"))
    for top in ("audio", "pairs", "features"):
        if top not in store.arrays:
            continue
        for name, group in store.arrays[top].groups():
            for shard, _ in group.members():
                if shard not in committed and shard != "stats":
                    problems.append(
                        Problem("leftover", f"{top}/{name}/{shard}", "arrays of a shard that never committed")
                    )
    return problems


def verify_store(store: Store, checksums: bool = True) -> list[Problem]:
    problems = []
    for table in COMMITS:
        problems += verify_commits(store, table, checksums)
    problems += verify_feature_sets(store)
    problems += find_leftovers(store)
    return problems
