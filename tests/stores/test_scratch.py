import threading

import numpy as np

from stores import scratch
from stores.scratch import Scratch, work_buffers


def test_work_buffers_are_reused_and_bounded_per_thread():
    made = []
    with work_buffers(("test", 1), lambda: made.append(1) or np.empty(3)) as first:
        pass
    with work_buffers(("test", 1), lambda: made.append(1) or np.empty(3)) as again:
        assert again is first  # taken back from this thread's free list, not made anew
    assert len(made) == 1
    for n in range(3 * scratch.WORK_KEYS):  # many configurations: only the latest are kept
        with work_buffers(("test", n + 2), lambda: np.empty(3)):
            pass
    assert len(scratch._WORK.__dict__) <= scratch.WORK_KEYS


def test_nested_and_other_threads_uses_get_their_own_buffers():
    with work_buffers(("nested",), Scratch) as outer, work_buffers(("nested",), Scratch) as inner:
        assert outer is not inner
    seen = []
    worker = threading.Thread(target=lambda: seen.append(work_buffers(("nested",), Scratch).__enter__()))
    worker.start()
    worker.join()
    assert seen[0] is not outer and seen[0] is not inner


def test_scratch_arrays_keep_their_memory_and_grow_when_needed():
    pool = Scratch()
    first = pool.array("a", (10, 3), np.float32)
    assert first.shape == (10, 3) and first.dtype == np.float32
    first[:] = 7
    smaller = pool.array("a", (4, 2), np.float64)  # fits: the same memory, another view
    assert np.shares_memory(first, smaller)
    larger = pool.array("a", (100, 3), np.float32)  # does not fit: a new buffer
    assert larger.shape == (100, 3) and not np.shares_memory(first, larger)
    other = pool.array("b", (5,), np.int16)
    assert other.shape == (5,) and other.dtype == np.int16 and not np.shares_memory(other, larger)
