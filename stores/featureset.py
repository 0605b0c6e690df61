"""Reading a committed feature set: `st.features(feature_id).read(utterance_id, role)`.

A feature set is committed when its `features` row exists (written last, after every shard and the
statistics). Arrays are time-major (frames first); decomposed sets store |Y| and a uint8 mask level per
time-frequency bin and are expanded to (frames, n, bins) on read, exactly.
"""

from __future__ import annotations

import json
from functools import cached_property

import numpy as np
import pyarrow.dataset as ds

from stores.config import parse_choice
from stores.errors import IntegrityError, NotFoundError

ROLES = ("input", "target")


class FeatureSet:
    def __init__(self, store, feature_id: str) -> None:
        rows = store.read_table("features", filter=ds.field("feature_id") == feature_id).to_pylist()
        if not rows:
            known = sorted(
                set(store.read_table("features", columns=["feature_id"])["feature_id"].to_pylist())
            )
            raise NotFoundError(
                f"Expected a committed feature set ({', '.join(known) or 'none stored'}). Got {feature_id!r} instead."
            )
        self.store, self.feature_id, self.row = store, feature_id, rows[0]
        self.spec = json.loads(self.row["config_json"])
        self.config = self.spec["feature"]
        self.kind = self.row["kind"]
        self.pairset = self.row["pairset"]

    @cached_property
    def index(self) -> dict[str, dict]:
        table = self.store.read_table("feature_frames", filter=ds.field("feature_id") == self.feature_id)
        return {row["utterance_id"]: row for row in table.to_pylist()}

    def utterances(self, split: str | None = None) -> list[str]:
        return sorted(u for u, r in self.index.items() if split is None or r["split"] == split)

    def _row(self, utterance_id: str) -> dict:
        try:
            return self.index[utterance_id]
        except KeyError:
            raise NotFoundError(
                f"Expected an utterance of feature set {self.feature_id!r}. Got {utterance_id!r} instead."
            ) from None

    def read_stored(self, utterance_id: str, name: str) -> np.ndarray:
        """One stored array's frames of an utterance, as stored (no expansion)."""
        row = self._row(utterance_id)
        start = row["frame_offset"]
        return np.asarray(self.store.arrays[f"{row['array']}/{name}"][start : start + row["num_frames"]])

    def read(self, utterance_id: str, role: str = "input") -> np.ndarray:
        """Time-major features of one utterance: `input` (of the pair's degraded input) or `target`."""
        parse_choice(role, ROLES, "role")
        if self.kind == "decomposed" and role == "input":
            from features.decomposed import expand_decomposed

            mag = self.read_stored(utterance_id, "input")
            levels = self.read_stored(utterance_id, "levels")
            return expand_decomposed(mag, levels, int(self.config["n"]))
        return self.read_stored(utterance_id, role)

    def stats(self, role: str = "input") -> tuple[np.ndarray, np.ndarray]:
        """Per-frequency (per channel and bin) mean and standard deviation over the training split."""
        parse_choice(role, ROLES, "role")
        group = f"features/{self.feature_id}/stats"
        try:
            return np.asarray(self.store.arrays[f"{group}/{role}_mean"][:]), np.asarray(
                self.store.arrays[f"{group}/{role}_std"][:]
            )
        except KeyError:
            if not self.spec.get("stats_frames"):
                raise NotFoundError(
                    f"Expected statistics for feature set {self.feature_id!r}. Got none: its pair set has no "
                    "training pairs."
                ) from None
            raise IntegrityError(
                f"Expected statistics for feature set {self.feature_id!r}. Got none stored."
            ) from None
