"""The training loader: (1) the training-step rate of `crn` fed by the streaming loader beside the same
steps fed from in-memory tensors; (2) the streaming loader alone (no model): segments and MB per second
with 0, 1 and 2 loader workers, beside an in-memory iterator over the same segments (cut beforehand, then
batched by the same collate), for a magnitude set (crn segments of 100 frames x 257 bins; LZ4, the kind's
default codec, and stored raw) and a complex set (dccrn's: 100 frames x 2 x 257, stored raw, the kind's
default). Feeds are alternated round by round (other processes' load hits them alike); medians reported.

    .venv/bin/python benchmarks/bench_loader.py [--what loader|steps|both] [--rounds 3] [--batch-size 16] \
        [--segment 100] [--work /tmp/bench-loader] [--speakers 60] [--steps 4] [--device auto]

The store is built once in --work from the demo corpus (`--speakers` x 25 utterances of 2-6 s, noisy pairs
in shards as the flows size them): 60 speakers give more than an hour of training pairs. The step-rate
model is the full `crn` of Tan & Wang (LSTM 1792 units), so that comparison is what training sees.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

SETS = (("magnitude", "lz4"), ("magnitude", "none"), ("complex", "none"))


def build_store(work: Path, speakers: int):
    """(store, {(kind, codec): feature_id}), built once and reused."""
    from features import feature_config
    from pipelines.runner import auto_shard_size
    from pipelines.testing import build_demo_store, features_in_process
    from stores.store import open_store

    marker = work / "feature-ids.txt"
    if marker.exists():
        lines = [line.split() for line in marker.read_text().splitlines()]
        return open_store(work / "store", create=False), {(k, c): f for k, c, f in lines}
    utterances = 25
    store, _ = build_demo_store(
        work, {}, speakers=speakers, utterances=utterances, shard_size=auto_shard_size(speakers * utterances)
    )
    ids = {(k, c): features_in_process(store, "noisy", feature_config(k), codec=c) for k, c in SETS}
    marker.write_text("".join(f"{k} {c} {f}\n" for (k, c), f in ids.items()))
    return store, ids


def timed_steps(trainer, batches, steps: int) -> float:
    """Seconds for `steps` optimizer steps over `batches` (after one warm-up step)."""

    def step(batch):
        loss = trainer._loss(batch, trainer.loss)
        loss.backward()
        trainer._step()

    iterator = iter(batches)
    step(next(iterator))
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for batch in itertools.islice(iterator, steps):
        step(batch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def step_rates(store, feature_id: str, args) -> None:
    from training.stream import StreamConfig, make_loader
    from training.trainer import TrainConfig, Trainer

    config = TrainConfig(
        model="crn", feature_id=feature_id, batch_size=args.batch_size, segment=args.segment,
        num_workers=args.loader_workers,
    )  # fmt: skip
    trainer = Trainer(store, config, args.device, progress=False)
    stream = StreamConfig(feature_id=feature_id, segment=args.segment)

    def loader():  # epochs one after another, as long as the steps need
        return itertools.chain.from_iterable(
            make_loader(store.root, stream, args.batch_size, args.loader_workers, epoch, str(trainer.device))
            for epoch in range(100)
        )

    batches = list(itertools.islice(loader(), args.steps + 1))
    memory_runs, streaming_runs = [], []
    for _ in range(args.rounds):
        memory_runs.append(timed_steps(trainer, batches, args.steps))
        streaming_runs.append(timed_steps(trainer, loader(), args.steps))
    memory, streaming = statistics.median(memory_runs), statistics.median(streaming_runs)
    print(
        f"device {trainer.device}, crn {trainer.model.num_parameters() / 1e6:.1f} M parameters, batch "
        f"{args.batch_size} x {args.segment} frames, {args.loader_workers} loader worker(s)"
    )
    print(f"in-memory tensors: {args.steps / memory:.3f} steps/s")
    print(f"streaming loader:  {args.steps / streaming:.3f} steps/s")
    print(f"streaming / in-memory step rate: {memory / streaming:.3f}")


def one_pass(batches) -> tuple[int, int, float, float]:
    """(segments, bytes, seconds, CPU seconds of this process: all its threads) of one pass."""
    started, cpu, segments, size = time.perf_counter(), time.process_time(), 0, 0
    for batch in batches:
        segments += batch["input"].shape[0]
        size += sum(v.nbytes for v in batch.values() if isinstance(v, torch.Tensor))
    return segments, size, time.perf_counter() - started, time.process_time() - cpu


def in_memory(items: list[dict], batch_size: int):
    from training.stream import collate

    for k in range(0, len(items) - batch_size + 1, batch_size):
        yield collate(items[k : k + batch_size])


class Shares(IterableDataset):
    """A FeatureStream's shares for DataLoader's worker processes."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def __iter__(self):
        info = get_worker_info()
        return self.stream.items(info.id, info.num_workers)


def process_workers(loader, workers: int):
    """The same stream through torch's DataLoader with spawned worker processes, a new loader per epoch:
    the loader before reader threads (for comparison)."""
    from training.stream import collate

    return DataLoader(
        Shares(loader.dataset), batch_size=loader.batch_size, num_workers=workers, collate_fn=collate, drop_last=True,
        prefetch_factor=4, multiprocessing_context="spawn",
    )  # fmt: skip


def loader_rates(store, feature_id: str, label: str, args) -> None:
    from training.stream import FeatureStream, StreamConfig, make_loader

    stream = StreamConfig(feature_id=feature_id, segment=args.segment)
    items = list(FeatureStream(store.root, stream))  # the same segments, cut beforehand (and a warm-up)
    feeds = {f"{w} worker thread(s)": w for w in (0, 1, 2)}
    feeds |= {"in-memory iterator": None, "2 DataLoader processes": -2}
    runs: dict[str, list] = {name: [] for name in feeds}
    for epoch in range(args.rounds):
        for name, workers in feeds.items():
            if workers is None:
                batches = in_memory(items, args.batch_size)
            else:
                batches = make_loader(store.root, stream, args.batch_size, max(0, workers), epoch)
                batches = process_workers(batches, -workers) if workers < 0 else batches
            runs[name].append(one_pass(batches))
    fs = store.features(feature_id)
    frames = sum(r["num_frames"] for r in fs.index.values() if r["split"] == "train")
    hours = frames * int(fs.config["hop_length"]) / store.sample_rate / 3600
    print(f"{label}: {feature_id}, {len(items)} training segments ({hours:.2f} h of training pairs)")
    for name, results in runs.items():
        rate = statistics.median(s / t for s, _, t, _ in results)
        mbs = statistics.median(b / t / 1e6 for _, b, t, _ in results)
        cpu = statistics.median(s / c for s, _, _, c in results)
        per_cpu = f"{cpu:8.0f} segments per CPU-second" if "processes" not in name else ""
        print(f"  {name:>24}: {rate:8.0f} segments/s {mbs:8.0f} MB/s {per_cpu}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", default="both", choices=("loader", "steps", "both"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--segment", type=int, default=100)
    parser.add_argument("--speakers", type=int, default=60)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--loader-workers", type=int, default=1, help="for the step rates")
    parser.add_argument("--work", default="/tmp/bench-loader")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    store, ids = build_store(Path(args.work), args.speakers)
    if args.what in ("loader", "both"):
        for (kind, codec), feature_id in ids.items():
            loader_rates(store, feature_id, f"{kind} ({'stored raw' if codec == 'none' else codec})", args)
    if args.what in ("steps", "both"):
        step_rates(store, ids[("magnitude", "lz4")], args)


if __name__ == "__main__":
    main()
