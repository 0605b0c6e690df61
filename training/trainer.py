"""Training from cached features: the loop, checkpoints in the store, resume, curves and the `models` row.

A model version is `<architecture>-<hash of the training config>`: the same config is the same version, so
`--resume` continues an interrupted run of exactly that config. A checkpoint per epoch goes to
`ROOT/checkpoints/<version>/epoch-NNNN.pt` (written to a staging name, then moved); it holds the model
(rebuildable without this module), the optimizer, scheduler, RNG states and history, so a resumed run
continues where it stopped and ends with the same weights as an uninterrupted one.

Under torchrun (`training.distributed`) every rank runs this loop on its share of the data with the model
wrapped in DistributedDataParallel: the same number of steps per epoch on every rank, no gradient all-reduce
on accumulating steps, losses averaged over the ranks, and rank 0 alone writing checkpoints, curves and the
`models` row. `--batch-size` is per rank; the world size and the global batch (per rank x ranks x
accumulation) are part of the version's config when there is more than one rank, and absent from it with
one, so single-process versions keep the hashes they always had.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow.dataset as ds
import torch
from tqdm import tqdm

from features.kind import get_kind
from stores.errors import ConfigError, IntegrityError, NotFoundError
from stores.locks import run_lock
from stores.objects import lock_name, object_id
from stores.paths import TRAINING_RECORD, checkpoint_folder
from stores.store import Store, now_utc
from training.checkpoint import load_model, save_checkpoint
from training.config import TrainConfig
from training.data import Normalizer, prepare_batch
from training.distributed import (
    DEFAULT_TIMEOUT,
    Ranks,
    data_parallel,
    lost_rank_errors,
    no_sync,
    process_group,
    resolve_device,
)
from training.models import build_model, model_class
from training.stream import StreamConfig, batches_per_epoch, make_loader


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)
    best: float = math.inf
    stale: int = 0  # epochs since the best validation loss


class TrainingLoss(torch.nn.Module):
    """The model's training loss as a module's forward: DDP wraps this, so that its forward (which arms the
    gradient all-reduce of the backward) is the one that computes the loss."""

    def __init__(self, model, normalizer: torch.nn.Module, kind, feature_config) -> None:
        super().__init__()
        self.model, self.normalizer = model, normalizer
        self.kind, self.feature_config = kind, feature_config

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model.training_loss(batch, self.normalizer, self.kind, self.feature_config)


class Trainer:
    def __init__(
        self,
        store: Store,
        config: TrainConfig,
        device: str = "auto",
        progress: bool = True,
        ranks: Ranks | None = None,
    ) -> None:
        self.store, self.config, self.progress = store, config, progress
        self.ranks = ranks or Ranks(device=resolve_device(device))
        if config.world_size != self.ranks.world_size:
            raise ConfigError(
                f"Expected {config.world_size} ranks for this config. Got {self.ranks.world_size} instead."
            )
        self.device = self.ranks.device
        self.features = store.features(config.feature_id)
        if self.features.pairset is None:
            raise ConfigError(
                f"Expected the features of a pair set (input and target) to train on. Got {config.feature_id}, "
                f"the features of corpus {self.features.corpus!r} instead."
            )
        self.kind = get_kind(self.features.kind)
        self.feature_config = self.kind.config(self.features.config)
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = build_model(config.model, **self._model_args(model_class(config.model))).to(self.device)
        if self.ranks.distributed:  # each rank its own random draws (dropout) from here on
            torch.manual_seed(
                int(np.random.SeedSequence([config.seed, self.ranks.rank]).generate_state(1)[0])
            )
        self._check_output()
        self.normalizer = self._normalizer().to(self.device)
        self.loss = TrainingLoss(self.model, self.normalizer, self.kind, self.feature_config)
        self.parallel: torch.nn.Module = self.loss  # DDP-wrapped in `fit` with more than one rank
        opt = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt(
            self.model.parameters(), lr=config.lr, amsgrad=config.amsgrad, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=config.plateau_factor, patience=config.plateau_patience
        )
        self.state = TrainState()
        self.folder = checkpoint_folder(store.path, config.version)

    def _model_args(self, cls) -> dict:
        """The model's size follows the features' layout (bins, channels, the STFT of models with their own);
        what the user set wins."""
        layout = self.kind.model_layout(self.feature_config)
        cls.check_layout(layout)
        args = {**cls.config_args(layout), **self.config.model_args}
        if cls.own_reconstruction is not None or "output" in args:
            return args
        default = getattr(cls.config_class, "output", None)  # the config field's default, if it has one
        if default is not None and default not in self.kind.outputs and self.kind.outputs:
            args["output"] = self.kind.outputs[0]  # e.g. a band gain (mask) on log-mel features
        return args

    def _check_output(self) -> None:
        model, outputs = self.model, self.kind.outputs
        if model.own_reconstruction is None and model.output not in outputs:
            raise ConfigError(
                f"Expected a model with output {' or '.join(outputs) or 'of its own'} for {self.kind.name} "
                f"features. Got {self.config.model!r} with output {model.output!r} instead."
            )

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

    def save(self) -> str | None:
        """Every rank's RNG state to rank 0, which writes the checkpoint (beside the run's training record);
        the path on rank 0, None elsewhere."""
        rng = self.ranks.gather(torch.get_rng_state())
        if not self.ranks.main:
            return None
        buffer = io.BytesIO()
        extra = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.state.epoch,
            "best": self.state.best,
            "stale": self.state.stale,
            "history": json.dumps(self.state.history),
            "train_config": self.config.to_json(),
            "rng_torch": rng[0],
            "feature_id": self.config.feature_id,
            **({"rng_torch_ranks": rng} if self.ranks.distributed else {}),
        }
        save_checkpoint(buffer, self.model, name=self.config.model, config=self.model.config, extra=extra)
        self.store.fs.makedirs(self.folder, exist_ok=True)
        self._write_training_record()
        final = f"{self.folder}/epoch-{self.state.epoch:04d}.pt"
        staging = f"{self.folder}/.{uuid.uuid4().hex}.tmp"
        self.store.fs.pipe_file(staging, buffer.getvalue())
        self.store.fs.mv(staging, final)
        return final

    def _write_training_record(self) -> None:
        """What `gc` needs to know whether `--resume` could continue this run, should it be interrupted, and
        what `--resume` checks its number of ranks against: the run's config, beside its checkpoints."""
        config = self.config
        record = {
            "model_version": config.version,
            "feature_id": config.feature_id,
            "config": config.to_dict(),
        }
        self.store.fs.pipe_file(f"{self.folder}/{TRAINING_RECORD}", json.dumps(record).encode())

    def resume(self) -> bool:
        """Load the newest checkpoint of this version (every rank reads it); False when there is none."""
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
        rng = extra.get("rng_torch_ranks", [extra["rng_torch"]])[self.ranks.rank]
        torch.set_rng_state(rng.cpu() if hasattr(rng, "cpu") else rng)
        return True

    # ------------------------------------------------------------------ loop
    def _loader(self, split: str, epoch: int):
        stream = StreamConfig(
            feature_id=self.config.feature_id,
            split=split,
            segment=self.config.segment,
            seed=self.config.seed,
            with_audio=self.model.needs_audio,
        )
        return make_loader(
            self.store.root, stream, self.config.batch_size, self.config.num_workers, epoch,
            str(self.device), self.ranks.rank, self.ranks.world_size,
        )  # fmt: skip

    def _loss(self, batch, module: torch.nn.Module) -> torch.Tensor:
        batch = prepare_batch(
            batch, self.device, self.features.kind, self.features.config, self.features.roles
        )
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        with autocast:
            return module(batch)

    def _epoch_batches(self, loader) -> int:
        """Batches every rank runs this epoch: the shortest rank's count (`training.distributed`), at most
        max_steps x accumulate."""
        limit = self.config.max_steps * self.config.accumulate
        count = batches_per_epoch(loader)
        shortest = self.ranks.minimum(min(count, limit) if limit else count)
        if not shortest:
            ranks = self.ranks.world_size
            raise ConfigError(
                f"Expected a batch of {self.config.batch_size} training segments on every rank. Got "
                f"{'a rank with ' if ranks > 1 else ''}none: {len(loader.dataset)} segments of "
                f"{self.config.segment} frames in all, across {ranks} rank(s) (utterances shorter than "
                "--segment, or fewer segments than ranks x --batch-size x --loader-workers?)"
            )
        return shortest

    def train_epoch(self, epoch: int) -> tuple[float, int]:
        self.parallel.train()
        loader = self._loader("train", epoch)
        batches, accumulate = self._epoch_batches(loader), self.config.accumulate
        total, count, steps = 0.0, 0, 0
        bar = tqdm(
            itertools.islice(loader, batches),
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            disable=not self.progress,
            total=batches,
            unit="batch",
        )
        self.optimizer.zero_grad(set_to_none=True)
        for k, batch in enumerate(bar):
            step = (k + 1) % accumulate == 0 or k + 1 == batches
            with no_sync(self.parallel, skip=not step):  # gradients all-reduced on stepping batches only
                loss = self._loss(batch, self.parallel)
                (loss / accumulate).backward()
            total, count = total + float(loss.detach()), count + 1
            if step:
                self._step()
                steps += 1
            bar.set_postfix(loss=f"{total / count:.4g}")
        if count != batches:  # the counts are exact: a rank short of batches would leave the others waiting
            raise IntegrityError(f"Expected {batches} training batches this epoch. Got {count} instead.")
        total, count = self.ranks.sums(total, count)
        return total / count, steps

    def _step(self) -> None:
        if self.config.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def validate(self, epoch: int) -> float | None:
        """The mean loss over the validation batches of every rank (no DDP: forwards only)."""
        if not self.features.utterances("valid"):
            return None
        self.loss.eval()
        losses = [float(self._loss(batch, self.loss)) for batch in self._loader("valid", epoch)]
        if not self.ranks.distributed:
            return float(np.mean(losses)) if losses else None
        total, count = self.ranks.sums(sum(losses), len(losses))
        return total / count if count else None

    def fit(self) -> TrainState:
        self.parallel = data_parallel(self.loss, self.ranks)
        while self.state.epoch < self.config.epochs:
            epoch, started = self.state.epoch, time.perf_counter()
            train_loss, steps = self.train_epoch(epoch)
            valid_loss = self.validate(epoch)
            monitored = valid_loss if valid_loss is not None else train_loss  # the same on every rank
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
    store: Store,
    config: TrainConfig,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Train (or resume) a model version on this process's ranks (one, or torchrun's: `training.distributed`,
    collectives waiting at most `timeout` seconds); rank 0 writes its curves and `models` row. Returns the
    version (on every rank). Rank 0 holds the version's lock (`train-<version>`), which records the feature
    set it reads: `specstore rm` refuses to remove that set meanwhile."""
    with process_group(device, timeout) as ranks:
        config = config.on_ranks(ranks.world_size)
        version = config.version
        uses = (object_id("features", config.feature_id),)
        lock = (
            run_lock(store, lock_name(object_id("model", version)), uses=uses)
            if ranks.main
            else contextlib.nullcontext()
        )
        with lock:
            if store.read_table("models", filter=ds.field("model_version") == version).num_rows:
                return version  # this exact config is trained already
            trainer = Trainer(store, config, device, progress and ranks.main, ranks)
            check_start(trainer, resume)
            if resume:
                trainer.resume()
            with lost_rank_errors(ranks):
                state = trainer.fit()
            if ranks.main:
                write_model(trainer, state)
    return version


def check_start(trainer: Trainer, resume: bool) -> None:
    """A run with checkpoints needs --resume; --resume of a run interrupted with another number of ranks
    is refused (it would start afresh as another version)."""
    config, store = trainer.config, trainer.store
    if trainer._checkpoints():
        if not resume:
            raise ConfigError(
                f"Expected a new run. Got an interrupted run of {config.version} in the store: pass "
                "--resume to continue it."
            )
        return
    if not resume:
        return
    for other in interrupted_runs(store, config.model):
        if other.without_ranks() == config.without_ranks() and other.world_size != config.world_size:
            raise ConfigError(
                f"Expected --resume with the number of ranks of the interrupted run {other.version} "
                f"({other.world_size}: torchrun --nproc-per-node x --nnodes, or --nproc). Got "
                f"{config.world_size} instead: the world size is part of the model version."
            )


def interrupted_runs(store: Store, model: str) -> list[TrainConfig]:
    """The configs of this architecture's runs with checkpoints (their training record) and no `models`
    row."""
    root = f"{store.path}/checkpoints"
    if not store.fs.exists(root):
        return []
    done = set(store.read_table("models", columns=["model_version"])["model_version"].to_pylist())
    out = []
    for folder in store.fs.ls(root, detail=False):
        version = folder.rstrip("/").rsplit("/", 1)[-1]
        record = f"{folder}/{TRAINING_RECORD}"
        if version.startswith(f"{model}-") and version not in done and store.fs.exists(record):
            out.append(TrainConfig.from_dict(json.loads(store.fs.cat_file(record))["config"]))
    return out


def write_model(trainer: Trainer, state: TrainState) -> None:
    """A trained version's curves and its `models` row (rank 0)."""
    store, config = trainer.store, trainer.config
    write_curves(store, config.version, state.history, trainer.folder)
    last = state.history[-1]
    store.write_part(
        "models",
        f"part-{config.version}",
        [
            {
                "model_version": config.version,
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


def write_curves(store: Store, version: str, history: list[dict], folder: str) -> None:
    import matplotlib  # about a second to import: only where curves are drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the Agg backend: no display needed

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
