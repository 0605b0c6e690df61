"""Applying a trained model to recordings: a numpy waveform (`enhance_waveform`) or files and folders on disk
(`enhance_files`, the `specstore enhance` verb).

Both go through `training.enhance`'s block path (`enhance_stream`: stateless overlapping blocks of the
waveform), so memory is one block with its context whatever the recording's length. Files are decoded by a
`Source` the caller hands in: the training layer does not import the pipelines' decoder (`cli.py` composes
`pipelines.audio.stream_audio`, with ingest's checks, reject reasons and mono policy, with this module).
An output is written to a hidden temporary file beside it and moved into place when complete, so a file
that fails leaves nothing, and an existing output is replaced only with `overwrite`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from stores.config import parse_choice, parse_positive_int
from stores.errors import ConfigError, SpecstoreError
from training.enhance import BLOCK_S, CONTEXT_S, Enhancer, enhance_stream

SUBTYPES = ("FLOAT", "PCM_16", "PCM_24", "PCM_32")
RESAMPLE_QUALITY = "HQ"  # as ingest's default (`pipelines.audio.AudioConfig`)


def enhance_waveform(
    enhancer: Enhancer,
    wave: np.ndarray,
    sample_rate: int,
    block_s: float = BLOCK_S,
    context_s: float = CONTEXT_S,
) -> np.ndarray:
    """A recording (samples,) or (samples, channels) at `sample_rate` -> the enhanced mono recording at the
    same rate (float32): channels averaged (ingest's default mono policy), resampled to the model's rate
    and back with soxr (HQ), enhanced in blocks."""
    check_enhanceable(enhancer)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1, dtype=np.float32)
    if wave.ndim != 1 or not wave.size or not np.isfinite(wave).all():
        raise ConfigError(
            f"Expected a finite waveform (samples,) or (samples, channels). Got shape {wave.shape} instead."
        )
    rate = enhancer.config.sample_rate
    x = wave if sample_rate == rate else soxr.resample(wave, sample_rate, rate, RESAMPLE_QUALITY)
    blocks = enhancer.blocks(block_s, context_s)
    out = np.concatenate([w for w, _ in enhance_stream(enhancer.segment, [{"input": x}], blocks)])
    return out if sample_rate == rate else soxr.resample(out, rate, sample_rate, RESAMPLE_QUALITY)


def check_enhanceable(enhancer: Enhancer) -> None:
    """ConfigError with the reason when the model's input cannot be computed from a noisy recording."""
    why = enhancer.refusal()
    if why:
        raise ConfigError(f"Expected a model whose input comes from the noisy recording alone. Got {why}.")


@dataclass(frozen=True)
class Source:
    """How files are opened: `open(path)` is a context manager giving an object with `source_sample_rate`
    and `blocks` (mono float32 pieces at the model's rate, each valid until the next is asked for), and
    raising exceptions with a `reason` (and `detail`) for unusable files; `extensions` are the names
    looked for in folders."""

    open: Callable[[str], AbstractContextManager[Any]]
    extensions: tuple[str, ...]


@dataclass(frozen=True)
class EnhanceOptions:
    rate: int | None = None  # the outputs' rate; None: each input's own
    subtype: str = "FLOAT"
    overwrite: bool = False
    workers: int = 1
    block_s: float = BLOCK_S
    context_s: float = CONTEXT_S

    def __post_init__(self) -> None:
        parse_choice(self.subtype, SUBTYPES, "--subtype")
        parse_positive_int(self.workers, "--workers")
        if self.rate is not None:
            parse_positive_int(self.rate, "--rate")
        if not (self.block_s > 0 and self.context_s >= 0):
            raise ConfigError(
                f"Expected --block-seconds > 0 and --context-seconds >= 0. Got {self.block_s} and "
                f"{self.context_s} instead."
            )


@dataclass(frozen=True)
class Job:
    source: Path
    output: Path


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str
    detail: str = ""

    def line(self) -> str:
        return f"failed: {self.path}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


def plan_jobs(
    inputs: list[str], out: str | Path, extensions: tuple[str, ...]
) -> tuple[list[Job], list[Failure]]:
    """Each input file -> `out/<its name>.wav`; each folder's audio files (recursively) -> `out/<path
    relative to the folder>.wav`. An output folder inside an input folder is refused (its outputs would
    be inputs of the next run)."""
    out = Path(out).absolute()
    jobs, failures, taken = [], [], {}
    for given in inputs:
        path = Path(given).absolute()
        if path.is_dir():
            if out.resolve().is_relative_to(path.resolve()):
                raise ConfigError(
                    f"Expected an output folder outside the input folder {given}. Got {out} instead."
                )
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")
            )
            if not found:
                failures.append(
                    Failure(given, "no audio", f"no file ending in {', '.join(extensions)} under it")
                )
            pairs = [(p, out / p.relative_to(path).with_suffix(".wav")) for p in found]
        elif path.exists() or path.is_symlink():
            pairs = [(path, out / path.with_suffix(".wav").name)]
        else:
            failures.append(Failure(given, "missing path", "no such file or folder"))
            pairs = []
        for source, output in pairs:
            if output in taken:
                failures.append(
                    Failure(str(source), "duplicate output", f"{output} is also {taken[output]}'s")
                )
            elif output.resolve() == source.resolve():
                failures.append(Failure(str(source), "output is the input", str(output)))
            else:
                taken[output] = source
                jobs.append(Job(source, output))
    return jobs, failures


