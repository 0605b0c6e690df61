"""Training statistics of a feature set: per (channel, bin) partial sums of each shard, and their reduction
to mean and standard deviation over the training split.

Shards store partial sums (count, sum, sum of squares) beside their arrays instead of returning them, so a
rerun after a kill still has every committed shard's; the set's statistics are reduced from them at the end.
"""

from __future__ import annotations

import math

import numpy as np

STAT_BLOCK_BYTES = 1 << 20  # float64 rows per block of the training sums: cache-sized


def stat_sums(x: np.ndarray) -> np.ndarray:
    """[count, sum, sum of squares] per (channel, bin) over frames, accumulated in float64; NaN-aware
    (reassigned features may hold NaN): a column whose float64 sums are not finite (they cannot overflow)
    held NaN or inf, and only those columns are summed again without them.

    The frames are cast to float64 a cache-sized block at a time and summed there, which is faster than
    numpy's float64-accumulating reductions over a float32 array (they cast in small buffers) with the same
    float64 arithmetic (docs/BENCHMARKS.md)."""
    flat = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    count = np.full(flat.shape[1], float(flat.shape[0]))
    total, squares = np.zeros(flat.shape[1]), np.zeros(flat.shape[1])
    rows = max(1, STAT_BLOCK_BYTES // (8 * max(1, flat.shape[1])))
    work = np.empty((min(rows, flat.shape[0]), flat.shape[1]))
    for start in range(0, flat.shape[0], rows):
        block = work[: min(rows, flat.shape[0] - start)]
        np.copyto(block, flat[start : start + rows])
        total += block.sum(axis=0)
        squares += np.einsum("ti,ti->i", block, block)
    bad = ~(np.isfinite(total) & np.isfinite(squares))
    if bad.any():
        values = flat[:, bad]
        finite = np.isfinite(values)
        values = np.where(finite, values, 0)
        count[bad] = finite.sum(axis=0, dtype=np.float64)
        total[bad] = values.sum(axis=0, dtype=np.float64)
        squares[bad] = np.einsum("ti,ti->i", values, values, dtype=np.float64)
    return np.stack([count, total, squares]).reshape((3, *x.shape[1:]))


def reduce_sums(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean, std, frames) from shards' partial sums: per (channel, bin) mean and population standard
    deviation; frames = the largest count (columns with NaN count fewer)."""
    count, total, squares = np.sum(parts, axis=0)
    mean = total / np.maximum(count, 1)
    std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0.0))
    return mean, std, int(count.max())
