"""Using a trained model version from the store: load it (weights_only) with its normaliser, and run it on
whole utterances."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.dataset as ds
import torch

from stores.errors import ConfigError, NotFoundError
from training.checkpoint import load_model
from training.data import Normalizer


def model_row(store, version: str) -> dict:
    rows = store.read_table("models", filter=ds.field("model_version") == version).to_pylist()
    if not rows:
        known = store.read_table("models", columns=["model_version"])["model_version"].to_pylist()
        raise NotFoundError(
            f"Expected a trained model version ({', '.join(sorted(known)) or 'none stored'}). "
            f"Got {version!r} instead."
        )
    return rows[0]


def load_version(store, version: str, device: str | torch.device = "cpu"):
    """-> (model in eval mode, normaliser, models row) of a trained version, from its last checkpoint."""
    row = model_row(store, version)
    folder = f"{store.path}/checkpoints/{version}"
    found = sorted(p for p in store.fs.ls(folder, detail=False) if p.endswith(".pt") and "/epoch-" in p)
    if not found:
        raise NotFoundError(f"Expected checkpoints of model {version!r} under {folder}. Got none.")
    with store.fs.open(found[-1], "rb") as handle:
        model, _ = load_model(io.BytesIO(handle.read()), map_location=device)
    features = store.features(row["feature_id"])
    try:
        mean, std = features.stats("input")
        normalizer = Normalizer(mean, std).to(device)
    except NotFoundError:
        normalizer = torch.nn.Identity()
    return model.eval(), normalizer, row


def stft_config(store, row: dict) -> dict:
    """The STFT settings of the features a model version was trained on."""
    spec = json.loads(store.features(row["feature_id"]).row["config_json"])["feature"]
    return {k: spec.get(k) for k in ("n_fft", "hop_length", "win_length", "window", "center", "sample_rate")}


@torch.no_grad()
def predict_mask(model, normalizer, magnitude: np.ndarray) -> np.ndarray:
    """A mask model's estimate for one utterance's |Y| (frames, bins) -> (frames, bins) float32 in [0, 1]."""
    if model.output != "mask":
        raise ConfigError(f"Expected a mask model. Got {model.name!r} with output {model.output!r} instead.")
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(magnitude, dtype=np.float32))[None].to(device)
    return model(normalizer(x))[0].float().clamp(0, 1).cpu().numpy()
