"""The persistent Prefect server (`pipelines/prefect_server.py`): reused by a second command, a killed one
replaced, one of another Prefect version replaced (the process on its port left alone), `stop` leaves no
process, $PREFECT_API_URL wins, two commands at once start one server. Each test
has its own state folder; a database migrated once per session is copied into it, so that a test's server
starts in seconds instead of creating its database (tens of seconds)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines.prefect_server import HOME_ENV, _alive, ensure_server, read_record, status_lines, stop_server
from pipelines.testing import tone, write_audio

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prefect-template")
    ensure_server(folder, say=lambda line: None)
    stop_server(folder)
    return folder / "prefect.db"


@pytest.fixture
def state(tmp_path, migrated_database, monkeypatch):
    folder = tmp_path / "prefect-state"
    folder.mkdir()
    shutil.copy(migrated_database, folder / "prefect.db")
    monkeypatch.setenv(HOME_ENV, str(folder))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    yield folder
    stop_server(folder)


def _group_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _flow_runs(api_url: str) -> list[dict]:
    request = urllib.request.Request(
        f"{api_url}/flow_runs/filter", data=b"{}", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_second_command_reuses_the_server_and_both_runs_stay_listed(tmp_path, state):
    for i in range(3):
        write_audio(tmp_path / "speech" / f"u{i}.wav", tone(1.0 + i / 4, 16000), 16000)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = []
    for name in ("first", "second"):
        done.append(
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cli",
                    "ingest",
                    "--store",
                    tmp_path / "s",
                    "--corpus",
                    "folder",
                    "--source",
                    tmp_path / "speech",
                    "--name",
                    name,
                    "--quiet",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                env=env,
                cwd=ROOT,
            )  # fmt: skip
        )
        assert done[-1].returncode == 0, done[-1].stderr
    record = read_record(state)
    assert "prefect-server: started at" in done[0].stderr and record.url in done[0].stderr
    assert "prefect-server" not in done[1].stderr  # reused: not a word about it
    runs = _flow_runs(record.api_url)
    assert sorted(r["state_type"] for r in runs) == ["COMPLETED", "COMPLETED"]


def test_a_killed_server_is_replaced_with_one_line(state):
    first = ensure_server(state, say=lambda line: None)
    os.killpg(first.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(first.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    said = []
    second = ensure_server(state, say=said.append)
    assert second.pid != first.pid and len(said) == 1
    assert f"replaced the server at {first.url}" in said[0] and "not running" in said[0]
    assert status_lines(state)[1]


def test_stop_leaves_no_process_behind(state):
    record = ensure_server(state, say=lambda line: None)
    assert "stopped" in stop_server(state)
    assert not _alive(record.pid) and _group_gone(record.pid)
    assert read_record(state) is None and not status_lines(state)[1]
    assert "not running" in stop_server(state)


def test_two_commands_at_once_start_one_server(state):
    code = "from pipelines.prefect_server import ensure_server; print(ensure_server().pid)"
    started = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        for _ in range(2)
    ]
    pids = {p.communicate(timeout=600)[0].strip() for p in started}
    assert len(pids) == 1 and pids == {str(read_record(state).pid)}


def test_prefect_api_url_wins_and_nothing_starts(state, monkeypatch):
    from pipelines.runner import ensure_prefect_api

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    ensure_prefect_api()
    assert read_record(state) is None and not (state / "server.json").exists()
    lines, running = status_lines(state)
    assert not running and "wins over this server" in lines[-1]


# a stand-in on the recorded port: answers Prefect's health and version endpoints (with the version given),
# or, with "-", nothing but 404s
FAKE_SERVER = """
import http.server, json, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        answers = {} if sys.argv[2] == "-" else {"/api/health": True, "/api/admin/version": sys.argv[2]}
        if self.path not in answers:
            self.send_error(404)
            return
        body = json.dumps(answers[self.path]).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


@pytest.fixture
def stand_in(state):
    """(start(version) -> the record of a stand-in server written as this state's server, the processes)."""
    from pipelines.prefect_server import ServerRecord, _free_port

    started = []

    def start(answers: str) -> ServerRecord:
        port = _free_port()
        process = subprocess.Popen([sys.executable, "-c", FAKE_SERVER, str(port), answers])
        started.append(process)
        record = ServerRecord(process.pid, port, answers, str(state / "prefect.db"), "", time.time())
        (state / "server.json").write_text(json.dumps(record.to_dict()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{record.url}/", timeout=1)
            except urllib.error.HTTPError:
                return record  # it answers (404 for /)
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("the stand-in server did not start")

    yield start, started
    for process in started:
        process.kill()
        process.wait()


def test_a_port_that_is_no_prefect_server_is_a_problem(stand_in):
    from pipelines.prefect_server import problem

    start, _ = stand_in
    assert "does not answer as a Prefect server (HTTPError)" in problem(start("-"))


def test_a_server_of_another_prefect_version_is_replaced_and_left_running(state, stand_in):
    start, _ = stand_in
    old = start("2.0.0")
    said = []
    new = ensure_server(state, say=said.append)
    assert new.pid != old.pid and new.port != old.port and read_record(state) == new
    assert len(said) == 1 and f"replaced the server at {old.url} (it runs Prefect 2.0.0" in said[0]
    assert _alive(old.pid)  # not Prefect's server app: a process of someone else, never killed
