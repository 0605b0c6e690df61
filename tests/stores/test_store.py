import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pyarrow.dataset as ds
import pytest
from zarr.codecs import BloscCodec

from stores import ConfigError, NotFoundError, open_store
from stores.config import Registry, parse_name, parse_range
from stores.store import array_checksum


def _row(uid, shard="s1", offset=0, n=3):
    return {
        "corpus": "c",
        "utterance_id": uid,
        "array": f"audio/c/{shard}",
        "offset": offset,
        "num_samples": n,
        "shard": shard,
    }


@pytest.mark.parametrize("root", ["local", "memory://specstore-test-{}"])
def test_open_store_creates_layout_and_reopens(tmp_path, root):
    url = str(tmp_path / "s") if root == "local" else root.format(os.getpid())
    st = open_store(url)
    assert st.sample_rate == 16000
    assert st.fs.exists(f"{st.path}/arrays.zarr/zarr.json")
    st.write_audio_array("audio/c/s1", np.arange(6, dtype=np.float32), {"kind": "audio"})
    st.commit({"utterances": [_row("u1", offset=2)]}, "utterances", "s1")
    again = open_store(url, create=False)
    np.testing.assert_array_equal(again.audio("c", "u1"), [2, 3, 4])
    assert again.arrays["audio/c/s1"].attrs["kind"] == "audio"


def test_table_is_readable_with_plain_pyarrow(store):
    store.commit({"utterances": [_row("u1"), _row("u2")]}, "utterances", "s1")
    table = ds.dataset(store.root + "/tables/utterances", format="parquet", partitioning="hive").to_table()
    assert sorted(table["utterance_id"].to_pylist()) == ["u1", "u2"]


def test_empty_table_has_schema(store):
    table = store.table("metrics").to_table()
    assert table.num_rows == 0 and "pesq_wb" in table.column_names


def test_unknown_table_lists_valid_names(store):
    with pytest.raises(NotFoundError, match="utterances"):
        store.table("nope")


def test_same_part_replaces_rows_instead_of_adding(store):
    store.commit({"utterances": [_row("u1")]}, "utterances", "s1")
    store.commit({"utterances": [_row("u1"), _row("u2")]}, "utterances", "s1")
    assert store.table("utterances").count_rows() == 2
    assert store.committed_shards("utterances") == {"s1"}


def test_zero_row_commit_marks_shard_committed(store):
    store.commit(
        {"rejects": [{"corpus": "c", "source_path": "x", "reason": "empty file"}]}, "utterances", "s9"
    )
    assert store.committed_shards("utterances") == {"s9"}
    assert store.table("rejects").count_rows() == 1


def _slow_writer(root):
    st = open_store(root)
    rows = [_row(f"u{i}") for i in range(2_000_000)]
    st.write_part("utterances", "part-big", rows)


def test_killed_writer_leaves_no_visible_part(tmp_path):
    root = str(tmp_path / "s")
    st = open_store(root)
    proc = mp.get_context("fork").Process(target=_slow_writer, args=(root,))
    proc.start()
    time.sleep(2.0)  # building and writing 2M rows takes longer than this
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert st.part_names("utterances") == []
    assert st.table("utterances").count_rows() == 0


def test_sample_rate_is_fixed_at_creation(tmp_path):
    open_store(tmp_path / "s", sample_rate=8000)
    with pytest.raises(ConfigError, match="8000"):
        open_store(tmp_path / "s", sample_rate=16000)


def test_missing_store_without_create(tmp_path):
    with pytest.raises(NotFoundError, match="Expected an existing store"):
        open_store(tmp_path / "absent", create=False)


def test_audio_of_unknown_utterance(store):
    with pytest.raises(NotFoundError, match="not in the store"):
        store.audio("c", "nobody")


def test_registry_lists_valid_names():
    reg = Registry("widget")
    reg.register("a")(1)
    reg.register("b")(2)
    with pytest.raises(NotFoundError, match="one of a, b. Got 'c' instead"):
        reg.get("c")


@pytest.mark.parametrize("bad", ["../x", "/abs", ".hidden", "a/b", "a..b", "", "é", "x" * 200])
def test_parse_name_refuses_path_escapes(bad):
    with pytest.raises(ConfigError, match="Expected"):
        parse_name(bad)


def test_parse_range():
    assert parse_range("-5:20", "--snr") == (-5.0, 20.0)
    with pytest.raises(ConfigError, match="LOW <= HIGH"):
        parse_range("20:-5", "--snr")


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
        ("float32", (0, 5), 7, "lz4"),
        ("float32", (5000,), 1024, "lz4"),
    ],
)
def test_chunks_written_directly_equal_zarrs_own(tmp_path, root, dtype, shape, chunk, codec):
    from pipelines.featurize import CODECS

    url = str(tmp_path / "s") if root == "local" else root.format(os.getpid(), tmp_path.name)
    st = open_store(url)
    rng = np.random.default_rng(0)
    data = (rng.standard_normal(shape) * 50).astype(dtype)
    st.write_array("x/fast", data, {"k": 1}, (chunk,), CODECS[codec]())
    array = st.arrays.create_array(
        "x/zarr", shape=data.shape, chunks=st.arrays["x/fast"].chunks, shards=st.arrays["x/fast"].shards,
        dtype=data.dtype, fill_value=0,
        compressors=CODECS[codec](), config={"write_empty_chunks": True},
        chunk_key_encoding={"name": "default", "separator": "."},
    )  # fmt: skip
    array[:] = data
    fast, ref = _chunk_files(st, "x/fast"), _chunk_files(st, "x/zarr")
    assert fast == ref and len(ref) == (1 if shape[0] > chunk else -(-shape[0] // chunk))  # one shard
    np.testing.assert_array_equal(st.arrays["x/fast"][:], data)
    assert st.arrays["x/fast"].attrs["crc32c"] == array_checksum(data)
    for name in ("x/fast", "x/zarr"):  # our chunk decoding reads what either wrote
        read = st.read_array(name)
        assert read.dtype.str[1:] == data.dtype.str[1:] and read.shape == data.shape
        np.testing.assert_array_equal(read, data)


def test_read_array_of_a_damaged_array_reads_as_zarr_does(tmp_path):
    st = open_store(tmp_path / "s")
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
