"""Decode, validate and resample one audio file: every input either becomes clean float32 samples at the
store's rate or a `Rejected` with a reason a person understands, in bounded time and memory.

`load_audio(path, config)` is the one loader of user recordings: corpora, given pairs, noise and RIR folders,
and any later verb, each with the limits of its own `AudioConfig`. In order:

1. Plausibility before work. A path that is not a regular file, or is larger than `max_file_bytes`, is
   rejected before a byte is read. libsndfile then reads only the header, and a sample rate outside
   SOURCE_RATES, a frame count that the file's size cannot hold for its format, or a duration over
   `max_duration_s` is rejected before anything is allocated for samples.
2. Decoding streams blocks of at most BLOCK_SAMPLES samples. Each block is checked (NaN or infinite values,
   float samples beyond `max_peak`), mixed to mono and fed to a soxr resampling stream (bit-identical to a
   one-shot resample, tested), and decoding stops as soon as the audio passes the maximum duration, whatever
   the header said. A file therefore never takes more than `memory_bound(config)`, whatever it claims.
3. Every exception that the decoder or the resampler raises becomes a `Rejected` that names its type. Only a
   native crash escapes, and the shards contain those (`pipelines.isolation`).

Two checks are our own because libsndfile does not make them: a WAV whose data chunk is cut short is read
without complaint (we compare the header's declared size with the bytes present), and an empty file is
reported as "format not recognised". The source checksum is taken from the same open file that is decoded.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import fsspec
import numpy as np
import soundfile as sf
import soxr

from stores.config import Config, parse_choice, parse_positive_float, parse_positive_int
from stores.errors import ConfigError

MONO_POLICIES = ("mean", "first", "reject")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")
SOURCE_RATES = (4000, 384000)  # Hz: the source sample rates accepted; anything else is a damaged header
BLOCK_SAMPLES = 1 << 18  # samples (frames x channels) decoded at a time
# Bytes per sample of the sample formats whose size is fixed. Every other format libsndfile reads is
# compressed (FLAC, Ogg and MPEG files report their bit depth as a PCM subtype), and none stores more frames
# per byte than FLAC: a FLAC frame holds at most 65,535 samples per channel and takes at least 10 bytes
# (frame header, subframe header and value, CRC-16), so no file reaches 6,554 frames per byte (Vorbis,
# Opus and MP3 reach far less).
PCM_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}
PCM_BYTES |= {"ULAW": 1, "ALAW": 1}
COMPRESSED_CONTAINERS = ("FLAC", "OGG", "MPEG")
COMPRESSED_FRAMES_PER_BYTE = 6554
UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's frame count for a stream that does not declare its length
WAV_MAX_CHUNKS = 1000  # a real WAV has a handful of chunks; walking more is a damaged file's noise


@dataclass(frozen=True)
class AudioConfig(Config):
    """How inputs are turned into the store's audio. Part of every ingest's lineage."""

    sample_rate: int = 16000
    mono: str = "mean"  # mean | first | reject: the explicit policy for multichannel files
    min_duration_s: float = 0.25
    silence_dbfs: float = -60.0  # a file whose peak is below this is silent
    clip_level: float = 0.999  # samples at or above this magnitude count as clipped (recorded, kept)
    resample_quality: str = "HQ"
    # Limits that bound the time and memory one file can take. Ingest's defaults fit corpora of utterances;
    # noise and RIR folders (`pipelines.mixing.source_audio_config`) and later verbs set their own.
    max_duration_s: float = 600.0  # longer files are rejected as `too long`
    max_file_bytes: int = 1 << 30  # larger files are rejected before they are read
    max_peak: float = 4.0  # float samples beyond this magnitude (+12 dBFS) are garbage, not clipping

    def __post_init__(self) -> None:
        parse_positive_int(self.sample_rate, "sample_rate")
        parse_choice(self.mono, MONO_POLICIES, "the mono policy")
        parse_positive_float(self.min_duration_s, "min_duration_s")
        parse_choice(self.resample_quality, ("QQ", "LQ", "MQ", "HQ", "VHQ"), "resample_quality")
        if not (math.isfinite(self.silence_dbfs) and self.silence_dbfs < 0):
            raise ConfigError(f"Expected silence_dbfs below 0 dBFS. Got {self.silence_dbfs!r} instead.")
        if parse_positive_float(self.max_duration_s, "max_duration_s") < self.min_duration_s:
            raise ConfigError(
                f"Expected max_duration_s of at least min_duration_s ({self.min_duration_s}). "
                f"Got {self.max_duration_s!r} instead."
            )
        parse_positive_int(self.max_file_bytes, "max_file_bytes")
        if parse_positive_float(self.max_peak, "max_peak") < 1:
            raise ConfigError(f"Expected max_peak of at least 1 (full scale). Got {self.max_peak!r} instead.")


def memory_bound(config: AudioConfig) -> int:
    """Bytes of samples that loading one file can hold at once: the float32 output at the maximum duration,
    twice while it is grown or trimmed (only when a header understates its stream), plus one decoded block,
    its magnitudes, its mono mix, their comparison and the resampler's output for it (up to 4 kHz ->
    sample_rate upsampling). libsndfile's and soxr's own state come on top (measured by
    `benchmarks/fuzz_audio.py`)."""
    output = 4 * math.ceil(config.max_duration_s * config.sample_rate)
    upsampling = math.ceil(max(1, config.sample_rate / SOURCE_RATES[0]))
    return 2 * output + 4 * BLOCK_SAMPLES * (4 + upsampling)


class Rejected(Exception):
    """An input that cannot be used (not a user error: it becomes a `rejects` row)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    def __reduce__(self):  # pickled whole across processes (an isolated decoder's reply)
        return Rejected, (self.reason, self.detail)


