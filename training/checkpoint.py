"""Model checkpoints: {"architecture", "config", "state_dict", "extra"} written with torch.save.

`load_model` reads them with `torch.load(weights_only=True)` (no pickled code runs) and rebuilds the model
from the registry and the config alone, so inference needs no training code. Both take a path (any fsspec
URL: local, `memory://`, `s3://`, ...) or an open binary file object (io.BytesIO, an fsspec file).
`extra` must hold plain data only (dicts with string keys, lists, tuples, str, int, float, bool, None,
tensors), which is what weights_only loading accepts; it is checked when saving, not when loading fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO, Any

import fsspec
import torch

from stores.errors import ConfigError, IntegrityError
from training.models import MODELS, SpecModel

KEYS = ("architecture", "config", "state_dict", "extra")
PathOrFile = str | os.PathLike | IO[bytes]


@contextlib.contextmanager
def _opened(target: PathOrFile, mode: str) -> Iterator[IO[bytes]]:
    if isinstance(target, str | os.PathLike):
        with fsspec.open(os.fspath(target), mode) as f:
            yield f
    else:
        yield target


def _check_plain(value: Any, where: str) -> None:
    if value is None or isinstance(value, str | int | float | bool | torch.Tensor):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int):  # optimizer states key parameters by index
                raise ConfigError(f"Expected string or integer keys in {where}. Got {key!r} instead.")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise ConfigError(
        f"Expected plain data in {where} (dict, list, str, number, bool, None, tensor). "
        f"Got a {type(value).__name__} instead."
    )


def save_checkpoint(
    path_or_fileobj: PathOrFile,
    model: SpecModel,
    *,
    name: str | None = None,
    config: Any = None,
    extra: dict | None = None,
) -> None:
    """Writes `model` with its registry `name` and `config` (default: the model's own) and `extra` (epochs,
    losses, feature ids, ...). The state dict is moved to the CPU first, so a checkpoint saved on a GPU
    loads anywhere."""
    name = model.name if name is None else name
    config = model.config if config is None else config
    cls = MODELS.get(name)
    if not isinstance(model, cls):
        raise ConfigError(
            f"Expected a {cls.__name__} for architecture {name!r}. Got {type(model).__name__} instead."
        )
    if not isinstance(config, cls.config_class):
        raise ConfigError(
            f"Expected a {cls.config_class.__name__} for architecture {name!r}. Got {type(config).__name__} instead."
        )
    extra = {} if extra is None else extra
    if not isinstance(extra, dict):
        raise ConfigError(f"Expected extra to be a dict. Got {type(extra).__name__} instead.")
    _check_plain(extra, "extra")
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    payload = {"architecture": name, "config": config.to_dict(), "state_dict": state, "extra": extra}
    with _opened(path_or_fileobj, "wb") as f:
        torch.save(payload, f)


def load_checkpoint(path_or_fileobj: PathOrFile, map_location: Any = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, read with weights_only=True; a file that is not one raises IntegrityError."""
    with _opened(path_or_fileobj, "rb") as f:
        try:
            payload = torch.load(f, map_location=map_location, weights_only=True)
        except Exception as exc:  # unpickling errors of several kinds: a damaged or foreign file
            raise IntegrityError(
                f"Expected a specstore model checkpoint. Got an unreadable file instead ({exc})."
            ) from None
    if not isinstance(payload, dict) or any(key not in payload for key in KEYS):
        got = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise IntegrityError(f"Expected a checkpoint with keys {', '.join(KEYS)}. Got {got} instead.")
    return payload


def load_model(path_or_fileobj: PathOrFile, map_location: Any = "cpu") -> tuple[SpecModel, dict]:
    """(model, extra): the model rebuilt from the registry and its config, weights loaded, in eval mode.
    An unknown architecture raises NotFoundError, a config the model does not accept ConfigError."""
    payload = load_checkpoint(path_or_fileobj, map_location)
    cls = MODELS.get(payload["architecture"])
    config = payload["config"]
    if not isinstance(config, dict):
        raise IntegrityError(
            f"Expected the checkpoint's config as a dict. Got {type(config).__name__} instead."
        )
    model = cls(cls.config_class.from_dict(config))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise IntegrityError(
            f"Expected weights matching architecture {payload['architecture']!r}. Got a mismatch instead ({exc})."
        ) from None
    if isinstance(map_location, str | torch.device):
        model.to(map_location)
    return model.eval(), payload["extra"]
