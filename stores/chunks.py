"""Arrays of a local store written and read without zarr's event loop, in zarr's own format.

zarr-python runs every store operation as a coroutine on its event-loop thread: each array created or
opened is a round trip to that thread (milliseconds each: docs/BENCHMARKS.md), and the loop needs the GIL
that the shard threads computing features also need. A shard writes each array once (whole, or chunk by
chunk through `stores.arrays.ArrayWriter`) and reads whole arrays or
spans of them (`LocalChunks`), so for local stores this module does what zarr would: the
`zarr.json` document zarr would write (built by zarr's own metadata class from a template zarr created,
byte-identical: tests/stores/test_chunks.py), the chunks encoded by numcodecs exactly as zarr's codecs encode
them, one shard per array with zarr's shard index. Anything else (other codecs, object stores) goes through
zarr itself.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
import shutil
import threading
from collections.abc import Callable
from typing import Any

import google_crc32c
import numcodecs
import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import GroupMetadata
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.storage import MemoryStore

BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
NUMCODECS_TYPESIZE = tuple(int(p) for p in numcodecs.__version__.split(".")[:2]) >= (0, 16)
ZARR_JSON = "zarr.json"
# the array chunk keys `c.<i>.0.0` (files beside zarr.json), not `c/<i>/0/0`: no folder per chunk
CHUNK_KEY_ENCODING = {"name": "default", "separator": "."}

# zarr's shard index: per chunk (offset, nbytes) as little-endian uint64, then the CRC-32C of those bytes
# (its default index codecs, `bytes` + `crc32c`), at the end of the shard; empty chunks are (2**64-1) twice
EMPTY_CHUNK = np.uint64(2**64 - 1)


def inner_codecs(codecs) -> tuple[list, tuple | None | bool]:
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
    return shard_index_of_sizes([len(memoryview(p).cast("B")) for p in payloads])


def shard_index_of_sizes(stored_sizes: list[int]) -> bytes:
    """The index zarr appends to a shard of chunks of these stored sizes, in order."""
    sizes = np.array(stored_sizes, dtype="<u8")
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


def chunk_key(metadata, ndim: int, index: int) -> str:
    return metadata.encode_chunk_key((index,) + (0,) * (ndim - 1))


def read_file(path: str) -> bytes:
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
    (zarr's own chunk checksum, hardware-accelerated by google-crc32c and several times faster than sha256,
    which had been a noticeable share of a feature shard's CPU), or `sha256` (what stores written before
    2026-11-21 recorded)."""
    data = np.ascontiguousarray(data.astype(data.dtype.newbyteorder("<"), copy=False))
    raw = data.reshape(-1).view(np.uint8)  # the buffer itself: no copy
    if algorithm == "sha256":
        return hashlib.sha256(raw).hexdigest()
    return f"{google_crc32c.value(raw):08x}"


# ------------------------------------------------------------------ metadata
_TEMPLATES: dict[tuple, dict] = {}
_TEMPLATES_LOCK = threading.Lock()


def _template(dtype: np.dtype, tail: tuple[int, ...], codec, sharded: bool) -> dict:
    """The metadata document zarr writes for a small array of this dtype, trailing shape, compressor and
    sharding (created by zarr itself, in memory, once per process)."""
    codec_key = None if codec is None else json.dumps(codec.to_dict(), sort_keys=True, default=str)
    key = (dtype.str, tail, codec_key, sharded)
    with _TEMPLATES_LOCK:
        if key not in _TEMPLATES:
            array = zarr.create_array(
                MemoryStore(),
                shape=(2, *tail),
                chunks=(1, *tail),
                shards=(2, *tail) if sharded else None,
                dtype=dtype,
                fill_value=0,
                compressors=codec,
                chunk_key_encoding=CHUNK_KEY_ENCODING,
            )
            _TEMPLATES[key] = array.metadata.to_dict()
        return copy.deepcopy(_TEMPLATES[key])


def array_metadata(
    shape: tuple[int, ...],
    dtype,
    chunks: tuple[int, ...],
    shards: tuple[int, ...] | None,
    codec,
    attributes: dict,
) -> ArrayV3Metadata:
    """The metadata of `zarr.create_array(shape=, chunks=, shards=, dtype=, fill_value=0, compressors=codec,
    chunk_key_encoding=CHUNK_KEY_ENCODING, attributes=)`, without creating anything."""
    doc = _template(np.dtype(dtype), tuple(shape[1:]), codec, shards is not None)
    doc["shape"] = list(shape)
    doc["chunk_grid"]["configuration"]["chunk_shape"] = list(shards or chunks)
    if shards is not None:
        doc["codecs"][0]["configuration"]["chunk_shape"] = list(chunks)
    doc["attributes"] = attributes
    return ArrayV3Metadata.from_dict(doc)


