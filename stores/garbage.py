"""`specstore gc`: remove what no committed object references, and finish removals that were killed.

Garbage is what a killed or failed writer left: table parts still in `_staging/`, the arrays and rejects of
shards that never committed, an evaluation's predictions (arrays and rows) whose metrics never committed,
and the checkpoints of a training that never wrote its `models` row. Each piece belongs to an object whose
writer holds that object's run lock (`stores.objects.LOCK_PREFIXES`); gc takes the same lock while it
removes the piece, checks again under it that the piece is still garbage (a writer may have committed it
meanwhile), and skips whatever a running writer holds. Staging files name no object: gc removes only
those older than every running writer and than a minute (clocks of object stores may differ a little).

The checkpoints of an interrupted training stay while `train --resume` can continue it (its feature set
is still committed, as `training.json` beside them records), unless `include_resumable`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from stores.commits import COMMITTED_BY, part_shards
from stores.errors import ConfigError
from stores.locks import held_locks, run_lock
from stores.objects import COMMIT_TABLE, KINDS, lock_name, object_id, object_of_array, row_owners
from stores.paths import PREDICTIONS, TRAINING_RECORD, checkpoint_folder, member
from stores.removal import execute, remove_files
from stores.schema import SCHEMAS
from stores.store import STAGING, Store
from stores.tombstones import is_removed, pending, read_record, removals_folder
from stores.verify import find_leftovers, outside_removals

GRACE_S = 60.0


@dataclass
class Item:
    what: str
    why: str
    bytes: int
    owner: str | None  # the object whose run lock guards it; None: a staging file old enough
    remove: Callable[[], int]
    still: Callable[[], bool] = lambda: True  # re-checked under the owner's lock
    kept: bool = False  # a resumable training's checkpoints


def _size(store: Store, path: str) -> int:
    try:
        return sum(int(i.get("size") or 0) for i in store.fs.find(path, detail=True).values())
    except FileNotFoundError:
        return 0


def _modified(info: dict) -> float:
    value = info.get("mtime", info.get("LastModified", info.get("created")))
    return value.timestamp() if isinstance(value, dt.datetime) else float(value or 0)


def _remove_file(store: Store, path: str) -> Callable[[], int]:
    def remove() -> int:
        size = _size(store, path)
        store.fs.rm(path)
        return size

    return remove


def _staging_folders(store: Store) -> list[str]:
    """Where staging files are: tables' `_staging/`, removal records' and checkpoints' folders."""
    folders = [f"{store.table_path(table)}/{STAGING}" for table in SCHEMAS]
    folders += [f"{removals_folder(store)}/{kind}" for kind in KINDS]
    checkpoints = checkpoint_folder(store.path, "").rstrip("/")
    with contextlib.suppress(FileNotFoundError):
        folders += store.fs.ls(checkpoints, detail=False)
    return folders


def _staging(store: Store) -> list[Item]:
    """Staging files of tables, removal records and checkpoints, older than every live writer (and than
    GRACE_S)."""
    live = [lock.holder.get("since", 0) for lock in held_locks(store) if not lock.stale]
    cutoff = min([time.time(), *live]) - GRACE_S
    items = []
    for folder in sorted(set(_staging_folders(store))):
        try:
            listed = store.fs.ls(folder, detail=True)
        except FileNotFoundError:
            continue
        for info in listed:
            path = info["name"]
            staged = path.endswith(".tmp") or f"/{STAGING}/" in path
            if staged and info["type"] == "file" and _modified(info) < cutoff:
                why = "a staging file whose write never finished"
                items.append(Item(path, why, int(info.get("size") or 0), None, _remove_file(store, path)))
    return items


def _uncommitted(store: Store, records: list[dict]) -> list[Item]:
    """Arrays and rejects of shards that never committed."""
    items = []
    for problem in outside_removals(find_leftovers(store), records):
        if f"/{STAGING}/" in problem.what:
            continue
        if problem.what.startswith("rejects/"):
            part = problem.what[len("rejects/") :]
            path = f"{store.table_path('rejects')}/{part}.parquet"
            try:
                with store.fs.open(path, "rb") as handle:
                    owners = row_owners("rejects", pq.read_table(handle, columns=["corpus", "stage"]))
            except FileNotFoundError:
                continue
            owner = next(iter(owners.drop_null().to_pylist()), None)

            def uncommitted(part=part) -> bool:
                return not any(part in part_shards(store, t) for t in COMMITTED_BY["rejects"])

            remove = _remove_file(store, path)
            items.append(Item(problem.what, problem.detail, _size(store, path), owner, remove, uncommitted))
            continue
        owner = object_of_array(problem.what)
        table = COMMIT_TABLE[owner.split(":", 1)[0]] if owner else None
        shard = problem.what.rsplit("/", 1)[-1]

        def still(table=table, shard=shard) -> bool:
            return table is not None and shard not in store.committed_shards(table)

        size = _size(store, store.array_location(problem.what))
        remove = lambda path=problem.what: store.remove_array(path)  # noqa: E731
        items.append(Item(problem.what, problem.detail, size, owner, remove, still))
    return items


