"""Noise and room-impulse-response sources of a pair set: `--noise FOLDER|demo`, `--rir FOLDER|demo|simulate`.

A folder is ingested like speech (validated, resampled) as the corpus `noise-<folder name>` or
`rir-<folder name>`, so every pair names the stored recording it used; `demo` is the generated demo corpus's
noise or RIR folder; `simulate` (RIRs only) draws pyroomacoustics rooms instead of recordings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipelines.audio import AudioConfig
from pipelines.mixing import SIMULATE
from stores.config import parse_name
from stores.errors import ConfigError, NotFoundError

ROLES = ("noise", "rir")


@dataclass(frozen=True)
class SourceRequest:
    """A noise or RIR source of a pair set: the corpus it is stored as, and the folder to ingest it from
    (None: nothing to ingest, e.g. simulated rooms)."""

    role: str
    corpus: str
    folder: str | None


def source_corpus_name(role: str, source: str) -> str:
    """The store corpus a --noise/--rir argument becomes: `noise-demo`, `rir-<folder name>`, or simulate."""
    if source == SIMULATE:
        return source
    base = "demo" if source == "demo" else re.sub(r"[^A-Za-z0-9._+-]", "-", Path(source).resolve().name)
    return parse_name(f"{role}-{base}", f"--{role} corpus name")


def parse_source(role: str, source: str | None, demo_folder: str | None = None) -> SourceRequest | None:
    """A checked --noise/--rir argument (`demo_folder`: the generated demo corpus's folder for `demo`)."""
    if source is None:
        return None
    if source == SIMULATE:
        if role != "rir":
            raise ConfigError("Expected --noise to be a folder or demo. Got 'simulate' instead.")
        return SourceRequest(role, SIMULATE, None)
    if source != "demo" and not Path(source).is_dir():
        raise NotFoundError(
            f"Expected --{role} to be a folder, demo{' or simulate' if role == 'rir' else ''}. "
            f"Got {source!r} instead (no such folder)."
        )
    folder = demo_folder if source == "demo" else source
    return SourceRequest(role, source_corpus_name(role, source), folder)


def source_audio_config(role: str, sample_rate: int) -> AudioConfig:
    """How noise recordings and RIRs are ingested: like speech, except that RIRs are short (seconds, so at
    most a minute) and a multichannel RIR keeps its first channel (an average of channels is no room's
    response anywhere), and that noise recordings may be long (a DEMAND environment is 5 minutes, some
    background recordings half an hour)."""
    if role == "rir":
        return AudioConfig(sample_rate=sample_rate, min_duration_s=0.01, mono="first", max_duration_s=60.0)
    return AudioConfig(sample_rate=sample_rate, max_duration_s=1800.0)
