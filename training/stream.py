"""Streaming training data from a committed feature set: a PyTorch IterableDataset over Zarr chunks, and
the loader that batches it with reader threads.

Reads are contiguous: each reading unit (a feature shard, the arrays of one pair shard) is read whole, in
its chunk-sized blocks, and fixed-length segments are cut inside utterance boundaries. Segments pass
through a shuffle buffer that spans units. Units are split across distributed ranks, then across each
rank's loader workers, without overlap: the largest first to the consumer with the fewest segments so far
(ties rotate with the epoch, so a surplus moves between ranks from one epoch to the next). Where there are
fewer shards than consumers, shards are cut into runs of whole utterances (read by row ranges) so that
every consumer gets data. Every random choice comes from (seed, epoch, consumer), so an epoch is
reproducible, and the count of batches each rank yields is known before reading (`batches_per_epoch`):
distributed training runs the shortest rank's count. Batches hold a feature set's stored arrays; the
feature kind's expansion and normalisation happen on the device (`training.data.prepare_batch`).

Loader workers are threads of the training process, not DataLoader processes: the reads, blosc's decoding
and the stacking copy release the GIL, while a worker process costs a fresh interpreter's start (seconds,
as much as an epoch of an hour of pairs) and torch's shared-memory hand-over of every batch (fresh shared
pages per batch: about 12 times the stacking copy itself), so that on this data DataLoader's process
workers delivered fewer segments per second than the training process reading alone (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset

from stores.audio_index import PairReader
from stores.config import Config, parse_choice, parse_positive_int
from stores.errors import NotFoundError
from stores.paths import member
from stores.store import Store, open_store

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class StreamConfig(Config):
    feature_id: str
    split: str = "train"
    segment: int = 100  # frames per training segment; 0 = whole utterances (evaluation)
    shuffle_buffer: int = 256  # segments
    seed: int = 0
    with_audio: bool = False  # also yield the clean waveform of each segment (waveform targets)

    def __post_init__(self) -> None:
        parse_choice(self.split, SPLITS, "split")
        if self.segment != 0:
            parse_positive_int(self.segment, "segment")
        if self.shuffle_buffer != 0:
            parse_positive_int(self.shuffle_buffer, "shuffle_buffer")


def _process_rank() -> tuple[int, int]:
    """(rank, world size) of this process in torch.distributed's group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def assign(sizes: list[int], bins: int, rotate: int = 0) -> list[list[int]]:
    """Indices of `sizes` per bin: the largest first to the least loaded bin (ties: the first bin after
    `rotate`), each bin's indices in ascending order. With one bin, every index in order."""
    loads, out = [0] * bins, [[] for _ in range(bins)]
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        b = min(range(bins), key=lambda b: (loads[b], (b - rotate) % bins))
        loads[b] += sizes[i]
        out[b].append(i)
    return [sorted(indices) for indices in out]


