"""The catalogue verbs' command-line arguments (`cli.py` composes the parser; `stores/commands.py` runs
them): `ls`, `show`, `rm`, `gc`, `du`. Standard library only, so that `specstore VERB --help` answers at once;
`tests/stores/test_arguments.py` checks the kinds named here against `stores.objects.PLURALS`.
"""

from __future__ import annotations

import argparse

LS_KINDS = "corpora|pairs|features|models|runs"  # stores.objects.PLURALS, checked by the test named above


def add_ls_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", nargs="?", default=None, metavar=LS_KINDS, help="one kind of object")
    p.add_argument("--format", default="table", help="table or json")


def add_show_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", metavar="ID", help="KIND:ID (corpus:real, pairs:noisy, run:RUN_ID) or a bare id")
    p.add_argument("--format", default="table", help="table or json")


def add_rm_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ids", nargs="*", metavar="ID", help="KIND:ID or bare ids of the objects to remove")
    p.add_argument("--cascade", action="store_true", help="remove what was made from them too")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")


def add_gc_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    p.add_argument(
        "--include-resumable", action="store_true",
        help="remove the checkpoints of interrupted trainings that train --resume could continue",
    )  # fmt: skip


def add_du_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="table", help="table or json")
