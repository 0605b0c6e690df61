"""The catalogue's reads of a store: some columns of every row of a table, and the size of every file under a
folder, fast enough for `specstore ls` on stores of thousands of table parts.

Reading a Parquet part costs about a millisecond however small it is (opening it, parsing its footer), and a
store of 1,000 objects holds several thousand parts. So the columns read of each part are kept in a cache on
this machine (`$SPECSTORE_CACHE`, else `$XDG_CACHE_HOME/specstore` or `~/.cache/specstore`), one Parquet file
per store and table, with the version of each part they came from (its ETag on object stores; size,
modification time and inode on local disks: a part is only ever replaced by moving a new file into place).
A scan lists the table, takes the rows of unchanged parts from the cache and reads only the parts that are
new or changed. The cache is never trusted beyond that check and never read by anything but the catalogue;
deleting it costs one slow scan. Writing it is best effort (a read-only cache folder only makes scans slow).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from stores.schema import table_schema

CACHE_ENV = "SPECSTORE_CACHE"
PART, VERSION = "__part", "__version"
ATTEMPTS = 5  # a scan that meets a part removed since the listing starts again


def _local(store) -> bool:
    protocols = store.fs.protocol if isinstance(store.fs.protocol, tuple) else (store.fs.protocol,)
    return "file" in protocols or "local" in protocols


def file_sizes(store, folder: str) -> dict[str, int]:
    """{path: bytes} of every file under `folder` ({} where there is none). Local folders are walked with
    `os.scandir` (fsspec's `find` costs ten times as much per file)."""
    if not _local(store):
        try:
            return {p: int(i.get("size") or 0) for p, i in store.fs.find(folder, detail=True).items()}
        except FileNotFoundError:
            return {}
    out, stack = {}, [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    out[entry.path] = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue  # removed while walked
    return out


def listed_parts(store, table: str) -> dict[str, tuple[int, str]]:
    """{part file name: (bytes, version)} of a table's committed parts (staging names left out)."""
    folder = store.table_path(table)
    found = {}
    if _local(store):
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return {}
        for entry in entries:
            if entry.name.endswith(".parquet") and not entry.name.startswith(("_", ".")):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                found[entry.name] = (st.st_size, f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
        return found
    try:
        listed = store.fs.ls(folder, detail=True)
    except FileNotFoundError:
        return {}
    for info in listed:
        name = info["name"].rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(".parquet") and not name.startswith(("_", ".")):
            size = int(info.get("size") or 0)
            found[name] = (
                size,
                str(info.get("ETag") or f"{size}:{info.get('LastModified') or info.get('mtime')}"),
            )
    return found


def _cache_path(store, table: str) -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "specstore"
    )
    return (
        Path(base) / "catalogue" / hashlib.sha256(store.root.encode()).hexdigest()[:16] / f"{table}.parquet"
    )


def _cached(path: Path, columns: list[str]) -> tuple[pa.Table | None, dict[str, str]]:
    """(rows, {part: version}) of a cache file made for these columns, or (None, {})."""
    try:
        rows = pq.read_table(path)
        meta = json.loads(rows.schema.metadata[b"specstore"])
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):
        return None, {}
    if meta.get("columns") != columns:
        return None, {}
    return rows.replace_schema_metadata(None), meta["parts"]


def _write_cache(path: Path, rows: pa.Table, columns: list[str], parts: dict[str, str]) -> None:
    meta = {b"specstore": json.dumps({"columns": columns, "parts": parts}).encode()}
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows.replace_schema_metadata(meta), staging)
        os.replace(staging, path)
    except OSError:
        staging.unlink(missing_ok=True)


def _read_parts(store, table: str, names: list[str], columns: list[str], versions: dict) -> pa.Table:
    folder = store.table_path(table)
    paths = [f"{folder}/{name}" for name in names]
    dataset = ds.dataset(paths, format="parquet", filesystem=store.fs, schema=table_schema(table))
    rows = dataset.to_table(columns=[*columns, "__filename"])
    names_of = [p.rstrip("/").rsplit("/", 1)[-1] for p in rows["__filename"].to_pylist()]
    rows = rows.drop_columns(["__filename"]).append_column(PART, pa.array(names_of, pa.string()))
    return rows.append_column(VERSION, pa.array([versions[n] for n in names_of], pa.string()))


def scan_table(store, table: str, columns: list[str]) -> tuple[pa.Table, dict[str, int]]:
    """(`columns` of every row of `table` with its part's name in `__part`, {part name: bytes})."""
    for attempt in range(ATTEMPTS):
        listing = listed_parts(store, table)
        versions = {name: version for name, (_, version) in listing.items()}
        path = _cache_path(store, table)
        cached, covered = _cached(path, columns)
        fresh = {name for name, version in covered.items() if versions.get(name) == version}
        missing = sorted(set(versions) - fresh)
        try:
            new = _read_parts(store, table, missing, columns, versions) if missing else None
        except FileNotFoundError:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        kept = None
        if cached is not None:
            kept = cached.filter(pc.is_in(cached[PART], pa.array(sorted(fresh), pa.string())))
        parts = [t for t in (kept, new) if t is not None]
        rows = pa.concat_tables(parts, promote_options="default") if parts else _empty(table, columns)
        if missing or set(covered) != fresh:
            _write_cache(path, rows, columns, versions)
        return rows, {name: size for name, (size, _) in listing.items()}
    raise AssertionError("unreachable")


def _empty(table: str, columns: list[str]) -> pa.Table:
    schema = table_schema(table)
    empty = {c: pa.array([], schema.field(c).type) for c in columns}
    return pa.table({**empty, PART: pa.array([], pa.string()), VERSION: pa.array([], pa.string())})
