import os

import numpy as np
import pytest
from zarr.codecs import BloscCodec

from pipelines.featurize import CODECS
from stores import open_store
from stores.chunks import array_checksum, ensure_groups, read_local_array


def _chunk_files(st, path):
    prefix = f"{st.path}/arrays.zarr/{path}/"
    return {p[len(prefix) :]: st.fs.cat_file(p) for p in st.fs.find(prefix) if not p.endswith("zarr.json")}


@pytest.mark.parametrize("root", ["local", "memory://specstore-chunks-{}-{}"])
@pytest.mark.parametrize(
    "dtype, shape, chunk, codec",
    [
        ("float32", (1000, 3, 41), 96, "lz4"),  # edge chunk padded
        (">f4", (300, 2, 17), 100, "lz4"),  # big-endian values are stored little-endian
        ("float16", (333, 257), 50, "zstd"),
        ("uint8", (90, 257), 40, "blosc-zstd"),
        ("float32", (70, 5), 7, "none"),
        ("float32", (1000, 3, 41), 96, "none"),  # raw, edge chunk padded
        (">f4", (300, 2, 17), 100, "none"),
        ("float32", (0, 5), 7, "lz4"),
        ("float32", (5000,), 1024, "lz4"),
    ],
)
def test_chunks_written_directly_equal_zarrs_own(tmp_path, root, dtype, shape, chunk, codec):
    url = str(tmp_path / "s") if root == "local" else root.format(os.getpid(), tmp_path.name)
    st = open_store(url, arrays="direct" if root == "local" else None)  # this module tests the direct path
    rng = np.random.default_rng(0)
    data = (rng.standard_normal(shape) * 50).astype(dtype)
    st.write_array("x/fast", data, {"k": 1}, (chunk,), CODECS[codec]())
    array = st.arrays.create_array(
        "x/zarr", shape=data.shape, chunks=st.arrays["x/fast"].chunks, shards=st.arrays["x/fast"].shards,
        dtype=data.dtype, fill_value=0, attributes={"k": 1, "crc32c": array_checksum(data)},
        compressors=CODECS[codec](), config={"write_empty_chunks": True},
        chunk_key_encoding={"name": "default", "separator": "."},
    )  # fmt: skip
    array[:] = data
    fast, ref = _chunk_files(st, "x/fast"), _chunk_files(st, "x/zarr")
    assert fast == ref and len(ref) == (1 if shape[0] > chunk else -(-shape[0] // chunk))  # one shard
    metadata = f"{st.path}/arrays.zarr/x/{{}}/zarr.json"
    assert st.fs.cat_file(metadata.format("fast")) == st.fs.cat_file(metadata.format("zarr"))  # zarr.json too
    np.testing.assert_array_equal(st.arrays["x/fast"][:], data)
    assert st.arrays["x/fast"].attrs["crc32c"] == array_checksum(data)
    for name in ("x/fast", "x/zarr"):  # our chunk decoding reads what either wrote
        read = st.read_array(name)
        assert read.dtype.str[1:] == data.dtype.str[1:] and read.shape == data.shape
        np.testing.assert_array_equal(read, data)


def test_read_array_of_a_damaged_array_reads_as_zarr_does(tmp_path):
    st = open_store(tmp_path / "s", arrays="direct")
    data = np.arange(40, dtype=np.float32).reshape(20, 2)
    st.write_array("x/a", data, {}, (8,), BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"))
    shard = f"{st.path}/arrays.zarr/x/a/c.0.0"
    assert st.fs.find(f"{st.path}/arrays.zarr/x/a") == [shard, f"{st.path}/arrays.zarr/x/a/zarr.json"]
    np.testing.assert_array_equal(st.read_array("x/a"), data)
    st.fs.pipe_file(shard, st.fs.cat_file(shard)[:-1] + b"\0")  # the index's checksum no longer checks out
    with pytest.raises(Exception):  # noqa: B017  (zarr's own error, whatever it is)
        st.arrays["x/a"][:]
    with pytest.raises(Exception):  # noqa: B017
        st.read_array("x/a")
    st.fs.rm(shard)  # zarr reads a missing shard as the fill value
    np.testing.assert_array_equal(st.read_array("x/a"), st.arrays["x/a"][:])
    assert (st.read_array("x/a") == 0).all()


def test_parent_groups_are_zarrs_own(tmp_path):
    st, ref = open_store(tmp_path / "a", arrays="direct"), open_store(tmp_path / "b", arrays="direct")
    data = np.ones((3, 4), np.float32)
    st.write_array("p/q/r", data, {}, (2,), CODECS["lz4"]())
    ref.arrays.create_array("p/q/r", shape=data.shape, chunks=(2, 4), dtype=data.dtype)
    for group in ("p", "p/q"):
        assert (tmp_path / "a/arrays.zarr" / group / "zarr.json").read_bytes() == (
            tmp_path / "b/arrays.zarr" / group / "zarr.json"
        ).read_bytes()
    assert sorted(st.arrays["p"].group_keys()) == ["q"] and list(st.arrays["p/q"].array_keys()) == ["r"]


def test_an_array_cannot_hold_another(tmp_path):
    st = open_store(tmp_path / "s", arrays="direct")
    st.write_array("p/a", np.ones((3, 4), np.float32), {}, (2,), CODECS["lz4"]())
    with pytest.raises(FileExistsError, match="An array exists at 'p/a'"):
        ensure_groups(f"{st.path}/arrays.zarr", "p/a/b")


def test_rewriting_an_array_replaces_its_folder(tmp_path):
    st = open_store(tmp_path / "s", arrays="direct")
    st.write_array("x/a", np.arange(12, dtype=np.float32).reshape(6, 2), {}, (2,), CODECS["zstd"]())
    stale = tmp_path / "s/arrays.zarr/x/a/c.7.0"
    stale.write_bytes(b"left by an older layout")
    data = np.full((3, 2), 5, np.float32)
    st.write_array("x/a", data, {}, (8,), CODECS["lz4"]())
    assert not stale.exists() and sorted(os.listdir(tmp_path / "s/arrays.zarr/x/a")) == ["c.0.0", "zarr.json"]
    np.testing.assert_array_equal(st.read_array("x/a"), data)
    np.testing.assert_array_equal(st.arrays["x/a"][:], data)


def test_read_local_array_declines_what_it_cannot_decode(tmp_path):
    st = open_store(tmp_path / "s", arrays="direct")
    st.write_array("x/a", np.ones((4, 2), np.float32), {}, (2,), CODECS["lz4"]())
    assert read_local_array(f"{st.path}/arrays.zarr/x") is None  # a group
    assert read_local_array(f"{st.path}/arrays.zarr/missing") is None
    st.arrays.create_array("x/b", shape=(4, 2), chunks=(2, 1), dtype="float32")[:] = 1  # split along bins
    assert read_local_array(f"{st.path}/arrays.zarr/x/b") is None
    np.testing.assert_array_equal(st.read_array("x/b"), np.ones((4, 2)))  # zarr reads it


def test_raw_chunks_are_read_into_the_callers_memory_and_damage_is_declined(tmp_path):
    st = open_store(tmp_path / "s", arrays="direct")
    data = np.arange(3000, dtype=np.float32).reshape(1000, 3)
    st.write_array("x/a", data, {}, (96,), None)
    memory = np.empty(4000, np.float32)
    read = memory[:3000].reshape(1000, 3)
    st.span_reader("x/a").read(0, 1000, read)
    assert np.shares_memory(read, memory)
    np.testing.assert_array_equal(read, data)
    old = st.arrays.create_array(  # the older layout: one file per chunk, the edge chunk padded
        "x/old", shape=data.shape, chunks=(96, 3), dtype="float32", compressors=None, fill_value=0,
        chunk_key_encoding={"name": "default", "separator": "."},
    )  # fmt: skip
    old[:] = data
    np.testing.assert_array_equal(read_local_array(f"{st.path}/arrays.zarr/x/old"), data)
    edge = f"{st.path}/arrays.zarr/x/old/c.10.0"
    st.fs.pipe_file(edge, st.fs.cat_file(edge)[:-4])  # a chunk file of the wrong size
    assert read_local_array(f"{st.path}/arrays.zarr/x/old") is None
    shard = f"{st.path}/arrays.zarr/x/a/c.0.0"
    st.fs.pipe_file(shard, st.fs.cat_file(shard)[:-100])  # truncated: its index no longer checks out
    assert read_local_array(f"{st.path}/arrays.zarr/x/a") is None


@pytest.mark.parametrize("root", ["local", "memory://specstore-writer-{}-{}"])
@pytest.mark.parametrize(
    "rows, chunk, batches, codec",
    [
        (1000, 96, [1, 95, 200, 704], "lz4"),  # edge chunk padded, batches across chunk boundaries
        (192, 96, [96, 96], "none"),  # exactly two chunks
        (96, 96, [50, 46], "lz4"),  # exactly one chunk: write_array itself
        (40, 96, [40], "zstd"),  # less than a chunk
        (0, 8, [], "lz4"),
        (333, 50, [333], "none"),
        (97, 96, [97], "lz4"),  # one whole chunk straight from the rows, one row through the buffer
        (500, 96, [10, 300, 190], "none"),
    ],
)
def test_array_writer_stores_what_write_array_stores(tmp_path, root, rows, chunk, batches, codec):
    url = str(tmp_path / "s") if root == "local" else root.format(os.getpid(), tmp_path.name)
    st = open_store(url, arrays="direct" if root == "local" else None)  # this module tests the direct path
    data = (np.random.default_rng(0).standard_normal((rows, 3, 7)) * 50).astype(np.float32)
    st.write_array("x/whole", data, {"k": 1}, (chunk,), CODECS[codec]())
    with st.array_writer("x/streamed", (3, 7), np.float32, chunk, {"k": 1}, CODECS[codec]()) as writer:
        start, reused = 0, np.empty_like(data)  # a caller's memory, overwritten after each append
        for size in batches:
            reused[:size] = data[start : start + size]
            writer.append(reused[:size])
            reused[:size] = np.nan
            start += size
    assert writer.rows == rows
    assert _chunk_files(st, "x/streamed") == _chunk_files(st, "x/whole")
    metadata = f"{st.path}/arrays.zarr/x/{{}}/zarr.json"
    assert st.fs.cat_file(metadata.format("streamed")) == st.fs.cat_file(metadata.format("whole"))
    np.testing.assert_array_equal(st.read_array("x/streamed"), data)


def test_a_failed_array_writer_leaves_no_array(tmp_path):
    st = open_store(tmp_path / "s", arrays="direct")
    with pytest.raises(RuntimeError), st.array_writer("x/a", (2,), np.float32, 4, {}, None) as writer:
        writer.append(np.ones((10, 2), np.float32))  # two chunks written to the shard file
        raise RuntimeError("killed")
    assert not st.has_array("x/a")


def test_local_chunks_read_any_range(tmp_path):
    st = open_store(tmp_path / "s", arrays="direct")
    data = np.arange(1000 * 3, dtype=np.float32).reshape(1000, 3)
    for codec in ("lz4", "none"):
        st.write_array(f"x/{codec}", data, {}, (96,), CODECS[codec]())
        chunks = st.span_reader(f"x/{codec}")
        for start, stop in [(0, 1000), (5, 7), (90, 200), (191, 192), (950, 1000), (96, 192), (300, 300)]:
            out = np.empty((stop - start, 3), np.float32)
            chunks.read(start, stop, out)
            np.testing.assert_array_equal(out, data[start:stop])
    assert open_store("memory://specstore-chunks-ranges").span_reader("x/lz4") is None
