"""The specstore store: Zarr arrays, Parquet tables, commits and versions."""

from stores.errors import ConfigError, DownloadError, IntegrityError, NotFoundError, SpecstoreError
from stores.store import Store, open_store

__all__ = [
    "ConfigError",
    "DownloadError",
    "IntegrityError",
    "NotFoundError",
    "SpecstoreError",
    "Store",
    "open_store",
]
