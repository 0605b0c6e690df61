import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pyarrow.dataset as ds
import pytest

from stores import ConfigError, NotFoundError, open_store
from stores.config import Registry, parse_name, parse_range


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


def _stored_codecs(st, path):
    from stores.chunks import inner_codecs

    return [c.to_dict()["name"] for c in inner_codecs(st.arrays[path].metadata.codecs)[0]]


@pytest.mark.parametrize("chunk", [1 << 20, 50_000])  # one chunk (probed in slices), a shard of several
def test_audio_is_compressed_only_where_lz4_pays(tmp_path, chunk):
    st = open_store(tmp_path / "s")
    rng = np.random.default_rng(0)
    from_16_bit = (rng.integers(-3000, 3000, 400_000) / 32768).astype(np.float32)  # as decoded from PCM_16
    mixture = (from_16_bit + 0.37 * rng.permutation(from_16_bit)).astype(
        np.float32
    )  # every mantissa bit used
    st.write_audio_array("audio/c/pcm", from_16_bit, {}, chunk)
    st.write_audio_array("audio/c/mix", mixture, {}, chunk)
    assert _stored_codecs(st, "audio/c/pcm") == ["bytes", "blosc"]
    assert _stored_codecs(st, "audio/c/mix") == ["bytes"]
    np.testing.assert_array_equal(st.read_array("audio/c/pcm"), from_16_bit)
    np.testing.assert_array_equal(st.read_array("audio/c/mix"), mixture)
    np.testing.assert_array_equal(st.arrays["audio/c/mix"][:], mixture)  # zarr reads it too


def test_real_16_bit_recordings_are_stored_compressed(tmp_path, real_data):
    import soundfile as sf

    path = sorted((real_data / "voicebank-demand").rglob("*.wav"))[0]
    samples, _ = sf.read(path, dtype="float32")
    st = open_store(tmp_path / "s")
    st.write_audio_array("audio/c/real", samples, {})
    assert _stored_codecs(st, "audio/c/real") == ["bytes", "blosc"]
    np.testing.assert_array_equal(st.read_array("audio/c/real"), samples)


def test_rewriting_a_part_removes_its_own_unfinished_writes(store):
    staging = f"{store.table_path('utterances')}/_staging"
    store.fs.makedirs(staging, exist_ok=True)
    for part in ("part-s1", "part-s2"):  # as left by writers killed mid-write
        store.fs.pipe_file(f"{staging}/{part}.0123abcd.parquet", b"half a parquet file")
    store.commit({"utterances": [_row("u1")]}, "utterances", "s1")
    assert [p.rsplit("/", 1)[-1] for p in store.fs.ls(staging, detail=False)] == ["part-s2.0123abcd.parquet"]
    assert store.read_table("utterances")["utterance_id"].to_pylist() == ["u1"]
