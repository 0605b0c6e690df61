"""Evaluation: enhance every utterance of a pair set's split with a trained model version, store the
predictions under a new run (never replacing an older one), and compute per-utterance metrics for the model
and for the unprocessed input (model `noisy`).

A registered non-learned method (`METHODS`: `reassigned-pghi`, `zero-phase`) is evaluated the same way with
the feature config of a named feature set: its rows read model = the method's name and model_version =
`<method>@<feature_id>` (`MethodEnhancer`, `make_enhancer`).

The model's input features are computed from each pair's waveforms with the exact feature config the model
was trained on, so any pair set can be evaluated (not only one with stored features). Reconstruction fits the
model: noisy phase + iSTFT for magnitude models (Griffin-Lim on request), the complex output for DCCRN and
complex U-Nets, the waveform itself for the reassigned inverter.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.dataset as ds
import torch

from features import compute_feature, config_from_dict, invert_reassigned, invert_zero_phase, stft_tf
from pipelines.featurize import MaskSource, by_pair_shard, committed_pairs, pair_features
from pipelines.ingest import Shard
from stores.audio_index import PairReader
from stores.config import Registry, parse_choice
from stores.errors import ConfigError, NotFoundError
from stores.store import Store, attrs_json, now_utc
from training.inference import load_version, model_row

BLOCK_FRAMES, OVERLAP_FRAMES = 3000, 200  # long utterances go through the model in overlapping blocks
RECONSTRUCTIONS = ("auto", "noisy-phase", "griffin-lim")


def new_run_id() -> str:
    return f"run-{now_utc().strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


def run_in_blocks(
    fn, x: torch.Tensor, block: int = BLOCK_FRAMES, overlap: int = OVERLAP_FRAMES
) -> torch.Tensor:
    """fn over (1, frames, ...) in overlapping blocks along time; each block keeps its centre (the overlap
    gives the model context on both sides) and the pieces are concatenated."""
    frames = x.shape[1]
    if frames <= block:
        return fn(x)
    pieces, start = [], 0
    while start < frames:
        lo, hi = max(0, start - overlap), min(frames, start + block + overlap)
        out = fn(x[:, lo:hi])
        pieces.append(out[:, start - lo : start - lo + min(block, frames - start)])
        start += block
    return torch.cat(pieces, dim=1)


def own_reconstruction(model) -> str | None:
    """How a model that makes its own waveform or complex spectrum reconstructs (None: a magnitude model,
    whose phase is chosen by `--reconstruction`)."""
    if model.input_kind == "reassigned":
        return "waveform"
    if model.output == "crm" or model.input_kind == "complex":
        return "complex"
    return None


class Enhancer:
    """A trained model version ready to enhance whole utterances."""

    def __init__(self, store: Store, version: str, reconstruction: str = "auto", device: str = "cpu") -> None:
        parse_choice(reconstruction, RECONSTRUCTIONS, "--reconstruction")
        self.model, self.normalizer, self.row = load_version(store, version, device)
        spec = json.loads(store.features(self.row["feature_id"]).row["config_json"])
        self.config = config_from_dict(spec["feature"])
        self.mask = MaskSource(store, self.config)
        self.device = torch.device(device)
        own = own_reconstruction(self.model)
        if own and reconstruction != "auto":
            raise ConfigError(
                f"Expected --reconstruction auto for model {version!r} (it makes its own {own}). "
                f"Got {reconstruction!r} instead."
            )
        self.reconstruction = own or ("noisy-phase" if reconstruction == "auto" else reconstruction)
        self.version, self.name = version, self.row["architecture"]  # the metrics rows' model_version, model

    @torch.no_grad()
    def __call__(self, signals: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """{input, clean, noise} -> (enhanced waveform as long as the input, enhanced spectrogram or None)."""
        model, kind = self.model, self.model.input_kind
        if kind == "reassigned":  # the inverter rebuilds the clean signal from its reassigned triple
            triple = torch.from_numpy(compute_feature(signals["clean"], self.config))[None].to(self.device)
            wave = model(triple)[0].float().cpu().numpy()
            out = np.zeros_like(signals["clean"])
            n = min(wave.shape[0], out.shape[0] - model.sample_offset)
            out[model.sample_offset : model.sample_offset + n] = wave[:n]
            return out, None
        if model.output == "crm":  # DCCRN: its own STFT, complex mask, iSTFT
            x = torch.from_numpy(signals["input"])[None].to(self.device)
            spec = model.forward_spec(model.stft(x))
            return model.istft(spec, x.shape[-1])[0].float().cpu().numpy(), spec[0].float().cpu().numpy()
        return self._spectral(signals)

    def _spectral(self, signals: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        noisy_tf = stft_tf(signals["input"], self.config)  # (frames, bins) complex
        if self.model.input_kind == "complex":
            x = np.stack([noisy_tf.real, noisy_tf.imag], axis=1)
        elif self.model.input_kind == "decomposed":
            stored = pair_features(signals, self.config, self.mask)
            from features import expand_decomposed

            x = expand_decomposed(stored["input"], stored["levels"], self.config.n)
        else:
            x = np.abs(noisy_tf)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(self.device)
        out = run_in_blocks(lambda b: self.model(self.normalizer(b)), xt)[0].float().cpu().numpy()
        if self.model.input_kind == "complex":
            enhanced_tf = out[:, 0] + 1j * out[:, 1]
        else:
            magnitude = np.abs(noisy_tf) * out if self.model.output == "mask" else out
            if self.reconstruction == "griffin-lim":
                return self._griffin_lim(magnitude, signals["input"].shape[0]), magnitude
            enhanced_tf = magnitude * np.exp(1j * np.angle(noisy_tf))
        wave = self._istft(enhanced_tf, signals["input"].shape[0])
        return wave, (np.abs(enhanced_tf) if self.model.input_kind != "complex" else out)

    def _istft(self, tf: np.ndarray, length: int) -> np.ndarray:
        from features.invert import istft

        return istft(tf, self.config, length)

    def _griffin_lim(self, magnitude: np.ndarray, length: int) -> np.ndarray:
        from features.invert import griffin_lim

        return griffin_lim(magnitude, self.config, length, n_iter=64)


@dataclass(frozen=True)
class Method:
    """A non-learned way from a pair's signals to a waveform, evaluated like a model version. `apply` gets
    {input, clean, noise} and the feature config of a set of kind `feature_kind`, and returns a waveform as
    long as the input; `reconstruction` goes into the `predictions` rows."""

    name: str
    feature_kind: str
    reconstruction: str
    apply: Callable[[dict[str, np.ndarray], Any], np.ndarray]
    description: str


METHODS: Registry[Method] = Registry("non-learned method")


def _invert_clean(invert: Callable) -> Callable[[dict[str, np.ndarray], Any], np.ndarray]:
    """As the learned `reassigned-inverter`: the clean signal's feature, inverted back to a waveform."""

    def apply(signals: dict[str, np.ndarray], config: Any) -> np.ndarray:
        clean = signals["clean"]
        return invert(compute_feature(clean, config), config, length=clean.shape[0])

    return apply


