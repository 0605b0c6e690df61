"""One Prefect server per user that outlives the commands: the first flow verb starts it, later verbs reuse it,
`specstore prefect-server start | stop | status` manages it, and its UI keeps every past flow run.

The server is Prefect's own (its ASGI app under uvicorn, the command `prefect server start --background`
runs), bound to 127.0.0.1 on a free port, with its SQLite database in the state folder:
`$SPECSTORE_PREFECT_HOME`, default `~/.specstore/prefect`:

    server.json     what specstore started: pid, port, URL, Prefect version, database, log
    server.pid      Prefect's own pid file (so `PREFECT_HOME=FOLDER prefect server stop` stops it too)
    prefect.db      the server's SQLite database (flow runs, deployments)
    server.log      its output
    server.lock     held while a command checks, starts or stops the server: two commands started at once
                    never start two servers

Not Prefect's `--background` itself: it pipes the server's output to the CLI process, which exits at once,
imports Prefect's CLI first (seconds), and keeps one server per PREFECT_HOME without a way to tell a dead
one from a live one. A server whose process died, whose port no longer answers as a Prefect server, or that
runs another Prefect version than the one installed is replaced, with one line on stderr saying so.
`$PREFECT_API_URL`, when set, wins: flows report there and nothing is started.

Imports nothing of Prefect: `status` and a reused server cost a file read and one HTTP request.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from filelock import FileLock

from stores.errors import SpecstoreError

HOME_ENV = "SPECSTORE_PREFECT_HOME"
API_ENV = "PREFECT_API_URL"
HOST = "127.0.0.1"
APP = "prefect.server.api.server:create_app"
START_TIMEOUT_S = 180.0  # a first start creates the database (migrations): tens of seconds on a busy machine
STOP_TIMEOUT_S = 20.0
LOCK_TIMEOUT_S = START_TIMEOUT_S + 60.0


@dataclass(frozen=True)
class ServerRecord:
    """What specstore started (`server.json`)."""

    pid: int
    port: int
    prefect: str
    database: str
    log: str
    started_at: float

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ServerRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def state_folder() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".specstore" / "prefect").expanduser().absolute()


def _record_path(folder: Path) -> Path:
    return folder / "server.json"


def read_record(folder: Path) -> ServerRecord | None:
    try:
        return ServerRecord.from_dict(json.loads(_record_path(folder).read_text()))
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or a damaged file: no server known
        return None


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own dead child (a zombie still answers kill 0)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process reuses the pid
        return False
    return True


def _is_our_server(pid: int) -> bool:
    """The pid runs Prefect's server app (not a process that reuses a dead server's pid)."""
    try:
        return APP in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:  # no /proc (not Linux): trust the pid
        return _alive(pid)


def _get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own loopback URL)
        return json.loads(response.read() or b"null")


def problem(record: ServerRecord) -> str | None:
    """Why the recorded server cannot be used, or None when it answers as this Prefect version."""
    if not _alive(record.pid):
        return f"its process {record.pid} is not running"
    try:
        healthy = _get_json(f"{record.api_url}/health") is True
        served = _get_json(f"{record.api_url}/admin/version")
    except (OSError, ValueError) as exc:  # refused, timed out, or not JSON: not a Prefect server there
        return f"port {record.port} does not answer as a Prefect server ({type(exc).__name__})"
    if not healthy:
        return f"port {record.port} does not answer as a healthy Prefect server"
    installed = version("prefect")
    if served != installed:
        return f"it runs Prefect {served}, and Prefect {installed} is installed"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _server_environment(folder: Path, port: int, database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != API_ENV}  # the server is the API, not a client of one
    env.update(
        PREFECT_HOME=str(folder),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{database}",
        PREFECT_SERVER_API_HOST=HOST,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=f"http://{HOST}:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        PREFECT__SERVER_FINAL="1",  # as `prefect server start --background` sets it
    )
    return env


def _start(folder: Path) -> ServerRecord:
    """Start the server in its own session (a Ctrl-C of the command that starts it does not stop it) and
    wait until it answers."""
    folder.mkdir(parents=True, exist_ok=True)
    port, database, log = _free_port(), folder / "prefect.db", folder / "server.log"
    command = [sys.executable, "-m", "uvicorn", "--factory", APP, "--host", HOST, "--port", str(port)]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [*command, "--timeout-keep-alive", "5", "--workers", "1"],
            env=_server_environment(folder, port, database), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    record = ServerRecord(process.pid, port, version("prefect"), str(database), str(log), time.time())
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SpecstoreError(
                f"Expected the Prefect server to start. Got exit code {process.returncode} instead (see {log})."
            )
        if problem(record) is None:
            (folder / "server.pid").write_text(str(process.pid))
            _record_path(folder).write_text(json.dumps(record.to_dict(), indent=1))
            return record
        time.sleep(0.25)
    _terminate(process.pid)
    raise SpecstoreError(
        f"Expected the Prefect server to answer within {START_TIMEOUT_S:.0f} s. Got no answer (see {log})."
    )


def _terminate(pid: int) -> None:
    """SIGTERM to the server's process group, SIGKILL after STOP_TIMEOUT_S; returns once it is gone."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)  # its own session: the group is the server and anything it started
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


def _forget(folder: Path) -> None:
    for name in ("server.json", "server.pid"):
        (folder / name).unlink(missing_ok=True)


def _lock(folder: Path) -> FileLock:
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / "server.lock", timeout=LOCK_TIMEOUT_S)


def ensure_server(folder: Path | None = None, say: Callable[[str], None] | None = None) -> ServerRecord:
    """The running server of `folder`, started (or a dead or stale one replaced, saying so) when needed."""
    folder = folder or state_folder()
    say = say or (lambda line: print(line, file=sys.stderr))
    with _lock(folder):
        record = read_record(folder)
        why = problem(record) if record else None
        if record and why is None:
            return record
        if record:
            if _alive(record.pid) and _is_our_server(record.pid):
                _terminate(record.pid)
            _forget(folder)
        new = _start(folder)
        if record:
            say(f"prefect-server: replaced the server at {record.url} ({why}): now {new.url}")
        else:
            say(
                f"prefect-server: started at {new.url} (pid {new.pid}; database {new.database}); it keeps running"
            )
        return new


def stop_server(folder: Path | None = None) -> str:
    folder = folder or state_folder()
    with _lock(folder):
        record = read_record(folder)
        if record is None:
            return f"prefect-server: not running (state folder {folder})"
        if _alive(record.pid) and _is_our_server(record.pid):
            _terminate(record.pid)
        _forget(folder)
        return f"prefect-server: stopped (pid {record.pid}, {record.url})"


def status_lines(folder: Path | None = None) -> tuple[list[str], bool]:
    """(lines, running) for `specstore prefect-server status`."""
    folder = folder or state_folder()
    record = read_record(folder)
    why = problem(record) if record else "none started"
    lines = []
    if record and why is None:
        lines = [
            f"prefect-server: running, UI {record.url}, API {record.api_url}",
            f"pid {record.pid}, Prefect {record.prefect}, database {record.database}, log {record.log}",
        ]
    else:
        lines = [f"prefect-server: not running ({why}; state folder {folder})"]
    if os.environ.get(API_ENV):
        lines.append(f"flows report to ${API_ENV} ({os.environ[API_ENV]}), which wins over this server")
    return lines, record is not None and why is None


def run(args) -> int:
    """`specstore prefect-server start | stop | status`."""
    if args.action == "stop":
        print(stop_server())
        return 0
    if args.action == "start":
        ensure_server(say=print)
    lines, running = status_lines()
    print("\n".join(lines))
    return 0 if running else 1
