"""`specstore serve`: the nightly features deployment, served against a real `prefect server start`,
computes the missing feature set on schedule; the same as a features run started by hand."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from cli import build_parser  # noqa: E402
from pipelines.commands import serve_parameters  # noqa: E402
from pipelines.schedule import DEFAULT_CRON, deployment_name, parse_schedule  # noqa: E402
from stores.errors import ConfigError, NotFoundError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _parse(*argv):
    return build_parser().parse_args(["serve", *map(str, argv)])


def _deployment(args):
    from flows import build_deployment

    return build_deployment(
        serve_parameters(args), parse_schedule(args.features_cron, args.features_interval), args.name
    )


@pytest.fixture(scope="module")
def pair_store(tmp_path_factory):
    """A demo store with the pair set `noisy` and no feature set."""
    from pipelines.testing import build_demo_store

    store, ids = build_demo_store(tmp_path_factory.mktemp("serve"), kinds={})
    assert ids == {} and store.table("features").count_rows() == 0
    return store


def test_serve_arguments_and_deployment(pair_store):
    args = _parse("--store", pair_store.root, "--kind", "magnitude", "complex", "--kind", "magnitude")
    params = serve_parameters(args)
    assert params["kinds"] == ["magnitude", "complex"] and params["store"] == pair_store.root
    assert (
        params["runner"]["threads"] is True
        and _parse("--store", pair_store.root, "--processes").threads is False
    )
    deployment = _deployment(args)
    assert deployment.entrypoint == "flows.nightly_features_flow"
    assert deployment.parameters == params and deployment.name == deployment_name(None, pair_store.root)
    assert [s.schedule.cron for s in deployment.schedules] == [DEFAULT_CRON]
    every = _deployment(_parse("--store", pair_store.root, "--features-interval", "30"))
    assert every.schedules[0].schedule.interval.total_seconds() == 30


@pytest.mark.parametrize(
    "argv,error,message",
    [
        (["--features-cron", "at two"], ConfigError, "Expected --features-cron to be a cron line"),
        (["--features-interval", "0"], ConfigError, "Expected --features-interval > 0"),
        (["--cluster-config", "x.yaml"], ConfigError, "--cluster-config alone"),
    ],
)
def test_bad_serve_options(pair_store, argv, error, message):
    args = _parse("--store", pair_store.root, *argv)
    with pytest.raises(error, match=message):
        _deployment(args)


def test_serve_needs_a_prefect_server(pair_store, monkeypatch, capsys):
    from cli import main

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["serve", "--store", pair_store.root, "--features-interval", "5"]) == 2
    assert "Expected PREFECT_API_URL to point at a Prefect server" in capsys.readouterr().err


def test_serve_needs_an_existing_store(tmp_path, capsys):
    with pytest.raises(NotFoundError, match="Expected an existing store"):
        serve_parameters(_parse("--store", tmp_path / "none"))
    with pytest.raises(SystemExit):
        _parse("--store", tmp_path, "--features-cron", DEFAULT_CRON, "--features-interval", "5")


# ---------------------------------------------------------------------------------------------- served


def no_api_logs():
    """In-process flows keep their logs here: a log worker would retry the session's temporary server for
    a minute at exit, after it has stopped."""
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    return temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: False})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(what, check, proc, log, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        assert proc.poll() is None, f"{what}: exited {proc.returncode}\n{log.read_text()[-4000:]}"
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout} s\n{log.read_text()[-4000:]}")


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on 127.0.0.1 with its own database; yields (API URL, its log file)."""
    import httpx

    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/api"

    def healthy():
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait("prefect server start", healthy, proc, log, 180)
        yield url, log
    finally:
        _stop(proc)


def _completed_runs(url: str) -> list[dict]:
    import httpx

    body = {
        "flows": {"name": {"any_": ["nightly-features"]}},
        "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
    }
    return httpx.post(f"{url}/flow_runs/filter", json=body, timeout=10).json()


