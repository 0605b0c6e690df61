"""Run locks: one writer per corpus, pair set, feature set, model version or evaluation run at a time.

Two runs computing the same shards would both write the same arrays, and one could commit a shard while the
other is rewriting its array. So each writer holds a lock named after what it writes (`ingest-<corpus>`,
`pairs-<pairset>`, `features-<id>`, `train-<version>`, `evaluate-<run>`: `stores.objects.LOCK_PREFIXES`);
a second run refuses with a clear message. A lock records the objects its holder reads (`uses`, as
`KIND:NAME`), so that `specstore rm` refuses to remove what a running writer depends on; after taking its
lock a writer checks that none of them is being removed (`stores.tombstones`), and `rm` checks the locks
after writing its removal records, so of the two at least one sees the other.

A lock is created with an exclusive create: `O_EXCL` on local folders, a conditional write (`If-None-Match:
*`) on S3 through s3fs, and fsspec's own check-then-write on other filesystems (which narrows the race to
milliseconds but does not close it). A lock whose process is gone (same host, pid not running) is stale
and taken over; that takeover removes and creates the file, which two processes of one host could race.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass

from stores.config import parse_name
from stores.errors import ConfigError
from stores.tombstones import check_present

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
    try:  # s3fs: a PUT with If-None-Match: *, refused by the server when the object exists
        store.fs.pipe_file(path, payload, mode="create")
    except FileExistsError:
        return False
    return True


def locks_folder(store) -> str:
    return f"{store.path}/tables/{LOCKS}"


@dataclass(frozen=True)
class HeldLock:
    name: str
    holder: dict  # pid, host, since, uses

    @property
    def stale(self) -> bool:
        """Its process is gone (only known on the same host)."""
        same_host = self.holder.get("host") == socket.gethostname()
        return same_host and not _alive(int(self.holder.get("pid", 0) or 0))

    @property
    def uses(self) -> tuple[str, ...]:
        return tuple(self.holder.get("uses") or ())

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.holder.get("since", 0)))
        return f"{self.name} (pid {self.holder.get('pid')} on {self.holder.get('host')} since {since})"


def held_locks(store) -> list[HeldLock]:
    """Every lock present, stale or not."""
    try:
        paths = store.fs.ls(locks_folder(store), detail=False)
    except FileNotFoundError:
        return []
    found = []
    for path in sorted(paths):
        base = path.rstrip("/").rsplit("/", 1)[-1]
        if base.endswith(".json"):
            found.append(HeldLock(base[: -len(".json")], _holder(store, path) or {}))
    return found


@contextmanager
def run_lock(store, name: str, uses: tuple[str, ...] = ()):
    """Hold the lock `name` for the duration of the block, or raise ConfigError naming its holder. `uses`:
    the objects (`KIND:NAME`) the holder reads; NotFoundError when one of them is being removed."""
    parse_name(name, "lock name")
    folder = locks_folder(store)
    store.fs.makedirs(folder, exist_ok=True)
    path = f"{folder}/{name}.json"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "uses": list(uses)}
    if not _create_exclusive(store, path, json.dumps(me).encode()):
        holder = HeldLock(name, _holder(store, path) or {})
        if not holder.stale:
            raise ConfigError(
                f"Expected no other run writing {name}. Got one: {holder.describe()} (if that run is dead, "
                f"delete {path})."
            )
        store.fs.rm(path)
        if not _create_exclusive(store, path, json.dumps(me).encode()):
            raise ConfigError(
                f"Expected to take over the stale lock {path}. Got another run taking it first."
            )
    try:
        for used in uses:
            check_present(store, used)
        yield
    finally:
        if (_holder(store, path) or {}).get("pid") == me["pid"]:
            store.fs.rm(path)
