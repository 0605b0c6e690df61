"""Find an utterance's samples from the tables: `Store.audio` for corpora and pair sets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.dataset as ds

from stores.config import parse_choice
from stores.errors import NotFoundError
from stores.scratch import Scratch

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


class PairReader:
    """Reads the signals of many pairs efficiently: per `signals` call, each stored array's span of those
    pairs is read once (a pair shard, or a batch of one, is one contiguous read; local arrays through
    `LocalChunks`, which keeps a partly decoded chunk for the next batch); given pairs' clean signals come
    from their corpus.

    With a `Scratch` the spans are read into its memory (names `audio 0`, `audio 1`, ...): the signals of
    one `signals` call are valid only until the next call, or the scratch's next use."""

    def __init__(self, store, scratch: Scratch | None = None) -> None:
        self.store = store
        self.scratch = scratch
        self._chunks: dict[str, Any] = {}  # path -> LocalChunks, or None where zarr reads it
        self._corpus_rows: dict[tuple[str, str], dict] = {}

    def _read_spans(self, rows: list[dict], roles: tuple[str, ...]) -> dict[str, tuple[int, np.ndarray]]:
        """{array path: (first sample, samples)} covering these rows' stored signals of `roles`."""
        spans: dict[str, list[int]] = {}
        for row in rows:
            stored = set((row["roles"] or "").split(","))
            wanted = set(roles) | (
                {"input", "clean"} if "noise" in roles and "noise" not in stored else set()
            )
            for role in wanted & (stored | {"input"}):  # every pair stores its input
                span = spans.setdefault(f"{row['array']}/{role}", [row["offset"], row["offset"]])
                span[0] = min(span[0], row["offset"])
                span[1] = max(span[1], row["offset"] + row["num_samples"])
        return {path: (lo, self._read(path, lo, hi, k)) for k, (path, (lo, hi)) in enumerate(spans.items())}

    def _read(self, path: str, start: int, stop: int, k: int) -> np.ndarray:
        if path not in self._chunks:
            self._chunks[path] = self.store.local_chunks(path)
        chunks = self._chunks[path]
        if chunks is not None and chunks.dtype == np.float32:
            out = (
                self.scratch.array(f"audio {k}", (stop - start,), np.float32)
                if self.scratch
                else np.empty(stop - start, np.float32)
            )
            try:
                chunks.read(start, stop, out)
                return out
            except (FileNotFoundError, ValueError):
                pass  # damaged or missing chunks: zarr decides (a missing chunk reads as the fill value)
        return np.asarray(self.store.arrays[path][start:stop], dtype=np.float32)

    def _load_corpus_rows(self, rows: list[dict]) -> None:
        wanted = {
            (r["corpus"], r["utterance_id"]) for r in rows if "clean" not in (r["roles"] or "").split(",")
        }
        missing = wanted - set(self._corpus_rows)
        for corpus in {c for c, _ in missing}:
            ids = [u for c, u in missing if c == corpus]
            table = self.store.read_table(
                "utterances", filter=(ds.field("corpus") == corpus) & ds.field("utterance_id").isin(ids)
            )
            for row in table.to_pylist():
                self._corpus_rows[(corpus, row["utterance_id"])] = row

    def signals(self, rows: list[dict], roles: tuple[str, ...] = ("input", "clean", "noise")):
        """Yield (row, {role: samples}) for each pair row (float32, equal lengths), reading only `roles`."""
        self._load_corpus_rows(rows)
        spans = self._read_spans(rows, roles)

        def stored_signal(row: dict, role: str) -> np.ndarray:
            start, samples = spans[f"{row['array']}/{role}"]
            return samples[row["offset"] - start : row["offset"] - start + row["num_samples"]]

        for row in rows:
            stored = set((row["roles"] or "").split(","))
            out: dict[str, np.ndarray] = {}
            if "input" in roles or ("noise" in roles and "noise" not in stored):
                out["input"] = stored_signal(row, "input")
            if "clean" in roles or ("noise" in roles and "noise" not in stored):
                out["clean"] = stored_signal(row, "clean") if "clean" in stored else self._corpus_clean(row)
            if "noise" in roles:
                out["noise"] = (
                    stored_signal(row, "noise") if "noise" in stored else out["input"] - out["clean"]
                )
            yield row, {role: out[role] for role in roles}

    def _corpus_clean(self, row: dict) -> np.ndarray:
        utt = self._corpus_rows.get((row["corpus"], row["utterance_id"]))
        if utt is None:
            raise NotFoundError(f"Expected the clean utterance of pair {row['utterance_id']!r}. Got none.")
        return self.store.read_samples(utt["array"], utt["offset"], utt["num_samples"])
