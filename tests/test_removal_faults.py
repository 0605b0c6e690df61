"""`specstore rm` under faults: killed (SIGKILL) at several points of its work, read from while it runs, run
twice at once, and run while a flow writes what it would remove or a model trains on it.

The `rm` processes run the real command line with the store's file operations (local `rm`, `mv`,
`pipe_file`) counted: the process kills itself at the Nth one, or waits a little before each so that a
reader or a second `rm` overlaps it.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stores import ConfigError, open_store
from stores.catalogue import Catalogue
from stores.garbage import collect_garbage
from stores.removal import remove
from stores.tombstones import pending
from stores.verify import verify_store
from training.trainer import TrainConfig, train

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RM = ["rm", "pairs:noisy", "--cascade"]
# the command line with the store's file operations counted: SIGKILL at the KILL_AT-th, DELAY s before each
COUNTED_CLI = """
import os, signal, sys, time
import fsspec.implementations.local as local
kill_at, delay, count = int(os.environ.get("KILL_AT", "0")), float(os.environ.get("DELAY", "0")), [0]
def counted(name):
    original = getattr(local.LocalFileSystem, name)
    def operation(self, *args, **kwargs):
        count[0] += 1
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(delay)
        return original(self, *args, **kwargs)
    setattr(local.LocalFileSystem, name, operation)
for name in ("rm", "mv", "pipe_file"):
    counted(name)
import cli
code = cli.main(sys.argv[1:])
print(f"file operations: {count[0]}", file=sys.stderr)
sys.exit(code)
"""
READER = """
import json, os, sys, time
import numpy as np
from stores import NotFoundError, open_store
root, feature_id, reference, stop, out = sys.argv[1:]
expected = dict(np.load(reference))
st = open_store(root, create=False)
seen = {"whole": [], "not found": [], "wrong": [], "errors": []}
while not os.path.exists(stop):
    try:
        fs = st.features(feature_id)  # one set object per pass, as a training loop keeps it
    except NotFoundError:
        seen["not found"].append(time.time())
        continue
    for uid, values in expected.items():
        try:
            got = fs.read(uid)
        except NotFoundError:
            seen["not found"].append(time.time())
            continue
        except Exception as exc:
            seen["errors"].append(repr(exc))
            continue
        ok = got.shape == values.shape and np.array_equal(got, values, equal_nan=True)
        seen["whole" if ok else "wrong"].append(time.time())
