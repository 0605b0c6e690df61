"""Faults injected into real runs: killed Dask workers, a killed flow process, concurrent writers.

Each test starts the `specstore` command line in a subprocess (its own Prefect server client and local Dask
cluster) and kills parts of it with SIGKILL at a moment chosen by watching the store.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipelines.mixing import PairConfig
from pipelines.testing import ingest_in_process, pairs_in_process
from stores import open_store
from stores.paths import FEATURES, STATS
from stores.verify import verify_store

pytestmark = pytest.mark.slow


@pytest.fixture
def pair_store(tmp_path, real_data):
    """26 real utterances with noisy pairs: enough shards that a kill lands mid-flow."""
    store = open_store(tmp_path / "store")
    ingest_in_process(store, "folder", real_data / "clean", name="real", shard_size=2)
    pairs_in_process(
        store,
        "noisy",
        PairConfig(corpus="real", kind="noisy", noise="x", seed=3),
        noise_folder=real_data / "noise",
        shard_size=2,
    )
    return store


def _features_cli(store, kind="reassigned", *extra):
    cmd = [
        sys.executable,
        "-m",
        "cli",
        "features",
        "--store",
        store.root,
        "--pairs",
        "noisy",
        "--kind",
        kind,
        "--workers",
        "2",
        "--processes",  # worker processes, so that one can be killed
        "--quiet",
        *extra,
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _wait_for_shards(store, count, proc, timeout=120):
    """Whether `count` feature shards have started writing their arrays while `proc` runs (their rows are
    committed in batches by the flow's driver, so parts are no sign of progress)."""
    folder = Path(store.array_location(FEATURES))
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if sum(1 for s in folder.glob("*/*") if s.is_dir() and s.name != STATS) >= count:
            return True
        time.sleep(0.05)
    return False


def _dask_workers(proc):
    children = psutil.Process(proc.pid).children(recursive=True)
    return [c for c in children if "spawn" in " ".join(c.cmdline()) or "forkserver" in " ".join(c.cmdline())]


def _assert_complete(store):
    assert verify_store(store) == [], [p.line() for p in verify_store(store)]
    (row,) = store.read_table("features").to_pylist()
    frames = store.read_table("feature_frames").to_pylist()
    assert len(frames) == len({f["utterance_id"] for f in frames}) == 26  # no duplicate rows
    fs = store.features(row["feature_id"])
    assert all(fs.read(u).shape[0] > 0 for u in fs.utterances())


def test_killed_dask_worker_mid_flow(pair_store, prefect_api):
    proc = _features_cli(pair_store)
    assert _wait_for_shards(pair_store, 1, proc), proc.communicate()
    workers = _dask_workers(proc)
    assert workers, "no Dask worker processes found"
    os.kill(workers[0].pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    print(f"flow exit code after a worker was killed: {proc.returncode}")
    if proc.returncode != 0:  # the flow may give up on the lost task: a rerun must complete it
        rerun = _features_cli(pair_store)
        out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err
    _assert_complete(pair_store)


def test_killed_flow_process_is_finished_by_a_rerun(pair_store, prefect_api):
    proc = _features_cli(pair_store)
    assert _wait_for_shards(pair_store, 2, proc), proc.communicate()
    os.killpg(proc.pid, signal.SIGKILL)  # the command, its Dask cluster, everything in its session
    proc.communicate()
    assert len(pair_store.committed_shards("feature_frames")) < 13  # killed before its last commit
    assert pair_store.table("features").count_rows() == 0
    rerun = _features_cli(pair_store)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "26 pairs" in out
    _assert_complete(pair_store)


def test_two_concurrent_runs_never_mix(pair_store, prefect_api):
    first = _features_cli(pair_store)
    assert _wait_for_shards(pair_store, 1, first)
    second = _features_cli(pair_store)
    out2, err2 = second.communicate(timeout=300)
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 0 or (second.returncode == 2 and "Expected no other run" in err2), err2
    _assert_complete(pair_store)


def test_reader_sees_only_committed_feature_sets(pair_store, prefect_api):
    from features import feature_config
    from pipelines.testing import features_in_process

    done = features_in_process(pair_store, "noisy", feature_config("magnitude"))
    reference = {u: pair_store.features(done).read(u) for u in pair_store.features(done).utterances()}
    parts_before = len(pair_store.part_names("feature_frames"))
    proc = _features_cli(pair_store, "complex")
    seen_uncommitted = False
    while proc.poll() is None:
        ids = set(pair_store.read_table("features")["feature_id"].to_pylist())
        for fid in ids:
            fs = pair_store.features(fid)
            assert len(fs.utterances()) == 26  # a visible set is always whole
        for uid, values in reference.items():
            assert (pair_store.features(done).read(uid) == values).all()
        seen_uncommitted |= len(ids) == 1 and len(pair_store.part_names("feature_frames")) > parts_before
        time.sleep(0.05)
    assert proc.returncode == 0
    assert seen_uncommitted  # the reader really ran while the new set was half written
