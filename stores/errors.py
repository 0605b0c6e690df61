"""One error hierarchy for everything specstore raises on bad input or a damaged store.

The command line turns any `SpecstoreError` into one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class SpecstoreError(Exception):
    """Base class of every error specstore raises on purpose."""


class ConfigError(SpecstoreError, ValueError):
    """A value, option or configuration that cannot be used."""


class NotFoundError(SpecstoreError, LookupError):
    """A name, path, table, array or version that does not exist."""


class IntegrityError(SpecstoreError):
    """The store (or a download) is not what its records say it is."""


class DownloadError(SpecstoreError):
    """A download failed: the server refused, the transfer broke off, or the checksum did not match."""


class FeatureRangeError(ConfigError):
    """Features whose values do not fit the dtype that stores them (float16: ±65504; float32: ±3.4e38)."""