@dataclass
class LoadedAudio:
    samples: np.ndarray  # float32, mono, at the config's sample rate
    source_sample_rate: int
    source_channels: int
    source_sha256: str
    peak: float
    clipped_samples: int


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def open_source(path: str, max_bytes: int) -> Iterator[tuple[object, int]]:
    """(open binary file, size in bytes). A path that is gone, is not a regular file (a folder, a symlink
    loop, a pipe) or is larger than `max_bytes` is rejected before a byte is read."""
    try:
        fs, fs_path = fsspec.core.url_to_fs(path)
        info = fs.info(fs_path)
        if info.get("type") != "file":
            raise Rejected("unreadable file", f"not a regular file (fsspec type {info.get('type')!r})")
        size = int(info.get("size") or 0)
        if size == 0:
            raise Rejected("empty file", "0 bytes")
        if size > max_bytes:
            raise Rejected("file too large", f"{size:,} bytes, the maximum is {max_bytes:,}")
        handle = fs.open(fs_path, "rb")
    except (OSError, ValueError) as exc:
        raise Rejected("unreadable file", _described(exc)) from None
    with handle:
        yield handle, size


def _sha256(handle, max_bytes: int) -> str:
    digest, total = hashlib.sha256(), 0
    while piece := handle.read(1 << 20):
        total += len(piece)
        if total > max_bytes:  # grew after it was measured
            raise Rejected("file too large", f"more than {max_bytes:,} bytes")
        digest.update(piece)
    return digest.hexdigest()


def _wav_declared_short(handle, size: int) -> str | None:
    """For RIFF/WAVE: a description of the shortfall if the data chunk declares more bytes than exist."""
    handle.seek(0)
    head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    for _ in range(WAV_MAX_CHUNKS):
        handle.seek(pos)
        header = handle.read(8)
        if len(header) < 8:
            return None
        chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk_id == b"data":
            present = size - pos - 8
            # 0xFFFFFFFF / 0 are used by streaming writers for "unknown length"
            if chunk_size not in (0, 0xFFFFFFFF) and present < chunk_size:
                return f"data chunk declares {chunk_size} bytes, {present} present"
            return None
        pos += 8 + chunk_size + (chunk_size & 1)
    return None