def metadata_bytes(metadata: ArrayV3Metadata | GroupMetadata) -> bytes:
    """The `zarr.json` zarr writes for this metadata."""
    return metadata.to_buffer_dict(default_buffer_prototype())[ZARR_JSON].to_bytes()


def read_metadata(folder: str) -> ArrayV3Metadata | None:
    """The metadata of the local Zarr v3 array in `folder`; None when there is none (or it is a group)."""
    try:
        doc = json.loads(read_file(f"{folder}/{ZARR_JSON}"))
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("zarr_format") != 3 or doc.get("node_type") != "array":
        return None
    return ArrayV3Metadata.from_dict(doc)


def ensure_groups(arrays_folder: str, path: str) -> None:
    """The group documents of `path`'s parents under `arrays_folder` (the root group's folder), written
    where missing, as zarr's `create_array` writes them (checked on every write, as zarr does: a repair may
    have removed a group since)."""
    parts = path.strip("/").split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        parent = "/".join(parts[:depth])
        folder = f"{arrays_folder}/{parent}"
        os.makedirs(folder, exist_ok=True)
        try:
            with open(f"{folder}/{ZARR_JSON}", "xb") as handle:  # set if not exists, as zarr
                handle.write(metadata_bytes(GroupMetadata(zarr_format=3)))
        except FileExistsError:
            if read_metadata(folder) is not None:
                raise FileExistsError(f"An array exists at {parent!r}: it cannot hold {path!r}.") from None


# ------------------------------------------------------------------ whole arrays
def metadata_encoder(metadata: ArrayV3Metadata) -> Callable[[np.ndarray], Any] | None:
    """The chunk encoder of an array `encode_chunks` can write; None when zarr must write it."""
    codecs, sharded = inner_codecs(metadata.codecs)
    return chunk_encoder(codecs) if sharded is not False else None


def encode_chunks(metadata: ArrayV3Metadata, data: np.ndarray, encode) -> dict[str, list]:
    """{chunk key: its byte parts} of a new array (chunks whole along all axes but time), encoded as zarr
    encodes them, or with sharding all in the one shard, indexed as zarr indexes them. Equivalent to
    `array[:] = data` for the codecs of `chunk_encoder`, without zarr's per-chunk fill-and-copy and
    event-loop round trips, for less CPU per array (docs/BENCHMARKS.md)."""
    sharded = inner_codecs(metadata.codecs)[1]
    time_chunk = (sharded or metadata.chunk_grid.chunk_shape)[0]
    data = np.ascontiguousarray(data.astype(data.dtype.newbyteorder("<"), copy=False))
    payloads = []
    for start in range(0, data.shape[0], time_chunk):
        block = data[start : start + time_chunk]
        if block.shape[0] < time_chunk:  # zarr stores the edge chunk whole, padded with the fill value
            block = np.concatenate(
                [block, np.zeros((time_chunk - block.shape[0], *block.shape[1:]), block.dtype)]
            )
        payloads.append(encode(block.reshape(-1).view(np.uint8)))
    key = functools.partial(chunk_key, metadata, data.ndim)
    if sharded:
        return {key(0): [*payloads, shard_index(payloads)]}
    return {key(i): [p] for i, p in enumerate(payloads)}


def write_local_array(
    arrays_folder: str, path: str, metadata: ArrayV3Metadata, data: np.ndarray, encode
) -> None:
    """Write a whole array as zarr's `create_array(..., overwrite=True)` + `array[:] = data` would: the
    folder replaced, missing parent groups created, the chunks, then `zarr.json` last (a folder without it
    is no array, so a killed writer leaves nothing that reads as one)."""
    files = encode_chunks(metadata, data, encode)
    folder = fresh_array_folder(arrays_folder, path)
    for name, parts in files.items():
        with open(f"{folder}/{name}", "wb") as handle:
            handle.writelines(parts)
    write_array_metadata(folder, metadata)


def fresh_array_folder(arrays_folder: str, path: str) -> str:
    """The folder of the array at `path`, emptied (replaced if present), its parent groups created."""
    folder = f"{arrays_folder}/{path}"
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    ensure_groups(arrays_folder, path)
    os.makedirs(folder, exist_ok=True)
    return folder


def write_array_metadata(folder: str, metadata: ArrayV3Metadata) -> None:
    """`zarr.json`, written after the chunks: a folder without it is no array."""
    with open(f"{folder}/{ZARR_JSON}", "wb") as handle:
        handle.write(metadata_bytes(metadata))