json.dump(seen, open(out, "w"))
"""


def counted_rm(store, args=RM, kill_at=0, delay=0.0, backend=None):
    env = {**os.environ, "KILL_AT": str(kill_at), "DELAY": str(delay)}
    if backend:
        env["SPECSTORE_ARRAYS"] = backend
    cmd = [sys.executable, "-c", COUNTED_CLI, *args, "--store", store.root]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_consistent(store):
    """verify passes, nothing is half removed, and nothing left was made from what is gone."""
    assert verify_store(store) == [], [p.line() for p in verify_store(store)]
    assert pending(store) == []
    catalogue = Catalogue(store)
    for entry in catalogue.objects.values():
        assert all(parent in catalogue.objects for parent in entry.made_from), entry.id


@pytest.fixture(scope="module")
def operations(demo_sets, tmp_path_factory):
    """How many file operations a whole `rm pairs:noisy --cascade` makes."""
    copy = tmp_path_factory.mktemp("count") / "store"
    shutil.copytree(demo_sets[0], copy)
    done = counted_rm(open_store(copy, create=False))
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    return int(err.strip().splitlines()[-1].split()[-1])


@pytest.mark.parametrize("point", [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
def test_rm_killed_at_any_point_is_finished_by_a_rerun_or_by_gc(demo_copy, operations, point):
    store, ids = demo_copy
    kill_at = max(1, min(operations - 1, round(point * operations)))
    killed = counted_rm(store, kill_at=kill_at)
    killed.communicate(timeout=300)
    assert killed.returncode == -9, f"not killed at operation {kill_at} of {operations}"
    objects = {"pairs:noisy", f"features:{ids['mag']}", f"features:{ids['mel']}"}
    if point <= 0.5:  # a rerun finishes it: everything is gone
        try:
            remove(store, RM[1:2], cascade=True)
        except Exception as exc:  # the killed rm had done everything but release its locks
            assert "Expected an object of the store" in str(exc) and not pending(store)
        assert not objects & set(Catalogue(store).objects)
    else:  # gc finishes what the killed rm had recorded; what it had not is still whole
        collect_garbage(store)
    assert_consistent(store)
    print(
        f"killed at operation {kill_at} of {operations}: left {sorted(objects & set(Catalogue(store).objects))}"
    )


@pytest.mark.parametrize("backend", ["direct", "zarr"])
def test_a_reader_during_rm_reads_whole_data_or_not_found(demo_copy, tmp_path, backend):
    store, ids = demo_copy
    fs = store.features(ids["mag"])
    np.savez(tmp_path / "reference.npz", **{u: fs.read(u) for u in fs.utterances()})
    stop, out = tmp_path / "stop", tmp_path / "seen.json"
    env = {**os.environ, "SPECSTORE_ARRAYS": backend}
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, store.root, ids["mag"], tmp_path / "reference.npz", stop, out],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(8)  # the reader's imports, and some whole reads before rm starts
    rm = counted_rm(store, delay=0.15, backend=backend)
    _, err = rm.communicate(timeout=300)
    ended = time.time()
    assert rm.returncode == 0, err
    time.sleep(1)
    stop.touch()
    reader.communicate(timeout=120)
    seen = json.loads(out.read_text())
    assert seen["errors"] == [] and seen["wrong"] == []
    assert seen["whole"] and min(seen["not found"]) < ended  # whole before, not found while rm ran
    assert_consistent(store)


def test_two_rm_at_once_one_succeeds_the_other_refuses(demo_copy):
    store, _ = demo_copy
    first, second = counted_rm(store, delay=0.1), counted_rm(store, delay=0.1)
    results = [(p.wait(timeout=300), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    assert "Expected no other run writing" in refused or "Expected an object of the store" in refused
    assert len(refused.strip().splitlines()) == 2  # the error line, and the counting wrapper's
    assert_consistent(store)
    assert "pairs:noisy" not in Catalogue(store).objects


def _wait_for_lock(store, prefix, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        locks = store.fs.glob(f"{store.path}/tables/_locks/{prefix}-*.json")
        if locks:
            return locks[0]
        time.sleep(0.02)
    return None


def test_rm_while_a_flow_writes_a_set_made_from_it(demo_copy, prefect_api):
    store, ids = demo_copy
    flow = subprocess.Popen(
        [sys.executable, "-m", "cli", "features", "--store", store.root, "--pairs", "noisy", "--kind", "reassigned",
         "--workers", "2", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lock = _wait_for_lock(store, "features", flow)
    outcome = "finished first"
    if lock is not None:
        try:
            remove(store, ["pairs:noisy"], cascade=True)
            outcome = "removed after the flow"
        except ConfigError as exc:
            assert "uses pairs:noisy" in str(exc) or "Expected no other run writing" in str(exc)
            outcome = "refused"
    out, err = flow.communicate(timeout=600)
    print(f"rm during the features flow: {outcome}; flow exit {flow.returncode}")
    assert flow.returncode == 0 or "being removed" in err or "Expected" in err, err
    assert_consistent(store)
    if outcome == "refused":
        assert flow.returncode == 0 and len(store.read_table("features").to_pylist()) == 3
        remove(store, ["pairs:noisy"], cascade=True)
        assert_consistent(store)


def test_rm_while_a_model_trains_on_the_set(demo_copy):
    store, ids = demo_copy
    train = subprocess.Popen(
        [sys.executable, "-m", "cli", "train", "--store", store.root, "--model", "crn", "--features", ids["mag"],
         "--epochs", "6", "--max-steps", "2", "--batch-size", "2", "--segment", "20", "--device", "cpu",
         "--model-arg", "channels=[4,8,8,8,8]", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lock = _wait_for_lock(store, "train", train)
    assert lock is not None, train.communicate()
    with pytest.raises(ConfigError, match=f"uses features:{ids['mag']}"):
        remove(store, [ids["mag"]], cascade=True)
    out, err = train.communicate(timeout=600)
    assert train.returncode == 0, err
    version = out.strip().splitlines()[-1]
    assert_consistent(store)
    report = remove(store, [ids["mag"]], cascade=True)
    assert f"model:{version}" in report.freed and f"features:{ids['mag']}" in report.freed
    assert_consistent(store)


def test_rm_while_an_evaluation_runs_on_the_model(demo_copy, prefect_api):
    store, ids = demo_copy
    config = TrainConfig(model="crn", feature_id=ids["mag"], model_args={"channels": [4, 8, 8, 8, 8]}, epochs=1,
                         max_steps=2, batch_size=2, segment=20)  # fmt: skip
    version = train(store, config, "cpu", progress=False)
    evaluate = subprocess.Popen(
        [sys.executable, "-m", "cli", "evaluate", "--store", store.root, "--model-version", version, "--pairs", "noisy",
         "--split", "train", "--device", "cpu", "--workers", "1", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert _wait_for_lock(store, "evaluate", evaluate) is not None, evaluate.communicate()
    with pytest.raises(ConfigError, match=f"uses model:{version}"):
        remove(store, [f"model:{version}"], cascade=True)
    out, err = evaluate.communicate(timeout=600)
    assert evaluate.returncode == 0, err
    assert_consistent(store)
    report = remove(store, [f"model:{version}"], cascade=True)
    assert len(report.freed) == 2 and all(oid.startswith(("model:", "run:")) for oid in report.freed)
    assert_consistent(store)
