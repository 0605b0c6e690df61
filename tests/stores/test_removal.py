"""Removal records, row removal and the locks `rm` relies on, on a small store without models."""

import pyarrow.dataset as ds
import pytest

from pipelines.repair import repair
from stores import ConfigError, NotFoundError, open_store
from stores.catalogue import Catalogue
from stores.garbage import collect_garbage
from stores.locks import run_lock
from stores.removal import remove
from stores.store import Store
from stores.tombstones import pending, write_record
from stores.verify import verify_store


def _stop_after_arrays(monkeypatch):
    """`rm` fails once its arrays are gone and before its rows go (as a killed `rm` would stop)."""

    def boom(self, name, keys):
        raise RuntimeError("stopped")

    monkeypatch.setattr(Store, "remove_rows", boom)


def test_an_object_being_removed_is_gone_for_every_reader(demo_copy, monkeypatch):
    store, ids = demo_copy
    uid = store.features(ids["mag"]).utterances()[0]
    _stop_after_arrays(monkeypatch)
    with pytest.raises(RuntimeError, match="stopped"):
        remove(store, ["pairs:noisy"], cascade=True)
    monkeypatch.undo()
    assert {r["object"] for r in pending(store)} == {
        "pairs:noisy",
        f"features:{ids['mag']}",
        f"features:{ids['mel']}",
    }
    assert store.committed_rows("pairs", ["utterance_id"], pairset="noisy") == []
    assert store.committed_rows("feature_frames", ["utterance_id"], feature_id=ids["mag"]) == []
    assert len(store.committed_rows("utterances", ["utterance_id"], corpus="demo")) == 12  # not removed
    with pytest.raises(NotFoundError, match="being removed"):
        store.features(ids["mag"])
    with pytest.raises(NotFoundError, match="being removed"):
        store.audio("noisy", uid, "input")
    assert store.audio("demo", uid, "clean").size  # the corpus stays
    assert {e.id for e in Catalogue(store).objects.values()} == {"corpus:demo", "corpus:noise-noisy"}
    problems = verify_store(store)
    assert {p.kind for p in problems} == {"pending"} and len(problems) == 3, [p.line() for p in problems]


@pytest.mark.parametrize("finisher", ["rerun", "gc", "repair"])
def test_a_removal_that_stopped_midway_is_finished_by_a_rerun_gc_or_repair(demo_copy, monkeypatch, finisher):
    store, ids = demo_copy
    _stop_after_arrays(monkeypatch)
    with pytest.raises(RuntimeError):
        remove(store, ["pairs:noisy"], cascade=True)
    monkeypatch.undo()
    if finisher == "rerun":
        report = remove(store, ["noisy"])
        assert sorted(report.finished) == sorted(
            ["pairs:noisy", f"features:{ids['mag']}", f"features:{ids['mel']}"]
        )
    elif finisher == "gc":
        lines = collect_garbage(store).lines()
        assert "removed removal of pairs:noisy: an rm that did not finish" in lines[-2]
    else:
        actions = repair(store, verify_store(store))
        assert len(actions) == 3 and all(a.startswith("finished the removal of ") for a in actions)
    assert pending(store) == [] and verify_store(store) == []
    assert store.read_table("pairs").num_rows == 0 and store.read_table("features").num_rows == 0
    assert not store.fs.exists(store.array_location("pairs/noisy"))
    assert not store.fs.exists(store.array_location(f"features/{ids['mag']}"))


def test_rows_leave_parts_shared_with_other_objects(demo_copy):
    """Rows are removed from whatever parts hold them (here the feature sets' rows merged into one part, as
    compacting a table's parts into fewer, larger ones would)."""
    store, ids = demo_copy
    rows = store.read_table("features")
    for part in store.part_names("features"):
        store.fs.rm(f"{store.table_path('features')}/{part}.parquet")
    store.write_part("features", "part-merged", rows)
    report = remove(store, [f"features:{ids['mag']}"])
    assert report.freed[f"features:{ids['mag']}"] > 0
    assert store.part_names("features") == ["part-merged"]
    assert [r["feature_id"] for r in store.read_table("features").to_pylist()] == [ids["mel"]]
    assert verify_store(store) == []
    fs = store.features(ids["mel"])
    assert fs.read(fs.utterances()[0]).ndim == 2
    remove(store, [f"features:{ids['mel']}"])
    assert store.part_names("features") == [] and verify_store(store) == []


def test_remove_rows_keeps_rows_whose_keys_are_null(demo_copy):
    store, _ = demo_copy
    rows = [
        {"corpus": None, "stage": None, "shard": "x", "reason": "kept"},
        {"corpus": "other", "stage": "ingest", "shard": "x", "reason": "removed"},
    ]
    store.write_part("rejects", "part-extra", rows)
    assert store.remove_rows("rejects", {"corpus": "other", "stage": "ingest"}) > 0
    left = store.read_table("rejects", filter=ds.field("shard") == "x").to_pylist()
    assert [r["reason"] for r in left] == ["kept"]


def test_rm_refuses_while_a_run_uses_the_object_and_leaves_no_record(demo_copy):
    store, ids = demo_copy
    lock = run_lock(store, "train-crn-000000000000", uses=(f"features:{ids['mag']}",))
    with lock, pytest.raises(ConfigError, match="train-crn-000000000000"):
        remove(store, [ids["mag"]])
    assert not pending(store)
    assert store.features(ids["mag"]).utterances()  # still whole


def test_a_writer_that_uses_an_object_being_removed_refuses_and_releases_its_lock(demo_copy):
    store, ids = demo_copy
    record = {"object": f"features:{ids['mag']}", "arrays": [], "files": [], "uncommit": {}, "rows": []}
    write_record(store, record)
    lock = run_lock(store, "train-crn-111111111111", uses=(f"features:{ids['mag']}",))
    with pytest.raises(NotFoundError, match="being removed"), lock:
        pass
    assert not store.fs.exists(f"{store.path}/tables/_locks/train-crn-111111111111.json")


def test_locks_on_a_filesystem_without_local_files(tmp_path):
    store = open_store("memory://locks-test")
    refused = pytest.raises(ConfigError, match="Expected no other run writing")
    with run_lock(store, "features-x"), refused, run_lock(store, "features-x"):
        pass
    with run_lock(store, "features-x"):
        pass