@pytest.mark.slow
def test_served_schedule_computes_what_a_hand_run_computes(tmp_path, pair_store, prefect_server, prefect_api):
    from dataclasses import replace

    from features import feature_config
    from flows import features_flow
    from pipelines.cluster import dask_runner
    from pipelines.featurize import SignalSet
    from stores import open_store

    served_store = open_store(shutil.copytree(pair_store.root, tmp_path / "served"), create=False)
    by_hand = open_store(shutil.copytree(pair_store.root, tmp_path / "by-hand"), create=False)
    url, server_log = prefect_server
    env = {**os.environ, "PREFECT_API_URL": url, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}

    def features_row():
        # Prefect 3.8's scheduler fails on SQLAlchemy 2.1 (a hybrid property in a bulk insert): no run ever
        assert "Can't evaluate bulk DML" not in server_log.read_text(), (
            "the Prefect server cannot create scheduled runs with this SQLAlchemy: pin SQLAlchemy 2.0.x"
        )
        return served_store.table("features").count_rows() > 0

    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "cli", "serve", "--store", served_store.root, "--features-interval", "4",
           "--kind", "magnitude", "--threads", "--workers", "2"]  # fmt: skip
    started = time.perf_counter()
    with open(log, "w") as out:
        serve = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait("a features row", features_row, serve, log, 240)
        _wait("a completed scheduled run", lambda: _completed_runs(url), serve, log, 120)
        print(f"\nserve: first scheduled run completed after {time.perf_counter() - started:.1f} s")
    finally:
        _stop(serve)
    runs = _completed_runs(url)
    assert runs[0]["deployment_id"] and runs[0]["auto_scheduled"], runs[0]
    assert "serving deployment nightly-features/" in log.read_text()
    rows = served_store.read_table("features").to_pylist()
    assert len(rows) == 1 and rows[0]["kind"] == "magnitude" and rows[0]["pairset"] == "noisy"
    served = rows[0]["feature_id"]

    # by hand: the features flow itself, with the same parameters, on a copy of the store before serving
    config = replace(feature_config("magnitude"), sample_rate=by_hand.sample_rate)
    with no_api_logs():
        report = features_flow.with_options(task_runner=dask_runner(2, None, True))(
            store=by_hand.root, source=SignalSet("noisy"), config=config, progress=False
        )
    assert report.computed and report.feature_id == served
    a, b = served_store.features(served), by_hand.features(served)
    assert a.utterances() == b.utterances() and len(a.utterances()) == 12
    for utt in a.utterances():
        for role in ("input", "target"):
            np.testing.assert_array_equal(a.read(utt, role), b.read(utt, role))
    for name in ("input_mean", "input_std", "target_mean", "target_std"):
        path = f"features/{served}/stats/{name}"
        np.testing.assert_array_equal(served_store.arrays[path][:], by_hand.arrays[path][:])


@pytest.mark.slow
def test_once_computes_only_what_is_missing(tmp_path, pair_store, prefect_api, capsys):
    from flows import run_serve
    from stores import open_store

    copy = open_store(shutil.copytree(pair_store.root, tmp_path / "once"), create=False)
    args = _parse("--store", copy.root, "--kind", "magnitude", "--threads", "--workers", "2", "--once")
    with no_api_logs():
        assert run_serve(serve_parameters(args), None, None) == 0
        assert "noisy magnitude: computed magnitude-" in capsys.readouterr().out
        assert run_serve(serve_parameters(args), None, None) == 0
    assert "noisy magnitude: present magnitude-" in capsys.readouterr().out


@pytest.mark.slow
def test_a_pair_set_being_written_is_skipped(tmp_path, pair_store, prefect_api, capsys):
    import json

    from flows import run_serve
    from stores import open_store

    copy = open_store(shutil.copytree(pair_store.root, tmp_path / "busy"), create=False)
    locks = Path(copy.path) / "tables" / "_locks"
    locks.mkdir(parents=True, exist_ok=True)
    (locks / "pairs-noisy.json").write_text(json.dumps({"pid": 1, "host": "other-host", "since": 0}))
    args = _parse("--store", copy.root, "--threads", "--workers", "1", "--once")
    with no_api_logs():
        assert run_serve(serve_parameters(args), None, None) == 1
    out = capsys.readouterr().out
    assert "noisy magnitude: skipped (Expected no other run writing pairs-noisy" in out
    assert copy.table("features").count_rows() == 0