def decoder_rejected(exc: Exception) -> Rejected:
    """The reject for an exception raised by the decoder or the resampler: its type is in the detail."""
    detail = _described(exc)
    if isinstance(exc, sf.LibsndfileError):
        message = str(exc).lower()
        if "format not recognised" in message or "unknown format" in message:
            return Rejected("not audio", f"{detail} (the contents are not a format libsndfile reads)")
        if any(s in message for s in ("lost sync", "end of file", "truncat", "unexpected")):
            return Rejected("truncated file", detail)
        return Rejected("unreadable file", detail)
    return Rejected("decoding failed", detail)


def frame_capacity(container: str, subtype: str, channels: int, size: int) -> int:
    """The most frames a file of `size` bytes can hold in this format (see PCM_BYTES)."""
    if container in COMPRESSED_CONTAINERS or subtype not in PCM_BYTES:
        return size * COMPRESSED_FRAMES_PER_BYTE
    return size // (PCM_BYTES[subtype] * channels)


def check_header(sound: sf.SoundFile, size: int, config: AudioConfig) -> None:
    """Reject what the header alone shows to be unusable, before any sample is decoded."""
    rate, channels, frames = sound.samplerate, sound.channels, sound.frames
    low, high = SOURCE_RATES
    if not low <= rate <= high:
        raise Rejected("unsupported sample rate", f"{rate} Hz, the supported range is {low}-{high} Hz")
    if channels > 1 and config.mono == "reject":
        raise Rejected("multichannel", f"{channels} channels and the mono policy is 'reject'")
    if frames == UNKNOWN_FRAMES:  # the stream's own end decides; decoding stops at the maximum duration
        return
    capacity = frame_capacity(sound.format, sound.subtype, channels, size)
    if frames > capacity:
        raise Rejected(
            "implausible frame count",
            f"the header declares {frames:,} frames; {size:,} bytes of {sound.format}/{sound.subtype} "
            f"with {channels} channel(s) hold at most {capacity:,}",
        )
    if frames / rate > config.max_duration_s:
        raise Rejected("too long", f"{frames / rate:.1f} s, the maximum is {config.max_duration_s} s")


def to_mono(samples: np.ndarray, policy: str) -> np.ndarray:
    if samples.shape[1] == 1:
        return samples[:, 0]
    if policy == "reject":
        raise Rejected("multichannel", f"{samples.shape[1]} channels and the mono policy is 'reject'")
    if policy == "first":
        return samples[:, 0]
    return samples.mean(axis=1, dtype=np.float32)


@dataclass
class _Decoded:
    samples: np.ndarray  # mono, resampled
    frames: int = 0  # source frames
    peak: float = 0.0  # of the source samples, all channels
    clipped: int = 0


class _Output:
    """The resampled samples in one array, sized from the header's frame count (which the plausibility
    checks capped) and grown by doubling, up to the maximum duration's size, only if the stream holds more.
    A list of pieces joined at the end took twice the output, and the pieces, interleaved with each
    block's temporaries, fragmented the heap: 127 MiB resident for 38 MiB of output."""

    def __init__(self, expected: int, most: int) -> None:
        self.most = most
        self.samples = np.empty(max(1, min(expected, most)), dtype=np.float32)
        self.size = 0

    def append(self, piece: np.ndarray) -> None:
        end = self.size + piece.shape[0]
        if end > self.samples.shape[0]:
            grown = np.empty(max(end, min(2 * self.samples.shape[0], self.most)), dtype=np.float32)
            grown[: self.size] = self.samples[: self.size]
            self.samples = grown
        self.samples[self.size : end] = piece
        self.size = end

    def result(self) -> np.ndarray:
        spare = self.samples.shape[0] - self.size
        return self.samples[: self.size] if spare <= 64 else self.samples[: self.size].copy()