for _method in (
    Method(
        "reassigned-pghi",
        "reassigned",
        "pghi",
        _invert_clean(invert_reassigned),
        "the clean signal's reassigned triple -> phase-gradient heap integration -> iSTFT",
    ),
    Method(
        "zero-phase",
        "reassigned",
        "zero-phase",
        _invert_clean(invert_zero_phase),
        "the clean signal's reassigned magnitude with zero phase -> iSTFT (the trivial baseline)",
    ),
):
    METHODS.register(_method.name)(_method)


class MethodEnhancer:
    """A registered method with the feature config of a committed feature set of its kind; called like
    `Enhancer` (no spectrogram is stored)."""

    def __init__(self, store: Store, method: str, feature_id: str) -> None:
        self.method = METHODS.get(method)
        features = store.features(feature_id)
        if features.kind != self.method.feature_kind:
            raise ConfigError(
                f"Expected a {self.method.feature_kind} feature set for method {method!r}. "
                f"Got {feature_id!r} of kind {features.kind!r} instead."
            )
        self.config = config_from_dict(features.config)
        self.version, self.name = f"{method}@{feature_id}", method
        self.reconstruction = self.method.reconstruction

    def __call__(self, signals: dict[str, np.ndarray]) -> tuple[np.ndarray, None]:
        return self.method.apply(signals, self.config).astype(np.float32, copy=False), None


