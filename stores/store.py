"""The store: a root URL holding `arrays.zarr` (one Zarr v3 group) and Parquet tables under `tables/`.

Any fsspec URL works as a root (a local folder, `memory://…`, `s3://…`); local paths go through zarr's
`LocalStore` and fsspec's local filesystem, everything else through `FsspecStore`. Arrays are written and
read through one backend interface chosen once per store (`stores.arrays`): the direct path for local
folders, zarr's own everywhere else or when asked for.

Commit protocol (`stores.commits`): a task writes its arrays first; its rows are committed after them, alone
or in a batch with other shards' rows: side-table parts, then the commit part last, whose footer lists the
shards it commits. Every part is written under a staging name that readers ignore (pyarrow skips names
starting with `_`) and moved into place, so a reader never sees a half-written file and a killed writer
leaves no partial row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import uuid
from functools import cached_property

import fsspec
import numcodecs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import zarr
from zarr.codecs import BloscCodec
from zarr.storage import FsspecStore, LocalStore

from stores.arrays import CHECKSUM_ATTR, DirectArrays, ZarrArrays, parse_backend
from stores.audio_index import read_audio
from stores.chunks import LocalChunks
from stores.commits import (
    ShardRows,
    commit_shards,
    committed_rows,
    committed_shards,
    committed_table,
    key_filter,
    uncommit,
)
from stores.config import parse_name, parse_positive_int
from stores.errors import ConfigError
from stores.featureset import FeatureSet
from stores.schema import rows_to_table, table_schema
from stores.tables import (
    is_local,
    is_store,
    locate,
    missing_store,
    part_names,
    redact,
    remote_options,
    table_dataset,
)

__all__ = ["CHECKSUM_ATTR", "Store", "attrs_json", "now_utc", "open_store", "redact"]

FORMAT_VERSION = 1
DEFAULT_SAMPLE_RATE = 16000
STAGING = "_staging"
READ_ATTEMPTS = 5  # a table read that meets a part removed since the listing starts again
# Audio arrays are stored with byte-shuffled LZ4 (it reads several times faster than zarr's default zstd)
# where that pays, else raw. Audio decoded from 16-bit files keeps 16 significant bits per float32 and LZ4
# stores it in about half its bytes; mixtures, scaled noise and resampled speech use every mantissa bit, LZ4
# saves little on them and decoding makes reads several times slower than raw chunks read straight into
# memory, and every feature set, evaluation and waveform training run reads the pairs again
# (docs/BENCHMARKS.md, "Audio codec").
AUDIO_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
AUDIO_MIN_SAVING = 0.2  # LZ4 must save at least a fifth of an audio array's bytes
AUDIO_PROBES, AUDIO_PROBE_SAMPLES = 8, 1 << 15  # spread over the array: leading silence is not typical


def audio_codec(samples: np.ndarray) -> BloscCodec | None:
    """AUDIO_CODEC when LZ4 saves at least AUDIO_MIN_SAVING of a sample of `samples`' bytes, else None
    (raw). float32 samples."""
    probe = samples
    if samples.shape[0] > AUDIO_PROBES * AUDIO_PROBE_SAMPLES:  # disjoint slices (repeats would compress)
        starts = np.linspace(0, samples.shape[0] - AUDIO_PROBE_SAMPLES, AUDIO_PROBES).astype(int)
        probe = np.concatenate([samples[s : s + AUDIO_PROBE_SAMPLES] for s in starts])
    if probe.size == 0:
        return None
    lz4 = numcodecs.Blosc(
        cname=AUDIO_CODEC.cname.value, clevel=AUDIO_CODEC.clevel, shuffle=numcodecs.Blosc.SHUFFLE
    )
    return AUDIO_CODEC if len(lz4.encode(probe)) <= (1 - AUDIO_MIN_SAVING) * probe.nbytes else None


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Store:
    """A specstore at `root`. Create with `open_store`."""

    def __init__(self, root: str, fs: fsspec.AbstractFileSystem, path: str, backend: str = "zarr") -> None:
        self.root = root
        self.fs = fs
        self.path = path.rstrip("/")
        # how arrays are written and read, chosen once for the store (`stores.arrays`)
        self.backend = DirectArrays(self) if backend == "direct" else ZarrArrays(self)

    # ------------------------------------------------------------------ layout
    def _join(self, *parts: str) -> str:
        return "/".join([self.path, *parts])

    @cached_property
    def arrays(self) -> zarr.Group:
        """The Zarr v3 group holding every array of the store."""
        if is_local(self.root):
            zstore = LocalStore(self._join("arrays.zarr"))
        else:
            zstore = FsspecStore.from_url(
                self.root.rstrip("/") + "/arrays.zarr", storage_options=remote_options(self.root)
            )
        return zarr.open_group(zstore, mode="a", zarr_format=3)

    @property
    def sample_rate(self) -> int:
        return int(self.arrays.attrs["sample_rate"])

    # ------------------------------------------------------------------ tables
    def table_path(self, name: str) -> str:
        table_schema(name)  # unknown names raise
        return self._join("tables", name)

    def table(self, name: str) -> ds.Dataset:
        """The table as a `pyarrow.dataset.Dataset` (empty, with its schema, before the first write)."""
        return table_dataset(self.fs, self.table_path(name), name)

    def read_table(self, name: str, filter=None, columns: list[str] | None = None) -> pa.Table:
        """The rows of a table (`columns` may name `__filename`: the part each row is in). A part removed
        between listing the table and reading it (`specstore rm`) makes the read start again."""
        for attempt in range(READ_ATTEMPTS):
            try:
                return self.table(name).to_table(filter=filter, columns=columns)
            except FileNotFoundError:
                if attempt == READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def part_names(self, name: str) -> list[str]:
        """Committed part names (without `.parquet`) of a table; staging files are not listed."""
        return part_names(self.fs, self.table_path(name))

    def write_part(
        self, name: str, part: str, rows: list[dict] | pa.Table, metadata: dict[bytes, bytes] | None = None
    ) -> str:
        """Write one part of a table atomically (staging file, then a move); same part name = replace,
        including the staging files of earlier writes of it that never finished (a killed writer's: a part
        has one writer at a time, its flow's run lock sees to that). `metadata`: footer keys (a commit
        part's list of shards)."""
        parse_name(part, "table part name")
        table = rows if isinstance(rows, pa.Table) else rows_to_table(name, rows)
        table = table.cast(table_schema(name))
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        path = self.table_path(name)
        staging = f"{path}/{STAGING}/{part}.{uuid.uuid4().hex}.parquet"
        final = f"{path}/{part}.parquet"
        self.fs.makedirs(f"{path}/{STAGING}", exist_ok=True)
        for leftover in self.fs.glob(f"{path}/{STAGING}/{part}.*.parquet"):
            with contextlib.suppress(FileNotFoundError):  # collected meanwhile (`specstore gc`)
                self.fs.rm(leftover)
        with self.fs.open(staging, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
        self.fs.mv(staging, final)
        return final

    def commit(self, parts: dict[str, list[dict] | pa.Table], commit_table: str, shard: str) -> None:
        """Commit one shard's rows: its side-table parts, then its commit-table part `part-<shard>` last
        (`stores.commits.commit_shards`; a flow's driver commits finished shards in batches instead)."""
        commit_shards(self, [ShardRows(shard, commit_table, parts)])

    def uncommit(self, commit_table: str, shards) -> int:
        """Uncommit shards (`stores.commits.uncommit`); -> the bytes freed. With `remove_rows`, the one way
        rows leave the store (repair, `specstore rm`)."""
        return uncommit(self, commit_table, shards)

    def remove_part(self, name: str, part: str) -> int:
        """Remove part `part` of table `name` where present; -> the bytes freed."""
        return self._remove_file(f"{self.table_path(name)}/{part}.parquet")

    def remove_rows(self, name: str, keys: dict[str, object]) -> int:
        """Remove the rows of a table whose columns equal `keys`, whatever parts hold them: each such part
        is rewritten without them (atomically, as `write_part`) or removed when none is left; -> the bytes
        freed. Parts may hold the rows of several shards or objects."""
        if not self.part_names(name):
            return 0
        found = self.read_table(name, filter=key_filter(keys), columns=["__filename"])
        freed, schema = 0, table_schema(name)
        for path in sorted(set(found["__filename"].to_pylist())):
            try:
                before = self.fs.size(path)
                rows = ds.dataset(path, format="parquet", filesystem=self.fs, schema=schema).to_table()
            except FileNotFoundError:
                continue  # removed meanwhile
            matches = pc.fill_null(_matches(rows, keys), False)
            kept = rows.filter(pc.invert(matches))
            if kept.num_rows == 0:
                freed += self._remove_file(path)
                continue
            base = path.rstrip("/").rsplit("/", 1)[-1][: -len(".parquet")]
            freed += before - self.fs.size(self.write_part(name, base, kept))
        return freed

    def _remove_file(self, path: str) -> int:
        try:
            size = self.fs.size(path)
            self.fs.rm(path)
        except FileNotFoundError:
            return 0
        return size

    def committed_shards(self, commit_table: str) -> set[str]:
        """The shards the parts of `commit_table` commit (their footers' lists)."""
        return committed_shards(self, commit_table)

    def committed_rows(self, table: str, columns: list[str] | None = None, **keys: object) -> list[dict]:
        """Rows of `table` with these column values whose shard is committed (`stores.commits`)."""
        return committed_rows(self, table, columns, **keys)

    def committed_table(self, table: str, columns: list[str] | None = None, **keys: object) -> pa.Table:
        """`committed_rows` as an Arrow table (for plans of many rows)."""
        return committed_table(self, table, columns, **keys)

    # ------------------------------------------------------------------ arrays
    def array_location(self, path: str = "") -> str:
        """The folder or URL path of an array (or of the arrays group, for "")."""
        return self._join("arrays.zarr", path) if path else self._join("arrays.zarr")

    def write_audio_array(self, path: str, samples: np.ndarray, attrs: dict, chunk: int = 1 << 20) -> None:
        """One shard's utterances, concatenated along time, as a float32 array (replaced if present), LZ4
        compressed where that saves at least a fifth of its bytes, else raw (see `audio_codec`)."""
        samples = samples.astype(np.float32, copy=False)
        self.write_array(path, samples, attrs, (chunk,), audio_codec(samples))

    def write_array(self, path: str, data: np.ndarray, attrs: dict, chunks: tuple[int, ...], codec) -> None:
        """One task's whole array (replaced if present); `chunks` gives the leading (time) chunk length, the
        other axes are whole. An array of more than one chunk is one zarr shard (one file or object, each
        chunk still read on its own): a file per chunk would cost inode allocations on local disks and
        requests on object stores. The values' checksum is an attribute (what `verify` checks)."""
        self.backend.write(path, data, attrs, chunks, codec)

    def array_writer(self, path: str, tail: tuple[int, ...], dtype, chunk: int, attrs: dict, codec):
        """A writer of rows appended a batch at a time, stored as `write_array` stores them all."""
        return self.backend.writer(path, tail, dtype, chunk, attrs, codec)

    def read_array(self, path: str) -> np.ndarray:
        """A whole array's values."""
        return self.backend.read(path)

    def read_rows(self, path: str, start: int, stop: int) -> np.ndarray:
        """Rows start..stop of an array (along time)."""
        return self.backend.read_rows(path, start, stop)

    def span_reader(self, path: str) -> LocalChunks | None:
        """A reader of ranges of a local array into given memory, or None (then use `read_rows`)."""
        return self.backend.spans(path)

    def has_array(self, path: str) -> bool:
        return self.backend.exists(path)

    def array_attrs(self, path: str) -> dict:
        return self.backend.attrs(path)

    def group_attrs(self, path: str) -> dict | None:
        """The attributes of the group at `path` (e.g. a pair set's config), or None where there is none."""
        try:
            node = self.arrays[path]
        except KeyError:
            return None
        return dict(node.attrs) if isinstance(node, zarr.Group) else None

    def group_members(self, path: str) -> dict[str, str]:
        """{name: "array" or "group"} of the members of the group at `path` ({} where there is none)."""
        try:
            node = self.arrays[path]
        except KeyError:
            return {}
        if not isinstance(node, zarr.Group):
            return {}
        return {name: "group" if isinstance(m, zarr.Group) else "array" for name, m in node.members()}

    def remove_array(self, path: str) -> int:
        """Remove an array or group of arrays (its folder or objects) where present; -> the bytes freed.
        Every array's metadata goes first, then its chunks: a reader is never handed an array whose
        chunks are missing (zarr would read them as the fill value), only no array."""
        location = self.array_location(path)
        try:
            files = self.fs.find(location, detail=True)
        except FileNotFoundError:
            return 0
        if not files:
            return 0
        metadata = sorted((p for p in files if p.endswith("/zarr.json")), key=lambda p: -p.count("/"))
        if metadata:
            self.fs.rm(metadata)
        if self.fs.exists(location):
            self.fs.rm(location, recursive=True)
        return sum(int(info.get("size") or 0) for info in files.values())

    def set_group_attrs(self, path: str, attrs: dict) -> None:
        """Create the group at `path` where missing and set these attributes on it."""
        group = self.arrays[path] if path in self.arrays else self.arrays.create_group(path)
        group.attrs.update(attrs)

    def read_samples(self, array: str, offset: int, num_samples: int) -> np.ndarray:
        return self.read_rows(array, offset, offset + num_samples).astype(np.float32, copy=False)

    def audio(self, name: str, utterance_id: str, role: str = "clean") -> np.ndarray:
        """float32 samples of an utterance of a corpus (`role` clean) or of a pair set (`input`, `clean`,
        `noise`) at the store's sample rate."""
        return read_audio(self, name, utterance_id, role)

    def features(self, feature_id: str) -> FeatureSet:
        """A committed feature set: `.read(utterance_id, role)` gives time-major arrays."""
        return FeatureSet(self, feature_id)


def _matches(rows: pa.Table, keys: dict[str, object]) -> pa.ChunkedArray:
    """Which rows have these column values (null where a compared value is null)."""
    mask = None
    for column, value in keys.items():
        term = pc.equal(rows[column], pa.scalar(value, rows.schema.field(column).type))
        mask = term if mask is None else pc.and_(mask, term)
    return mask


def open_store(
    root: str | os.PathLike, create: bool = True, sample_rate: int | None = None, arrays: str | None = None
) -> Store:
    """Open the store at `root` (a folder or fsspec URL), creating it when missing and `create` is set.

    `sample_rate` fixes the rate of a new store (16 kHz by default); asking an existing store for another rate
    is an error, because every stored array is at the store's one rate. `arrays` chooses the arrays backend:
    `direct` (local folders' default) or `zarr` (zarr's own path; the default elsewhere, and wherever
    $SPECSTORE_ARRAYS says so).
    """
    root, fs, path = locate(root)
    backend = parse_backend(arrays, is_local(root))
    if not is_store(fs, path):
        if not create:
            raise missing_store(root)
        fs.makedirs(f"{path.rstrip('/')}/tables", exist_ok=True)
        store = Store(root, fs, path, backend)
        store.arrays.attrs.update(
            {
                "sample_rate": parse_positive_int(sample_rate or DEFAULT_SAMPLE_RATE, "sample_rate"),
                "format_version": FORMAT_VERSION,
            }
        )
        return store
    store = Store(root, fs, path, backend)
    if sample_rate is not None and sample_rate != store.sample_rate:
        raise ConfigError(
            f"Expected the store's sample rate {store.sample_rate} Hz (fixed at creation). Got {sample_rate} instead."
        )
    return store


def attrs_json(value: dict) -> dict:
    """Attributes must be plain JSON; round-trip to catch numpy scalars early."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
