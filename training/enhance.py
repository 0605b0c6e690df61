"""Enhancement with a trained model version or a non-learned method: a waveform from a recording's signals.

A model version's input features are computed from the signals with the exact feature config it was trained
on (`features.kind`: the kind's `model_input`), so any recording or pair set can be enhanced. Its output
becomes a waveform through the feature kind (`reconstruct`: the noisy phase or Griffin-Lim for magnitude
models, the complex spectrum for complex U-Nets, band gains spread over the bins for log-mel models), or
through the model itself where it makes its own (DCCRN's in-graph iSTFT, the inverter's waveform). Long
recordings go through the model in overlapping blocks (`run_in_blocks`).

A registered non-learned method (`METHODS`: `reassigned-pghi`, `zero-phase`) is used the same way with the
feature config of a named feature set; its rows read model = the method's name and model_version =
`<method>@<feature_id>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from features.config import compute_feature, config_from_dict
from features.invert import invert_reassigned, invert_zero_phase
from features.kind import get_kind
from stores.config import Registry, parse_choice
from stores.errors import ConfigError
from stores.store import Store
from training.inference import load_version, mask_model_for, model_row

RECONSTRUCTIONS = ("auto", "noisy-phase", "griffin-lim")
# Long recordings are enhanced in blocks of the waveform, each run with CONTEXT_S seconds of the recording
# on either side that are then dropped (stateless overlapping blocks: overlap-save, no recurrent state
# carried across): `enhance` holds one block of any recording, `evaluate` the same path on whole utterances.
BLOCK_S, CONTEXT_S = 30.0, 2.0

Signals = dict[str, np.ndarray]
Segment = Callable[[Signals], tuple[np.ndarray, "np.ndarray | None"]]


@dataclass(frozen=True)
class Blocks:
    """Block and context lengths in samples, multiples of the STFT hop so that a block's frames are the
    whole recording's frames."""

    block: int
    context: int
    hop: int

    @classmethod
    def of(cls, hop: int, sample_rate: int, block_s: float = BLOCK_S, context_s: float = CONTEXT_S) -> Blocks:
        if not (block_s > 0 and context_s >= 0):
            raise ConfigError(
                f"Expected a positive block and a context of at least 0 s. Got {block_s} s and {context_s} s."
            )
        block = max(1, round(block_s * sample_rate / hop)) * hop
        return cls(block, round(context_s * sample_rate / hop) * hop, hop)


def enhance_stream(segment: Segment, pieces: Iterable[Signals], blocks: Blocks) -> Iterator[tuple]:
    """(waveform, spectrogram or None) pieces of a recording given as pieces of its signals (any lengths):
    `segment` runs on each block with `blocks.context` samples of the recording before and after it, and
    only the block's own samples (and frames) are kept. A recording no longer than block + context is one
    call on the whole of it. Memory: one block with its context, whatever the recording's length."""
    buffer: Signals = {}
    base = done = 0  # absolute positions of buffer[...][0] and of the next sample to hand out
    for piece in pieces:
        # a copy either way: a decoder may hand out views of a buffer it reuses
        buffer = {k: np.concatenate([buffer[k], v]) if k in buffer else v.copy() for k, v in piece.items()}
        while base + _length(buffer) > done + blocks.block + blocks.context:
            yield _run_block(segment, buffer, base, done, blocks, last=False)
            done += blocks.block
            cut = max(0, done - blocks.context - base)
            buffer, base = {k: v[cut:] for k, v in buffer.items()}, base + cut
    if buffer and base + _length(buffer) > done:
        yield _run_block(segment, buffer, base, done, blocks, last=True)


def _length(buffer: Signals) -> int:
    return next(iter(buffer.values())).shape[0] if buffer else 0