def _check_target(
    version: str | None, method: str | None, feature_id: str | None, reconstruction: str
) -> None:
    if (version is None) == (method is None):
        raise ConfigError(
            f"Expected a model version or a method, not both. Got model version {version!r} and method "
            f"{method!r} instead."
        )
    if method is None and feature_id is not None:
        raise ConfigError(
            f"Expected no feature set with a model version (it knows its own). Got {feature_id!r} instead."
        )
    if method is not None and feature_id is None:
        raise ConfigError(f"Expected a feature set (--features) for method {method!r}. Got none instead.")
    if method is not None and reconstruction != "auto":
        raise ConfigError(
            f"Expected no reconstruction with method {method!r} (it has its own). Got {reconstruction!r} instead."
        )
    parse_choice(reconstruction, RECONSTRUCTIONS, "--reconstruction")


def make_enhancer(
    store: Store,
    version: str | None = None,
    method: str | None = None,
    feature_id: str | None = None,
    reconstruction: str = "auto",
    device: str = "cpu",
) -> Enhancer | MethodEnhancer:
    """A trained model version's `Enhancer` or a method's `MethodEnhancer` (exactly one of the two)."""
    _check_target(version, method, feature_id, reconstruction)
    if method is not None:
        return MethodEnhancer(store, method, feature_id)
    return Enhancer(store, version, reconstruction, device)


def check_target(
    store: Store, version: str | None, method: str | None, feature_id: str | None, reconstruction: str
) -> None:
    """What `make_enhancer` would refuse, without loading a model (for the command line, before any
    server starts)."""
    _check_target(version, method, feature_id, reconstruction)
    if method is not None:
        MethodEnhancer(store, method, feature_id)
    else:
        model_row(store, version)


@dataclass(frozen=True)
class EvalRun:
    run_id: str
    version: str
    architecture: str
    pairset: str
    split: str
    reconstruction: str


def new_run(enhancer: Enhancer | MethodEnhancer, pairset: str, split: str) -> EvalRun:
    """A new run of `enhancer` (a model version or a method) on a pair set's split."""
    return EvalRun(new_run_id(), enhancer.version, enhancer.name, pairset, split, enhancer.reconstruction)


def plan_evaluation(store: Store, pairset: str, split: str) -> list[Shard]:
    """Shards (one per pair shard) of the pair set's utterances in `split`."""
    rows = [r for r in committed_pairs(store, pairset) if r["split"] == split]
    if not rows:
        raise NotFoundError(f"Expected {split} pairs in pair set {pairset!r}. Got none.")
    by_shard = by_pair_shard(rows)
    return [Shard(s, items) for s, items in sorted(by_shard.items())]


