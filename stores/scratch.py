"""Per-thread work memory kept between calls.

Memory a process has not touched yet costs a page fault per 4 KiB page, several times the cost of writing
it (docs/BENCHMARKS.md). Arrays of a megabyte or more come fresh from mmap on
every allocation, so code that runs the same shapes again and again (STFT blocks signal after signal, a
feature shard's arrays and audio shard after shard in one worker thread) takes its memory from here.

- `work_buffers(key, make)`: fixed work buffers, one set per use at a time (a free list per key).
- `Scratch`: named arrays of varying size (a shard's features and audio), grown when a call needs more;
  taken through `work_buffers` so that two users in one thread never share one.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

_WORK = threading.local()
WORK_KEYS = 8  # buffer shapes kept per thread
FREE_PER_KEY = 4  # sets kept per key (generators interleaved in one thread each hold one)
GROWTH = 1.1  # a Scratch array grows with 10 % slack, so slowly growing shards do not reallocate each time


@contextlib.contextmanager
def work_buffers(key: tuple, make: Callable[[], Any]) -> Iterator[Any]:
    """This thread's work buffers for `key` (made by `make()` when none is free), back to its free list
    afterwards; a generator interleaved with another in the same thread takes its own. Bounded: a process
    trying many configurations keeps only the WORK_KEYS latest keys."""
    lists = _WORK.__dict__
    free = lists[key] = lists.pop(key, [])  # re-inserted last: the most recently used
    while len(lists) > WORK_KEYS:
        del lists[next(iter(lists))]
    buffers = free.pop() if free else make()
    try:
        yield buffers
    finally:
        if len(free) < FREE_PER_KEY:
            free.append(buffers)


class Scratch:
    """Named uninitialised arrays carved from byte buffers kept between uses: `array(name, shape, dtype)`
    is valid until the same name is asked for again. Use it through `work_buffers` (`with
    work_buffers(("my-use",), Scratch) as scratch:`), which keeps one per thread and use."""

    def __init__(self) -> None:
        self._pool: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if name not in self._pool or self._pool[name].nbytes < nbytes:
            self._pool.pop(name, None)  # free the old one first
            self._pool[name] = np.empty(int(nbytes * GROWTH) + 64, dtype=np.uint8)
        return self._pool[name][:nbytes].view(dtype).reshape(shape)
