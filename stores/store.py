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
import functools
import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable
from functools import cached_property
from typing import Any

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

from stores.config import parse_name, parse_positive_int
from stores.errors import ConfigError, NotFoundError
from stores.schema import rows_to_table, table_schema

FORMAT_VERSION = 1
DEFAULT_SAMPLE_RATE = 16000
STAGING = "_staging"
# the attribute holding an array's values checksum (`verify` also accepts the older "sha256")
CHECKSUM_ATTR = "crc32c"
# Float audio barely compresses (zstd: 1.05x); byte-shuffled LZ4 gets 1.09x and reads 4x faster than zarr's
# default zstd on the demo audio, which matters for training reads.
AUDIO_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
NUMCODECS_TYPESIZE = tuple(int(p) for p in numcodecs.__version__.split(".")[:2]) >= (0, 16)


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
        """Write one part of a table atomically (staging file, then a move); same part name = replace."""
        parse_name(part, "table part name")
        table = rows if isinstance(rows, pa.Table) else rows_to_table(name, rows)
        table = table.cast(table_schema(name))
        path = self.table_path(name)
        staging = f"{path}/{STAGING}/{part}.{uuid.uuid4().hex}.parquet"
        final = f"{path}/{part}.parquet"
        self.fs.makedirs(f"{path}/{STAGING}", exist_ok=True)
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
        """One shard's utterances, concatenated along time, as a float32 array (replaced if present)."""
        self.write_array(path, samples.astype(np.float32, copy=False), attrs, (chunk,), AUDIO_CODEC)

    def write_array(self, path: str, data: np.ndarray, attrs: dict, chunks: tuple[int, ...], codec) -> None:
        """Write one task's whole array (replaced if present); `chunks` gives the leading (time) chunk
        length, the other axes are whole. An array of more than one chunk is one zarr shard (one file or
        object, its chunks inside, each still read on its own): creating a file costs ~1 ms of system
        time on the test machine's ext4 (more right after files were deleted: 14 % of a magnitude feature
        run's CPU went to inode allocation), and object stores charge per request."""
        time_chunk = min(chunks[0], max(1, data.shape[0]))
        count = -(-data.shape[0] // time_chunk)
        array = self.arrays.create_array(
            path,
            shape=data.shape,
            chunks=(time_chunk, *data.shape[1:]),
            shards=(count * time_chunk, *data.shape[1:]) if count > 1 else None,
            dtype=data.dtype,
            overwrite=True,
            fill_value=0,
            compressors=codec,
            # given at creation: `attrs.update` afterwards rewrites the metadata once per key (measured
            # 1.4 s for 44 arrays of 10 keys). The checksum of what was written is what `verify` checks.
            attributes={**attrs, CHECKSUM_ATTR: array_checksum(data)},
            # every chunk is written, even all-zero ones, so a missing chunk always means damage
            config={"write_empty_chunks": True},
            # chunk keys `c.<i>.0.0`, files beside zarr.json, instead of `c/<i>/0/0`: no folders per chunk
            # (creating one costs about 1 ms on the test machine's ext4, like a file)
            chunk_key_encoding={"name": "default", "separator": "."},
        )
        codecs, sharded = _inner_codecs(array.metadata.codecs)
        encode = chunk_encoder(codecs) if sharded is not False else None
        if encode is None:
            array[:] = data  # codecs this module does not encode itself: zarr's own path
        else:
            self._write_chunks(path, array.metadata, data, time_chunk, encode, sharded)

    def _write_chunks(self, path: str, metadata, data: np.ndarray, time_chunk: int, encode, sharded) -> None:
        """Every chunk of a new array (chunks whole along all axes but time), encoded as zarr encodes it,
        stored under zarr's chunk key, or with `sharded` all in the one shard, indexed as zarr indexes
        them. Equivalent to `array[:] = data` for the codecs of `chunk_encoder`, without zarr's per-chunk
        fill-and-copy and event-loop round trips: measured 1.5-2x less CPU per array (and less time holding
        the GIL, which the other shard threads wait for)."""
        data = np.ascontiguousarray(data.astype(data.dtype.newbyteorder("<"), copy=False))
        payloads = []
        for start in range(0, data.shape[0], time_chunk):
            block = data[start : start + time_chunk]
            if block.shape[0] < time_chunk:  # zarr stores the edge chunk whole, padded with the fill value
                block = np.concatenate(
                    [block, np.zeros((time_chunk - block.shape[0], *block.shape[1:]), block.dtype)]
                )
            payloads.append(encode(block.reshape(-1).view(np.uint8)))
        if sharded:
            payloads = [*payloads, shard_index(payloads)]
        base, key = self._join("arrays.zarr", path), functools.partial(_chunk_key, metadata, data.ndim)
        files = {key(0): payloads} if sharded else {key(i): [p] for i, p in enumerate(payloads)}
        if _is_local(self.root):
            os.makedirs(base, exist_ok=True)
            for key, parts in files.items():
                with open(f"{base}/{key}", "wb") as handle:
                    handle.writelines(parts)
        else:
            for key, parts in files.items():
                self.fs.pipe_file(f"{base}/{key}", b"".join(bytes(p) for p in parts))

    def read_array(self, path: str) -> np.ndarray:
        """A whole array's values. Arrays this module wrote (chunks whole along every axis but time, in one
        shard or in chunk files, codecs of `chunk_decoder`) in a local store are read file by file and
        decoded by numcodecs straight into the result: measured 0.27 s against zarr's 0.48 s for 445 MB of
        LZ4 audio, and no round trips through zarr's event-loop thread, which the other shard threads wait
        on. Anything else (and any missing chunk, which zarr reads as the fill value) goes through zarr."""
        array = self.arrays[path]
        codecs, sharded = _inner_codecs(array.metadata.codecs)
        decode = chunk_decoder(codecs) if sharded is not False else None
        chunk = sharded or array.chunks  # a shard's inner chunks, else the array's
        if (
            decode is None
            or not array.ndim
            or not _is_local(self.root)
            or tuple(chunk[1:]) != tuple(array.shape[1:])
            or (sharded and array.shards[0] < array.shape[0])
        ):
            return np.asarray(array[:])
        try:
            payloads = self._read_payloads(path, array, chunk[0], bool(sharded))
        except (FileNotFoundError, ValueError):  # missing, or not a shard we can index: zarr decides
            return np.asarray(array[:])
        out = np.empty(array.shape, dtype=array.dtype)
        block = np.empty((chunk[0], *array.shape[1:]), dtype=array.dtype)
        for start, payload in zip(range(0, array.shape[0], chunk[0]), payloads, strict=True):
            target = out[start : start + chunk[0]]
            whole = target.shape[0] == chunk[0]  # the edge chunk is stored padded to a whole chunk
            decode(payload, target if whole else block)
            if not whole:
                target[...] = block[: target.shape[0]]
        return out

    def _read_payloads(self, path: str, array, time_chunk: int, sharded: bool) -> list:
        base, count = self._join("arrays.zarr", path), -(-array.shape[0] // time_chunk)
        key = functools.partial(_chunk_key, array.metadata, array.ndim)
        if not sharded:
            return [_read_file(f"{base}/{key(i)}") for i in range(count)]
        shard = memoryview(_read_file(f"{base}/{key(0)}"))
        index = parse_shard_index(shard, array.shards[0] // time_chunk)
        if (index[:count] == EMPTY_CHUNK).any():
            raise ValueError("a chunk of the shard is empty")
        return [shard[offset : offset + size] for offset, size in index[:count]]

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


# zarr's shard index: per chunk (offset, nbytes) as little-endian uint64, then the CRC-32C of those bytes
# (its default index codecs, `bytes` + `crc32c`), at the end of the shard; empty chunks are (2**64-1) twice
EMPTY_CHUNK = np.uint64(2**64 - 1)


def _inner_codecs(codecs) -> tuple[list, tuple | None | bool]:
    """(the codecs of each stored chunk, the inner chunk shape when the array is sharded as
    `write_array` shards, None when not sharded, False for a sharding this module does not write)."""
    if len(codecs) != 1 or codecs[0].to_dict()["name"] != "sharding_indexed":
        return list(codecs), None
    spec = codecs[0].to_dict()["configuration"]
    index = [c["name"] for c in spec["index_codecs"]]
    if spec["index_location"] != "end" or index != ["bytes", "crc32c"]:
        return [], False
    return list(codecs[0].codecs), tuple(spec["chunk_shape"])


def shard_index(payloads: list) -> bytes:
    """The index zarr appends to a shard holding `payloads` (the encoded chunks, in order)."""
    sizes = np.array([len(memoryview(p).cast("B")) for p in payloads], dtype="<u8")
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype("<u8")
    raw = np.stack([offsets, sizes], axis=1).tobytes()
    return raw + np.uint32(google_crc32c.value(raw)).astype("<u4").tobytes()


def parse_shard_index(shard: memoryview, count: int) -> np.ndarray:
    """(count, 2) [offset, nbytes] of a shard's chunks; ValueError if the index does not check out."""
    size = count * 16
    if len(shard) < size + 4:
        raise ValueError("shard shorter than its index")
    raw = shard[len(shard) - size - 4 : len(shard) - 4]
    if google_crc32c.value(bytes(raw)) != int(np.frombuffer(shard[len(shard) - 4 :], dtype="<u4")[0]):
        raise ValueError("shard index checksum mismatch")
    return np.frombuffer(raw, dtype="<u8").reshape(count, 2)


def _chunk_key(metadata, ndim: int, index: int) -> str:
    return metadata.encode_chunk_key((index,) + (0,) * (ndim - 1))


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _numcodecs_steps(codecs) -> list | None:
    """The numcodecs equivalents, in encoding order, of an array's (evolved) zarr codecs: little-endian
    `bytes`, then `blosc` and/or `zstd` with zarr's parameters. None for any other codec."""
    steps = []
    for codec in codecs:
        spec = codec.to_dict()
        name, conf = spec["name"], spec.get("configuration") or {}
        if name == "bytes" and not steps and conf.get("endian", "little") == "little":
            continue
        if name == "blosc":
            config = {k: conf[k] for k in ("cname", "clevel", "blocksize")}
            config["shuffle"] = BLOSC_SHUFFLE[conf["shuffle"]]
            if NUMCODECS_TYPESIZE:  # as zarr: numcodecs >= 0.16 takes the typesize
                config["typesize"] = conf["typesize"]
            steps.append(numcodecs.Blosc.from_config(config))
        elif name == "zstd":
            steps.append(numcodecs.Zstd.from_config({"level": conf["level"], "checksum": conf["checksum"]}))
        else:
            return None
    return steps


def chunk_encoder(codecs) -> Callable[[np.ndarray], Any] | None:
    """bytes -> stored chunk bytes for an array's (evolved) zarr codecs, exactly as zarr's codecs encode
    them (see `_numcodecs_steps`). None for any other codec (zarr then writes the array itself)."""
    steps = _numcodecs_steps(codecs)
    if steps is None:
        return None

    def encode(raw: np.ndarray):
        for step in steps:
            raw = step.encode(raw)
        return raw

    return encode


def chunk_decoder(codecs) -> Callable[[bytes, np.ndarray], None] | None:
    """(stored chunk bytes, out array) -> None, decoding into `out` (C-contiguous, the chunk's shape) for
    the codecs `chunk_encoder` writes; None for any other codec."""
    steps = _numcodecs_steps(codecs)
    if steps is None:
        return None

    def decode(payload: bytes, out: np.ndarray) -> None:
        raw = out.reshape(-1).view(np.uint8)
        for step in reversed(steps[1:]):
            payload = step.decode(payload)
        if steps:
            steps[0].decode(payload, out=raw)
        else:
            raw[:] = np.frombuffer(payload, dtype=np.uint8)

    return decode


def array_checksum(data: np.ndarray, algorithm: str = "crc32c") -> str:
    """Checksum of an array's values (C order, little-endian), independent of chunking and codec: CRC-32C
    (zarr's own chunk checksum, hardware-accelerated by google-crc32c: 13 GB/s against sha256's 1.5 GB/s on
    the test machine, where hashing was 10 % of a complex-feature shard's CPU), or `sha256` (what stores
    written before 2026-11-21 recorded)."""
    data = np.ascontiguousarray(data.astype(data.dtype.newbyteorder("<"), copy=False))
    raw = data.reshape(-1).view(np.uint8)  # the buffer itself: no copy
    if algorithm == "sha256":
        return hashlib.sha256(raw).hexdigest()
    return f"{google_crc32c.value(raw):08x}"


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