class _BlockWork:
    """The buffers one block is decoded, measured and mixed into, reused block after block."""

    def __init__(self, channels: int) -> None:
        frames = max(1, BLOCK_SAMPLES // channels)
        self.block = np.empty((frames, channels), dtype=np.float32)
        self.magnitude = np.empty_like(self.block)
        self.mono = np.empty(frames, dtype=np.float32)

    def check(self, got: np.ndarray, config: AudioConfig) -> tuple[float, int]:
        """(peak, clipped samples) of a decoded block; NaN, infinite or far-out samples are rejected."""
        magnitude = np.abs(got, out=self.magnitude[: got.shape[0]])
        peak = float(magnitude.max())  # NaN when any sample is NaN
        if not math.isfinite(peak):
            bad = int(np.count_nonzero(~np.isfinite(got)))
            raise Rejected("non-finite samples", f"{bad} NaN or infinite samples in one block of the file")
        if peak > config.max_peak:
            raise Rejected(
                "samples out of range",
                f"peak magnitude {peak:.4g}, the maximum is {config.max_peak} (float data)",
            )
        return peak, int(np.count_nonzero(magnitude >= config.clip_level))

    def mix(self, got: np.ndarray, policy: str) -> np.ndarray:
        """The block in mono by the policy (`to_mono`'s arithmetic, into the reused buffer)."""
        if got.shape[1] == 1:
            return got[:, 0]  # contiguous: one channel
        mono = self.mono[: got.shape[0]]
        if policy == "first":
            np.copyto(mono, got[:, 0])
            return mono
        return np.mean(got, axis=1, dtype=np.float32, out=mono)


def _resampled_blocks(sound: sf.SoundFile, config: AudioConfig, decoded: _Decoded) -> Iterator[np.ndarray]:
    """Decode block by block: check, mix to mono, resample; stop once past the maximum duration. Yields the
    resampled pieces (views of reused buffers when no resampling: use each before asking for the next) and
    keeps the totals in `decoded`."""
    rate, channels, target = sound.samplerate, sound.channels, config.sample_rate
    limit = math.floor(config.max_duration_s * rate)
    work = _BlockWork(channels)
    stream = (
        None if rate == target else soxr.ResampleStream(rate, target, 1, "float32", config.resample_quality)
    )
    while (got := sound.read(out=work.block)).shape[0]:
        decoded.frames += got.shape[0]
        if decoded.frames > limit:
            raise Rejected("too long", f"more than {config.max_duration_s} s of audio at {rate} Hz")
        peak, clipped = work.check(got, config)
        decoded.peak, decoded.clipped = max(decoded.peak, peak), decoded.clipped + clipped
        mono = work.mix(got, config.mono)
        yield stream.resample_chunk(mono) if stream else mono
    if stream is not None:
        yield stream.resample_chunk(np.zeros(0, np.float32), last=True)


def _decode_stream(sound: sf.SoundFile, config: AudioConfig) -> _Decoded:
    """The whole file's resampled samples in one array (`_Output`)."""
    rate, target = sound.samplerate, config.sample_rate
    limit = math.floor(config.max_duration_s * rate)
    decoded = _Decoded(np.zeros(0, np.float32))
    output = _Output(
        math.ceil(min(sound.frames, limit) * target / rate) + 64, math.ceil(limit * target / rate) + 64
    )
    for piece in _resampled_blocks(sound, config, decoded):
        output.append(piece)
    decoded.samples = output.result()
    return decoded


def _check_totals(decoded: _Decoded, rate: int, config: AudioConfig, samples: int | None = None) -> None:
    if decoded.frames == 0 or (decoded.samples.size if samples is None else samples) == 0:
        raise Rejected("empty audio", "the file holds no samples")
    duration = decoded.frames / rate
    if duration < config.min_duration_s:
        raise Rejected("too short", f"{duration:.3f} s, the minimum is {config.min_duration_s} s")
    peak = decoded.peak
    if peak == 0 or 20 * math.log10(peak) < config.silence_dbfs:
        level = "-inf" if peak == 0 else f"{20 * math.log10(peak):.1f}"
        raise Rejected("silent", f"peak {level} dBFS, the threshold is {config.silence_dbfs} dBFS")


def _open_sound(handle) -> sf.SoundFile:
    """libsndfile on the open file from its start: through the descriptor where there is one, so that
    libsndfile reads natively (a damaged MP3 that libmpg123 scans for a header byte by byte took 83,000
    Python read calls, 0.45 s of CPU, through the file object), else through the file object (remote)."""
    try:
        fd = handle.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        handle.seek(0)
        return sf.SoundFile(handle)
    os.lseek(fd, 0, os.SEEK_SET)  # libsndfile takes the descriptor's position as the file's start
    return sf.SoundFile(fd, closefd=False)


def _decode(handle, size: int, config: AudioConfig) -> tuple[_Decoded, int, int]:
    """-> (decoded, source rate, source channels); any decoder or resampler exception is a Rejected."""
    try:
        with _open_sound(handle) as sound:
            check_header(sound, size, config)
            return _decode_stream(sound, config), sound.samplerate, sound.channels
    except Rejected:
        raise
    except Exception as exc:  # noqa: BLE001  (anything a damaged file makes the libraries raise)
        raise decoder_rejected(exc) from None


def load_audio(path: str, config: AudioConfig) -> LoadedAudio:
    """Check, read, decode, mix to mono and resample one file; raises Rejected for unusable input."""
    with open_source(path, config.max_file_bytes) as (handle, size):
        try:
            short = _wav_declared_short(handle, size)
            handle.seek(0)
            digest = _sha256(handle, config.max_file_bytes)
        except OSError as exc:  # an I/O error, or the file vanished from a network filesystem
            raise Rejected("unreadable file", _described(exc)) from None
        if short:
            raise Rejected("truncated file", short)
        decoded, rate, channels = _decode(handle, size, config)
    _check_totals(decoded, rate, config)
    return LoadedAudio(
        samples=decoded.samples,
        source_sample_rate=rate,
        source_channels=channels,
        source_sha256=digest,
        peak=float(max(decoded.samples.max(), -decoded.samples.min())),  # no |samples| copy
        clipped_samples=decoded.clipped,
    )


@dataclass
class AudioStream:
    """An open recording decoded block by block (`stream_audio`)."""

    source_sample_rate: int
    source_channels: int
    duration_s: float | None  # the header's, None when the stream does not declare its length
    blocks: Iterator[np.ndarray]  # mono float32 pieces at the config's rate; each valid until the next


def _checked_blocks(sound: sf.SoundFile, config: AudioConfig) -> Iterator[np.ndarray]:
    """`_resampled_blocks` with its exceptions as Rejected and the totals checked after the last block."""
    decoded, samples = _Decoded(np.zeros(0, np.float32)), 0
    try:
        for piece in _resampled_blocks(sound, config, decoded):
            samples += piece.shape[0]
            yield piece
    except Rejected:
        raise
    except Exception as exc:  # noqa: BLE001  (anything a damaged file makes the libraries raise)
        raise decoder_rejected(exc) from None
    _check_totals(decoded, sound.samplerate, config, samples)


@contextmanager
def stream_audio(path: str, config: AudioConfig) -> Iterator[AudioStream]:
    """`load_audio`'s checks, decoding, mono policy and resampling, handed over block by block instead of
    as one array, so that a recording of any length takes one block's memory (`specstore enhance`). The
    rejects are load_audio's, raised while the blocks are read (the totals' after the last one); the
    source checksum is not taken."""
    with open_source(path, config.max_file_bytes) as (handle, size):
        try:
            short = _wav_declared_short(handle, size)
        except OSError as exc:
            raise Rejected("unreadable file", _described(exc)) from None
        if short:
            raise Rejected("truncated file", short)
        try:
            sound = _open_sound(handle)
        except Exception as exc:  # noqa: BLE001  (anything a damaged file makes the libraries raise)
            raise decoder_rejected(exc) from None
        with sound:
            check_header(sound, size, config)
            rate = sound.samplerate
            duration = None if sound.frames == UNKNOWN_FRAMES else sound.frames / rate
            yield AudioStream(rate, sound.channels, duration, _checked_blocks(sound, config))


def samples_sha256(samples: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(samples, dtype="<f4").tobytes()).hexdigest()
