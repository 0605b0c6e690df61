"""Training-step rate of `crn` fed by the streaming Zarr loader beside the same steps fed from in-memory
tensors (the batches materialised beforehand), in one run on the same data.

    .venv/bin/python benchmarks/bench_loader.py [--steps 12] [--rounds 3] [--batch-size 8] [--segment 100] \
        [--loader-workers 1] [--work /tmp/bench-loader] [--device auto]

The store is built from the demo corpus (noisy pairs, 257-bin magnitude features). The model is the full
`crn` of Tan & Wang (LSTM 1792 units), so the comparison is what training sees.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import torch


def timed_steps(trainer, batches, steps: int) -> float:
    """Seconds for `steps` optimizer steps over `batches` (after one warm-up step)."""
    from training.data import prepare_batch
    from training.steps import batch_loss

    def step(batch):
        batch = prepare_batch(batch, trainer.device)
        loss = batch_loss(trainer.model, trainer.normalizer, batch, trainer.features)
        loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment", type=int, default=100)
    parser.add_argument("--loader-workers", type=int, default=1)
    parser.add_argument("--work", default="/tmp/bench-loader")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from features import feature_config
    from pipelines.testing import build_demo_store
    from training.data import StreamConfig, make_loader
    from training.trainer import TrainConfig, Trainer

    store, ids = build_demo_store(
        Path(args.work), {"mag": feature_config("magnitude")}, speakers=6, utterances=12
    )
    config = TrainConfig(
        model="crn",
        feature_id=ids["mag"],
        batch_size=args.batch_size,
        segment=args.segment,
        num_workers=args.loader_workers,
    )
    trainer = Trainer(store, config, args.device, progress=False)
    stream = StreamConfig(feature_id=ids["mag"], segment=args.segment)
    need = args.steps + 1

    def loader():
        return make_loader(
            store.root, stream, args.batch_size, args.loader_workers, device=str(trainer.device)
        )

    batches = list(itertools.islice(itertools.chain.from_iterable(loader() for _ in range(100)), need))
    # alternate the two feeds so that load from other processes hits both alike; report medians
    memory_runs, streaming_runs = [], []
    for _ in range(args.rounds):
        memory_runs.append(timed_steps(trainer, batches, args.steps))
        streaming_runs.append(
            timed_steps(trainer, itertools.chain.from_iterable(loader() for _ in range(100)), args.steps)
        )
    memory, streaming = statistics.median(memory_runs), statistics.median(streaming_runs)
    print(
        f"device {trainer.device}, crn {sum(p.numel() for p in trainer.model.parameters()) / 1e6:.1f} M parameters, "
        f"batch {args.batch_size} x {args.segment} frames, {args.loader_workers} loader worker(s)"
    )
    print(f"in-memory tensors: {args.steps / memory:.3f} steps/s")
    print(f"streaming loader:  {args.steps / streaming:.3f} steps/s")
    print(f"streaming / in-memory step rate: {memory / streaming:.3f}")


if __name__ == "__main__":
    main()
