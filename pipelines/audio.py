"""Decode, validate and resample one audio file: every input either becomes clean float32 samples at the
store's rate or a `Rejected` with a reason a person understands.

Decoding is soundfile (libsndfile) from the file's bytes, read once so that the source checksum and the
decode see the same data; resampling is soxr. Two checks are our own because libsndfile does not make them:
a WAV whose data chunk is cut short is read without complaint (we compare the header's declared size with the
bytes present), and an empty file is reported as "format not recognised".
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
from dataclasses import dataclass

import fsspec
import numpy as np
import soundfile as sf
import soxr

from stores.config import Config, parse_choice, parse_positive_float, parse_positive_int
from stores.errors import ConfigError

MONO_POLICIES = ("mean", "first", "reject")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")


@dataclass(frozen=True)
class AudioConfig(Config):
    """How inputs are turned into the store's audio. Part of every ingest's lineage."""

    sample_rate: int = 16000
    mono: str = "mean"  # mean | first | reject: the explicit policy for multichannel files
    min_duration_s: float = 0.25
    silence_dbfs: float = -60.0  # a file whose peak is below this is silent
    clip_level: float = 0.999  # samples at or above this magnitude count as clipped (recorded, kept)
    resample_quality: str = "HQ"

    def __post_init__(self) -> None:
        parse_positive_int(self.sample_rate, "sample_rate")
        parse_choice(self.mono, MONO_POLICIES, "the mono policy")
        parse_positive_float(self.min_duration_s, "min_duration_s")
        parse_choice(self.resample_quality, ("QQ", "LQ", "MQ", "HQ", "VHQ"), "resample_quality")
        if not (math.isfinite(self.silence_dbfs) and self.silence_dbfs < 0):
            raise ConfigError(f"Expected silence_dbfs below 0 dBFS. Got {self.silence_dbfs!r} instead.")


class Rejected(Exception):
    """An input that cannot be used (not a user error: it becomes a `rejects` row)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class LoadedAudio:
    samples: np.ndarray  # float32, mono, at the config's sample rate
    source_sample_rate: int
    source_channels: int
    source_sha256: str
    peak: float
    clipped_samples: int


def read_bytes(path: str) -> bytes:
    try:
        with fsspec.open(path, "rb") as handle:
            return handle.read()
    except (OSError, ValueError) as exc:
        raise Rejected("unreadable file", f"{type(exc).__name__}: {exc}") from None


def _wav_declared_short(data: bytes) -> str | None:
    """For RIFF/WAVE: a description of the shortfall if the data chunk declares more bytes than exist."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk_id == b"data":
            present = len(data) - pos - 8
            # 0xFFFFFFFF / 0 are used by streaming writers for "unknown length"
            if size not in (0, 0xFFFFFFFF) and present < size:
                return f"data chunk declares {size} bytes, {present} present"
            return None
        pos += 8 + size + (size & 1)
    return None


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """bytes -> (frames × channels float32, sample rate), or Rejected."""
    if not data:
        raise Rejected("empty file", "0 bytes")
    short = _wav_declared_short(data)
    if short:
        raise Rejected("truncated file", short)
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        message = str(exc)
        if "Format not recognised" in message or "unknown format" in message.lower():
            raise Rejected("not audio", "the file's contents are not a format libsndfile can read") from None
        if any(s in message.lower() for s in ("lost sync", "end of file", "truncat", "unexpected")):
            raise Rejected("truncated file", message) from None
        raise Rejected("unreadable file", message) from None
    except (RuntimeError, ValueError, EOFError) as exc:
        raise Rejected("unreadable file", f"{type(exc).__name__}: {exc}") from None
    return samples, int(rate)


def to_mono(samples: np.ndarray, policy: str) -> np.ndarray:
    if samples.shape[1] == 1:
        return samples[:, 0]
    if policy == "reject":
        raise Rejected("multichannel", f"{samples.shape[1]} channels and the mono policy is 'reject'")
    if policy == "first":
        return samples[:, 0]
    return samples.mean(axis=1, dtype=np.float32)


def validate(samples: np.ndarray, rate: int, config: AudioConfig) -> None:
    if samples.size == 0:
        raise Rejected("empty audio", "the file holds no samples")
    if not np.isfinite(samples).all():
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise Rejected("non-finite samples", f"{bad} NaN or infinite samples")
    duration = samples.shape[0] / rate
    if duration < config.min_duration_s:
        raise Rejected("too short", f"{duration:.3f} s, the minimum is {config.min_duration_s} s")
    peak = float(np.max(np.abs(samples)))
    if peak == 0 or 20 * math.log10(peak) < config.silence_dbfs:
        level = "-inf" if peak == 0 else f"{20 * math.log10(peak):.1f}"
        raise Rejected("silent", f"peak {level} dBFS, the threshold is {config.silence_dbfs} dBFS")


def resample(samples: np.ndarray, rate: int, target: int, quality: str = "HQ") -> np.ndarray:
    if rate == target:
        return samples
    return soxr.resample(samples, rate, target, quality=quality).astype(np.float32, copy=False)


def load_audio(path: str, config: AudioConfig) -> LoadedAudio:
    """Read, decode, validate, mix to mono and resample one file; raises Rejected for unusable input."""
    data = read_bytes(path)
    multi, rate = decode(data)
    validate(multi, rate, config)
    mono = to_mono(multi, config.mono)
    clipped = int(np.count_nonzero(np.abs(multi) >= config.clip_level))
    out = resample(np.ascontiguousarray(mono), rate, config.sample_rate, config.resample_quality)
    return LoadedAudio(
        samples=out,
        source_sample_rate=rate,
        source_channels=int(multi.shape[1]),
        source_sha256=hashlib.sha256(data).hexdigest(),
        peak=float(np.max(np.abs(out))),
        clipped_samples=clipped,
    )


def samples_sha256(samples: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(samples, dtype="<f4").tobytes()).hexdigest()