class FeatureStream(IterableDataset):
    """Yields dicts of numpy arrays: the set's stored arrays of its roles (e.g. `input` and `target`; the
    kind's extra arrays such as decomposed `levels`), with `with_audio` the `clean` waveform segment, and
    `utterance_id` for whole utterances. `rank` and `world` (default: torch.distributed's group) say which
    ranks share the set; `items(worker, workers)` is one loader worker's share of this rank's."""

    def __init__(
        self, store_root: str, config: StreamConfig, epoch: int = 0, rank: int | None = None,
        world: int | None = None,
    ) -> None:  # fmt: skip
        self.store_root, self.config, self.epoch = store_root, config, epoch
        self.rank, self.world = _process_rank() if rank is None or world is None else (rank, world)
        fs = open_store(store_root, create=False).features(config.feature_id)
        rows = [r for r in fs.index.values() if r["split"] == config.split]
        if not rows:
            raise NotFoundError(
                f"Expected {config.split} utterances in feature set {config.feature_id!r}. Got none."
            )
        self.kind, self.hop, self.n_fft = fs.kind, int(fs.config["hop_length"]), int(fs.config["n_fft"])
        self.pairset = fs.pairset
        self.names = [name for role in fs.roles for name in fs.stored_names(role)]
        by_shard: dict[str, list[dict]] = {}
        for row in rows:
            by_shard.setdefault(row["array"], []).append(row)
        self.shards = sorted(by_shard)
        self.rows_by_shard = {s: sorted(by_shard[s], key=lambda r: r["frame_offset"]) for s in self.shards}
        self.frames = sum(r["num_frames"] for r in rows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:  # segments per epoch, all ranks together
        return sum(self._segments(rows) for rows in self.rows_by_shard.values())

    def _segments(self, rows: list[dict]) -> int:
        """Items cut from these rows: n // segment per utterance (whatever the random phase), or one per
        utterance for whole utterances."""
        seg = self.config.segment
        return sum(r["num_frames"] // seg for r in rows) if seg else len(rows)

    def units(self, workers: int = 1) -> list[tuple[str, list[dict]]]:
        """Reading units (shard, rows): whole shards, or with fewer shards than consumers (ranks × workers)
        each shard cut into runs of whole utterances, so that every consumer can get data."""
        parts = -(-self.world * workers // len(self.shards))
        out = []
        for shard in self.shards:
            rows = self.rows_by_shard[shard]
            for run in np.array_split(np.arange(len(rows)), min(parts, len(rows))):
                out.append((shard, [rows[i] for i in run]))
        return out

    def plan(self, rank: int, workers: int = 1) -> list[list[int]]:
        """Indices into `units(workers)` that each loader worker of `rank` reads this epoch."""
        sizes = [self._segments(rows) for _, rows in self.units(workers)]
        mine = assign(sizes, self.world, self.epoch)[rank]
        return [[mine[i] for i in part] for part in assign([sizes[i] for i in mine], workers, self.epoch)]

    def segments_per_worker(self, workers: int = 1) -> list[int]:
        """Items each loader worker of this rank yields this epoch."""
        units = self.units(workers)
        return [sum(self._segments(units[i][1]) for i in part) for part in self.plan(self.rank, workers)]

    def _read_unit(self, store: Store, group: str, rows: list[dict]) -> tuple[dict[str, np.ndarray], int]:
        """The unit's arrays and the frame they start at: a whole shard read whole, a run of its utterances
        by its span of rows."""
        if len(rows) == len(self.rows_by_shard[group]):
            return {name: store.read_array(member(group, name)) for name in self.names}, 0
        start, stop = rows[0]["frame_offset"], rows[-1]["frame_offset"] + rows[-1]["num_frames"]
        return {name: store.read_rows(member(group, name), start, stop) for name in self.names}, start

    def __iter__(self) -> Iterator[dict]:
        return self.items(0, 1)

    def items(self, worker: int, workers: int) -> Iterator[dict]:
        """The items of loader worker `worker` of `workers` (this rank's share of the set)."""
        index = self.rank * workers + worker
        rng = np.random.default_rng([self.config.seed, self.epoch, index])
        store = open_store(self.store_root, create=False)
        units = self.units(workers)
        mine = [units[i] for i in self.plan(self.rank, workers)[worker]]
        audio = self._audio_reader(store, self.pairset) if self.config.with_audio else None
        order = rng.permutation(len(mine)) if self.config.segment else range(len(mine))
        buffer: list[dict] = []
        for k in order:
            group, rows = mine[k]
            data, base = self._read_unit(store, group, rows)
            for item in self._cut(audio, data, rows, base, rng):
                if not self.config.segment or not self.config.shuffle_buffer:
                    yield item
                    continue
                buffer.append(item)
                if len(buffer) >= self.config.shuffle_buffer:
                    yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))

    @staticmethod
    def _audio_reader(store: Store, pairset: str):
        """utterance id -> clean waveform, reading each pair shard's arrays once."""
        rows = {r["utterance_id"]: r for r in store.committed_rows("pairs", pairset=pairset)}
        reader = PairReader(store)
        return lambda uid: next(reader.signals([rows[uid]], ("clean",)))[1]["clean"]

    def _cut(self, audio, data: dict, rows: list[dict], base: int, rng) -> Iterator[dict]:
        seg = self.config.segment
        for row in rows:
            start, n = row["frame_offset"] - base, row["num_frames"]
            clean = audio(row["utterance_id"]) if audio is not None else None
            if not seg:
                item = {name: values[start : start + n] for name, values in data.items()}
                item["utterance_id"] = row["utterance_id"]
                if clean is not None:
                    item["clean"] = clean
                yield item
                continue
            if n < seg:
                continue  # shorter than one segment: never padded into a training example
            first = int(rng.integers(0, n % seg + 1))  # a random phase, then non-overlapping segments
            for s in range(first, first + (n - first) // seg * seg, seg):
                item = {name: values[start + s : start + s + seg] for name, values in data.items()}
                if clean is not None:  # the samples under the segment's frames (center=False framing)
                    span = clean[s * self.hop : s * self.hop + (seg - 1) * self.hop + self.n_fft]
                    item["clean"] = np.pad(span, (0, (seg - 1) * self.hop + self.n_fft - span.shape[0]))
                yield item


def collate(items: list[dict]) -> dict:
    """A batch: each array's items stacked by numpy (one copy; torch.stack of such views is several times
    slower with more than one intra-op thread), utterance ids as a list."""
    out = {}
    for key in items[0]:
        if key == "utterance_id":
            out[key] = [item[key] for item in items]
        else:
            out[key] = torch.from_numpy(np.stack([item[key] for item in items]))
    return out


class StreamLoader:
    """Batches of a FeatureStream (`collate` of `batch_size` items, each worker dropping its last
    partial batch with `drop_last`): read in this thread with no workers, else by `num_workers` threads,
    each reading its own share, their batches taken in turn as a DataLoader takes its workers' (the same
    batches in the same order as DataLoader's process workers would give). `pin_memory` for CUDA copies."""

    def __init__(
        self, dataset: FeatureStream, batch_size: int, num_workers: int = 0, drop_last: bool = True,
        pin_memory: bool = False, prefetch: int = 4,
    ) -> None:  # fmt: skip
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.drop_last, self.pin_memory, self.prefetch = drop_last, pin_memory, prefetch

    def _batches(self, worker: int, workers: int) -> Iterator[dict]:
        items: list[dict] = []
        for item in self.dataset.items(worker, workers):
            items.append(item)
            if len(items) == self.batch_size:
                yield self._collate(items)
                items = []
        if items and not self.drop_last:
            yield self._collate(items)

    def _collate(self, items: list[dict]) -> dict:
        batch = collate(items)
        if self.pin_memory:
            batch = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return batch

    def __iter__(self) -> Iterator[dict]:
        if not self.num_workers:
            yield from self._batches(0, 1)
            return
        workers = [_Worker(self, w) for w in range(self.num_workers)]
        try:
            live = list(workers)
            while live:
                for worker in list(live):
                    batch = worker.get()
                    if batch is None:
                        live.remove(worker)
                    else:
                        yield batch
        finally:  # also when the consumer stops early: the threads end at their next batch
            for worker in workers:
                worker.stop()


class _Worker:
    """One loader thread: its share's batches through a bounded queue; an error is raised in the consumer."""

    _END = object()

    def __init__(self, loader: StreamLoader, index: int) -> None:
        self.queue: queue.Queue = queue.Queue(loader.prefetch)
        self.stopping = threading.Event()
        batches = loader._batches(index, loader.num_workers)
        self.thread = threading.Thread(target=self._run, args=(batches,), daemon=True, name=f"loader-{index}")
        self.thread.start()

    def _run(self, batches: Iterator[dict]) -> None:
        try:
            for batch in batches:
                if not self._put(batch):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def _put(self, value) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> dict | None:
        value = self.queue.get()
        if isinstance(value, BaseException):
            raise value
        return None if value is self._END else value

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


def make_loader(
    store_root: str,
    config: StreamConfig,
    batch_size: int,
    num_workers: int = 0,
    epoch: int = 0,
    device: str = "cpu",
    rank: int | None = None,
    world: int | None = None,
) -> StreamLoader:
    """Batches of a feature set's split on this rank, read by `num_workers` threads (0: this thread)."""
    dataset = FeatureStream(store_root, config, epoch, rank, world)
    return StreamLoader(
        dataset,
        batch_size=batch_size if config.segment else 1,
        num_workers=num_workers,
        drop_last=bool(config.segment),
        pin_memory=str(device).startswith("cuda"),
    )


def batches_per_epoch(loader: StreamLoader) -> int:
    """The exact count of batches `loader` yields on this rank this epoch: each worker batches its own
    items (and drops its last partial batch)."""
    size, counts = loader.batch_size, loader.dataset.segments_per_worker(max(1, loader.num_workers))
    return sum(n // size if loader.drop_last else -(-n // size) for n in counts)
