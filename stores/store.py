"""The store: a root URL holding `arrays.zarr` (one Zarr v3 group) and Parquet tables under `tables/`.

Any fsspec URL works as a root (a local folder, `memory://…`, `s3://…`); local paths go through zarr's
`LocalStore` and fsspec's local filesystem, everything else through `FsspecStore`, so both use one code path
above this module.

Commit protocol: a task writes its arrays first, then its side-table parts, then its commit part last; every
part is written under a staging name that readers ignore (pyarrow skips names starting with `_`) and moved
into place, so a reader never sees a half-written file and a killed writer leaves no partial row. Part names
are derived from the task's shard id, so a rerun of the same shard replaces its parts instead of adding rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from functools import cached_property

import fsspec
import google_crc32c
import numcodecs
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import zarr
from zarr.codecs import BloscCodec
from zarr.storage import FsspecStore, LocalStore

from stores.chunks import (
    CHUNK_KEY_ENCODING,
    LocalChunks,
    array_checksum,
    array_metadata,
    chunk_key,
    encode_chunks,
    fresh_array_folder,
    metadata_encoder,
    read_local_array,
    read_metadata,
    shard_index_of_sizes,
    write_array_metadata,
    write_local_array,
)
from stores.config import parse_name, parse_positive_int
from stores.errors import ConfigError, NotFoundError
from stores.schema import rows_to_table, table_schema

FORMAT_VERSION = 1
DEFAULT_SAMPLE_RATE = 16000
STAGING = "_staging"
# the attribute holding an array's values checksum (`verify` also accepts the older "sha256")
CHECKSUM_ATTR = "crc32c"
# Audio arrays are stored with byte-shuffled LZ4 (it reads 4x faster than zarr's default zstd) where that
# pays, else raw. Audio decoded from 16-bit files keeps 16 significant bits per float32 and LZ4 stores it in
# about half its bytes (real VoiceBank-DEMAND, clean speech and noise recordings: 0.46-0.62); mixtures,
# scaled noise and resampled speech use every mantissa bit and LZ4 saves only 10-13 %, for reads 3-5x
# slower than a raw read (446 MB of pair audio: 0.2-0.3 s of decoding against 0.06 s read straight into
# memory; every feature set, evaluation and waveform training run reads the pairs again).
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


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Store:
    """A specstore at `root`. Create with `open_store`."""

    def __init__(self, root: str, fs: fsspec.AbstractFileSystem, path: str) -> None:
        self.root = root
        self.fs = fs
        self.path = path.rstrip("/")

    # ------------------------------------------------------------------ layout
    def _join(self, *parts: str) -> str:
        return "/".join([self.path, *parts])

    @cached_property
    def arrays(self) -> zarr.Group:
        """The Zarr v3 group holding every array of the store."""
        if _is_local(self.root):
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
        schema = table_schema(name)
        path = self.table_path(name)
        if not self.part_names(name):
            return ds.dataset(pa.table({f.name: [] for f in schema}, schema=schema))
        return ds.dataset(path, format="parquet", partitioning="hive", filesystem=self.fs, schema=schema)

    def read_table(self, name: str, filter=None, columns: list[str] | None = None) -> pa.Table:
        return self.table(name).to_table(filter=filter, columns=columns)

    def part_names(self, name: str) -> list[str]:
        """Committed part names (without `.parquet`) of a table; staging files are not listed."""
        path = self.table_path(name)
        if not self.fs.exists(path):
            return []
        names = []
        for entry in self.fs.ls(path, detail=False):
            base = entry.rstrip("/").rsplit("/", 1)[-1]
            if base.endswith(".parquet") and not base.startswith(("_", ".")):
                names.append(base[: -len(".parquet")])
        return sorted(names)

    def write_part(self, name: str, part: str, rows: list[dict] | pa.Table) -> str:
        """Write one part of a table atomically (staging file, then a move); same part name = replace,
        including the staging files of earlier writes of it that never finished (a killed writer's: a part
        has one writer at a time, its flow's run lock sees to that)."""
        parse_name(part, "table part name")
        table = rows if isinstance(rows, pa.Table) else rows_to_table(name, rows)
        table = table.cast(table_schema(name))
        path = self.table_path(name)
        staging = f"{path}/{STAGING}/{part}.{uuid.uuid4().hex}.parquet"
        final = f"{path}/{part}.parquet"
        self.fs.makedirs(f"{path}/{STAGING}", exist_ok=True)
        for leftover in self.fs.glob(f"{path}/{STAGING}/{part}.*.parquet"):
            self.fs.rm(leftover)
        with self.fs.open(staging, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
        self.fs.mv(staging, final)
        return final

    def commit(self, parts: dict[str, list[dict] | pa.Table], commit_table: str, shard: str) -> None:
        """Write a shard's side-table parts, then its commit-table part last: the shard is committed when
        `commit_table/part-<shard>` exists (even with zero rows)."""
        for name, rows in parts.items():
            if name != commit_table:
                self.write_part(name, f"part-{shard}", rows)
        self.write_part(commit_table, f"part-{shard}", parts.get(commit_table, []))

    def committed_shards(self, commit_table: str) -> set[str]:
        return {p[len("part-") :] for p in self.part_names(commit_table) if p.startswith("part-")}

    # ------------------------------------------------------------------ audio
    def write_audio_array(self, path: str, samples: np.ndarray, attrs: dict, chunk: int = 1 << 20) -> None:
        """One shard's utterances, concatenated along time, as a float32 array (replaced if present), LZ4
        compressed where that saves at least a fifth of its bytes, else raw (see `audio_codec`)."""
        samples = samples.astype(np.float32, copy=False)
        self.write_array(path, samples, attrs, (chunk,), audio_codec(samples))

    def array_writer(
        self, path: str, tail: tuple[int, ...], dtype, chunk: int, attrs: dict, codec
    ) -> ArrayWriter:
        """An `ArrayWriter`: rows appended a batch at a time, stored as `write_array` stores them all."""
        return ArrayWriter(self, path, tail, dtype, chunk, attrs, codec)

    def local_chunks(self, path: str) -> LocalChunks | None:
        """A local array's `LocalChunks` (ranges read without zarr); None elsewhere or for what it cannot read."""
        return LocalChunks.open(self._join("arrays.zarr", path)) if _is_local(self.root) else None

    def write_array(self, path: str, data: np.ndarray, attrs: dict, chunks: tuple[int, ...], codec) -> None:
        """Write one task's whole array (replaced if present); `chunks` gives the leading (time) chunk
        length, the other axes are whole. An array of more than one chunk is one zarr shard (one file or
        object, its chunks inside, each still read on its own): creating a file costs ~1 ms of system
        time on the test machine's ext4 (more right after files were deleted: 14 % of a magnitude feature
        run's CPU went to inode allocation), and object stores charge per request. Every chunk is written,
        even all-zero ones, so a missing chunk always means damage; the checksum of the values is an
        attribute (what `verify` checks). Local stores are written by `stores.chunks` (zarr's format,
        without its event loop); other stores and codecs through zarr."""
        time_chunk = min(chunks[0], max(1, data.shape[0]))
        count = -(-data.shape[0] // time_chunk)
        inner = (time_chunk, *data.shape[1:])
        shards = (count * time_chunk, *data.shape[1:]) if count > 1 else None
        attributes = {**attrs, CHECKSUM_ATTR: array_checksum(data)}
        if _is_local(self.root):
            metadata = array_metadata(data.shape, data.dtype, inner, shards, codec, attributes)
            encode = metadata_encoder(metadata)
            if encode is not None:
                write_local_array(self._join("arrays.zarr"), path, metadata, data, encode)
                return
        array = self.arrays.create_array(
            path,
            shape=data.shape,
            chunks=inner,
            shards=shards,
            dtype=data.dtype,
            overwrite=True,
            fill_value=0,
            compressors=codec,
            # given at creation: `attrs.update` afterwards rewrites the metadata once per key (measured
            # 1.4 s for 44 arrays of 10 keys)
            attributes=attributes,
            config={"write_empty_chunks": True},
            chunk_key_encoding=CHUNK_KEY_ENCODING,
        )
        encode = metadata_encoder(array.metadata)
        if encode is None:
            array[:] = data  # codecs `stores.chunks` does not encode itself: zarr's own path
            return
        base = self._join("arrays.zarr", path)
        for key, parts in encode_chunks(array.metadata, data, encode).items():
            self.fs.pipe_file(f"{base}/{key}", b"".join(bytes(p) for p in parts))

    def read_array(self, path: str) -> np.ndarray:
        """A whole array's values. In a local store, arrays `stores.chunks` can decode are read file by file
        and decoded by numcodecs straight into the result (raw chunks read straight into it): measured
        0.27 s against zarr's 0.48 s for 445 MB of LZ4 audio, and no round trips through zarr's event-loop
        thread, which the other shard threads wait on. Anything else (and any missing chunk, which zarr
        reads as the fill value) goes through zarr. Spans of an array: `local_chunks`."""
        if _is_local(self.root):
            values = read_local_array(self._join("arrays.zarr", path))
            if values is not None:
                return values
        return np.asarray(self.arrays[path][:])

    def has_array(self, path: str) -> bool:
        if _is_local(self.root):  # without a round trip through zarr's event loop
            return read_metadata(self._join("arrays.zarr", path)) is not None
        return path in self.arrays and isinstance(self.arrays[path], zarr.Array)

    def read_samples(self, array: str, offset: int, num_samples: int) -> np.ndarray:
        return np.asarray(self.arrays[array][offset : offset + num_samples], dtype=np.float32)

    def audio(self, name: str, utterance_id: str, role: str = "clean") -> np.ndarray:
        """float32 samples of an utterance of a corpus (`role` clean) or of a pair set (`input`, `clean`,
        `noise`) at the store's sample rate."""
        from stores.audio_index import read_audio  # local import: keeps this module free of pair logic

        return read_audio(self, name, utterance_id, role)

    def features(self, feature_id: str):
        """A committed feature set: `.read(utterance_id, role)` gives time-major arrays."""
        from stores.featureset import FeatureSet

        return FeatureSet(self, feature_id)


def remote_options(url: str) -> dict:
    """Storage options for a store URL. Object stores must not cache listings: other processes (Dask
    workers, concurrent runs) add table parts and arrays, and a cached listing would hide them."""
    if _is_local(url) or url.startswith("memory://"):
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


def _check_reachable(fs: fsspec.AbstractFileSystem, path: str, root: str) -> None:
    try:
        fs.exists(path)
    except Exception as exc:  # any transport error: one clear line for the user
        raise ConfigError(
            f"Expected a reachable store URL. Got {redact(root)!r} instead ({type(exc).__name__}: {redact(str(exc), root)})."
        ) from exc


def open_store(root: str | os.PathLike, create: bool = True, sample_rate: int | None = None) -> Store:
    """Open the store at `root` (a folder or fsspec URL), creating it when missing and `create` is set.

    `sample_rate` fixes the rate of a new store (16 kHz by default); asking an existing store for another rate
    is an error, because every stored array is at the store's one rate.
    """
    root = os.fspath(root)
    if not root:
        raise ConfigError("Expected a store root (a folder or URL). Got '' instead.")
    try:
        fs, path = fsspec.core.url_to_fs(root, **remote_options(root))
    except (ImportError, ValueError) as exc:  # unknown protocol, or its filesystem package is not installed
        raise ConfigError(
            f"Expected a store URL specstore can open. Got {redact(root)!r} instead ({redact(str(exc), root)})."
        ) from None
    if _is_local(root):
        root = path = os.path.abspath(path)
    _check_reachable(fs, path, root)
    meta_path = f"{path.rstrip('/')}/arrays.zarr/zarr.json"
    if not fs.exists(meta_path):
        if not create:
            raise NotFoundError(
                f"Expected an existing store. Got {redact(root)!r} instead (no arrays.zarr there)."
            )
        fs.makedirs(f"{path.rstrip('/')}/tables", exist_ok=True)
        store = Store(root, fs, path)
        store.arrays.attrs.update(
            {
                "sample_rate": parse_positive_int(sample_rate or DEFAULT_SAMPLE_RATE, "sample_rate"),
                "format_version": FORMAT_VERSION,
            }
        )
        return store
    store = Store(root, fs, path)
    if sample_rate is not None and sample_rate != store.sample_rate:
        raise ConfigError(
            f"Expected the store's sample rate {store.sample_rate} Hz (fixed at creation). Got {sample_rate} instead."
        )
    return store


def attrs_json(value: dict) -> dict:
    """Attributes must be plain JSON; round-trip to catch numpy scalars early."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


class ArrayWriter:
    """Rows appended in order (`append`, then `close`), stored exactly as `Store.write_array(path, all rows,
    attrs, (chunk,), codec)` stores them (byte-identical: tested), holding one chunk of rows at a time in a
    local store: a feature shard's memory is then a batch of its pairs, not the whole shard (pair shards
    grow with the corpus). Up to one chunk it is `write_array` itself; beyond, the shard file is written
    chunk by chunk, its index and `zarr.json` at `close`. Other stores and codecs keep the rows and call
    `write_array` at `close`."""

    def __init__(self, store: Store, path: str, tail: tuple[int, ...], dtype, chunk: int, attrs: dict, codec):
        self.store, self.path, self.attrs, self.codec = store, path, attrs, codec
        self.chunk, self.rows, self._crc = chunk, 0, 0
        self._block = np.empty((chunk, *tail), dtype=dtype)  # the chunk being filled
        self._filled = 0
        self._file = None  # the shard file, once a second chunk begins
        self._encode, self._sizes, self._kept = None, [], None  # _kept: rows held for write_array

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self._block.dtype)
        # the values' CRC-32C (the checksum attribute, as array_checksum), extended a batch at a time
        self._crc = google_crc32c.extend(self._crc, self._little(rows))
        done = 0
        while done < rows.shape[0]:
            if self._filled == self.chunk:
                self._spill()
            if self._filled == 0 and rows.shape[0] - done > self.chunk:
                # a whole chunk with more rows after it leaves straight from the caller's rows: copying it
                # into the chunk buffer first was 6 % of a complex shard's CPU (2.3 GB per hour of pairs)
                self._emit(rows[done : done + self.chunk])
                done += self.chunk
                continue
            take = min(self.chunk - self._filled, rows.shape[0] - done)
            self._block[self._filled : self._filled + take] = rows[done : done + take]
            self._filled, done = self._filled + take, done + take
        self.rows += rows.shape[0]

    def _spill(self) -> None:
        self._emit(self._block)
        self._filled = 0

    def _emit(self, chunk_rows: np.ndarray) -> None:
        """A full chunk leaves memory: encoded into the shard file, or kept (copied) for write_array."""
        if self._file is None and self._kept is None:
            self._start()
        if self._kept is not None:
            self._kept.append(chunk_rows.copy())
        else:
            payload = memoryview(self._encode(self._little(chunk_rows))).cast("B")
            self._file.write(payload)
            self._sizes.append(len(payload))

    def _start(self) -> None:
        tail = self._block.shape[1:]
        if _is_local(self.store.root):
            probe = array_metadata(
                (2 * self.chunk, *tail),
                self._block.dtype,
                self._block.shape,
                (2 * self.chunk, *tail),
                self.codec,
                {},
            )
            self._encode = metadata_encoder(probe)
        if self._encode is None:
            self._kept = []
            return
        arrays = self.store._join("arrays.zarr")
        self._folder = fresh_array_folder(arrays, self.path)
        self._file = open(f"{self._folder}/{chunk_key(probe, len(self._block.shape), 0)}", "wb")  # noqa: SIM115

    @staticmethod
    def _little(block: np.ndarray) -> np.ndarray:
        return block.astype(block.dtype.newbyteorder("<"), copy=False).reshape(-1).view(np.uint8)

    def __enter__(self) -> ArrayWriter:
        return self

    def __exit__(self, kind, *exc) -> None:
        if kind is None:
            self.close()
        elif self._file is not None:  # failed: no zarr.json, so the folder reads as no array
            self._file.close()

    def close(self) -> None:
        last = self._block[: self._filled]
        if self._file is None:
            data = last if self._kept is None else np.concatenate([*self._kept, last])
            self.store.write_array(self.path, data, self.attrs, (self.chunk,), self.codec)
            return
        self._block[self._filled :] = 0  # zarr stores the edge chunk whole, padded with the fill value
        self._spill()
        self._file.write(shard_index_of_sizes(self._sizes))
        self._file.close()
        shape, count = (self.rows, *self._block.shape[1:]), len(self._sizes)
        attributes = {**self.attrs, CHECKSUM_ATTR: f"{self._crc:08x}"}
        metadata = array_metadata(
            shape,
            self._block.dtype,
            self._block.shape,
            (count * self.chunk, *shape[1:]),
            self.codec,
            attributes,
        )
        write_array_metadata(self._folder, metadata)
