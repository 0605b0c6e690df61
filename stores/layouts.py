"""The registry of feature kinds, declared here and filled by the `features` package (a plugin).

`stores` reads a committed feature set (`st.features(id).read(utterance_id, role)`) without knowing what a
kind stores: each registered kind says which arrays hold a role (`stored_names`) and how those stored
arrays become what a reader gets (`expand`; e.g. decomposed features store |Y| and a uint8 mask level and
are expanded to n channels). The kinds are loaded like plugins on first use: the modules named by the
`specstore.feature_kinds` entry points (the project declares `features`), or the `features` package where
no entry point is installed (a source checkout), so that `stores` never imports `features`.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Any, Protocol

import numpy as np

from stores.config import Registry

ENTRY_POINTS = "specstore.feature_kinds"
DEFAULT_PLUGINS = ("features",)
PAIR_ROLES = ("input", "target")  # a pair set's features: of the degraded input and of the clean target
CORPUS_ROLES = ("clean",)  # a corpus's features: of its clean utterances


class StoredLayout(Protocol):
    """What `stores` needs of a feature kind to read its sets (configs as their `to_dict`)."""

    def stored_names(self, config: dict[str, Any], role: str) -> tuple[str, ...]:
        """The arrays of a feature shard that hold `role`."""
        ...

    def expand(self, stored: dict[str, np.ndarray], config: dict[str, Any], role: str) -> np.ndarray:
        """The time-major features of `role` from its stored arrays (one utterance's frames)."""
        ...

    def model_of(self, config: dict[str, Any]) -> str | None:
        """The model version a set's stored arrays were computed with (e.g. a first-stage mask), or None:
        the catalogue's lineage from models to feature sets."""
        ...


_LOADED = threading.Event()
_LOADING = threading.RLock()  # re-entrant: a plugin being imported may look a kind up


def load_feature_kinds() -> None:
    """Import the feature-kind plugins once per process (their import registers the kinds)."""
    if _LOADED.is_set():
        return
    with _LOADING:
        if _LOADED.is_set():
            return
        found = [point.load() for point in entry_points(group=ENTRY_POINTS)]
        if not found:
            for name in DEFAULT_PLUGINS:
                importlib.import_module(name)
        _LOADED.set()


FEATURE_KINDS: Registry[StoredLayout] = Registry("feature kind", load=load_feature_kinds)
