import multiprocessing as mp
import os
import signal
import time

import pytest

from stores import ConfigError, open_store
from stores.locks import run_lock


def _hold(root, name, seconds):
    with run_lock(open_store(root), name):
        time.sleep(seconds)


def test_second_writer_refuses_with_the_holder(tmp_path):
    store = open_store(tmp_path / "s")
    proc = mp.get_context("fork").Process(target=_hold, args=(str(tmp_path / "s"), "features-x", 30))
    proc.start()
    try:
        for _ in range(100):
            if store.fs.exists(f"{store.path}/tables/_locks/features-x.json"):
                break
            time.sleep(0.05)
        with pytest.raises(ConfigError, match=f"pid {proc.pid}"), run_lock(store, "features-x"):
            pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    with run_lock(store, "features-x"):  # the holder died: its lock is stale and taken over
        pass
    assert not store.fs.exists(f"{store.path}/tables/_locks/features-x.json")


def test_lock_is_released_on_error(tmp_path):
    store = open_store(tmp_path / "s")
    with pytest.raises(RuntimeError), run_lock(store, "pairs-p"):
        raise RuntimeError("boom")
    with run_lock(store, "pairs-p"):
        pass


def test_memory_store_locks(tmp_path):
    store = open_store(f"memory://locks-{os.getpid()}")
    with (
        run_lock(store, "ingest-c"),
        pytest.raises(ConfigError, match="no other run"),
        run_lock(store, "ingest-c"),
    ):
        pass
