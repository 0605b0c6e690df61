"""In-flight markers: the piece of the commit protocol that remembers a shard whose process died.

A shard that decodes user files writes a small marker before its first file and removes it after its commit
(or when it raises: an exception is handled where it happens, and the retry should run normally). Only a
process that dies, by a native crash in a decoder, the kernel's OOM killer or SIGKILL, leaves its marker
behind. The next attempt of the same shard (shard ids are stable across reruns) finds it and knows that
something in this shard may kill whatever decodes it, so it decodes the shard's files one at a time in a
child process instead.

Markers live in `tables/_inflight/<shard>.json` (pyarrow ignores folders starting with `_`). A marker left by
a shard that committed just before its process died is harmless: a committed shard is never planned again.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from stores.config import parse_name

INFLIGHT = "_inflight"


def marker_path(store, shard: str) -> str:
    return f"{store.path}/tables/{INFLIGHT}/{parse_name(shard, 'shard id')}.json"


def read_marker(store, shard: str) -> dict | None:
    """The marker an earlier attempt of `shard` left, or None. An unreadable marker still counts: it was
    written by an attempt that did not finish (a process killed while writing it)."""
    try:
        with store.fs.open(marker_path(store, shard), "rb") as handle:
            return json.loads(handle.read() or b"{}")
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def describe_marker(marker: dict) -> str:
    """'pid 123 on host since 2026-01-02 10:11:12', for reject details and messages."""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(marker.get("since", 0)))
    return f"pid {marker.get('pid', '?')} on {marker.get('host', '?')} since {since}"


@contextmanager
def in_flight(store, shard: str) -> Iterator[dict | None]:
    """Mark `shard` in flight for the block; yields the marker of an earlier attempt that died (None when
    there was none). The marker is removed when the block ends, normally or by an exception."""
    path = marker_path(store, shard)
    previous = read_marker(store, shard)
    store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "shard": shard}
    store.fs.pipe_file(path, json.dumps(me).encode())
    try:
        yield previous
    finally:
        with contextlib.suppress(FileNotFoundError):  # removed by hand: nothing left to do
            store.fs.rm(path)