def read_local_array(folder: str) -> np.ndarray | None:
    """A whole local array `LocalChunks` can read, decoded by numcodecs straight into the result, or for raw
    chunks read straight into it (no bytes object, no copy, several times faster than decoding LZ4); None
    for anything else, or any missing or damaged chunk (zarr then decides: it reads a
    missing chunk as the fill value). Spans of an array: `LocalChunks`."""
    chunks = LocalChunks.open(folder)
    if chunks is None:
        return None
    out = np.empty(chunks.shape, chunks.dtype)
    try:
        chunks.read(0, chunks.shape[0], out)
    except (FileNotFoundError, ValueError):
        return None
    return out


class LocalChunks:
    """A local array's chunks (whole along every axis but time, in one shard or in chunk files, codecs of
    `chunk_decoder`): `read(start, stop, out)` puts rows start..stop into `out` (C-contiguous), raw chunks
    read straight into it, others decoded (the last chunk decoded in part is kept: consecutive ranges share
    edge chunks). ValueError or FileNotFoundError for a missing or damaged chunk."""

    def __init__(self, folder: str, metadata: ArrayV3Metadata, codecs: list, time_chunk: int, sharded: bool):
        self.folder, self.metadata, self.time_chunk, self.sharded = folder, metadata, time_chunk, sharded
        self.shape = tuple(metadata.shape)
        self.dtype = metadata.data_type.to_native_dtype()
        self.raw = not _numcodecs_steps(codecs)
        self.decode = chunk_decoder(codecs)
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        self._index: np.ndarray | None = None
        self._cached: tuple[int, np.ndarray] | None = None

    @classmethod
    def open(cls, folder: str) -> LocalChunks | None:
        """None for what this module does not read (zarr then does)."""
        metadata = read_metadata(folder)
        if metadata is None:
            return None
        codecs, sharded = inner_codecs(metadata.codecs)
        shape, grid = metadata.shape, getattr(metadata.chunk_grid, "chunk_shape", None)
        chunk = sharded or grid
        if sharded is False or _numcodecs_steps(codecs) is None or not shape or chunk is None:
            return None
        if tuple(chunk[1:]) != tuple(shape[1:]) or (sharded and grid[0] < shape[0]):
            return None
        return cls(folder, metadata, codecs, chunk[0], bool(sharded))

    def _path(self, i: int) -> str:
        return f"{self.folder}/{chunk_key(self.metadata, len(self.shape), 0 if self.sharded else i)}"

    def _location(self, fd: int, i: int) -> tuple[int, int]:
        """(offset, stored bytes) of chunk i in its file."""
        if not self.sharded:
            return 0, os.fstat(fd).st_size
        if self._index is None:
            per_shard = self.metadata.chunk_grid.chunk_shape[0] // self.time_chunk
            size, tail = os.fstat(fd).st_size, per_shard * 16 + 4
            if size < tail:
                raise ValueError("shard shorter than its index")
            index = parse_shard_index(memoryview(os.pread(fd, tail, size - tail)), per_shard)
            if (index[: -(-self.shape[0] // self.time_chunk)] == EMPTY_CHUNK).any():
                raise ValueError("a chunk of the shard is empty")
            self._index = index
        offset, nbytes = self._index[i]
        return int(offset), int(nbytes)

    def read(self, start: int, stop: int, out: np.ndarray) -> None:
        chunk = self.time_chunk
        for i in range(start // chunk, -(-stop // chunk)):
            first, last = max(start, i * chunk), min(stop, (i + 1) * chunk)
            target = out[first - start : last - start]
            with open(self._path(i), "rb", buffering=0) as handle:
                offset, nbytes = self._location(handle.fileno(), i)
                if self.raw:
                    if nbytes != chunk * self.row_bytes:
                        raise ValueError("a chunk of the wrong size")
                    _read_exact(handle.fileno(), target, offset + (first - i * chunk) * self.row_bytes)
                else:
                    self._decoded(handle.fileno(), i, offset, nbytes, first - i * chunk, target)

    def _decoded(self, fd: int, i: int, offset: int, nbytes: int, row: int, target: np.ndarray) -> None:
        if row == 0 and target.shape[0] == self.time_chunk:  # a whole chunk: decoded straight into `out`
            self.decode(_read_bytes(fd, offset, nbytes), target)
            return
        if self._cached is None or self._cached[0] != i:
            block = (
                self._cached[1] if self._cached else np.empty((self.time_chunk, *self.shape[1:]), self.dtype)
            )
            self.decode(_read_bytes(fd, offset, nbytes), block)
            self._cached = (i, block)
        target[...] = self._cached[1][row : row + target.shape[0]]


def _read_bytes(fd: int, offset: int, nbytes: int) -> bytes:
    payload = os.pread(fd, nbytes, offset)
    if len(payload) != nbytes:
        raise ValueError("a chunk shorter than its size")
    return payload


def _read_exact(fd: int, target: np.ndarray, offset: int) -> None:
    view, done = memoryview(target.reshape(-1).view(np.uint8)), 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise ValueError("a chunk shorter than its size")
        done += got
