"""The training config: what a model version is the hash of (`TrainConfig.version`).

`batch_size` is per rank. With more than one rank the world size and the global batch (per rank x ranks x
accumulation) enter the config, since they change the training; with one rank they are left out of
`to_dict`, so single-process configs keep the versions (hashes) they had before distributed training and
existing stores keep resolving them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from stores.config import Config, parse_choice, parse_positive_float, parse_positive_int
from stores.errors import ConfigError

OPTIMIZERS = ("adam", "adamw")
RANK_FIELDS = ("world_size", "global_batch")  # in a version's config only with more than one rank


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
    world_size: int = 1  # ranks (processes) training together; batch_size is per rank

    def __post_init__(self) -> None:
        names = (
            "epochs",
            "batch_size",
            "accumulate",
            "segment",
            "patience",
            "plateau_patience",
            "world_size",
        )
        for name in names:
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

    @property
    def global_batch(self) -> int:
        """Segments behind one optimizer step: per rank x ranks x accumulation."""
        return self.batch_size * self.world_size * self.accumulate

    def to_dict(self) -> dict:
        """The fields; `world_size` and `global_batch` only with more than one rank, so that the versions
        (hashes) of single-process configs are the ones they had before distributed training."""
        out = super().to_dict()
        del out["world_size"]
        if self.world_size > 1:
            out.update(world_size=self.world_size, global_batch=self.global_batch)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        global_batch = data.pop("global_batch", None)
        config = super().from_dict(data)
        if global_batch is not None and global_batch != config.global_batch:
            raise ConfigError(
                f"Expected global_batch = batch_size x world_size x accumulate = {config.global_batch}. "
                f"Got {global_batch} instead."
            )
        return config

    def on_ranks(self, world_size: int) -> TrainConfig:
        """This config trained by `world_size` ranks (the launcher's count)."""
        if world_size == self.world_size:
            return self
        if self.world_size != 1:
            raise ConfigError(
                f"Expected {self.world_size} ranks for a config of world_size {self.world_size}. "
                f"Got {world_size} instead."
            )
        return dataclasses.replace(self, world_size=world_size)

    def without_ranks(self) -> dict:
        """The fields that do not depend on the number of ranks."""
        return {k: v for k, v in self.to_dict().items() if k not in RANK_FIELDS}
