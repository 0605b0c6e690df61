"""Streaming training data from a committed feature set: a PyTorch IterableDataset over Zarr chunks.

Reads are contiguous: each feature shard (the arrays of one pair shard) is read whole, in its chunk-sized
blocks, and fixed-length segments are cut inside utterance boundaries. Segments pass through a shuffle
buffer that spans shards. Shards are split across distributed ranks and DataLoader workers without overlap
(shard k goes to the consumer k mod (ranks × workers)); every random choice comes from (seed, epoch,
consumer), so an epoch is reproducible. Normalisation with the stored statistics and the expansion of
decomposed features happen on the device (`prepare_batch`), after the host-to-device copy, where they are
cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from stores.config import Config, parse_choice, parse_positive_int
from stores.errors import ConfigError, NotFoundError
from stores.featureset import FeatureSet
from stores.store import open_store

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


def _consumer() -> tuple[int, int]:
    """(index, count) of this reader among all ranks × DataLoader workers."""
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * workers + worker, world * workers


class FeatureStream(IterableDataset):
    """Yields dicts of numpy arrays: `input` (stored form: |Y| plus `levels` for decomposed), `target`, and
    with `with_audio` the `clean` waveform segment; `utterance_id` for whole utterances."""

    def __init__(self, store_root: str, config: StreamConfig, epoch: int = 0) -> None:
        self.store_root, self.config, self.epoch = store_root, config, epoch
        fs = open_store(store_root, create=False).features(config.feature_id)
        rows = [r for r in fs.index.values() if r["split"] == config.split]
        if not rows:
            raise NotFoundError(
                f"Expected {config.split} utterances in feature set {config.feature_id!r}. Got none."
            )
        self.kind, self.hop, self.n_fft = fs.kind, int(fs.config["hop_length"]), int(fs.config["n_fft"])
        self.shards = sorted({r["array"] for r in rows})
        self.rows_by_shard = {
            s: sorted((r for r in rows if r["array"] == s), key=lambda r: r["frame_offset"])
            for s in self.shards
        }
        self.frames = sum(r["num_frames"] for r in rows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:  # segments per epoch (approximate for the progress bar)
        seg = self.config.segment
        return (
            sum(len(v) for v in self.rows_by_shard.values())
            if not seg
            else sum(r["num_frames"] // seg for rows in self.rows_by_shard.values() for r in rows)
        )

    def _names(self) -> list[str]:
        return ["input", "levels", "target"] if self.kind == "decomposed" else ["input", "target"]

    def _read_shard(self, fs: FeatureSet, group: str) -> dict[str, np.ndarray]:
        return {name: fs.store.read_array(f"{group}/{name}") for name in self._names()}

    def __iter__(self) -> Iterator[dict]:
        index, count = _consumer()
        rng = np.random.default_rng([self.config.seed, self.epoch, index])
        store = open_store(self.store_root, create=False)
        fs = store.features(self.config.feature_id)
        mine = [s for k, s in enumerate(self.shards) if k % count == index]
        audio = self._audio_reader(store, fs) if self.config.with_audio else None
        order = rng.permutation(len(mine)) if self.config.segment else range(len(mine))
        buffer: list[dict] = []
        for k in order:
            group = mine[k]
            data = self._read_shard(fs, group)
            for item in self._cut(audio, data, self.rows_by_shard[group], rng):
                if not self.config.segment or not self.config.shuffle_buffer:
                    yield item
                    continue
                buffer.append(item)
                if len(buffer) >= self.config.shuffle_buffer:
                    yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))

    @staticmethod
    def _audio_reader(store, fs: FeatureSet):
        """utterance id -> clean waveform, reading each pair shard's arrays once."""
        import pyarrow.dataset as ds

        from stores.audio_index import PairReader

        rows = {
            r["utterance_id"]: r
            for r in store.read_table("pairs", filter=ds.field("pairset") == fs.pairset).to_pylist()
        }
        reader = PairReader(store)
        return lambda uid: next(reader.signals([rows[uid]], ("clean",)))[1]["clean"]

    def _cut(self, audio, data: dict, rows: list[dict], rng) -> Iterator[dict]:
        seg = self.config.segment
        for row in rows:
            start, n = row["frame_offset"], row["num_frames"]
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
    out = {}
    for key in items[0]:
        if key == "utterance_id":
            out[key] = [item[key] for item in items]
        else:
            out[key] = torch.from_numpy(np.stack([np.asarray(item[key]) for item in items]))
    return out


def make_loader(
    store_root: str,
    config: StreamConfig,
    batch_size: int,
    num_workers: int = 0,
    epoch: int = 0,
    device: str = "cpu",
) -> DataLoader:
    dataset = FeatureStream(store_root, config, epoch)
    cuda = str(device).startswith("cuda")
    return DataLoader(
        dataset,
        batch_size=batch_size if config.segment else 1,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=cuda,
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
        drop_last=bool(config.segment),
        # spawned, not forked: zarr's I/O event-loop thread (and Prefect's threads) do not survive a fork,
        # and a forked worker can fail on its first read (seen once in the full test run)
        multiprocessing_context="spawn" if num_workers else None,
    )


class Normalizer(torch.nn.Module):
    """Per-bin (z-score) normalisation with a feature set's training statistics, on the device."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, floor: float = 1e-5) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.maximum(std, floor), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def prepare_batch(batch: dict, device: torch.device, n_channels: int | None = None) -> dict:
    """Move a batch to the device (non-blocking from pinned memory) and expand decomposed features there."""
    out = {
        k: (v.to(device, non_blocking=True).float() if isinstance(v, torch.Tensor) else v)
        for k, v in batch.items()
    }
    if "levels" in out:
        from features.decomposed import expand_decomposed_torch

        if n_channels is None:
            raise ConfigError("Expected the number of decomposed channels. Got none.")
        out["magnitude"] = out["input"]
        out["input"] = expand_decomposed_torch(out["input"], out.pop("levels").to(torch.uint8), n_channels)
    return out
