"""Hostile audio made from real recordings, and the fuzz campaign that loads it.

Two kinds of hostile file: header fields rewritten on purpose (`with_wav_sample_rate`,
`with_flac_total_frames`: the cases measured in issue 24), and seeded random mutations (`hostile_file`):
bit flips in the first 256 bytes, truncation, random bytes anywhere, a 32-bit header field set to 0, 1,
2^31-1, 2^32-1 or a random value, splices of two files, repeated chunks. File `index` of seed `seed` is
always the same bytes, so any outcome of a campaign can be reproduced alone.

`run_campaign` loads each file with `load_audio` in a child process (`pipelines.isolation.ChildCaller`),
so a native crash or a hang is counted instead of ending the campaign, and measures per file the wall time,
the growth of the child's peak resident memory (the kernel's high-water mark, reset before each file:
native allocations count too) and the peak of Python's traced allocations (numpy arrays, touched or not).
"""

from __future__ import annotations

import ctypes
import os
import struct
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipelines.audio import AudioConfig, Rejected, load_audio
from pipelines.isolation import ChildCaller, ChildDied, ChildTimedOut

MUTATIONS = ("bit flips", "truncation", "random bytes", "header field", "splice", "repeated chunk")
FIELD_VALUES = (0, 1, 2**31 - 1, 2**32 - 1)  # and a random value


def _wav_fmt_offset(data: bytes) -> int:
    """Offset of the `fmt ` chunk's body in a RIFF/WAVE file."""
    pos = 12
    while pos + 8 <= len(data):
        size = struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if data[pos : pos + 4] == b"fmt ":
            return pos + 8
        pos += 8 + size + (size & 1)
    raise ValueError("no fmt chunk: not a WAV file")


def with_wav_sample_rate(data: bytes, rate: int) -> bytes:
    """A WAV file's bytes with its sample-rate field rewritten (the samples are untouched)."""
    at = _wav_fmt_offset(data) + 4
    return data[:at] + struct.pack("<I", rate) + data[at + 4 :]


