"""The device side of training data: a batch moved to the device and expanded there by its feature kind,
and normalisation with a feature set's statistics. Reading and batching the store's arrays is
`training.stream`.
"""

from __future__ import annotations

import numpy as np
import torch

from features.kind import get_kind


class Normalizer(torch.nn.Module):
    """Per-bin (z-score) normalisation with a feature set's training statistics, on the device."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, floor: float = 1e-5) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.maximum(std, floor), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def prepare_batch(batch: dict, device: torch.device, kind: str, config: dict, roles: tuple[str, ...]) -> dict:
    """Move a batch to the device (non-blocking from pinned memory) and expand each role of the feature
    kind there: {role: expanded features, "clean": waveform where loaded}."""
    moved = {
        k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()
    }
    moved = {
        k: (v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
        for k, v in moved.items()
    }
    layout = get_kind(kind)
    out = {k: v for k, v in moved.items() if k == "clean" or k == "utterance_id"}
    for role in roles:
        names = layout.stored_names(config, role)
        out[role] = layout.expand_torch({n: moved[n] for n in names}, config, role)
    return out
