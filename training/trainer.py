"""Training from cached features: the loop, checkpoints in the store, resume, curves and the `models` row.

A model version is `<architecture>-<hash of the training config>`: the same config is the same version, so
`--resume` continues an interrupted run of exactly that config. A checkpoint per epoch goes to
`ROOT/checkpoints/<version>/epoch-NNNN.pt` (written to a staging name, then moved); it holds the model
(rebuildable without this module), the optimizer, scheduler, RNG states and history, so a resumed run
continues where it stopped and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from stores.config import Config, parse_choice, parse_positive_float, parse_positive_int
from stores.errors import ConfigError, NotFoundError
from stores.store import Store, now_utc
from training.data import Normalizer, StreamConfig, make_loader, prepare_batch
from training.steps import batch_loss

OPTIMIZERS = ("adam", "adamw")


@dataclass(frozen=True)
class TrainConfig(Config):
    model: str
    feature_id: str
    model_args: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: str = "adam"
    amsgrad: bool = False
    weight_decay: float = 0.0
    clip_grad: float = 5.0
    accumulate: int = 1
    segment: int = 100
    seed: int = 0
    patience: int = 5  # early stopping: epochs without a better validation loss
    plateau_patience: int = 2
    plateau_factor: float = 0.5
    max_steps: int = 0  # optimizer steps per epoch, 0 = the whole epoch
    num_workers: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "accumulate", "segment", "patience", "plateau_patience"):
            parse_positive_int(getattr(self, name), name)
        parse_positive_float(self.lr, "lr")
        parse_choice(self.optimizer, OPTIMIZERS, "optimizer")
        if self.max_steps < 0 or self.num_workers < 0 or self.weight_decay < 0 or self.clip_grad < 0:
            raise ConfigError(
                "Expected max_steps, num_workers, weight_decay and clip_grad >= 0. Got a negative value."
            )
        if not 0 < self.plateau_factor < 1:
            raise ConfigError(f"Expected plateau_factor in (0, 1). Got {self.plateau_factor} instead.")

    @property
    def version(self) -> str:
        return f"{self.model}-{self.config_hash(length=12)}"


def resolve_device(name: str) -> torch.device:
    parse_choice(name, ("auto", "cpu", "cuda"), "--device")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "Expected a CUDA GPU for --device cuda. Got none (torch.cuda.is_available() is False)."
        )
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)
    best: float = math.inf
    stale: int = 0  # epochs since the best validation loss


class Trainer:
    def __init__(
        self, store: Store, config: TrainConfig, device: str = "auto", progress: bool = True
    ) -> None:
        from training.models import build_model, model_class

        self.store, self.config, self.progress = store, config, progress
        self.device = resolve_device(device)
        self.features = store.features(config.feature_id)
        cls = model_class(config.model)
        if self.features.kind not in cls.input_kinds:
            raise ConfigError(
                f"Expected {' or '.join(cls.input_kinds)} features for model {config.model!r}. "
                f"Got {self.features.kind!r} ({config.feature_id}) instead."
            )
        torch.manual_seed(config.seed)
        self.model = build_model(config.model, **self._model_args(cls)).to(self.device)
        self.normalizer = self._normalizer().to(self.device)
        opt = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt(
            self.model.parameters(), lr=config.lr, amsgrad=config.amsgrad, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=config.plateau_factor, patience=config.plateau_patience
        )
        self.state = TrainState()
        self.folder = f"{store.path}/checkpoints/{config.version}"

    def _model_args(self, cls) -> dict:
        """The model's size follows the features: bins, and channels for decomposed or complex input."""
        args = dict(self.config.model_args)
        fields = {f for f in cls.config_class.__dataclass_fields__}
        if "n_bins" in fields:
            args.setdefault("n_bins", int(self.features.config["n_fft"]) // 2 + 1)
        if "hop_length" in fields:  # models with their own STFT use the features' one
            for key in ("n_fft", "hop_length", "win_length"):
                if key in fields:
                    args.setdefault(key, int(self.features.config[key] or self.features.config["n_fft"]))
        if "in_channels" in fields and self.features.kind in ("decomposed", "complex"):
            args.setdefault(
                "in_channels", int(self.features.config["n"]) if self.features.kind == "decomposed" else 2
            )
        return args

    def _normalizer(self) -> torch.nn.Module:
        try:
            mean, std = self.features.stats("input")
        except NotFoundError:
            return torch.nn.Identity()
        return Normalizer(mean, std)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoints(self) -> list[str]:
        if not self.store.fs.exists(self.folder):
            return []
        return sorted(
            p for p in self.store.fs.ls(self.folder, detail=False) if p.endswith(".pt") and "/epoch-" in p
        )

    def save(self) -> str:
        from training.checkpoint import save_checkpoint

        buffer = io.BytesIO()
        extra = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.state.epoch,
            "best": self.state.best,
            "stale": self.state.stale,
            "history": json.dumps(self.state.history),
            "train_config": self.config.to_json(),
            "rng_torch": torch.get_rng_state(),
            "feature_id": self.config.feature_id,
        }
        save_checkpoint(buffer, self.model, name=self.config.model, config=self.model.config, extra=extra)
        self.store.fs.makedirs(self.folder, exist_ok=True)
        final = f"{self.folder}/epoch-{self.state.epoch:04d}.pt"
        staging = f"{self.folder}/.{uuid.uuid4().hex}.tmp"
        self.store.fs.pipe_file(staging, buffer.getvalue())
        self.store.fs.mv(staging, final)
        return final

    def resume(self) -> bool:
        """Load the newest checkpoint of this version; False when there is none."""
        from training.checkpoint import load_model

        found = self._checkpoints()
        if not found:
            return False
        with self.store.fs.open(found[-1], "rb") as handle:
            model, extra = load_model(io.BytesIO(handle.read()), map_location=self.device)
        self.model.load_state_dict(model.state_dict())
        self.optimizer.load_state_dict(extra["optimizer"])
        self.scheduler.load_state_dict(extra["scheduler"])
        self.state = TrainState(
            int(extra["epoch"]), json.loads(extra["history"]), float(extra["best"]), int(extra["stale"])
        )
        torch.set_rng_state(
            extra["rng_torch"].cpu() if hasattr(extra["rng_torch"], "cpu") else extra["rng_torch"]
        )
        return True

    # ------------------------------------------------------------------ loop
    def _loader(self, split: str, epoch: int):
        stream = StreamConfig(
            feature_id=self.config.feature_id,
            split=split,
            segment=self.config.segment,
            seed=self.config.seed,
            with_audio=self.model.output == "waveform",
        )
        return make_loader(
            self.store.root, stream, self.config.batch_size, self.config.num_workers, epoch, str(self.device)
        )

    def _loss(self, batch) -> torch.Tensor:
        batch = prepare_batch(batch, self.device, self.model.config.to_dict().get("in_channels"))
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        with autocast:
            return batch_loss(self.model, self.normalizer, batch, self.features)

    def train_epoch(self, epoch: int) -> tuple[float, int]:
        self.model.train()
        loader = self._loader("train", epoch)
        total, count, steps = 0.0, 0, 0
        limit = self.config.max_steps * self.config.accumulate or None
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            disable=not self.progress,
            total=min(len(loader), limit) if limit else len(loader),
            unit="batch",
        )
        self.optimizer.zero_grad(set_to_none=True)
        for k, batch in enumerate(bar):
            if limit and k >= limit:
                break
            loss = self._loss(batch)
            (loss / self.config.accumulate).backward()
            total, count = total + float(loss.detach()), count + 1
            if count % self.config.accumulate == 0:
                self._step()
                steps += 1
            bar.set_postfix(loss=f"{total / count:.4g}")
        if count % self.config.accumulate:
            self._step()
            steps += 1
        if not count:
            raise ConfigError("Expected training segments. Got none: utterances shorter than --segment?")
        return total / count, steps

    def _step(self) -> None:
        if self.config.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def validate(self, epoch: int) -> float | None:
        if not self.features.utterances("valid"):
            return None
        self.model.eval()
        losses = [float(self._loss(batch)) for batch in self._loader("valid", epoch)]
        return float(np.mean(losses)) if losses else None

    def fit(self) -> TrainState:
        while self.state.epoch < self.config.epochs:
            epoch, started = self.state.epoch, time.perf_counter()
            train_loss, steps = self.train_epoch(epoch)
            valid_loss = self.validate(epoch)
            monitored = valid_loss if valid_loss is not None else train_loss
            self.scheduler.step(monitored)
            improved = monitored < self.state.best
            self.state.best, self.state.stale = (
                (monitored, 0) if improved else (self.state.best, self.state.stale + 1)
            )
            self.state.epoch += 1
            self.state.history.append(
                {
                    "epoch": epoch + 1,
                    "steps": steps,
                    "train_loss": train_loss,
                    "valid_loss": valid_loss,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - started,
                }
            )
            self.save()
            if self.state.stale >= self.config.patience:
                break  # early stopping
        return self.state


