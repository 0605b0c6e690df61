"""The commit record (`stores/commits.py`): shards committed together in one part per table, the footer's
list of shards, side rows of a batch that never committed, uncommitting a shard out of a batch, and the
driver's batching (`GroupCommit`)."""

import json
import uuid

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from stores import open_store
from stores.commits import SHARDS_KEY, GroupCommit, HeldCommit, ShardRows, commit_shards, part_shards
from stores.verify import find_leftovers


def _utt(uid: str, shard: str) -> dict:
    return {"corpus": "c", "utterance_id": uid, "array": f"audio/c/{shard}", "offset": 0, "num_samples": 3,
            "shard": shard}  # fmt: skip


def _reject(uid: str, shard: str) -> dict:
    return {"corpus": "c", "utterance_id": uid, "stage": "ingest", "reason": "too short", "shard": shard}


def _shard(shard: str, utterances: list[str], rejects: list[str] = ()) -> ShardRows:
    tables = {
        "utterances": [_utt(u, shard) for u in utterances],
        "rejects": [_reject(u, shard) for u in rejects],
    }
    return ShardRows(shard, "utterances", tables)


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    url = str(tmp_path / "s") if request.param == "local" else f"memory://commits-{uuid.uuid4().hex}"
    return open_store(url)


def _ids(store, table: str) -> list[str]:
    return sorted(r["utterance_id"] for r in store.committed_rows(table, ["utterance_id"]))


def test_a_batch_is_one_part_per_table_and_commits_every_shard_even_without_rows(store):
    name = commit_shards(store, [_shard("a", ["u1", "u2"]), _shard("b", [], ["u3"]), _shard("c", ["u4"])])
    assert store.part_names("utterances") == [name] == store.part_names("rejects")
    assert store.committed_shards("utterances") == {"a", "b", "c"}
    assert _ids(store, "utterances") == ["u1", "u2", "u4"] and _ids(store, "rejects") == ["u3"]
    with store.fs.open(f"{store.table_path('utterances')}/{name}.parquet", "rb") as handle:
        assert json.loads(pq.read_metadata(handle).metadata[SHARDS_KEY]) == ["a", "b", "c"]
    # a plain pyarrow read of the folder sees each row once
    plain = ds.dataset(store.table_path("utterances"), filesystem=store.fs, format="parquet").to_table()
    assert sorted(plain["utterance_id"].to_pylist()) == ["u1", "u2", "u4"]


def test_side_rows_of_a_batch_that_never_committed_stay_invisible_after_a_rerun(store):
    # a killed driver: the batch's rejects part was written, its commit part was not
    store.write_part("rejects", "part-batch-killed", [_reject("u3", "b")])
    assert _ids(store, "rejects") == [] and store.committed_shards("utterances") == set()
    problems = [p.what for p in find_leftovers(store)]
    assert problems == ["rejects/part-batch-killed"]
    # the rerun commits the same shard in another batch: its rejects once, not twice
    commit_shards(store, [_shard("a", ["u1"]), _shard("b", [], ["u3"])])
    assert _ids(store, "rejects") == ["u3"]
    assert [p.what for p in find_leftovers(store)] == ["rejects/part-batch-killed"]


def test_uncommitting_a_shard_of_a_batch_rewrites_the_batch_without_it(store):
    name = commit_shards(
        store, [_shard("a", ["u1"], ["r1"]), _shard("b", ["u2"], ["r2"]), _shard("c", ["u3"])]
    )
    assert store.uncommit("utterances", ["b"]) > 0
    assert part_shards(store, "utterances") == {name: ("a", "c")}
    assert _ids(store, "utterances") == ["u1", "u3"] and _ids(store, "rejects") == ["r1"]
    plain = ds.dataset(store.table_path("rejects"), filesystem=store.fs, format="parquet").to_table()
    assert plain["utterance_id"].to_pylist() == ["r1"]  # its side rows left the part too
    assert store.uncommit("utterances", ["b"]) == 0  # again: nothing left to do
    store.uncommit("utterances", ["a", "c"])
    assert store.part_names("utterances") == [] == store.part_names("rejects")


def test_parts_from_before_the_footer_record_commit_the_shard_their_name_gives(store):
    store.write_part("utterances", "part-old", [_utt("u1", "old")])  # no footer list
    store.write_part("rejects", "part-old", [_reject("r1", "old")])
    commit_shards(store, [_shard("new", ["u2"])])
    assert store.committed_shards("utterances") == {"old", "new"}
    assert _ids(store, "utterances") == ["u1", "u2"] and _ids(store, "rejects") == ["r1"]
    store.uncommit("utterances", ["old"])
    assert _ids(store, "utterances") == ["u2"] and store.part_names("rejects") == []


def test_a_rewritten_part_is_read_again_not_taken_from_the_footer_cache(store):
    commit_shards(store, [_shard("a", ["u1"]), _shard("b", ["u2"])])
    assert store.committed_shards("utterances") == {"a", "b"}
    store.uncommit("utterances", ["a"])
    assert store.committed_shards("utterances") == {"b"}


def test_the_driver_commits_finished_shards_in_batches_and_on_an_error(store):
    held = []
    for shard in ("a", "b", "c", "d", "e"):
        keep = HeldCommit()
        keep({"utterances": [_utt(f"u-{shard}", shard)]}, "utterances", shard)
        held.append(keep.held)
    with GroupCommit(store, max_shards=2, max_seconds=3600) as batches:
        for rows in held[:3]:
            batches.add(rows)
        assert store.committed_shards("utterances") == {"a", "b"}  # a batch of two; c is held
    assert (
        store.committed_shards("utterances") == {"a", "b", "c"} and len(store.part_names("utterances")) == 2
    )
    with pytest.raises(RuntimeError), GroupCommit(store, max_shards=10) as batches:
        batches.add(held[3])
        raise RuntimeError("a shard failed")
    assert "d" in store.committed_shards("utterances")  # what finished before the error is kept
    with GroupCommit(store, max_shards=10, max_seconds=0) as batches:
        batches.add(held[4])
        assert "e" in store.committed_shards("utterances")  # its time was up: committed at once