def with_flac_total_frames(data: bytes, frames: int) -> bytes:
    """A FLAC file's bytes with STREAMINFO's 36-bit total-samples field rewritten."""
    if data[:4] != b"fLaC":
        raise ValueError("not a FLAC file")
    # STREAMINFO's body starts at byte 8; bytes 10-17 of it pack rate, channels, depth and total samples
    packed = int.from_bytes(data[18:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | (frames & ((1 << 36) - 1))
    return data[:18] + packed.to_bytes(8, "big") + data[26:]


def _mutate(data: bytes, other: bytes, kind: str, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    if kind == "bit flips":
        for _ in range(rng.integers(1, 9)):
            at = int(rng.integers(min(256, len(buf))))
            buf[at] ^= 1 << int(rng.integers(8))
    elif kind == "truncation":
        return data[: int(rng.integers(len(data)))]
    elif kind == "random bytes":
        for _ in range(rng.integers(1, 17)):
            at = int(rng.integers(len(buf)))
            run = rng.integers(0, 256, size=int(rng.integers(1, 33)), dtype=np.uint8).tobytes()
            buf[at : at + len(run)] = run
    elif kind == "header field":
        at = int(rng.integers(max(1, min(64, len(buf) - 4))))
        value = int(rng.choice(FIELD_VALUES)) if rng.random() < 0.8 else int(rng.integers(2**32))
        buf[at : at + 4] = value.to_bytes(4, "little" if rng.random() < 0.5 else "big")
    elif kind == "splice":
        return data[: int(rng.integers(len(data)))] + other[int(rng.integers(len(other))) :]
    else:  # repeated chunk
        start = int(rng.integers(len(data)))
        chunk = data[start : start + int(rng.integers(1, 4097))]
        return data[:start] + chunk * int(rng.integers(2, 9)) + data[start:]
    return bytes(buf)


def hostile_file(bases: list[bytes], seed: int, index: int) -> tuple[str, bytes]:
    """(mutation, bytes) of file `index` of the campaign `seed` over the real files `bases`."""
    rng = np.random.default_rng([seed, index])
    data, other = (bases[int(i)] for i in rng.integers(len(bases), size=2))
    kind = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    return kind, _mutate(data, other, kind, rng)


_BASES: dict[tuple[str, ...], list[bytes]] = {}


def _reset_memory_peak() -> int:
    """Return freed heap to the system, reset the kernel's peak-RSS mark; -> resident bytes now."""
    ctypes.CDLL(None).malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return _status_bytes("VmRSS")


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


@dataclass(frozen=True)
class Outcome:
    index: int
    mutation: str
    result: str  # "decoded", a reject reason, "exception <type>: ...", "crash (...)" or "hang"
    seconds: float = 0.0  # wall
    cpu_seconds: float = 0.0  # this process's CPU time: the work, without waiting for a busy machine
    rss_growth: int = 0  # bytes
    traced_peak: int = 0  # bytes


def measure_load(path: str, config: AudioConfig, index: int = -1, mutation: str = "") -> Outcome:
    """In a child process: load `path` once and measure it (see the module's docstring)."""
    if not tracemalloc.is_tracing():
        tracemalloc.start()
    resident = _reset_memory_peak()
    tracemalloc.reset_peak()
    traced = tracemalloc.get_traced_memory()[0]
    started, cpu = time.perf_counter(), time.process_time()
    try:
        load_audio(path, config)
        result = "decoded"
    except Rejected as rej:
        result = rej.reason
    except Exception as exc:  # noqa: BLE001  (what the campaign exists to find)
        result = f"exception {type(exc).__name__}: {str(exc)[:160]}"
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1] - traced
    return Outcome(index, mutation, result, seconds, cpu, _status_bytes("VmHWM") - resident, peak)


def measure_one(paths: tuple[str, ...], seed: int, index: int, work: str, config: AudioConfig) -> Outcome:
    """In the child: build file `index`, write it, load it and measure the load."""
    bases = _BASES.setdefault(paths, [Path(p).read_bytes() for p in paths])
    mutation, data = hostile_file(bases, seed, index)
    path = Path(work) / f"fuzz-{os.getpid()}.bin"
    path.write_bytes(data)
    return measure_load(str(path), config, index, mutation)


def write_constant_flac(path: Path, rate: int, seconds: float, channels: int = 1) -> Path:
    """A FLAC of a constant level (not silent): the most audio per byte FLAC stores, so the smallest file
    that makes the loader do the most work its limits allow (a few hundred KB for ten minutes)."""
    block = np.full((1 << 20, channels), 0.25, dtype=np.float32)
    with sf.SoundFile(path, "w", rate, channels, format="FLAC", subtype="PCM_16") as sound:
        for start in range(0, round(rate * seconds), block.shape[0]):
            sound.write(block[: round(rate * seconds) - start])
    return path


def _run_share(paths, seed, indices, work, config, timeout, on_done) -> list[Outcome]:
    outcomes = []
    with ChildCaller() as child:
        for index in indices:
            try:
                outcomes.append(child.call(measure_one, paths, seed, index, work, config, timeout=timeout))
            except (ChildDied, ChildTimedOut) as failed:
                mutation = hostile_file([Path(p).read_bytes() for p in paths], seed, index)[0]
                result = f"crash ({failed})" if isinstance(failed, ChildDied) else "hang"
                outcomes.append(Outcome(index, mutation, result, timeout if result == "hang" else 0.0))
            on_done(outcomes[-1])
    return outcomes


def run_campaign(
    paths: list[str],
    count: int,
    seed: int,
    work: str | Path,
    workers: int = 1,
    config: AudioConfig = AudioConfig(),
    timeout: float = 20.0,
    on_done: Callable[[Outcome], object] = lambda outcome: None,
    start: int = 0,
) -> list[Outcome]:
    """Load files start..start+count-1 of campaign `seed` over the real files `paths`, `workers` child
    processes at a time; -> one Outcome per file, in index order (`on_done` sees each as it comes, e.g. for
    progress, or to keep outcomes of a long campaign that may be stopped and continued from `start`)."""
    shares = [range(start + k, start + count, workers) for k in range(workers)]
    fixed = (str(work), config, timeout, on_done)
    with ThreadPoolExecutor(workers) as pool:
        done = pool.map(lambda share: _run_share(tuple(paths), seed, share, *fixed), shares)
        return sorted((o for share in done for o in share), key=lambda o: o.index)


# real recordings re-encoded into the other formats libsndfile reads: (name, format, subtype)
CONVERSIONS = (
    ("flac", "FLAC", "PCM_16"),
    ("ogg", "OGG", "VORBIS"),
    ("opus", "OGG", "OPUS"),
    ("mp3", "MP3", "MPEG_LAYER_III"),
    ("aiff", "AIFF", "PCM_24"),
    ("float.wav", "WAV", "FLOAT"),
    ("w64", "W64", "PCM_16"),
    ("caf", "CAF", "ALAC_16"),
    ("au", "AU", "ULAW"),
)


def campaign_bases(real: Path, work: Path, converted: int = 3) -> list[str]:
    """The real recordings under `real` (every WAV and FLAC), plus `converted` short clean ones re-encoded
    into each of CONVERSIONS (and as stereo WAV) in `work`."""
    paths = sorted(str(p) for p in real.rglob("*") if p.suffix in (".wav", ".flac") and p.is_file())
    work.mkdir(parents=True, exist_ok=True)
    for source in sorted((real / "clean").glob("speechbrain__*.wav"))[:converted]:
        data, rate = sf.read(source, dtype="float32")
        for name, container, subtype in CONVERSIONS:
            target = work / f"{source.stem}.{name}"
            sf.write(target, data, rate, format=container, subtype=subtype)
            paths.append(str(target))
        sf.write(work / f"{source.stem}.stereo.wav", np.stack([data, data[::-1]], axis=1), rate)
        paths.append(str(work / f"{source.stem}.stereo.wav"))
    return paths


def outcome_counts(outcomes: list[Outcome]) -> Counter:
    return Counter(
        o.result if not o.result.startswith("exception") else o.result.split(":")[0] for o in outcomes
    )
