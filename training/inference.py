"""Using a trained model version from the store: load it (weights_only) with its normaliser, run it on whole
utterances, and hand a first-stage mask model to the feature kinds that need one (`MaskModel`)."""

from __future__ import annotations

import io
import threading

import numpy as np
import pyarrow.dataset as ds
import torch

from features.kind import get_kind
from stores.errors import ConfigError, NotFoundError
from stores.objects import object_id
from stores.paths import checkpoint_folder
from stores.store import open_store
from stores.tombstones import check_present
from training.checkpoint import load_model
from training.data import Normalizer


def model_row(store, version: str) -> dict:
    """The `models` row of a trained version (NotFoundError for an unknown one or one being removed)."""
    check_present(store, object_id("model", version))
    rows = store.read_table("models", filter=ds.field("model_version") == version).to_pylist()
    if not rows:
        known = store.read_table("models", columns=["model_version"])["model_version"].to_pylist()
        raise NotFoundError(
            f"Expected a trained model version ({', '.join(sorted(known)) or 'none stored'}). "
            f"Got {version!r} instead."
        )
    return rows[0]


def last_checkpoint(store, version: str) -> str:
    folder = checkpoint_folder(store.path, version)
    found = []
    if store.fs.exists(folder):
        found = sorted(p for p in store.fs.ls(folder, detail=False) if p.endswith(".pt") and "/epoch-" in p)
    if not found:
        raise NotFoundError(f"Expected checkpoints of model {version!r} under {folder}. Got none.")
    return found[-1]


def load_version(store, version: str, device: str | torch.device = "cpu"):
    """-> (model in eval mode, normaliser, models row) of a trained version, from its last checkpoint."""
    row = model_row(store, version)
    with store.fs.open(last_checkpoint(store, version), "rb") as handle:
        model, _ = load_model(io.BytesIO(handle.read()), map_location=device)
    features = store.features(row["feature_id"])
    try:
        mean, std = features.stats("input")
        normalizer = Normalizer(mean, std).to(device)
    except NotFoundError:
        normalizer = torch.nn.Identity()
    return model.eval(), normalizer, row


def trained_layout(store, row: dict):
    """The feature layout a model version was trained on."""
    features = store.features(row["feature_id"])
    kind = get_kind(features.kind)
    return kind.model_layout(kind.config(features.config))


@torch.no_grad()
def predict_mask(model, normalizer, magnitude: np.ndarray) -> np.ndarray:
    """A mask model's estimate for one utterance's input (frames, bins) -> (frames, bins) float32 in [0, 1]."""
    if model.output != "mask":
        raise ConfigError(f"Expected a mask model. Got {model.name!r} with output {model.output!r} instead.")
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(magnitude, dtype=np.float32))[None].to(device)
    return model(normalizer(x))[0].float().clamp(0, 1).cpu().numpy()


class MaskModel:
    """A trained mask model as the function a feature kind asks for (`FeatureKind.needed_model`): |Y|
    (frames, bins) -> mask. Picklable, so Dask worker processes get it: the model is loaded once per process
    on first use."""

    _loaded: dict[tuple[str, str], tuple] = {}
    _lock = threading.Lock()

    def __init__(self, store_root: str, version: str) -> None:
        self.store_root, self.version = store_root, version

    def _model(self):
        key = (self.store_root, self.version)
        with self._lock:
            if key not in self._loaded:
                model, normalizer, _ = load_version(open_store(self.store_root, create=False), self.version)
                self._loaded[key] = (model, normalizer)
            return self._loaded[key]

    def __call__(self, magnitude: np.ndarray) -> np.ndarray:
        return predict_mask(*self._model(), magnitude)


def mask_model_for(store, config) -> MaskModel | None:
    """The first-stage model the feature `config` needs (None when it needs none), checked to be a mask
    model trained on exactly the layout the kind asks for (the same STFT)."""
    kind = get_kind(config.kind)
    version = kind.needed_model(config)
    if version is None:
        return None
    model, _, row = load_version(store, version)
    theirs, wanted = trained_layout(store, row), kind.mask_layout(config)
    if model.output != "mask" or theirs != wanted:
        raise ConfigError(
            f"Expected a mask model on {wanted.describe()} with STFT {wanted.stft} for {kind.name} features. "
            f"Got {row['architecture']} (output {model.output}) on {theirs.describe()} with STFT {theirs.stft} "
            "instead."
        )
    return MaskModel(store.root, version)