def train(
    store: Store, config: TrainConfig, device: str = "auto", resume: bool = False, progress: bool = True
) -> str:
    """Train (or resume) a model version; write its curves and `models` row; return the version."""
    import pyarrow.dataset as ds

    version = config.version
    if store.read_table("models", filter=ds.field("model_version") == version).num_rows:
        return version  # this exact config is trained already
    trainer = Trainer(store, config, device, progress)
    if trainer._checkpoints() and not resume:
        raise ConfigError(
            f"Expected a new run. Got an interrupted run of {version} in the store: pass --resume "
            "to continue it."
        )
    if resume:
        trainer.resume()
    state = trainer.fit()
    write_curves(store, version, state.history, trainer.folder)
    last = state.history[-1]
    store.write_part(
        "models",
        f"part-{version}",
        [
            {
                "model_version": version,
                "architecture": config.model,
                "config_json": config.to_json(),
                "feature_id": config.feature_id,
                "pairset": trainer.features.pairset,
                "epochs": state.epoch,
                "train_loss": last["train_loss"],
                "valid_loss": last["valid_loss"],
                "created_at": now_utc(),
            }
        ],
    )
    return version


def write_curves(store: Store, version: str, history: list[dict], folder: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [{**h, "model_version": version, "created_at": now_utc()} for h in history]
    store.write_part("curves", f"part-{version}", rows)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    if any(h["valid_loss"] is not None for h in history):
        ax.plot(epochs, [h["valid_loss"] for h in history], marker="o", label="valid")
    ax.set(xlabel="epoch", ylabel="loss", title=version)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    store.fs.pipe_file(f"{folder}/curves.png", buffer.getvalue())