def enhance_shard(
    store: Store, run: EvalRun, enhancer: Enhancer | MethodEnhancer, shard: Shard
) -> list[dict]:
    """Enhance one shard's utterances and store the predictions; -> the `predictions` rows."""
    group = f"predictions/{run.run_id}/{shard.shard_id}"
    waves, specs, rows, offset, frame = [], [], [], 0, 0
    now = now_utc()
    for pair, signals in PairReader(store).signals(shard.items):
        wave, spec = enhancer(signals)
        frames = 0 if spec is None else spec.shape[0]
        rows.append(
            {
                "run_id": run.run_id,
                "model_version": run.version,
                "pairset": run.pairset,
                "split": run.split,
                "utterance_id": pair["utterance_id"],
                "array": group,
                "offset": offset,
                "num_samples": wave.shape[0],
                "frame_offset": frame,
                "num_frames": frames,
                "reconstruction": run.reconstruction,
                "shard": f"{run.run_id}-{shard.shard_id}",
                "created_at": now,
            }
        )
        waves.append(wave)
        offset += wave.shape[0]
        if spec is not None:
            specs.append(spec.astype(np.float32))
            frame += frames
    lineage = attrs_json(
        {
            "kind": "predictions",
            "run_id": run.run_id,
            "model_version": run.version,
            "pairset": run.pairset,
            "split": run.split,
            "reconstruction": run.reconstruction,
        }
    )
    store.write_audio_array(f"{group}/wave", np.concatenate(waves), lineage)
    if specs:
        data = np.concatenate(specs)
        store.write_array(
            f"{group}/spec", data, lineage, (max(1, (1 << 20) // max(1, data[:1].nbytes)),), None
        )
    return rows


def metrics_shard(store: Store, run: EvalRun, shard: Shard, rows: list[dict]) -> int:
    """Metrics of the model's predictions and of the unprocessed inputs for one shard, then commit the
    shard (its `metrics` part, after its `predictions` part)."""
    from training.metrics import compute_metrics

    predictions = {r["utterance_id"]: r for r in rows}
    wave = np.asarray(store.arrays[f"{rows[0]['array']}/wave"][:])
    out, now = [], now_utc()
    for pair, signals in PairReader(store).signals(shard.items, ("input", "clean")):
        pred = predictions[pair["utterance_id"]]
        enhanced = wave[pred["offset"] : pred["offset"] + pred["num_samples"]]
        for model, version, estimate in (
            ("noisy", None, signals["input"]),
            (run.architecture, run.version, enhanced),
        ):
            result = compute_metrics(signals["clean"], estimate)
            out.append(
                {
                    "run_id": run.run_id,
                    "model": model,
                    "model_version": version,
                    "reconstruction": run.reconstruction if version is not None else None,
                    "pairset": run.pairset,
                    "split": run.split,
                    "utterance_id": pair["utterance_id"],
                    **result.values(),
                    "notes": json.dumps(result.notes, sort_keys=True) if result.notes else None,
                    "created_at": now,
                }
            )
    part = f"{run.run_id}-{shard.shard_id}"
    store.write_part("predictions", f"part-{part}", rows)
    store.write_part("metrics", f"part-{part}", out)
    return len(out)


def write_plots(st, run, folder: str, plot_ids: list[str] | None) -> list[str]:
    """One PNG per utterance asked for (default: the first three): clean / input / enhanced spectrograms."""
    from pathlib import Path

    from training.results import plot_spectrograms

    rows = {
        r["utterance_id"]: r
        for r in st.read_table("predictions", filter=ds.field("run_id") == run.run_id).to_pylist()
    }
    ids = plot_ids or sorted(rows)[:3]
    unknown = [u for u in ids if u not in rows]
    if unknown:
        raise NotFoundError(
            f"Expected utterances of run {run.run_id} to plot. Got unknown {unknown} instead."
        )
    Path(folder).mkdir(parents=True, exist_ok=True)
    written = []
    for uid in ids:
        row = rows[uid]
        enhanced = np.asarray(
            st.arrays[f"{row['array']}/wave"][row["offset"] : row["offset"] + row["num_samples"]]
        )
        clean, noisy = st.audio(run.pairset, uid, "clean"), st.audio(run.pairset, uid, "input")
        path = Path(folder) / f"{run.run_id}-{uid}.png"
        plot_spectrograms(clean, noisy, enhanced, path, title=f"{run.version} on {uid}")
        written.append(str(path))
    return written
