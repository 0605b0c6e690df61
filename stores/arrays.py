"""One storage-backend interface for the store's arrays, with two implementations chosen once per store.

- `DirectArrays` (local folders): writes and reads zarr's own format without zarr's event loop
  (`stores.chunks`): zarr runs every store operation as a coroutine on its I/O thread, so each array
  created or opened is a round trip to that thread, holding the GIL that the shard threads computing
  features need. Byte-identical to zarr's output (tested). What it cannot encode or read (other codecs,
  damaged chunks) it hands to zarr.
- `ZarrArrays` (object stores, and any store opened with `arrays="zarr"`): zarr's own API, with the chunks of
  a new array encoded once by numcodecs and written as whole objects.

`open_store` picks `DirectArrays` for local folders unless told otherwise (`arrays="zarr"`, or the
environment variable `SPECSTORE_ARRAYS=zarr`, which the test suite uses to run the store and flow tests
through zarr's path too).
"""

from __future__ import annotations

import os

import google_crc32c
import numpy as np
import zarr

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
from stores.errors import ConfigError

# the attribute holding an array's values checksum (`verify` also accepts the older "sha256")
CHECKSUM_ATTR = "crc32c"
BACKENDS = ("direct", "zarr")
BACKEND_ENV = "SPECSTORE_ARRAYS"


def parse_backend(name: str | None, local: bool) -> str:
    """The backend for a store: `name`, else $SPECSTORE_ARRAYS, else direct for local folders."""
    name = name or os.environ.get(BACKEND_ENV) or ("direct" if local else "zarr")
    if name not in BACKENDS:
        raise ConfigError(f"Expected arrays backend {' or '.join(BACKENDS)}. Got {name!r} instead.")
    if name == "direct" and not local:
        raise ConfigError("Expected a local folder for the direct arrays backend. Got a URL instead.")
    return name


