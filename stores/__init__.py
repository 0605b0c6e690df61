"""The specstore store: Zarr arrays, Parquet tables, commits and versions.

`stores` is the bottom layer: it imports nothing of the project. What every layer may use of it is `SHARED`
(config dataclasses and registries, the error hierarchy, per-thread work memory, the feature-kind
registry); `features` uses nothing else (an import-linter contract in pyproject.toml says so).

`Store` and `open_store` are loaded on first use (PEP 562): `import stores.errors` imports this package, and
the command line's `--help` and argument checks need the errors, not zarr, pyarrow and fsspec (about half a
second to import, docs/BENCHMARKS.md "Command start-up").
"""

import importlib

from stores.errors import ConfigError, DownloadError, IntegrityError, NotFoundError, SpecstoreError

SHARED = ("stores.config", "stores.errors", "stores.layouts", "stores.scratch")
_LAZY = {"Store": "stores.store", "open_store": "stores.store"}

__all__ = [
    "SHARED",
    "ConfigError",
    "DownloadError",
    "IntegrityError",
    "NotFoundError",
    "SpecstoreError",
    "Store",
    "open_store",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stores' has no attribute {name!r}")
