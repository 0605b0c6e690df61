"""Run locks: one writer per corpus, pair set or feature set at a time.

Two runs computing the same shards would both write the same arrays, and one could commit a shard while the
other is rewriting its array. So each flow holds a lock named after what it writes; a second run refuses
with a clear message. A lock whose process is gone (same host, pid not running) is stale and taken over.
Local folders use an exclusive create (atomic); other filesystems a check-then-write, which narrows the race
to milliseconds but does not close it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager

from stores.config import parse_name
from stores.errors import ConfigError

LOCKS = "_locks"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(store, path: str) -> dict | None:
    try:
        with store.fs.open(path, "rb") as handle:
            return json.loads(handle.read() or b"{}")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _create_exclusive(store, path: str, payload: bytes) -> bool:
    protocols = store.fs.protocol if isinstance(store.fs.protocol, tuple) else (store.fs.protocol,)
    if "file" in protocols:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        return True
    if store.fs.exists(path):
        return False
    store.fs.pipe_file(path, payload)
    return True


@contextmanager
def run_lock(store, name: str):
    """Hold the lock `name` for the duration of the block, or raise ConfigError naming its holder."""
    parse_name(name, "lock name")
    folder = f"{store.path}/tables/{LOCKS}"
    store.fs.makedirs(folder, exist_ok=True)
    path = f"{folder}/{name}.json"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    if not _create_exclusive(store, path, json.dumps(me).encode()):
        holder = _holder(store, path) or {}
        stale = holder.get("host") == me["host"] and not _alive(int(holder.get("pid", 0) or 0))
        if not stale:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
            raise ConfigError(
                f"Expected no other run writing {name}. Got one: pid {holder.get('pid')} on {holder.get('host')} "
                f"since {since} (if that run is dead, delete {path})."
            )
        store.fs.rm(path)
        if not _create_exclusive(store, path, json.dumps(me).encode()):
            raise ConfigError(
                f"Expected to take over the stale lock {path}. Got another run taking it first."
            )
    try:
        yield
    finally:
        if (_holder(store, path) or {}).get("pid") == me["pid"]:
            store.fs.rm(path)