def _shape_of_chunks(data: np.ndarray, chunks: tuple[int, ...]) -> tuple[tuple, tuple | None]:
    """(inner chunk shape, shard shape or None): whole along every axis but time; one shard when there is
    more than one chunk (one file or object per array)."""
    time_chunk = min(chunks[0], max(1, data.shape[0]))
    count = -(-data.shape[0] // time_chunk)
    inner = (time_chunk, *data.shape[1:])
    return inner, ((count * time_chunk, *data.shape[1:]) if count > 1 else None)


class ZarrArrays:
    """The arrays of a store through zarr's API (any fsspec URL)."""

    name = "zarr"

    def __init__(self, store) -> None:
        self.store = store

    @property
    def group(self) -> zarr.Group:
        return self.store.arrays

    def write(self, path: str, data: np.ndarray, attrs: dict, chunks: tuple[int, ...], codec) -> None:
        """One task's whole array, replaced if present, its checksum an attribute. Every chunk is written,
        even all-zero ones, so a missing chunk always means damage."""
        inner, shards = _shape_of_chunks(data, chunks)
        array = self.group.create_array(
            path,
            shape=data.shape,
            chunks=inner,
            shards=shards,
            dtype=data.dtype,
            overwrite=True,
            fill_value=0,
            compressors=codec,
            # given at creation: `attrs.update` afterwards rewrites the metadata once per key
            attributes={**attrs, CHECKSUM_ATTR: array_checksum(data)},
            config={"write_empty_chunks": True},
            chunk_key_encoding=CHUNK_KEY_ENCODING,
        )
        encode = metadata_encoder(array.metadata)
        if encode is None:
            array[:] = data  # codecs numcodecs does not encode here: zarr writes them itself
            return
        # each chunk (or the one shard) encoded once and written as one object: zarr's write path fills
        # and copies every chunk first
        base = self.store.array_location(path)
        for key, parts in encode_chunks(array.metadata, data, encode).items():
            self.store.fs.pipe_file(f"{base}/{key}", b"".join(bytes(p) for p in parts))

    def writer(self, path: str, tail: tuple[int, ...], dtype, chunk: int, attrs: dict, codec):
        return BufferedArrayWriter(self, path, tail, dtype, chunk, attrs, codec)

    def read(self, path: str) -> np.ndarray:
        return np.asarray(self.group[path][:])

    def read_rows(self, path: str, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.group[path][start:stop])

    def spans(self, path: str) -> LocalChunks | None:
        """A reader of ranges without zarr (None: read ranges with `read_rows`)."""
        return None

    def exists(self, path: str) -> bool:
        return path in self.group and isinstance(self.group[path], zarr.Array)

    def attrs(self, path: str) -> dict:
        return dict(self.group[path].attrs)


class DirectArrays(ZarrArrays):
    """The arrays of a local store written and read as files in zarr's format (module docstring); what it
    cannot encode or decode goes through `ZarrArrays`."""

    name = "direct"

    def write(self, path: str, data: np.ndarray, attrs: dict, chunks: tuple[int, ...], codec) -> None:
        inner, shards = _shape_of_chunks(data, chunks)
        attributes = {**attrs, CHECKSUM_ATTR: array_checksum(data)}
        metadata = array_metadata(data.shape, data.dtype, inner, shards, codec, attributes)
        encode = metadata_encoder(metadata)
        if encode is None:
            super().write(path, data, attrs, chunks, codec)
            return
        write_local_array(self.store.array_location(), path, metadata, data, encode)

    def writer(self, path: str, tail: tuple[int, ...], dtype, chunk: int, attrs: dict, codec):
        return ArrayWriter(self, path, tail, dtype, chunk, attrs, codec)

    def read(self, path: str) -> np.ndarray:
        """Decoded by numcodecs straight into the result (raw chunks read straight into it); any missing
        or damaged chunk goes to zarr, which decides (it reads a missing chunk as the fill value)."""
        values = read_local_array(self.store.array_location(path))
        return super().read(path) if values is None else values

    def read_rows(self, path: str, start: int, stop: int) -> np.ndarray:
        chunks = self.spans(path)
        if chunks is not None:
            out = np.empty((stop - start, *chunks.shape[1:]), chunks.dtype)
            try:
                chunks.read(start, stop, out)
                return out
            except (FileNotFoundError, ValueError):
                pass
        return super().read_rows(path, start, stop)

    def spans(self, path: str) -> LocalChunks | None:
        return LocalChunks.open(self.store.array_location(path))

    def exists(self, path: str) -> bool:
        return read_metadata(self.store.array_location(path)) is not None

    def attrs(self, path: str) -> dict:
        metadata = read_metadata(self.store.array_location(path))
        return super().attrs(path) if metadata is None else dict(metadata.attributes)


class BufferedArrayWriter:
    """Rows appended in order (`append`, then `close`), kept and written whole by the backend at `close`."""

    def __init__(self, backend, path: str, tail: tuple[int, ...], dtype, chunk: int, attrs: dict, codec):
        self.backend, self.path, self.attrs, self.codec = backend, path, attrs, codec
        self.chunk, self.tail, self.dtype = chunk, tuple(tail), np.dtype(dtype)
        self.rows, self._kept = 0, []

    def append(self, rows: np.ndarray) -> None:
        self._kept.append(np.array(rows, dtype=self.dtype))  # a copy: callers reuse their buffers
        self.rows += rows.shape[0]

    def __enter__(self):
        return self

    def __exit__(self, kind, *exc) -> None:
        if kind is None:
            self.close()

    def close(self) -> None:
        data = np.concatenate(self._kept) if self._kept else np.empty((0, *self.tail), self.dtype)
        self.backend.write(self.path, data, self.attrs, (self.chunk,), self.codec)


class ArrayWriter(BufferedArrayWriter):
    """Rows appended in order, stored exactly as `DirectArrays.write(path, all rows, attrs, (chunk,), codec)`
    stores them (byte-identical: tested), holding one chunk of rows at a time: a feature shard's memory is
    then a batch of its pairs, not the whole shard (pair shards grow with the corpus). Up to one chunk it is
    `write` itself; beyond, the shard file is written chunk by chunk, its index and `zarr.json` at `close`.
    Codecs the direct path cannot encode keep the rows and write them whole at `close`."""

    def __init__(self, backend, path: str, tail: tuple[int, ...], dtype, chunk: int, attrs: dict, codec):
        super().__init__(backend, path, tail, dtype, chunk, attrs, codec)
        self._crc = 0
        self._block = np.empty((chunk, *tail), dtype=dtype)  # the chunk being filled
        self._filled = 0
        self._file = None  # the shard file, once a second chunk begins
        self._encode, self._sizes, self._kept = None, [], None  # _kept: rows held for `write`

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self._block.dtype)
        # the values' CRC-32C (the checksum attribute, as array_checksum), extended a batch at a time
        self._crc = google_crc32c.extend(self._crc, self._little(rows))
        done = 0
        while done < rows.shape[0]:
            if self._filled == self.chunk:
                self._emit(self._block)
                self._filled = 0
            if self._filled == 0 and rows.shape[0] - done > self.chunk:
                # a whole chunk with more rows after it leaves straight from the caller's rows, without
                # a copy into the chunk buffer
                self._emit(rows[done : done + self.chunk])
                done += self.chunk
                continue
            take = min(self.chunk - self._filled, rows.shape[0] - done)
            self._block[self._filled : self._filled + take] = rows[done : done + take]
            self._filled, done = self._filled + take, done + take
        self.rows += rows.shape[0]

    def _emit(self, chunk_rows: np.ndarray) -> None:
        """A full chunk leaves memory: encoded into the shard file, or kept (copied) for `write`."""
        if self._file is None and self._kept is None:
            self._start()
        if self._kept is not None:
            self._kept.append(chunk_rows.copy())
        else:
            payload = memoryview(self._encode(self._little(chunk_rows))).cast("B")
            self._file.write(payload)
            self._sizes.append(len(payload))

    def _metadata(self, shape: tuple[int, ...], shard_rows: int, attributes: dict):
        return array_metadata(
            shape, self._block.dtype, self._block.shape, (shard_rows, *shape[1:]), self.codec, attributes
        )

    def _start(self) -> None:
        tail = self._block.shape[1:]
        self._encode = metadata_encoder(self._metadata((2 * self.chunk, *tail), 2 * self.chunk, {}))
        if self._encode is None:
            self._kept = []
            return
        self._folder = fresh_array_folder(self.backend.store.array_location(), self.path)
        probe = self._metadata((2 * self.chunk, *tail), 2 * self.chunk, {})
        self._file = open(f"{self._folder}/{chunk_key(probe, len(self._block.shape), 0)}", "wb")  # noqa: SIM115

    @staticmethod
    def _little(block: np.ndarray) -> np.ndarray:
        return block.astype(block.dtype.newbyteorder("<"), copy=False).reshape(-1).view(np.uint8)

    def __exit__(self, kind, *exc) -> None:
        if kind is None:
            self.close()
        elif self._file is not None:  # failed: no zarr.json, so the folder reads as no array
            self._file.close()

    def close(self) -> None:
        last = self._block[: self._filled]
        if self._file is None:
            data = last if self._kept is None else np.concatenate([*self._kept, last])
            self.backend.write(self.path, data, self.attrs, (self.chunk,), self.codec)
            return
        self._block[self._filled :] = 0  # zarr stores the edge chunk whole, padded with the fill value
        self._emit(self._block)
        self._file.write(shard_index_of_sizes(self._sizes))
        self._file.close()
        shape, count = (self.rows, *self._block.shape[1:]), len(self._sizes)
        attributes = {**self.attrs, CHECKSUM_ATTR: f"{self._crc:08x}"}
        write_array_metadata(self._folder, self._metadata(shape, count * self.chunk, attributes))
