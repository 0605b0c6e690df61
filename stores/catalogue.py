"""The store as a catalogue: every committed object with its size, counts and lineage both ways.

Built from a scan of each table (only the columns that say who owns a row, with the part each row is in;
`stores.scans` keeps them in a cache on this machine and reads only new or changed parts), a listing of each
table's folder, and of the files under `arrays.zarr` and `checkpoints/`: the cost grows with the number of
files, not with the number of objects asked about. An object's bytes are those of its group
of arrays, its checkpoints and the table parts holding only its rows (all of them while every part is one
shard's or one object's), which is what removing it frees. Objects with a removal record are left out:
they are gone for every reader.

Lineage (what each object was made from) comes from the rows: a pair set from its corpus and the corpora
its noises and impulse responses were ingested as; a feature set from its pair set or corpus and from the
model whose masks its kind computed with (`StoredLayout.model_of`); a model from its feature set; a run from
its model version (or, for a method, the feature set whose config it used) and its pair set.
"""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import pyarrow as pa

from stores.commits import COMMIT_TABLES, part_footer_shards
from stores.errors import ConfigError, NotFoundError
from stores.layouts import FEATURE_KINDS
from stores.objects import (
    DESCRIPTIONS,
    OWNER_COLUMNS,
    PLURALS,
    object_id,
    object_of_array,
    row_owners,
    split_id,
)
from stores.paths import AUDIO, checkpoint_folder, pairset_group, stored_object
from stores.scans import PART, file_sizes, listed_parts, scan_table
from stores.tombstones import removed_ids

# the columns each table is scanned for, besides its owner columns
SCANNED: dict[str, tuple[str, ...]] = {
    "utterances": ("shard", "created_at"),
    "rejects": ("shard",),
    "pairs": ("corpus", "shard", "created_at"),
    "features": ("kind", "pairset", "corpus", "config_json", "created_at"),
    "feature_frames": ("num_frames", "shard"),
    "models": ("architecture", "feature_id", "epochs", "config_json", "created_at"),
    "curves": (),
    "predictions": ("shard",),
    "metrics": ("model", "model_version", "pairset", "split", "created_at"),
}
METHOD_SEPARATOR = "@"  # a method's runs record model_version `<method>@<feature_id>` (training.enhance)


@dataclass
class Entry:
    """One committed object."""

    kind: str
    name: str
    created: dt.datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)
    made_from: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    bytes: int = 0
    shards: set[str] = field(default_factory=set)  # shards of its commit table (corpora, pairs, features)

    @property
    def id(self) -> str:
        return object_id(self.kind, self.name)

    def to_dict(self) -> dict:
        created = None if self.created is None else self.created.isoformat(timespec="seconds")
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "created": created,
            "bytes": self.bytes,
            "counts": self.counts,
            "made_from": self.made_from,
        }


def _scan(store, table: str) -> tuple[pa.Table, dict[str, int]]:
    """(the owner and scanned columns of every row of `table`, with its part in `__part`; {part: bytes})."""
    rows, sizes = scan_table(store, table, list(dict.fromkeys([*OWNER_COLUMNS[table], *SCANNED[table]])))
    return rows.append_column("owner", row_owners(table, rows)), sizes


def _groups(rows: pa.Table, keys: list[str], aggregates: list[tuple]) -> list[dict]:
    return rows.group_by(keys, use_threads=False).aggregate(aggregates).to_pylist()


