import numpy as np
import pytest

from features import feature_config
from pipelines.mixing import PairConfig
from pipelines.repair import repair
from pipelines.testing import features_in_process, ingest_in_process, pairs_in_process, tone, write_audio
from stores import open_store
from stores.verify import missing_chunks, verify_store


@pytest.fixture
def full_store(tmp_path):
    """A small store with every kind of committed piece: audio, rejects, pairs, a feature set."""
    for n in range(6):
        write_audio(tmp_path / "speech" / f"spk{n % 2}" / f"u{n}.wav", tone(1.0, freq=150 + 20 * n, seed=n))
    (tmp_path / "speech" / "spk0" / "bad.wav").write_text("not audio")
    for n in range(2):
        write_audio(
            tmp_path / "noise" / f"n{n}.wav",
            np.random.default_rng(n).standard_normal(24000).astype(np.float32) * 0.1,
        )
    store = open_store(tmp_path / "store")
    ingest_in_process(store, "folder", tmp_path / "speech", name="syn", shard_size=3)
    pairs_in_process(
        store,
        "noisy",
        PairConfig(corpus="syn", kind="noisy", noise="x", seed=1),
        noise_folder=tmp_path / "noise",
        shard_size=3,
    )
    fid = features_in_process(store, "noisy", feature_config("magnitude", n_fft=256, hop_length=64))
    return store, fid


def _chunk_files(store, prefix):
    """Chunk files (`<array>/c.<i>...`) of the arrays under `prefix`."""
    return sorted(
        p
        for p in store.fs.find(f"{store.path}/arrays.zarr/{prefix}")
        if p.rsplit("/", 1)[-1].startswith("c.")
    )


def test_a_healthy_store_verifies_clean(full_store):
    store, _ = full_store
    assert verify_store(store) == []


def test_deleting_any_one_feature_chunk_is_named(full_store):
    store, fid = full_store
    chunks = _chunk_files(store, f"features/{fid}")
    assert len(chunks) > 4
    for chunk in chunks:
        data = store.fs.cat_file(chunk)
        store.fs.rm(chunk)
        problems = verify_store(store, checksums=False)
        relative = chunk.split("/arrays.zarr/", 1)[1]
        array, key = relative.rsplit("/", 1)
        assert any(array in p.line() and key in p.line() for p in problems), (
            chunk,
            [p.line() for p in problems],
        )
        store.fs.pipe_file(chunk, data)
    assert verify_store(store) == []


def test_repair_recomputes_a_damaged_feature_shard(full_store):
    store, fid = full_store
    fs = store.features(fid)
    before = {u: fs.read(u) for u in fs.utterances()}
    store.fs.rm(_chunk_files(store, f"features/{fid}")[0])
    problems = verify_store(store)
    assert problems and all(p.kind == "damaged" for p in problems)
    actions = repair(store, problems)
    assert any("feature set" in a for a in actions)
    assert verify_store(store) == []
    fs = store.features(fid)
    for uid, values in before.items():
        np.testing.assert_array_equal(fs.read(uid), values)


def test_swapped_chunk_fails_the_checksum_and_audio_is_recomputed_from_source(full_store):
    store, _ = full_store
    row = next(r for r in store.read_table("utterances").to_pylist() if r["corpus"] == "syn")
    before = store.audio("syn", row["utterance_id"])
    chunks = _chunk_files(store, "audio/syn")
    other = next(c for c in chunks if row["array"] not in c)
    mine = next(c for c in chunks if row["array"] in c)
    store.fs.pipe_file(mine, store.fs.cat_file(other))
    problems = verify_store(store)
    assert any(
        ("checksum" in p.detail or "cannot be decoded" in p.detail) and row["array"] in p.detail
        for p in problems
    )
    repair(store, problems)
    assert verify_store(store) == []
    np.testing.assert_array_equal(store.audio("syn", row["utterance_id"]), before)


def test_damaged_pairs_are_recomputed_identically(full_store):
    store, _ = full_store
    row = store.read_table("pairs").to_pylist()[0]
    before = store.audio("noisy", row["utterance_id"], "input")
    store.fs.rm(_chunk_files(store, f"{row['array']}/input")[0])
    problems = verify_store(store)
    assert any(row["shard"] in p.what for p in problems)
    repair(store, problems)
    np.testing.assert_array_equal(store.audio("noisy", row["utterance_id"], "input"), before)
    assert store.table("pairs").count_rows() == 6


def test_leftovers_are_reported_and_removed(full_store):
    store, _ = full_store
    staging = f"{store.table_path('utterances')}/_staging"
    store.fs.makedirs(staging, exist_ok=True)
    store.fs.pipe_file(f"{staging}/part-x.123.parquet", b"half a file")
    store.write_audio_array("audio/syn/ingest-syn-deadbeef0000", np.ones(10, dtype=np.float32), {})
    store.write_part("rejects", "part-ingest-syn-deadbeef0000", [{"corpus": "syn", "reason": "empty file"}])
    problems = verify_store(store)
    assert sorted(p.kind for p in problems) == ["leftover"] * 3
    repair(store, problems)
    assert verify_store(store) == []
    assert "ingest-syn-deadbeef0000" not in [n for n, _ in store.arrays["audio/syn"].arrays()]


def test_silently_changed_values_fail_the_checksum(full_store):
    store, fid = full_store
    row = store.read_table("feature_frames").to_pylist()[0]
    store.arrays[f"{row['array']}/input"][0:2] = 123.0  # a valid chunk with other values
    problems = verify_store(store)
    assert [p.detail for p in problems] == [
        f"array {row['array']}/input does not match the checksum recorded when it was written"
    ]


def test_missing_chunks_of_arrays_with_slash_chunk_keys(tmp_path):
    # arrays written before chunk keys used dots (`c/1/0` folders) are still checked
    store = open_store(tmp_path / "store")
    array = store.arrays.create_array("old/x", shape=(10, 3), chunks=(4, 3), dtype="float32", fill_value=0)
    array[:] = np.ones((10, 3), dtype=np.float32)
    assert missing_chunks(store, "old/x") == []
    store.fs.rm(f"{store.path}/arrays.zarr/old/x/c/1/0")
    assert missing_chunks(store, "old/x") == ["c/1/0"]
    store.write_array("new/x", np.ones((10, 3), dtype=np.float32), {}, (4,), None)
    store.fs.rm(f"{store.path}/arrays.zarr/new/x/c.0.0")  # the array's one shard
    assert missing_chunks(store, "new/x") == ["c.0.0"]


def test_arrays_checksummed_with_sha256_before_crc32c_are_still_checked(tmp_path):
    from stores.chunks import array_checksum
    from stores.verify import check_array

    store = open_store(tmp_path / "store")
    values = np.arange(30, dtype=np.float32).reshape(10, 3)
    array = store.arrays.create_array("old/x", shape=(10, 3), chunks=(4, 3), dtype="float32", fill_value=0)
    array[:] = values
    array.attrs.update({"sha256": array_checksum(values, "sha256")})  # as stores of 2026-11-20 recorded it
    assert check_array(store, "old/x", checksums=True) == []
    array[0:1] = 7.0
    assert check_array(store, "old/x", checksums=True) == [
        "array old/x does not match the checksum recorded when it was written"
    ]
