"""Deterministic train/valid/test splits by speaker.

A speaker's split comes from a hash of its id (not from its rank in a sorted list), so adding speakers to a
corpus never moves an existing speaker to another split.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from stores.config import Config
from stores.errors import ConfigError

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SplitConfig(Config):
    train: float = 0.8
    valid: float = 0.1
    test: float = 0.1
    salt: str = "specstore"

    def __post_init__(self) -> None:
        fractions = (self.train, self.valid, self.test)
        if any(not math.isfinite(f) or f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
            raise ConfigError(
                f"Expected split fractions (train, valid, test) >= 0 summing to 1. Got {fractions} instead."
            )


def parse_split_fractions(text: str) -> SplitConfig:
    """'0.8,0.1,0.1' -> SplitConfig."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise ConfigError(
            f"Expected three fractions TRAIN,VALID,TEST such as 0.8,0.1,0.1. Got {text!r} instead."
        )
    return SplitConfig(*values)


def speaker_split(speaker_id: str, config: SplitConfig = SplitConfig()) -> str:
    digest = hashlib.sha256(f"{config.salt}:{speaker_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < config.train:
        return "train"
    if u < config.train + config.valid:
        return "valid"
    return "test"
