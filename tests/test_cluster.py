"""External Dask clusters: the `--cluster` config and runner, and the flows on a separately started
scheduler with two worker processes (`--dask-address`), against the default local cluster."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines.cluster import (
    RunnerConfig,
    accepted_arguments,
    cluster_runner,
    load_cluster_config,
    task_runner,
)
from stores.errors import ConfigError, NotFoundError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SLURM_YAML = """\
# a site's settings for `specstore ... --cluster slurm --cluster-config this.yaml`
slurm:
  queue: speech-cpu
  account: se-lab
  cores: 4
  processes: 1
  memory: 16GB
  walltime: "01:30:00"
  job_script_prologue:
    - module load python/3.11
    - source /shared/specstore/.venv/bin/activate
pbs:
  queue: workq
  cores: 2
  memory: 8GB
"""


@pytest.fixture
def slurm_config(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(SLURM_YAML)
    return path


@pytest.fixture
def no_prefect_api(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)


def test_slurm_runner_carries_the_config_without_starting(slurm_config, monkeypatch):
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster
    from prefect_dask import DaskTaskRunner

    monkeypatch.setenv("PREFECT_API_URL", "http://login-1.example:4200/api")
    runner = cluster_runner("slurm", str(slurm_config), 2)
    assert isinstance(runner, DaskTaskRunner)
    assert runner.cluster_class is SLURMCluster and runner._cluster is None and runner._client is None
    kwargs = runner.cluster_kwargs
    assert kwargs["queue"] == "speech-cpu" and kwargs["account"] == "se-lab"
    assert kwargs["cores"] == 4 and kwargs["processes"] == 1 and kwargs["memory"] == "16GB"
    assert kwargs["walltime"] == "01:30:00" and kwargs["n_workers"] == 2
    # the site's prologue, then the Prefect server the workers report to
    assert kwargs["job_script_prologue"] == [
        "module load python/3.11",
        "source /shared/specstore/.venv/bin/activate",
        "export PREFECT_API_URL=http://login-1.example:4200/api",
    ]
    # the batch script those settings make (a job object renders it; nothing is submitted)
    job_kwargs = {k: v for k, v in kwargs.items() if k != "n_workers"}
    script = SLURMCluster.job_cls(scheduler="tcp://10.0.0.1:8786", name="w0", **job_kwargs).job_script()
    for line in (
        "#SBATCH -p speech-cpu",
        "#SBATCH -A se-lab",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH -t 01:30:00",
        "module load python/3.11",
        "export PREFECT_API_URL=http://login-1.example:4200/api",
    ):
        assert line in script
    assert "tcp://10.0.0.1:8786" in script


def test_pbs_section_and_workers_from_the_file(tmp_path, no_prefect_api):
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import PBSCluster

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"cores": 2, "memory": "4GB", "n_workers": 3, "adapt": {"maximum": 8}}))
    with pytest.warns(UserWarning, match="PREFECT_API_URL is unset"):
        runner = cluster_runner("pbs", str(path), None)
    assert runner.cluster_class is PBSCluster
    assert runner.cluster_kwargs == {"cores": 2, "memory": "4GB", "n_workers": 3}
    assert runner.adapt_kwargs == {"maximum": 8}


def test_config_sections_and_flat_files(slurm_config, tmp_path):
    assert load_cluster_config(slurm_config, "pbs") == {"queue": "workq", "cores": 2, "memory": "8GB"}
    assert load_cluster_config(None, "slurm") == {}
    flat = tmp_path / "flat.yml"
    flat.write_text("cores: 1\nmemory: 1GB\n")
    assert load_cluster_config(flat, "slurm") == {"cores": 1, "memory": "1GB"}
    with pytest.raises(ConfigError, match="Expected a 'kubernetes' section"):
        load_cluster_config(slurm_config, "kubernetes")


@pytest.mark.parametrize(
    "text,message",
    [
        ("- a\n- b\n", "Expected a mapping of cluster settings"),
        ("cores: [1\n", "Got a parse error instead"),
        ("slurm: 3\n", "to be a mapping"),
        ("cores: 1\nadapt: 4\n", "Expected adapt"),
    ],
)
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_cluster_config(path, "slurm")


def test_missing_file_unknown_kind_and_unknown_settings(tmp_path, no_prefect_api):
    pytest.importorskip("dask_jobqueue")
    with pytest.raises(NotFoundError, match="no such file"):
        cluster_runner("slurm", str(tmp_path / "missing.yaml"), 1)
    with pytest.raises(ConfigError, match="Expected --cluster to be one of kubernetes, pbs, slurm"):
        cluster_runner("lsf", None, 1)
    path = tmp_path / "c.yaml"
    path.write_text("cores: 2\nmemory: 2GB\nqueeu: normal\n")
    with pytest.raises(ConfigError, match="Got 'queeu' instead"):
        cluster_runner("slurm", str(path), 1)
    path.write_text("queue: normal\n")
    with pytest.raises(ConfigError, match="Expected cores"):
        cluster_runner("slurm", str(path), 1)


def test_accepted_arguments_of_jobqueue_include_the_job_class():
    pytest.importorskip("dask_jobqueue")
    from dask_jobqueue import SLURMCluster

    names = accepted_arguments(SLURMCluster)
    assert {"queue", "account", "cores", "memory", "walltime", "job_script_prologue", "n_workers"} <= names


def test_a_missing_package_is_one_clear_error(monkeypatch, slurm_config):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import raises ImportError
    with pytest.raises(ConfigError) as info:
        cluster_runner("slurm", str(slurm_config), 2)
    message = str(info.value)
    assert message.startswith(
        "Expected dask-jobqueue installed for --cluster slurm (pip install specstore[cluster]). Got ImportError"
    )
    monkeypatch.setitem(sys.modules, "dask_kubernetes", None)
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", None)
    with pytest.raises(ConfigError, match=r"Expected dask-kubernetes installed for --cluster kubernetes"):
        cluster_runner("kubernetes", None, 1)


def test_task_runner_flags():
    from dataclasses import replace

    from prefect_dask import DaskTaskRunner

    config = RunnerConfig(workers=2, dask_address="tcp://h:1", threads=True)
    assert task_runner(config).address == "tcp://h:1"
    with pytest.raises(ConfigError, match="Got both"):
        replace(config, cluster="slurm")
    with pytest.raises(ConfigError, match="--cluster-config alone"):
        replace(config, cluster_config="x.yaml")
    local = task_runner(replace(config, dask_address=None))
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["processes"] is False
    processes = task_runner(replace(config, dask_address=None, threads=False))
    assert processes.cluster_kwargs["processes"] is True and processes.cluster_kwargs["n_workers"] == 2


def test_cluster_ignores_the_local_threads_default(tmp_path, monkeypatch):
    pytest.importorskip("dask_jobqueue")
    monkeypatch.setenv("PREFECT_API_URL", "http://head:4200/api")
    path = tmp_path / "c.yaml"
    path.write_text("cores: 1\nmemory: 1GB\n")
    config = RunnerConfig(cluster="slurm", cluster_config=str(path), workers=3, threads=True)
    assert task_runner(config).cluster_kwargs["n_workers"] == 3


# ---------------------------------------------------------------------------------------------- a real cluster


def _start(cmd, env, log):
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.time() + 15
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def external_cluster(tmp_path, prefect_api):
    """`dask scheduler` and two `dask worker` processes (one thread each) on 127.0.0.1, reporting to the
    session's Prefect server; yields the scheduler address; all of them are stopped at teardown."""
    from distributed import Client

    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_LOGGING_LEVEL": "WARNING"}
    file = tmp_path / "scheduler.json"
    log = open(tmp_path / "cluster.log", "w")  # noqa: SIM115 (closed at teardown)
    procs = [
        _start(
            [
                BIN / "dask",
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                file,
            ],
            env,
            log,
        )
    ]
    try:
        deadline = time.time() + 60
        while not file.exists() and time.time() < deadline:
            assert procs[0].poll() is None, (tmp_path / "cluster.log").read_text()
            time.sleep(0.2)
        for _ in range(2):
            procs.append(
                _start(
                    [
                        BIN / "dask",
                        "worker",
                        "--nworkers",
                        "1",
                        "--nthreads",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                        "--scheduler-file",
                        file,
                    ],
                    env,
                    log,
                )
            )
        with Client(scheduler_file=str(file), timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            address = client.scheduler.address
        yield address
    finally:
        _stop(procs)
        log.close()
    assert all(p.poll() is not None for p in procs)


def _cli(*args, env=None, timeout=600):
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result, time.perf_counter() - started


def _chain(store, corpus, dask_flags, env):
    """ingest -> pairs -> features through the command line; -> (feature_id, features wall time in s)."""
    _cli(
        "ingest",
        "--store",
        store,
        "--corpus",
        "librispeech",
        "--source",
        corpus.speech,
        "--quiet",
        *dask_flags,
        env=env,
    )
    _cli(
        "pairs",
        "--store",
        store,
        "--corpus",
        "librispeech",
        "--kind",
        "noisy",
        "--name",
        "noisy",
        "--noise",
        corpus.noise,
        "--quiet",
        *dask_flags,
        env=env,
    )
    result, seconds = _cli("features", "--store", store, "--pairs", "noisy", "--kind", "magnitude",
                           "--quiet", *dask_flags, env=env)  # fmt: skip
    feature_id = result.stdout.split()[2]
    assert feature_id.startswith("magnitude-"), result.stdout
    return feature_id, seconds


@pytest.mark.slow
def test_flows_on_an_external_cluster_equal_the_local_cluster(tmp_path, external_cluster, prefect_api):
    from pipelines.demo import DemoConfig, generate_demo_corpus
    from stores import open_store
    from stores.verify import verify_store

    corpus = generate_demo_corpus(
        tmp_path / "demo",
        DemoConfig(speakers=3, utterances_per_speaker=4, noises=2, rirs=2, noise_seconds=8),
    )
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    external, t_external = _chain(tmp_path / "ext", corpus, ["--dask-address", external_cluster], env)
    local, t_local = _chain(tmp_path / "local", corpus, ["--workers", "2"], env)
    print(
        f"\nfeatures flow wall time (CLI process, 12 demo pairs, magnitude): external 2-worker cluster "
        f"{t_external:.1f} s, default local cluster (--workers 2) {t_local:.1f} s"
    )
    assert external == local
    a, b = open_store(tmp_path / "ext", create=False), open_store(tmp_path / "local", create=False)
    assert verify_store(a) == [] and verify_store(b) == []
    fa, fb = a.features(external), b.features(local)
    assert fa.utterances() == fb.utterances() and len(fa.utterances()) == 12
    for utt in fa.utterances():
        for role in ("input", "target"):
            np.testing.assert_array_equal(fa.read(utt, role), fb.read(utt, role))
