"""The catalogue's cached table scans stay true to the store, and lineage the demo store does not hold."""

import datetime as dt
import os
from pathlib import Path

from stores.catalogue import Catalogue
from stores.scans import CACHE_ENV, scan_table
from stores.store import now_utc


def _cache_files(store) -> list[Path]:
    return sorted(Path(os.environ[CACHE_ENV]).glob("catalogue/*/*.parquet"))


def test_the_cache_follows_parts_added_replaced_and_removed(demo_copy, monkeypatch, tmp_path):
    store, ids = demo_copy
    Catalogue(store)
    assert _cache_files(store)  # written on this machine, not in the store
    assert not store.fs.exists(f"{store.path}/tables/_catalogue")
    (row,) = [r for r in store.read_table("features").to_pylist() if r["feature_id"] == ids["mag"]]
    when = dt.datetime(2001, 2, 3, tzinfo=dt.UTC)
    store.write_part("features", f"part-{ids['mag']}", [{**row, "created_at": when}])  # replaced
    store.write_part("features", "part-extra", [{**row, "feature_id": "magnitude-000000000000"}])  # added
    again = Catalogue(store)
    assert again.objects[f"features:{ids['mag']}"].created == when
    assert "features:magnitude-000000000000" in again.objects
    store.fs.rm(f"{store.table_path('features')}/part-extra.parquet")  # removed
    assert "features:magnitude-000000000000" not in Catalogue(store).objects
    for path in _cache_files(store):  # a damaged cache is only a slower scan
        path.write_bytes(b"not parquet")
    damaged = {e.id: (e.bytes, e.counts, e.made_from) for e in Catalogue(store).objects.values()}
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty"))
    assert damaged == {e.id: (e.bytes, e.counts, e.made_from) for e in Catalogue(store).objects.values()}


def test_a_scan_for_other_columns_does_not_take_the_cached_ones(demo_copy):
    store, _ = demo_copy
    rows, sizes = scan_table(store, "utterances", ["corpus", "shard"])
    assert rows.column_names == ["corpus", "shard", "__part", "__version"] and rows.num_rows == 14
    rows, _ = scan_table(store, "utterances", ["corpus", "created_at"])
    assert rows.column_names == ["corpus", "created_at", "__part", "__version"] and rows.num_rows == 14
    assert set(sizes) == {f"{p}.parquet" for p in store.part_names("utterances")}


def test_a_method_run_is_made_from_the_feature_set_whose_config_it_used(demo_copy):
    store, ids = demo_copy
    run, now = "run-20260101T000000-abcdef", now_utc()
    rows = [
        {"run_id": run, "model": model, "model_version": version, "pairset": "noisy", "split": "test",
         "utterance_id": "u", "created_at": now}
        for model, version in (("noisy", None), ("zero-phase", f"zero-phase@{ids['mag']}"))
    ]  # fmt: skip
    store.write_part("metrics", f"part-{run}-x", rows)
    catalogue = Catalogue(store)
    assert catalogue.objects[f"run:{run}"].made_from == [f"features:{ids['mag']}", "pairs:noisy"]
    assert f"run:{run}" in catalogue.descendants(["pairs:noisy"])
