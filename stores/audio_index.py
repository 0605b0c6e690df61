"""Find an utterance's samples from the tables: `Store.audio` for corpora and pair sets."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as ds

from stores.config import parse_choice
from stores.errors import NotFoundError

ROLES = ("clean", "input", "noise")


def _one_row(store, table: str, key: str, name: str, utterance_id: str) -> dict | None:
    rows = store.read_table(
        table, filter=(ds.field(key) == name) & (ds.field("utterance_id") == utterance_id)
    )
    return rows.slice(0, 1).to_pylist()[0] if rows.num_rows else None


def read_audio(store, name: str, utterance_id: str, role: str) -> np.ndarray:
    parse_choice(role, ROLES, "role")
    utt = _one_row(store, "utterances", "corpus", name, utterance_id)
    if utt is not None and role == "clean":
        return store.read_samples(utt["array"], utt["offset"], utt["num_samples"])
    pair = _one_row(store, "pairs", "pairset", name, utterance_id)
    if pair is None and utt is not None:
        # a corpus's `input` and `noise` are those of its given pair set (VoiceBank-DEMAND's own noisy files)
        given = store.read_table(
            "pairs",
            filter=(ds.field("corpus") == name)
            & (ds.field("kind") == "given")
            & (ds.field("utterance_id") == utterance_id),
        )
        if not given.num_rows:
            raise NotFoundError(
                f"Expected role 'clean' for corpus {name!r}, which has no given pairs. Got {role!r} instead."
            )
        pair = given.slice(0, 1).to_pylist()[0]
    if pair is None:
        raise NotFoundError(
            f"Expected an utterance of a corpus or pair set. Got {name!r}/{utterance_id!r} instead (not in the store)."
        )
    stored = set((pair["roles"] or "").split(","))
    if role in stored:
        return store.read_samples(f"{pair['array']}/{role}", pair["offset"], pair["num_samples"])
    if role == "input":
        raise NotFoundError(f"Expected pair set {name!r} to store an input for {utterance_id!r}. Got none.")
    clean = (
        store.read_samples(f"{pair['array']}/clean", pair["offset"], pair["num_samples"])
        if "clean" in stored
        else read_audio(store, pair["corpus"], utterance_id, "clean")
    )
    if role == "clean":
        return clean
    # Given pairs (a corpus's own noisy files) store no noise: it is exactly input - clean.
    return store.read_samples(f"{pair['array']}/input", pair["offset"], pair["num_samples"]) - clean
