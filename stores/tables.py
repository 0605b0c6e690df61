"""Where a store lives and its Parquet tables, without its arrays: a URL resolved to a filesystem, the
tables as `pyarrow.dataset` datasets. `stores.store.Store` reads its tables through these functions; verbs
that only query tables (`specstore results`) use `open_table`, which imports neither zarr nor numcodecs
(about half a second, docs/BENCHMARKS.md "Command start-up").
"""

from __future__ import annotations

import os
import re

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds

from stores.errors import ConfigError, NotFoundError
from stores.schema import table_schema


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def remote_options(url: str) -> dict:
    """Storage options for a store URL. Object stores must not cache listings: other processes (Dask
    workers, concurrent runs) add table parts and arrays, and a cached listing would hide them."""
    if is_local(url) or url.startswith("memory://"):
        return {}
    return {"use_listings_cache": False}


def redact(text: str, url: str | None = None) -> str:
    """`text` without credentials: any `scheme://user:secret@` userinfo, and every occurrence of the user
    name and secret of `url` (libraries quote them in their own errors without the scheme)."""
    text = re.sub(r"(?<=://)[^/@\s]*@", "***@", text)
    if url:
        match = re.match(r"^[a-z0-9+.-]+://([^/@\s]*)@", url, re.IGNORECASE)
        for secret in match.group(1).split(":") if match else []:
            if secret:
                text = text.replace(secret, "***")
    return text


def locate(root: str | os.PathLike) -> tuple[str, fsspec.AbstractFileSystem, str]:
    """(root, filesystem, path) of a store URL or folder (local roots made absolute), checked reachable."""
    root = os.fspath(root)
    if not root:
        raise ConfigError("Expected a store root (a folder or URL). Got '' instead.")
    try:
        fs, path = fsspec.core.url_to_fs(root, **remote_options(root))
    except (ImportError, ValueError) as exc:  # unknown protocol, or its filesystem package is not installed
        raise ConfigError(
            f"Expected a store URL specstore can open. Got {redact(root)!r} instead ({redact(str(exc), root)})."
        ) from None
    if is_local(root):
        root = path = os.path.abspath(path)
    try:
        fs.exists(path)
    except Exception as exc:  # any transport error: one clear line for the user
        raise ConfigError(
            f"Expected a reachable store URL. Got {redact(root)!r} instead ({type(exc).__name__}: {redact(str(exc), root)})."
        ) from exc
    return root, fs, path


def is_store(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    return fs.exists(f"{path.rstrip('/')}/arrays.zarr/zarr.json")


def missing_store(root: str) -> NotFoundError:
    return NotFoundError(f"Expected an existing store. Got {redact(root)!r} instead (no arrays.zarr there).")


def part_names(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    """Committed part names (without `.parquet`) of the table at `path`; staging files are not listed."""
    if not fs.exists(path):
        return []
    names = []
    for entry in fs.ls(path, detail=False):
        base = entry.rstrip("/").rsplit("/", 1)[-1]
        if base.endswith(".parquet") and not base.startswith(("_", ".")):
            names.append(base[: -len(".parquet")])
    return sorted(names)


def table_dataset(fs: fsspec.AbstractFileSystem, path: str, name: str) -> ds.Dataset:
    """The table `name` at `path` as a dataset (empty, with its schema, before the first write)."""
    schema = table_schema(name)
    if not part_names(fs, path):
        return ds.dataset(pa.table({f.name: [] for f in schema}, schema=schema))
    return ds.dataset(path, format="parquet", partitioning="hive", filesystem=fs, schema=schema)


def open_table(root: str | os.PathLike, name: str) -> ds.Dataset:
    """The table `name` of the existing store at `root`, as `open_store(root).table(name)` gives it."""
    root, fs, path = locate(root)
    if not is_store(fs, path):
        raise missing_store(root)
    return table_dataset(fs, f"{path.rstrip('/')}/tables/{name}", name)
