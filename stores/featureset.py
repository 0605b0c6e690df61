"""Reading a committed feature set: `st.features(feature_id).read(utterance_id, role)`.

A feature set is committed when its `features` row exists (written last, after every shard and the
statistics). Arrays are time-major (frames first). What a kind stores for a role and how it is expanded on
read is the kind's (`stores.layouts.FEATURE_KINDS`, filled by the `features` package): e.g. decomposed sets
store |Y| and a uint8 mask level per bin and are expanded to (frames, n, bins) on read, exactly.

Roles: `input` and `target` for a pair set's features, `clean` for a corpus's.

A set being removed (`specstore rm`, `stores.tombstones`) is not found; a read that overlaps its removal
either returns whole values (its arrays were all still there when it ended) or raises NotFoundError.
"""

from __future__ import annotations

import json
from functools import cached_property

import numpy as np
import pyarrow.dataset as ds

from stores.config import parse_choice
from stores.errors import IntegrityError, NotFoundError
from stores.layouts import CORPUS_ROLES, FEATURE_KINDS, PAIR_ROLES, StoredLayout
from stores.objects import object_id
from stores.paths import feature_stats, member
from stores.tombstones import check_present


class FeatureSet:
    def __init__(self, store, feature_id: str) -> None:
        check_present(store, object_id("features", feature_id))
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
        self.corpus = self.row.get("corpus")
        self.roles = PAIR_ROLES if self.pairset is not None else CORPUS_ROLES

    @property
    def layout(self) -> StoredLayout:
        return FEATURE_KINDS.get(self.kind)

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
        return self.store.read_rows(member(row["array"], name), start, start + row["num_frames"])

    def stored_names(self, role: str) -> tuple[str, ...]:
        parse_choice(role, self.roles, "role")
        return tuple(self.layout.stored_names(self.config, role))

    def read(self, utterance_id: str, role: str | None = None) -> np.ndarray:
        """Time-major features of one utterance: `input` (of the pair's degraded input) or `target` for a
        pair set's features (default `input`), `clean` for a corpus's."""
        role = role or self.roles[0]
        names = self.stored_names(role)
        try:
            stored = {name: self.read_stored(utterance_id, name) for name in names}
        except Exception:  # whatever a vanishing array raised: NotFoundError if the set is being removed
            self._check_still_present(utterance_id, names)
            raise
        self._check_still_present(utterance_id, names)
        return self.layout.expand(stored, self.config, role)

    def _check_still_present(self, utterance_id: str, names) -> None:
        """Raise NotFoundError when the set is being removed, or when an array just read is gone: removal
        takes an array's metadata before its chunks, so arrays still present after a read were whole
        during it."""
        check_present(self.store, object_id("features", self.feature_id))
        group = self._row(utterance_id)["array"]
        if not all(self.store.has_array(member(group, name)) for name in names):
            raise NotFoundError(f"Expected feature set {self.feature_id!r}. Got none: it was removed.")

    def stats(self, role: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-frequency (per channel and bin) mean and standard deviation over the training split."""
        role = role or self.roles[0]
        parse_choice(role, self.roles, "role")
        try:
            return tuple(  # type: ignore[return-value]
                self.store.read_array(feature_stats(self.feature_id, role, s)) for s in ("mean", "std")
            )
        except (KeyError, FileNotFoundError):
            if not self.spec.get("stats_frames"):
                raise NotFoundError(
                    f"Expected statistics for feature set {self.feature_id!r}. Got none: it has no training "
                    "utterances."
                ) from None
            raise IntegrityError(
                f"Expected statistics for feature set {self.feature_id!r}. Got none stored."
            ) from None
