"""The kinds `stores/arguments.py` names for `specstore ls` (so that `--help` imports no pyarrow) match
`stores.objects.PLURALS`."""

from stores import arguments
from stores.objects import PLURALS


def test_ls_kinds_match():
    assert "|".join(PLURALS) == arguments.LS_KINDS