def _predictions(store: Store) -> list[Item]:
    """Predictions (arrays and rows) of evaluation shards whose metrics never committed."""
    committed = set(store.part_names("metrics"))
    items = []
    for run, shards in _prediction_groups(store).items():
        owner = object_id("run", run)
        pending_shards = [s for s in shards if f"part-{run}-{s}" not in committed]
        whole = len(pending_shards) == len(shards)
        for shard in [None] if whole else pending_shards:
            path = member(PREDICTIONS, run) if shard is None else member(member(PREDICTIONS, run), shard)
            parts = {f"part-{run}-{s}" for s in (pending_shards if shard is None else [shard])}

            def still(parts=parts) -> bool:
                return not parts & set(store.part_names("metrics"))

            remove = lambda path=path: store.remove_array(path)  # noqa: E731
            size = _size(store, store.array_location(path))
            items.append(Item(path, "predictions whose metrics never committed", size, owner, remove, still))
    for part in sorted(set(store.part_names("predictions")) - committed):
        path = f"{store.table_path('predictions')}/{part}.parquet"
        with store.fs.open(path, "rb") as handle:
            run = next(iter(pq.read_table(handle, columns=["run_id"])["run_id"].to_pylist()), None)

        def still(part=part) -> bool:
            return part not in store.part_names("metrics")

        what = f"predictions/{part}"
        owner = object_id("run", run) if run else None
        items.append(Item(what, "prediction rows whose metrics never committed", _size(store, path), owner,
                          _remove_file(store, path), still))  # fmt: skip
    return items


def _prediction_groups(store: Store) -> dict[str, list[str]]:
    """{run id: its shard groups} under predictions/."""
    top = store.array_location(PREDICTIONS)
    out = {}
    try:
        runs = [p for p in store.fs.ls(top, detail=True) if p["type"] == "directory"]
    except FileNotFoundError:
        return {}
    for run in runs:
        listed = store.fs.ls(run["name"], detail=True)
        out[run["name"].rstrip("/").rsplit("/", 1)[-1]] = [
            p["name"].rstrip("/").rsplit("/", 1)[-1] for p in listed if p["type"] == "directory"
        ]
    return out


def _checkpoints(store: Store, include_resumable: bool) -> list[Item]:
    """Checkpoints (and curves) of trainings that never wrote their `models` row."""
    trained = set(store.read_table("models", columns=["model_version"])["model_version"].to_pylist())
    folder = checkpoint_folder(store.path, "").rstrip("/")
    try:
        versions = [p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False)]
    except FileNotFoundError:
        versions = []
    items = []
    for version in sorted(set(versions) - trained):
        path, owner = checkpoint_folder(store.path, version), object_id("model", version)
        if is_removed(store, owner):
            continue  # a pending removal's, finished as such
        uses = _training_uses(store, path)
        resumable = uses is None or not is_removed(store, uses) and _committed_features(store, uses)

        def remove(path=path, version=version) -> int:
            return remove_files(store, path) + store.remove_rows("curves", {"model_version": version})

        def still(version=version) -> bool:
            return (
                version
                not in store.read_table("models", columns=["model_version"])["model_version"].to_pylist()
            )

        why = "checkpoints of a training that never finished"
        if resumable:
            why += " (train --resume can continue it; gc --include-resumable removes it)"
        item = Item(
            path, why, _size(store, path), owner, remove, still, kept=resumable and not include_resumable
        )
        items.append(item)
    return items


def _training_uses(store: Store, path: str) -> str | None:
    try:
        return object_id("features", json.loads(store.fs.cat_file(f"{path}/{TRAINING_RECORD}"))["feature_id"])
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None  # an older training: what it used is unknown, so it counts as resumable


def _committed_features(store: Store, feature: str) -> bool:
    feature_id = feature.split(":", 1)[1]
    rows = store.read_table("features", columns=["feature_id"])["feature_id"].to_pylist()
    return feature_id in rows


def _pending(store: Store, records: list[dict]) -> list[Item]:
    items = []
    for record in records:
        oid = record["object"]

        def remove(oid=oid) -> int:
            current = read_record(store, oid)
            return 0 if current is None else execute(store, current)

        what, why = f"removal of {oid}", "an rm that did not finish"
        items.append(Item(what, why, int(record.get("bytes") or 0), oid, remove))
    return items


@dataclass
class GcReport:
    removed: list[tuple[Item, int]] = field(default_factory=list)
    kept: list[Item] = field(default_factory=list)
    skipped: list[tuple[Item, str]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.removed)

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [f"{verb} {item.what}: {item.why} ({size} bytes)" for item, size in self.removed]
        out += [f"kept {item.what}: {item.why} ({item.bytes} bytes)" for item in self.kept]
        out += [f"skipped {item.what}: {why}" for item, why in self.skipped]
        what = "would free" if self.dry_run else "freed"
        count = len(self.removed)
        return [*out, f"gc: {what} {self.bytes} bytes ({self.bytes / 2**20:.1f} MiB), {count} item(s)"]


def collect_garbage(store: Store, dry_run: bool = False, include_resumable: bool = False) -> GcReport:
    records = pending(store)
    items = _pending(store, records) + _staging(store) + _uncommitted(store, records)
    items += _predictions(store) + _checkpoints(store, include_resumable)
    report = GcReport(dry_run=dry_run)
    report.kept = [i for i in items if i.kept]
    chosen = [i for i in items if not i.kept]
    if dry_run:
        report.removed = [(i, i.bytes) for i in chosen]
        return report
    for owner in dict.fromkeys(i.owner for i in chosen):
        mine = [i for i in chosen if i.owner == owner]
        if owner is None:
            report.removed += [(i, i.remove()) for i in mine if i.still()]
            continue
        try:
            with run_lock(store, lock_name(owner)):
                report.removed += [(i, i.remove()) for i in mine if i.still()]
        except ConfigError as exc:  # a running writer holds it
            report.skipped += [(i, str(exc)) for i in mine]
    return report
