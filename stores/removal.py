"""`specstore rm`: remove objects (their arrays, rows and checkpoints), with what was made from them.

The order of the work is what makes it safe to kill at any point and safe for readers:

1. plan from the catalogue: the objects asked for and everything made from them, each after what was made
   from it; without `--cascade` anything made from them is a refusal that names it;
2. take the run locks of every object removed (a flow writing one of them holds the same lock: one of the
   two refuses), and refuse when another run holds a lock that writes or reads one of them (`uses`);
3. write a removal record per object (`stores.tombstones`), dependents first: from here on readers do not
   see them; check the locks again (a writer that took its lock meanwhile checks the records after, so one
   of the two sees the other) and withdraw the records on a conflict;
4. per object: its arrays (each array's metadata before its chunks), its checkpoints, the commits of its
   shards, its rows (rewriting whatever parts hold them), and last its record.

A killed `rm` leaves records whose plan is complete: a rerun of `rm` for any of those objects, or
`specstore gc`, finishes them. Table rows leave only through `Store.uncommit` and `Store.remove_rows`.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass, field

from stores.catalogue import Catalogue, Entry
from stores.errors import ConfigError, NotFoundError
from stores.locks import held_locks, run_lock
from stores.objects import COMMIT_TABLE, array_group, lock_name, object_of_lock, owned_rows, split_id
from stores.paths import checkpoint_folder
from stores.store import Store, now_utc
from stores.tombstones import pending, remove_record, write_record


def removal_record(store: Store, entry: Entry, removal: list[str], order: int, planned: str) -> dict:
    """Everything removing `entry` touches, so that the removal can be finished from the record alone."""
    group = array_group(entry.kind, entry.name)
    table = COMMIT_TABLE.get(entry.kind)
    return {
        "object": entry.id,
        "arrays": [group] if group else [],
        "files": [checkpoint_folder(store.path, entry.name)] if entry.kind == "model" else [],
        "uncommit": {table: sorted(entry.shards)} if table else {},
        "rows": [[t, keys] for t, keys in owned_rows(entry.kind, entry.name)],
        "bytes": entry.bytes,
        "removal": removal,
        "order": order,
        "planned": planned,
        "by": {"pid": os.getpid(), "host": socket.gethostname()},
    }


def remove_files(store: Store, folder: str) -> int:
    """Remove a folder of files (a model's checkpoints); -> the bytes freed."""
    try:
        files = store.fs.find(folder, detail=True)
    except FileNotFoundError:
        return 0
    if store.fs.exists(folder):
        store.fs.rm(folder, recursive=True)
    return sum(int(info.get("size") or 0) for info in files.values())


def execute(store: Store, record: dict) -> int:
    """Carry out one object's removal record (every step is a no-op when already done); -> bytes freed."""
    freed = sum(store.remove_array(group) for group in record["arrays"])
    freed += sum(remove_files(store, folder) for folder in record["files"])
    for table, shards in record["uncommit"].items():
        freed += store.uncommit(table, shards)
    for table, keys in record["rows"]:
        freed += store.remove_rows(table, keys)
    remove_record(store, record["object"])
    return freed


def conflicts(store: Store, objects: set[str], mine: set[str]) -> list[str]:
    """Live locks of other runs that write one of `objects` or read one (`uses`)."""
    found = []
    for lock in held_locks(store):
        if lock.name in mine or lock.stale:
            continue
        touched = ({object_of_lock(lock.name)} | set(lock.uses)) & objects
        if touched:
            found.append(f"{lock.describe()}, which uses {', '.join(sorted(touched))}")
    return found


@dataclass
class RemovalReport:
    planned: list[tuple[str, int]]  # (object id, bytes the catalogue gives it), in removal order
    freed: dict[str, int] = field(default_factory=dict)  # object id -> bytes removed now
    dry_run: bool = False
    finished: list[str] = field(default_factory=list)  # objects of an earlier, killed rm finished now

    @property
    def bytes(self) -> int:
        return sum(self.freed.values()) if not self.dry_run else sum(b for _, b in self.planned)

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [f"{verb} {oid} ({self.freed.get(oid, size)} bytes)" for oid, size in self.planned]
        out += [f"finished the removal of {oid} ({self.freed.get(oid, 0)} bytes)" for oid in self.finished]
        total = self.bytes
        what = "would free" if self.dry_run else "freed"
        count = len(self.planned) + len(self.finished)
        return [*out, f"rm: {what} {total} bytes ({total / 2**20:.1f} MiB), {count} object(s)"]


def _names(text: str, object_id: str) -> bool:
    """Whether `KIND:ID` or a bare id names `object_id`."""
    (kind, name), (theirs, their_name) = split_id(text), split_id(object_id)
    return name == their_name and kind in (None, theirs)


def _plan(catalogue: Catalogue, ids: list[str], cascade: bool, records: list[dict]) -> list[str]:
    """The ids to remove in order; refuses what is made from them without `cascade`. An id that only a
    killed removal's record still names (`records`) is left to finishing that record."""
    asked = []
    for text in ids:
        try:
            asked.append(catalogue.resolve(text).id)
        except NotFoundError:
            if not any(_names(text, r["object"]) for r in records):
                raise
    order = catalogue.descendants(asked)
    extra = [oid for oid in order if oid not in asked]
    if extra and not cascade:
        raise ConfigError(
            f"Expected nothing made from {', '.join(asked)}. Got {', '.join(extra)}: remove those first or "
            "pass --cascade."
        )
    return order


def _related(records: list[dict], ids: list[str]) -> list[dict]:
    """The records of earlier (killed) removals that included an object one of `ids` names."""
    chosen = [r for r in records if any(_names(text, o) for text in ids for o in r["removal"])]
    return sorted(chosen, key=lambda r: (r["planned"], r["order"]))


def remove(store: Store, ids: list[str], cascade: bool = False, dry_run: bool = False) -> RemovalReport:
    """Remove objects (`KIND:ID` or bare ids), finishing any earlier removal of them that was killed."""
    if not ids:
        raise ConfigError("Expected at least one object id to remove (KIND:ID, see specstore ls). Got none.")
    catalogue = Catalogue(store)
    earlier = _related(pending(store), ids)
    order = _plan(catalogue, ids, cascade, earlier)
    report = RemovalReport([(oid, catalogue.objects[oid].bytes) for oid in order], dry_run=dry_run)
    if dry_run:
        report.finished = [r["object"] for r in earlier]
        return report
    locked = {lock_name(oid) for oid in order} | {lock_name(r["object"]) for r in earlier}
    with contextlib.ExitStack() as stack:
        for name in sorted(locked):
            stack.enter_context(run_lock(store, name))
        for record in _related(pending(store), ids):  # under the locks: a killed rm's records
            report.freed[record["object"]] = execute(store, record)
            report.finished.append(record["object"])
        if order:
            _remove_planned(store, order, (ids, cascade, earlier), locked, report)
    return report


def _remove_planned(store: Store, order: list[str], asked: tuple, locked: set[str], report) -> None:
    catalogue = Catalogue(store)  # again, under the locks: another rm may have removed them meanwhile
    if _plan(catalogue, *asked) != order:
        raise ConfigError(
            "Expected the store to stay as planned. Got objects added or removed meanwhile: run again."
        )
    objects = set(order)
    found = conflicts(store, objects, locked)
    if found:
        raise ConfigError(f"Expected no run using what rm removes. Got {'; '.join(found)}.")
    planned = now_utc().isoformat()
    records = [
        removal_record(store, catalogue.objects[oid], order, k, planned) for k, oid in enumerate(order)
    ]
    for record in records:
        write_record(store, record)
    found = conflicts(store, objects, locked)  # a writer that started meanwhile has seen the records too
    if found:
        for record in reversed(records):
            remove_record(store, record["object"])
        raise ConfigError(f"Expected no run using what rm removes. Got {'; '.join(found)}.")
    for record in records:
        report.freed[record["object"]] = execute(store, record)


def finish(store: Store, record: dict) -> int:
    """Finish a killed removal's record under its object's lock (ConfigError while a run holds it)."""
    with run_lock(store, lock_name(record["object"])):
        return execute(store, record)
