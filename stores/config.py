"""Config dataclasses, name registries and argument parsers shared by every package.

Configs are what versions are hashed from, so `to_dict` is canonical (sorted keys, plain JSON types) and
`config_hash` is stable across processes and machines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from stores.errors import ConfigError, NotFoundError

T = TypeVar("T")


class Config:
    """Mixin for frozen dataclasses: `to_dict`, `from_dict`, `to_json` and a stable hash."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(
                f"Expected keys of {cls.__name__} ({', '.join(sorted(names))}). Got unknown {unknown} instead."
            )
        kwargs = {}
        for key, value in data.items():
            default = names[key].default
            kwargs[key] = tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def config_hash(self, *inputs: str, length: int = 16) -> str:
        """Hash of this config plus the ids of its inputs: the version key of what it produces."""
        payload = self.to_json() + "|" + "|".join(inputs)
        return hashlib.sha256(payload.encode()).hexdigest()[:length]


class Registry(Generic[T]):
    """Components chosen by name; an unknown name raises an error listing the valid ones. `load`, when
    given, is called before the first look-up (plugins that register their components on import)."""

    def __init__(self, what: str, load: Callable[[], None] | None = None) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._declared: dict[str, str] = {}
        self._load = load

    def declare(self, name: str, target: str) -> None:
        """Name a component by its import path ("package.module:attribute") without importing it: a
        component whose module is slow to import (or imports this registry's module) is loaded on first
        use only, the way entry points are."""
        if name in self._items or name in self._declared:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._declared[name] = target

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._items or name in self._declared:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorate

    def _resolve(self, name: str) -> None:
        if name in self._declared and name not in self._items:
            module, attribute = self._declared[name].split(":")
            self._items[name] = getattr(importlib.import_module(module), attribute)

    def get(self, name: str) -> T:
        if self._load is not None:
            self._load()
        try:
            self._resolve(name)
            return self._items[name]
        except KeyError:
            raise NotFoundError(
                f"Expected a {self.what} name, one of {', '.join(self.names())}. Got {name!r} instead."
            ) from None

    def names(self) -> list[str]:
        if self._load is not None:
            self._load()
        return sorted({*self._items, *self._declared})

    def items(self) -> list[tuple[str, T]]:
        return [(name, self.get(name)) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        if self._load is not None:
            self._load()
        return name in self._items or name in self._declared


# Ids and names become parts of array paths and file names: keep them to a safe alphabet so that nothing
# can ever point outside the store (no separators, no "..", no leading dot, no odd unicode).
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def is_safe_name(value: str) -> bool:
    return bool(_SAFE_NAME.match(value)) and ".." not in value


def parse_name(value: object, what: str = "name") -> str:
    if not isinstance(value, str) or not is_safe_name(value):
        raise ConfigError(
            f"Expected a {what} of letters, digits, '.', '_', '+' or '-' (at most 128, not starting with "
            f"a dot, no '..'). Got {value!r} instead."
        )
    return value


def parse_positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"Expected {what} to be a positive integer. Got {value!r} instead.")
    return value


def parse_positive_float(value: object, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"Expected {what} to be a positive finite number. Got {value!r} instead.")
    return float(value)


def parse_choice(value: object, choices: Iterable[str], what: str) -> str:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"Expected {what} to be one of {', '.join(choices)}. Got {value!r} instead.")
    return value  # type: ignore[return-value]


def parse_range(text: str, what: str) -> tuple[float, float]:
    """'LOW:HIGH' (or a single number) -> (low, high) with low <= high."""
    parts = str(text).split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(math.isfinite(v) for v in values) or values[0] > values[1]:
        raise ConfigError(f"Expected {what} as LOW:HIGH with LOW <= HIGH. Got {text!r} instead.")
    return values[0], values[1]


def parse_assignments(pairs: Iterable[str], option: str) -> dict[str, Any]:
    """["KEY=JSON", ...] (a repeatable command-line option) -> {key: value}; a bare word is a string."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"Expected {option} KEY=VALUE. Got {pair!r} instead.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
