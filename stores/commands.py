"""What the catalogue verbs do and print (`stores/arguments.py` defines their arguments, `cli.py` composes
the parser and dispatches): `ls`, `show`, `rm`, `gc`, `du`. They need only the store's tables and files: no Prefect, Dask or
torch."""

from __future__ import annotations

import json
from dataclasses import dataclass

from stores.catalogue import Catalogue, Entry, codec_usage, table_bytes
from stores.config import parse_choice
from stores.garbage import GcReport, collect_garbage
from stores.objects import DESCRIPTIONS, PLURALS
from stores.removal import RemovalReport, remove
from stores.store import open_store
from stores.tombstones import pending

FORMATS = ("table", "json")


# ---------------------------------------------------------------------------------------------- output


def human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def aligned(rows: list[list[str]]) -> list[str]:
    """Rows of cells as left-aligned columns (the first row a header)."""
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{value} {name}" for name, value in counts.items())


def created_text(entry: Entry) -> str:
    return "-" if entry.created is None else entry.created.strftime("%Y-%m-%d %H:%M")


@dataclass
class LsReport:
    entries: list[Entry]
    format: str
    pending: list[str]

    def lines(self) -> list[str]:
        if self.format == "json":
            return [json.dumps([e.to_dict() for e in self.entries], indent=1)]
        rows = [["id", "created (UTC)", "bytes", "counts", "made from"]]
        for e in self.entries:
            made = ", ".join(e.made_from) or "-"
            rows.append([e.id, created_text(e), human(e.bytes), counts_text(e.counts), made])
        notes = [
            f"being removed: {oid} (an rm running, or killed: rerun it or run gc)" for oid in self.pending
        ]
        return [*aligned(rows), f"{len(self.entries)} object(s)", *notes]


@dataclass
class ShowReport:
    entry: Entry
    catalogue: Catalogue
    format: str

    def tree(self, oid: str, depth: int) -> list[str]:
        out = []
        for child in sorted(self.catalogue.used_by.get(oid, [])):
            out.append("  " * depth + child)
            out += self.tree(child, depth + 1)
        return out

    def lines(self) -> list[str]:
        e, cat = self.entry, self.catalogue
        made_from = [oid if oid in cat.objects else f"{oid} (not in the store)" for oid in e.made_from]
        if self.format == "json":
            doc = {**e.to_dict(), "config": e.config, "made_from_it": cat.descendants([e.id])[:-1]}
            return [json.dumps({**doc, "used_by": sorted(cat.used_by.get(e.id, []))}, indent=1, default=str)]
        return [
            f"{e.id}: {DESCRIPTIONS[e.kind]}, created {created_text(e)} UTC, {human(e.bytes)} ({e.bytes} bytes)",
            f"counts: {counts_text(e.counts)}",
            "config:",
            *(
                "  " + line
                for line in json.dumps(e.config, indent=1, sort_keys=True, default=str).splitlines()
            ),
            f"made from: {', '.join(made_from) or '-'}",
            "made from it:" + ("" if cat.used_by.get(e.id) else " -"),
            *("  " + line for line in self.tree(e.id, 0)),
        ]


@dataclass
class DuReport:
    catalogue: Catalogue
    codecs: dict[str, tuple[int, int]]
    tables: int
    garbage: int  # what gc would free
    total: int  # every file of the store
    format: str

    def rows(self) -> list[tuple[str, int, int]]:
        """(what, objects, bytes): each kind, garbage, and the rest (group metadata, locks, records)."""
        out = []
        for plural, kind in PLURALS.items():
            chosen = [e for e in self.catalogue.objects.values() if e.kind == kind]
            out.append((plural, len(chosen), sum(e.bytes for e in chosen)))
        out.append(("garbage (specstore gc)", 0, self.garbage))
        return [*out, ("other (group metadata, locks)", 0, self.total - sum(b for _, _, b in out))]

    def lines(self) -> list[str]:
        if self.format == "json":
            doc = {what: {"objects": n, "bytes": b} for what, n, b in self.rows()}
            codecs = {c: {"arrays": n, "bytes": b} for c, (n, b) in self.codecs.items()}
            return [
                json.dumps(
                    {"kinds": doc, "codecs": codecs, "tables": self.tables, "total": self.total}, indent=1
                )
            ]
        rows = [["kind", "objects", "bytes"]] + [[w, str(n), human(b)] for w, n, b in self.rows()]
        rows.append(["total", str(len(self.catalogue.objects)), human(self.total)])
        codecs = [["codec", "arrays", "bytes"]] + [[c, str(n), human(b)] for c, (n, b) in self.codecs.items()]
        codecs.append(["tables (parquet, zstd)", "-", human(self.tables)])
        return [*aligned(rows), "", *aligned(codecs)]


# ---------------------------------------------------------------------------------------------- verbs


def run_ls(args) -> LsReport:
    parse_choice(args.format, FORMATS, "--format")
    st = open_store(args.store, create=False)
    catalogue = Catalogue(st)
    return LsReport(catalogue.select(args.what), args.format, [r["object"] for r in pending(st)])


def run_show(args) -> ShowReport:
    parse_choice(args.format, FORMATS, "--format")
    catalogue = Catalogue(open_store(args.store, create=False))
    entry = catalogue.resolve(args.id)
    if entry.kind == "corpus":
        entry.config = catalogue.corpus_config(entry)
    return ShowReport(entry, catalogue, args.format)


def run_rm(args) -> RemovalReport:
    return remove(open_store(args.store, create=False), args.ids, args.cascade, args.dry_run)


def run_gc(args) -> GcReport:
    return collect_garbage(open_store(args.store, create=False), args.dry_run, args.include_resumable)


def run_du(args) -> DuReport:
    parse_choice(args.format, FORMATS, "--format")
    st = open_store(args.store, create=False)
    garbage = collect_garbage(st, dry_run=True, include_resumable=True).bytes
    total = sum(int(i.get("size") or 0) for i in st.fs.find(st.path, detail=True).values())
    return DuReport(Catalogue(st), codec_usage(st), table_bytes(st), garbage, total, args.format)