def _base(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


class Catalogue:
    """Every committed object of a store (`objects`, by id), with its lineage (`made_from`, `used_by`)."""

    def __init__(self, store) -> None:
        self.store = store
        self.objects: dict[str, Entry] = {}
        with ThreadPoolExecutor(1) as pool:  # the files are listed while the tables are read
            files = pool.submit(self._files_by_owner)
            scans = {table: _scan(store, table) for table in OWNER_COLUMNS}
            owned_files = files.result()
        rows = {table: scanned for table, (scanned, _) in scans.items()}
        self._corpora(rows["utterances"], rows["rejects"])
        self._pairsets(rows["pairs"], rows["rejects"])
        self._feature_sets(rows["features"], rows["feature_frames"])
        self._models(rows["models"])
        self._runs(rows["metrics"])
        for gone in removed_ids(store) & set(self.objects):
            del self.objects[gone]
        self._measure(scans, owned_files)
        self.used_by: dict[str, list[str]] = {oid: [] for oid in self.objects}
        for entry in self.objects.values():
            for parent in entry.made_from:
                self.used_by.setdefault(parent, []).append(entry.id)

    def _add(self, kind: str, name: str, **values) -> Entry:
        entry = self.objects.setdefault(object_id(kind, name), Entry(kind, name))
        for key, value in values.items():
            setattr(entry, key, value)
        return entry

    # ------------------------------------------------------------------ objects from rows
    def _corpora(self, utterances: pa.Table, rejects: pa.Table) -> None:
        counted = [("corpus", "count"), ("created_at", "min"), ("shard", "distinct")]
        for g in _groups(utterances, ["corpus"], counted):
            entry = self._add(
                "corpus", g["corpus"], created=g["created_at_min"], shards=set(g["shard_distinct"])
            )
            entry.counts = {"utterances": g["corpus_count"]}
        for g in _groups(rejects, ["owner"], [("owner", "count"), ("shard", "distinct")]):
            entry = self.objects.get(g["owner"] or "")
            if entry is not None:
                entry.counts["rejected"] = g["owner_count"]
                entry.shards |= set(g["shard_distinct"])  # shards whose every item was rejected too

    def _pairsets(self, pairs: pa.Table, rejects: pa.Table) -> None:
        aggregates = [
            ("pairset", "count"),
            ("created_at", "min"),
            ("shard", "distinct"),
            ("corpus", "distinct"),
        ]
        groups = _groups(pairs, ["pairset"], aggregates)
        paths = [f"{self.store.array_location(pairset_group(g['pairset']))}/zarr.json" for g in groups]
        attrs = self.store.fs.cat(paths, on_error="omit") if paths else {}
        configs = {_base(p.rsplit("/", 1)[0]): json.loads(v).get("attributes", {}) for p, v in attrs.items()}
        for g in groups:
            config = configs.get(g["pairset"], {}).get("config") or {}
            sources = [config.get("noise"), config.get("rir")]
            made = [object_id("corpus", c) for c in [*sorted(g["corpus_distinct"]), *sources] if c]
            entry = self._add("pairs", g["pairset"], created=g["created_at_min"], config=config)
            entry.counts, entry.shards = {"pairs": g["pairset_count"]}, set(g["shard_distinct"])
            entry.made_from = list(dict.fromkeys(made))

    def _feature_sets(self, features: pa.Table, frames: pa.Table) -> None:
        aggregates = [("feature_id", "count"), ("num_frames", "sum"), ("shard", "distinct")]
        counts = {g["feature_id"]: g for g in _groups(frames, ["feature_id"], aggregates)}
        for row in features.select(list(SCANNED["features"]) + ["feature_id"]).to_pylist():
            spec = json.loads(row["config_json"] or "{}")
            made = [
                object_id("pairs", row["pairset"]) if row["pairset"] else object_id("corpus", row["corpus"])
            ]
            # recorded when the set was committed; sets committed before it say so through their kind
            model = spec["model"] if "model" in spec else _model_of(row["kind"], spec.get("feature") or {})
            made += [object_id("model", model)] if model else []
            frame = counts.get(row["feature_id"]) or {}
            entry = self._add(
                "features", row["feature_id"], created=row["created_at"], config=spec, made_from=made,
                counts={"utterances": frame.get("feature_id_count", 0), "frames": frame.get("num_frames_sum") or 0},
            )  # fmt: skip
            entry.shards = set(frame.get("shard_distinct") or ())

    def _models(self, models: pa.Table) -> None:
        for row in models.select(list(SCANNED["models"]) + ["model_version"]).to_pylist():
            config = {"architecture": row["architecture"], **json.loads(row["config_json"] or "{}")}
            self._add(
                "model", row["model_version"], created=row["created_at"], config=config,
                counts={"epochs": row["epochs"] or 0}, made_from=[object_id("features", row["feature_id"])],
            )  # fmt: skip

    def _runs(self, metrics: pa.Table) -> None:
        aggregates = [("run_id", "count"), ("created_at", "min")]
        aggregates += [(c, "distinct") for c in ("model", "model_version", "pairset", "split")]
        for g in _groups(metrics, ["run_id"], aggregates):
            versions = sorted(v for v in g["model_version_distinct"] if v)
            made = []
            for version in versions:
                method, sep, feature_id = version.partition(METHOD_SEPARATOR)
                made.append(object_id("features", feature_id) if sep else object_id("model", version))
            made += [object_id("pairs", p) for p in sorted(p for p in g["pairset_distinct"] if p)]
            config = {
                "model": sorted(m for m in g["model_distinct"] if m and m != "noisy"),
                "model_version": versions,
                "pairset": sorted(p for p in g["pairset_distinct"] if p),
                "split": sorted(s for s in g["split_distinct"] if s),
            }
            self._add(
                "run", g["run_id"], created=g["created_at_min"], config=config, made_from=made,
                counts={"metric rows": g["run_id_count"]},
            )  # fmt: skip

    # ------------------------------------------------------------------ bytes
    def _measure(self, scans: dict[str, tuple[pa.Table, dict[str, int]]], owned: list) -> None:
        """Add each object's bytes: arrays, checkpoints, and the table parts holding only its rows."""
        shard_owners = {s: e.id for e in self.objects.values() for s in e.shards}

        def rowless_owner(table: str, part: str) -> str | None:
            """A part without rows is its shards' object's: listed in its footer (a commit part's), or in
            its name (`part-<shard>`, a part from before the footer record, or a side part)."""
            name = part.removesuffix(".parquet")
            shards = part_footer_shards(self.store, table, name) if table in COMMIT_TABLES else ()
            shards = shards or (name[len("part-") :],)
            return next((shard_owners[s] for s in shards if s in shard_owners), None)

        for table, (rows, sizes) in scans.items():
            owned += [(owner, size) for size, owner in _parts(rows, sizes, partial(rowless_owner, table))]
        for oid, size in owned:
            if oid in self.objects:
                self.objects[oid].bytes += size

    def _files_by_owner(self) -> list[tuple[str | None, int]]:
        """(owner id or None, bytes) of every file under arrays.zarr and checkpoints/."""
        store = self.store
        prefix = store.array_location().rstrip("/") + "/"
        owned = [
            (object_of_array(p[len(prefix) :]), n) for p, n in file_sizes(store, prefix.rstrip("/")).items()
        ]
        checkpoints = checkpoint_folder(store.path, "").rstrip("/")
        for path, size in file_sizes(store, checkpoints).items():
            owned.append((object_id("model", path[len(checkpoints) + 1 :].split("/", 1)[0]), size))
        return owned

    def corpus_config(self, entry: Entry) -> dict:
        """How a corpus was ingested (reader, audio and split configs), from its arrays' lineage."""
        for shard in sorted(entry.shards):
            try:
                attrs = self.store.array_attrs(stored_object(AUDIO, entry.name, shard))
            except (KeyError, FileNotFoundError, ValueError):
                continue  # a shard whose every item was rejected has no array
            return {key: attrs[key] for key in ("reader", "audio_config", "splits") if key in attrs}
        return {}

    # ------------------------------------------------------------------ ids and lineage
    def select(self, plural: str | None = None) -> list[Entry]:
        """The objects of one kind (`corpora`, `pairs`, `features`, `models`, `runs`) or all, in kind order."""
        kind = PLURALS.get(plural or "")
        if plural and kind is None:
            raise ConfigError(f"Expected one of {', '.join(PLURALS)}. Got {plural!r} instead.")
        order = {k: i for i, k in enumerate(DESCRIPTIONS)}
        chosen = [e for e in self.objects.values() if kind is None or e.kind == kind]
        return sorted(chosen, key=lambda e: (order[e.kind], e.created or _EPOCH, e.name))

    def resolve(self, text: str) -> Entry:
        """The object named `KIND:ID` or by a bare id; ConfigError for an ambiguous or mistyped one,
        NotFoundError for an unknown one."""
        kind, name = split_id(text)
        found = [e for e in self.objects.values() if e.name == name]
        if kind is not None:
            match = [e for e in found if e.kind == kind]
            if match:
                return match[0]
            if found:
                raise ConfigError(
                    f"Expected a {DESCRIPTIONS[kind]} {name!r}. Got {name!r} instead, which is a "
                    f"{DESCRIPTIONS[found[0].kind]} ({found[0].id})."
                )
        elif len(found) == 1:
            return found[0]
        elif found:
            raise ConfigError(
                f"Expected one object named {name!r}. Got {len(found)}: {', '.join(e.id for e in found)} "
                "(name one as KIND:ID)."
            )
        raise NotFoundError(f"Expected an object of the store (see specstore ls). Got {text!r} instead.")

    def descendants(self, ids: list[str]) -> list[str]:
        """`ids` and everything made from them, each after everything made from it (the order removal
        goes in, so that whatever part of it is done, nothing left refers to what is gone)."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(oid: str) -> None:
            seen.add(oid)
            for child in sorted(self.used_by.get(oid, [])):
                if child not in seen:
                    visit(child)
            order.append(oid)

        for oid in ids:
            if oid not in seen:
                visit(oid)
        return order


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _parts(rows: pa.Table, sizes: dict[str, int], rowless_owner):
    """(bytes, the one object whose rows it holds, or None) of each part of a table. A part without rows (a
    shard's empty rejects, or shards whose every item was rejected) is its shards' object's."""
    owners = {g[PART]: set(g["owner_distinct"]) for g in _groups(rows, [PART], [("owner", "distinct")])}
    for part, size in sizes.items():
        found = owners.get(part)
        if found is None:
            yield size, rowless_owner(part)
        else:
            yield size, next(iter(found)) if len(found) == 1 else None


def _model_of(kind: str, config: dict) -> str | None:
    try:
        return FEATURE_KINDS.get(kind).model_of(config)
    except Exception:  # a kind no longer registered, or a config it refuses: no lineage to show
        return None


# ---------------------------------------------------------------------------------------------- du

CODEC_STEPS_IGNORED = ("bytes", "transpose", "crc32c")  # byte order, layout and checksums: not compression


def codec_name(codecs: list[dict]) -> str:
    """What compresses an array's chunks, from its zarr.json codecs (`blosc-lz4`, `zstd-3`, `raw`)."""
    names = []
    for codec in codecs:
        config = codec.get("configuration") or {}
        if codec["name"] == "sharding_indexed":
            return codec_name(config.get("codecs") or [])
        if codec["name"] in CODEC_STEPS_IGNORED:
            continue
        name = codec["name"] + (f"-{config['cname']}" if "cname" in config else "")
        names.append(name + (f"-{config['level']}" if "level" in config else ""))
    return "+".join(names) or "raw"


def codec_usage(store) -> dict[str, tuple[int, int]]:
    """{codec: (arrays, bytes)} over every array of the store."""
    files = file_sizes(store, store.array_location())
    documents = store.fs.cat([p for p in files if p.endswith("/zarr.json")], on_error="omit")
    codecs = {}
    for path, raw in documents.items():
        meta = json.loads(raw)
        if meta.get("node_type") == "array":
            codecs[path.rsplit("/", 1)[0]] = codec_name(meta.get("codecs") or [])
    usage: dict[str, list[int]] = {}
    for path, size in files.items():
        folder = path.rsplit("/", 1)[0]
        while folder not in codecs and "/" in folder and folder != store.array_location():
            folder = folder.rsplit("/", 1)[0]  # chunk keys of older stores nest (`c/0/0`)
        name = codecs.get(folder, "(group metadata)")
        usage.setdefault(name, [0, 0])[1] += size
    for name in codecs.values():
        usage[name][0] += 1
    return {name: (count, size) for name, (count, size) in sorted(usage.items())}


def table_bytes(store) -> int:
    return sum(size for table in OWNER_COLUMNS for size, _ in listed_parts(store, table).values())