def _run_block(segment: Segment, buffer: Signals, base: int, done: int, blocks: Blocks, last: bool) -> tuple:
    start = max(0, done - blocks.context) - base
    end = _length(buffer) if last else done + blocks.block + blocks.context - base
    wave, spec = segment({k: v[start:end] for k, v in buffer.items()})
    keep = done - base - start
    count = wave.shape[0] - keep if last else blocks.block
    frames = None if spec is None else spec[keep // blocks.hop :][: None if last else count // blocks.hop]
    return wave[keep : keep + count], frames


class Enhancer:
    """A trained model version ready to enhance whole recordings."""

    def __init__(self, store: Store, version: str, reconstruction: str = "auto", device: str = "cpu") -> None:
        parse_choice(reconstruction, RECONSTRUCTIONS, "--reconstruction")
        self.model, self.normalizer, self.row = load_version(store, version, device)
        features = store.features(self.row["feature_id"])
        self.kind = get_kind(features.kind)
        self.config = config_from_dict(features.config)
        self.mask = mask_model_for(store, self.config)
        self.device = torch.device(device)
        self.reconstruction = self._reconstruction(version, reconstruction)
        self.version, self.name = version, self.row["architecture"]  # the metrics rows' model_version, model

    def _reconstruction(self, version: str, asked: str) -> str:
        own = self.model.own_reconstruction
        if own and asked != "auto":
            raise ConfigError(
                f"Expected --reconstruction auto for model {version!r} (it makes its own {own}). "
                f"Got {asked!r} instead."
            )
        if own:
            return own
        ways = self.kind.reconstructions(self.model.output)
        if asked != "auto" and asked not in ways:
            raise ConfigError(
                f"Expected --reconstruction auto or {', '.join(ways)} for model {version!r} on {self.kind.name} "
                f"features. Got {asked!r} instead."
            )
        return ways[0] if asked == "auto" else asked

    def features(self, signals: dict[str, np.ndarray]) -> np.ndarray:
        """The model's (unnormalised) input features for one recording's signals."""
        role = self.model.input_role
        if role == "input":
            return self.kind.model_input(signals, self.config, self.mask)
        return self.kind.expand(self.kind.compute_stored(signals, self.config, role), self.config, role)

    def refusal(self) -> str | None:
        """Why this model cannot enhance a noisy recording alone (None when it can)."""
        if self.model.input_role != "input":
            return (
                f"model {self.version} ({self.name}) consumes the {self.model.input_role} role's "
                f"{self.kind.name} features, computed from the clean signal"
            )
        why = self.kind.needs_reference(self.config)
        return (
            None
            if why is None
            else f"model {self.version}'s {self.kind.name} input features need the clean signal: {why}"
        )

    @torch.no_grad()
    def segment(self, signals: Signals) -> tuple[np.ndarray, np.ndarray | None]:
        """(enhanced waveform, enhanced spectrogram or None) of one block's signals, all of it at once."""
        x = torch.from_numpy(np.ascontiguousarray(self.features(signals), dtype=np.float32))[None]
        x = x.to(self.device)
        if self.model.own_reconstruction:
            noisy = torch.from_numpy(np.ascontiguousarray(signals["input"]))[None].to(self.device)
            return self.model.enhance_own(x, noisy)
        out = self.model(self.normalizer(x))[0].float().cpu().numpy()
        return self.kind.reconstruct(
            out, self.model.output, signals["input"], self.config, self.reconstruction
        )

    def blocks(self, block_s: float = BLOCK_S, context_s: float = CONTEXT_S) -> Blocks:
        hop = getattr(self.model.config, "hop_length", None) or self.config.hop_length
        return Blocks.of(hop, self.config.sample_rate, block_s, context_s)

    def __call__(self, signals: Signals) -> tuple[np.ndarray, np.ndarray | None]:
        """{input, clean, noise} -> (enhanced waveform as long as the input, enhanced spectrogram or None),
        in blocks (`enhance_stream`) of the default size."""
        pieces = list(enhance_stream(self.segment, [signals], self.blocks()))
        wave = np.concatenate([p[0] for p in pieces])
        return wave, None if pieces[0][1] is None else np.concatenate([p[1] for p in pieces])


@dataclass(frozen=True)
class Method:
    """A non-learned way from a pair's signals to a waveform, evaluated like a model version. `apply` gets
    {input, clean, noise} and the feature config of a set of kind `feature_kind`, and returns a waveform as
    long as the input; `reconstruction` goes into the `predictions` rows."""

    name: str
    feature_kind: str
    reconstruction: str
    apply: Callable[[dict[str, np.ndarray], Any], np.ndarray]
    description: str


METHODS: Registry[Method] = Registry("non-learned method")


def _invert_clean(invert: Callable) -> Callable[[dict[str, np.ndarray], Any], np.ndarray]:
    """As the learned `reassigned-inverter`: the clean signal's feature, inverted back to a waveform."""

    def apply(signals: dict[str, np.ndarray], config: Any) -> np.ndarray:
        clean = signals["clean"]
        return invert(compute_feature(clean, config), config, length=clean.shape[0])

    return apply


for _method in (
    Method(
        "reassigned-pghi",
        "reassigned",
        "pghi",
        _invert_clean(invert_reassigned),
        "the clean signal's reassigned triple -> phase-gradient heap integration -> iSTFT",
    ),
    Method(
        "zero-phase",
        "reassigned",
        "zero-phase",
        _invert_clean(invert_zero_phase),
        "the clean signal's reassigned magnitude with zero phase -> iSTFT (the trivial baseline)",
    ),
):
    METHODS.register(_method.name)(_method)


class MethodEnhancer:
    """A registered method with the feature config of a committed feature set of its kind; called like
    `Enhancer` (no spectrogram is stored)."""

    def __init__(self, store: Store, method: str, feature_id: str) -> None:
        self.method = METHODS.get(method)
        features = store.features(feature_id)
        if features.kind != self.method.feature_kind:
            raise ConfigError(
                f"Expected a {self.method.feature_kind} feature set for method {method!r}. "
                f"Got {feature_id!r} of kind {features.kind!r} instead."
            )
        self.config = config_from_dict(features.config)
        self.version, self.name = f"{method}@{feature_id}", method
        self.reconstruction = self.method.reconstruction

    def __call__(self, signals: dict[str, np.ndarray]) -> tuple[np.ndarray, None]:
        return self.method.apply(signals, self.config).astype(np.float32, copy=False), None


def _check_target(
    version: str | None, method: str | None, feature_id: str | None, reconstruction: str
) -> None:
    if (version is None) == (method is None):
        raise ConfigError(
            f"Expected a model version or a method, not both. Got model version {version!r} and method "
            f"{method!r} instead."
        )
    if method is None and feature_id is not None:
        raise ConfigError(
            f"Expected no feature set with a model version (it knows its own). Got {feature_id!r} instead."
        )
    if method is not None and feature_id is None:
        raise ConfigError(f"Expected a feature set (--features) for method {method!r}. Got none instead.")
    if method is not None and reconstruction != "auto":
        raise ConfigError(
            f"Expected no reconstruction with method {method!r} (it has its own). Got {reconstruction!r} instead."
        )
    parse_choice(reconstruction, RECONSTRUCTIONS, "--reconstruction")


def make_enhancer(
    store: Store,
    version: str | None = None,
    method: str | None = None,
    feature_id: str | None = None,
    reconstruction: str = "auto",
    device: str = "cpu",
) -> Enhancer | MethodEnhancer:
    """A trained model version's `Enhancer` or a method's `MethodEnhancer` (exactly one of the two)."""
    _check_target(version, method, feature_id, reconstruction)
    if method is not None:
        return MethodEnhancer(store, method, feature_id)
    return Enhancer(store, version, reconstruction, device)


def check_target(
    store: Store, version: str | None, method: str | None, feature_id: str | None, reconstruction: str
) -> None:
    """What `make_enhancer` would refuse, without loading a model (for the command line, before any
    server starts)."""
    _check_target(version, method, feature_id, reconstruction)
    if method is not None:
        MethodEnhancer(store, method, feature_id)
    else:
        model_row(store, version)
