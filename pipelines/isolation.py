"""Decode a shard's files in this process, or, after a crash, each in a child process of its own.

A native crash in a decoder (a segfault or abort inside libsndfile) cannot be caught: it ends the process,
and on the threaded default cluster that is the whole flow. The shards that were in flight leave their
in-flight markers behind (`stores.inflight`), and the rerun decodes the files of exactly those shards one by
one in a child process: a file whose decoding kills the child is rejected (`decoder crashed`) and the next
file gets a fresh child; one that does not answer within ISOLATED_TIMEOUT_S is rejected as `decoder hung`.

The child is a plain `python -m pipelines.isolation` speaking length-prefixed pickles over its stdin and
stdout, not a multiprocessing pool: Dask's worker processes are daemonic and multiprocessing refuses them
children, and its spawn start re-imports the parent's main module (the whole command line) in every child.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

from pipelines.audio import AudioConfig, LoadedAudio, Rejected, load_audio
from stores.inflight import describe_marker

ISOLATED_TIMEOUT_S = 120.0  # the slowest file the default limits allow decodes in a few seconds
# A child's own start (Python, numpy, soundfile) is not part of a call's time: on a loaded machine it can take
# tens of seconds, and counting it made good files look hung. It has this long to say it is ready.
CHILD_START_TIMEOUT_S = 600.0
_READY = b"ready"
_FRAME = struct.Struct(">Q")


class ChildDied(Exception):
    """The child process ended while running a call (a native crash, the OOM killer, a signal)."""


class ChildTimedOut(Exception):
    """The child did not answer a call in time; it has been killed."""


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes | None:
    """`size` bytes from `fd`, None at end of file; ChildTimedOut past `deadline` (time.monotonic())."""
    chunks, left = [], size
    while left:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not select.select([fd], [], [], wait)[0]:
            raise ChildTimedOut("no answer in time")
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_frame(stream, payload: bytes) -> None:
    stream.write(_FRAME.pack(len(payload)) + payload)
    stream.flush()


class ChildCaller:
    """One child Python process that runs `fn(*args)` calls one at a time (`fn` and its arguments travel by
    pickle, so `fn` is a module-level function or a functools.partial of one). After the child dies it is
    started again on the next call."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115  (each child's stderr; closed by close())

    def _start(self) -> None:
        # the child imports what this process imports, from the same places
        paths = [p for p in sys.path if p] + [os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        self.stderr.seek(0)
        self.stderr.truncate()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.isolation"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
        )
        deadline = time.monotonic() + CHILD_START_TIMEOUT_S
        try:
            header = _read_exact(self.proc.stdout.fileno(), _FRAME.size, deadline)
            ready = header and _read_exact(self.proc.stdout.fileno(), _FRAME.unpack(header)[0], deadline)
        except ChildTimedOut:
            self._stop()
            raise ChildTimedOut(
                f"the child process did not start within {CHILD_START_TIMEOUT_S:g} s"
            ) from None
        if ready != _READY:
            raise ChildDied(self._death())

    def call(self, fn: Callable, *args, timeout: float | None = None):
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            _write_frame(self.proc.stdin, pickle.dumps((fn, args)))
            header = _read_exact(self.proc.stdout.fileno(), _FRAME.size, deadline)
            payload = header and _read_exact(self.proc.stdout.fileno(), _FRAME.unpack(header)[0], deadline)
        except BrokenPipeError:
            payload = None
        except ChildTimedOut:
            self._stop()
            raise ChildTimedOut(f"no answer within {timeout:g} s; the process was killed") from None
        if payload is None:
            raise ChildDied(self._death())
        kind, value = pickle.loads(payload)
        if kind == "raised":
            raise value
        return value

    def _death(self) -> str:
        """How the child ended, with the last line it wrote to stderr."""
        code = self.proc.wait()
        how = f"exit code {code}"
        if code < 0:
            how = f"killed by {signal.Signals(-code).name}" if -code in signal.valid_signals() else how
        self.stderr.seek(0)
        lines = self.stderr.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
        self.proc = None
        return how + (f" ({lines[-1][:200]})" if lines else "")

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()  # the child ends at the end of its input
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._stop()
        self.proc = None
        self.stderr.close()

    def __enter__(self) -> ChildCaller:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


Loader = Callable[[str, AudioConfig], LoadedAudio]


def _isolated(paths: list[str], config: AudioConfig, crashed: dict, loader: Loader):
    earlier = f"an earlier attempt of this shard died while decoding ({describe_marker(crashed)})"
    with ChildCaller() as child:
        for path in paths:
            try:
                yield child.call(loader, path, config, timeout=ISOLATED_TIMEOUT_S)
            except Rejected as rej:
                yield rej
            except ChildDied as died:
                yield Rejected(
                    "decoder crashed", f"decoding this file alone ended its process ({died}); {earlier}"
                )
            except ChildTimedOut as hung:
                yield Rejected("decoder hung", f"decoding this file alone: {hung}; {earlier}")


def load_each(
    paths: list[str], config: AudioConfig, crashed: dict | None, loader: Loader = load_audio
) -> Iterator[LoadedAudio | Rejected]:
    """Each path's loaded audio or its Rejected, in order. `crashed` is the in-flight marker an earlier
    attempt of the shard left (None: none did): then every file is decoded alone in a child process.
    `loader` is `load_audio` except in tests, which pass one that crashes on a chosen file."""
    if crashed is not None:
        yield from _isolated(paths, config, crashed, loader)
        return
    for path in paths:
        try:
            yield loader(path, config)
        except Rejected as rej:
            yield rej


def _serve() -> None:
    """The child's loop: one call per frame on stdin, one ("ok", result) or ("raised", exception) frame back
    on the real stdout; anything else the call prints goes to stderr, so it cannot break a frame."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer.fileno()
    _write_frame(replies, _READY)  # imports done: calls are timed from here
    while (header := _read_exact(requests, _FRAME.size, None)) is not None:
        fn, args = pickle.loads(_read_exact(requests, _FRAME.unpack(header)[0], None) or b"")
        try:
            reply = pickle.dumps(("ok", fn(*args)))
        except Exception as exc:  # noqa: BLE001  (the parent decides what it means)
            try:
                reply = pickle.dumps(("raised", exc))
            except Exception:  # noqa: BLE001  (an exception that does not pickle)
                reply = pickle.dumps(("raised", RuntimeError(f"{type(exc).__name__}: {exc}")))
        _write_frame(replies, reply)


if __name__ == "__main__":
    _serve()
