"""Find an utterance's samples from the tables: `Store.audio` for corpora and pair sets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.dataset as ds

from stores.config import parse_choice
from stores.errors import NotFoundError
from stores.objects import object_id
from stores.paths import member
from stores.scratch import Scratch
from stores.tombstones import check_present

ROLES = ("clean", "input", "noise")


def _one_row(store, table: str, key: str, name: str, utterance_id: str) -> dict | None:
    rows = store.read_table(
        table, filter=(ds.field(key) == name) & (ds.field("utterance_id") == utterance_id)
    )
    return rows.slice(0, 1).to_pylist()[0] if rows.num_rows else None


def read_audio(store, name: str, utterance_id: str, role: str) -> np.ndarray:
    """An utterance's samples of `role`; NotFoundError when its corpus or pair set is being removed (or was
    removed while it was read: removal takes an array's metadata before its chunks, so arrays still
    present after the read were whole during it)."""
    parse_choice(role, ROLES, "role")
    touched: list[tuple[str, str]] = []  # (object id, array path) read
    try:
        samples = _read_audio(store, name, utterance_id, role, touched)
    except NotFoundError:
        raise
    except Exception:  # whatever a vanishing array raised: NotFoundError if its object is being removed
        _check_still_present(store, touched)
        raise
    _check_still_present(store, touched)
    return samples


def _check_still_present(store, touched: list[tuple[str, str]]) -> None:
    for owner, path in touched:
        check_present(store, owner)
        if not store.has_array(path):
            raise NotFoundError(f"Expected {owner}. Got none: it was removed.")


def _samples(store, touched: list, owner: str, path: str, row: dict) -> np.ndarray:
    check_present(store, owner)
    touched.append((owner, path))
    return store.read_samples(path, row["offset"], row["num_samples"])


def _read_audio(store, name: str, utterance_id: str, role: str, touched: list) -> np.ndarray:
    utt = _one_row(store, "utterances", "corpus", name, utterance_id)
    if utt is not None and role == "clean":
        return _samples(store, touched, object_id("corpus", name), utt["array"], utt)
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
    owner = object_id("pairs", pair["pairset"])
    stored = set((pair["roles"] or "").split(","))
    if role in stored:
        return _samples(store, touched, owner, member(pair["array"], role), pair)
    if role == "input":
        raise NotFoundError(f"Expected pair set {name!r} to store an input for {utterance_id!r}. Got none.")
    clean = (
        _samples(store, touched, owner, member(pair["array"], "clean"), pair)
        if "clean" in stored
        else _read_audio(store, pair["corpus"], utterance_id, "clean", touched)
    )
    if role == "clean":
        return clean
    # Given pairs (a corpus's own noisy files) store no noise: it is exactly input - clean.
    return _samples(store, touched, owner, member(pair["array"], "input"), pair) - clean


class _SpanReader:
    """Reads ranges of float32 audio arrays: through the backend's span reader where it has one (local
    arrays: raw chunks read straight into memory, the last partly decoded chunk kept for the next range),
    else through `Store.read_rows`. With a `Scratch` the ranges are read into its memory (names `audio 0`,
    `audio 1`, ...): the signals of one `signals` call are then valid only until the next call."""

    def __init__(self, store, scratch: Scratch | None = None) -> None:
        self.store = store
        self.scratch = scratch
        self._chunks: dict[str, Any] = {}  # path -> span reader, or None where `read_rows` reads it

    def _read(self, path: str, start: int, stop: int, k: int) -> np.ndarray:
        if path not in self._chunks:
            self._chunks[path] = self.store.span_reader(path)
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
        return self.store.read_rows(path, start, stop).astype(np.float32, copy=False)

    @staticmethod
    def _spans(items) -> dict[str, tuple[int, int]]:
        """{array path: (first, last sample)} covering (path, offset, length) items."""
        spans: dict[str, list[int]] = {}
        for path, offset, length in items:
            span = spans.setdefault(path, [offset, offset])
            span[0], span[1] = min(span[0], offset), max(span[1], offset + length)
        return {path: (lo, hi) for path, (lo, hi) in spans.items()}


class UtteranceReader(_SpanReader):
    """Reads the clean signals of a corpus's utterance rows (`array`, `offset`, `num_samples`), each stored
    array's span of the rows of one `signals` call read once."""

    def signals(self, rows: list[dict], roles: tuple[str, ...] = ("clean",)):
        """Yield (row, {"clean": samples}) for each utterance row."""
        spans = self._spans((r["array"], r["offset"], r["num_samples"]) for r in rows)
        read = {p: (lo, self._read(p, lo, hi, k)) for k, (p, (lo, hi)) in enumerate(spans.items())}
        for row in rows:
            start, samples = read[row["array"]]
            first = row["offset"] - start
            yield row, {"clean": samples[first : first + row["num_samples"]]}


class PairReader(_SpanReader):
    """Reads the signals of many pairs efficiently: per `signals` call, each stored array's span of those
    pairs is read once (a pair shard, or a batch of one, is one contiguous read); given pairs' clean
    signals come from their corpus."""

    def __init__(self, store, scratch: Scratch | None = None) -> None:
        super().__init__(store, scratch)
        self._corpus_rows: dict[tuple[str, str], dict] = {}

    def _read_spans(self, rows: list[dict], roles: tuple[str, ...]) -> dict[str, tuple[int, np.ndarray]]:
        """{array path: (first sample, samples)} covering these rows' stored signals of `roles`."""
        items = []
        for row in rows:
            stored = set((row["roles"] or "").split(","))
            wanted = set(roles) | (
                {"input", "clean"} if "noise" in roles and "noise" not in stored else set()
            )
            for role in sorted(wanted & (stored | {"input"})):  # every pair stores its input
                items.append((member(row["array"], role), row["offset"], row["num_samples"]))
        spans = self._spans(items)
        return {path: (lo, self._read(path, lo, hi, k)) for k, (path, (lo, hi)) in enumerate(spans.items())}

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
            start, samples = spans[member(row["array"], role)]
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