@dataclass
class EnhanceReport:
    version: str
    out: str
    written: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    audio_s: float = 0.0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        speed = self.audio_s / self.seconds if self.seconds else 0.0
        head = (
            f"enhance with {self.version}: {len(self.written)} file(s), {self.audio_s:.1f} s of audio in "
            f"{self.seconds:.1f} s ({speed:.1f}x real time) -> {self.out}"
        )
        tail = [f"{len(self.failures)} input(s) failed:"] if self.failures else []
        return [head, *tail, *(f.line() for f in self.failures)]


class _Progress:
    """A progress bar in seconds of audio written (tqdm, shared by the worker threads)."""

    def __init__(self, enabled: bool) -> None:
        from tqdm import tqdm  # the progress bar: only when one is shown

        self.bar = tqdm(
            unit="s audio",
            disable=not enabled,
            dynamic_ncols=True,
            bar_format="{n:.1f} {unit} [{elapsed}, {rate_fmt}]",
        )
        self.lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self.lock:
            self.bar.update(seconds)


def _resampled(pieces: Iterator[np.ndarray], rate: int, to: int) -> Iterator[np.ndarray]:
    if rate == to:
        yield from pieces
        return
    stream = soxr.ResampleStream(rate, to, 1, "float32", RESAMPLE_QUALITY)
    for piece in pieces:
        yield stream.resample_chunk(piece)
    yield stream.resample_chunk(np.zeros(0, np.float32), last=True)


def enhance_file(enhancer: Enhancer, job: Job, source: Source, options: EnhanceOptions, progress) -> float:
    """Decode, enhance and write one file in blocks; -> seconds of audio written."""
    rate, blocks = enhancer.config.sample_rate, enhancer.blocks(options.block_s, options.context_s)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    partial = job.output.with_name(f".{job.output.name}.partial-{os.getpid()}-{threading.get_ident()}")
    try:
        with source.open(str(job.source)) as stream:
            to = options.rate or stream.source_sample_rate
            pieces = ({"input": block} for block in stream.blocks)
            waves = (wave for wave, _ in enhance_stream(enhancer.segment, pieces, blocks))
            with sf.SoundFile(partial, "w", to, 1, options.subtype, format="WAV") as out:
                for wave in _resampled(waves, rate, to):
                    out.write(wave if options.subtype == "FLOAT" else np.clip(wave, -1.0, 1.0))
                    progress.add(wave.shape[0] / to)
                written = out.frames / to
        if job.output.exists() and not options.overwrite:
            raise FileExistsError(f"{job.output} appeared meanwhile")
        os.replace(partial, job.output)
        return written
    finally:
        partial.unlink(missing_ok=True)


def _failure(job: Job, exc: Exception) -> Failure:
    reason = getattr(exc, "reason", None)
    if reason:
        return Failure(str(job.source), reason, getattr(exc, "detail", ""))
    what = "enhancement failed" if isinstance(exc, SpecstoreError) else f"{type(exc).__name__}"
    return Failure(str(job.source), what, " ".join(str(exc).split()))


def enhance_files(
    enhancer: Enhancer,
    inputs: list[str],
    out: str | Path,
    source: Source,
    options: EnhanceOptions = EnhanceOptions(),
    progress: bool = False,
) -> EnhanceReport:
    """Every input (files, folders searched recursively) enhanced into `out`; files that fail are listed
    in the report with their reason and the others are still written."""
    check_enhanceable(enhancer)
    start = time.perf_counter()
    jobs, failures = plan_jobs(inputs, out, source.extensions)
    report = EnhanceReport(enhancer.version, str(out), failures=failures)
    todo = []
    for job in jobs:
        if job.output.exists() and not options.overwrite:
            report.failures.append(
                Failure(str(job.source), "output exists", f"{job.output} (--overwrite replaces it)")
            )
        else:
            todo.append(job)
    bar = _Progress(progress)

    def run(job: Job) -> tuple[Job, float | Exception]:
        try:
            return job, enhance_file(enhancer, job, source, options, bar)
        except Exception as exc:  # noqa: BLE001  (one file's failure is listed; the others go on)
            return job, exc

    with ThreadPoolExecutor(options.workers) as pool:
        for job, result in pool.map(run, todo):
            if isinstance(result, Exception):
                report.failures.append(_failure(job, result))
            else:
                report.written.append(str(job.output))
                report.audio_s += result
    bar.bar.close()
    report.seconds = time.perf_counter() - start
    return report
