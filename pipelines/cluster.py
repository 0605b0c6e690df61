"""External Dask clusters for the flows: `--cluster slurm|pbs|kubernetes` with `--cluster-config FILE`.

`cluster_runner` returns a prefect-dask `DaskTaskRunner` that starts the cluster when the flow starts (and
stops it when the flow ends): dask-jobqueue's `SLURMCluster` / `PBSCluster` submit one batch job per worker
(or per `processes` workers), dask-kubernetes' `KubeCluster` creates a Dask cluster resource in Kubernetes.
Both are optional packages (`pip install specstore[cluster]`, `specstore[kubernetes]`), imported only here.

The config file (YAML or JSON; see docs/CLUSTER.md) holds the cluster class's keyword arguments, either at the
top level or under a section named after the kind (so one file can serve several sites):

    slurm:
      queue: normal            # -> #SBATCH -p normal
      account: speech
      cores: 8                 # per job
      processes: 1             # Dask worker processes per job
      memory: 32GB             # per job
      walltime: "02:00:00"
      job_script_prologue: ["source /shared/specstore/.venv/bin/activate"]
      adapt: {minimum: 0, maximum: 16}   # optional: adaptive scaling instead of a fixed --workers

Keys are checked against the cluster class's parameters before anything starts; values missing from the file
fall back to dask's own config (`jobqueue.slurm.*` in ~/.config/dask/jobqueue.yaml), as in dask-jobqueue.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from stores.config import parse_positive_int
from stores.errors import ConfigError, NotFoundError

# kind -> (module, class, the package to install, the extra that installs it)
CLUSTERS: dict[str, tuple[str, str, str, str]] = {
    "slurm": ("dask_jobqueue", "SLURMCluster", "dask-jobqueue", "cluster"),
    "pbs": ("dask_jobqueue", "PBSCluster", "dask-jobqueue", "cluster"),
    "kubernetes": ("dask_kubernetes.operator", "KubeCluster", "dask-kubernetes", "kubernetes"),
}
RESERVED = ("adapt",)  # keys of a config section that are not cluster-class arguments
PREFECT_API_ENV = "PREFECT_API_URL"


def cluster_kinds() -> list[str]:
    return sorted(CLUSTERS)


def _check_kind(kind: str) -> str:
    if kind not in CLUSTERS:
        raise ConfigError(
            f"Expected --cluster to be one of {', '.join(cluster_kinds())}. Got {kind!r} instead."
        )
    return kind


def cluster_class(kind: str):
    """The cluster class of `kind`, imported now (the packages are optional)."""
    module, name, package, extra = CLUSTERS[_check_kind(kind)]
    try:
        mod = __import__(module, fromlist=[name])
    except ImportError as exc:
        raise ConfigError(
            f"Expected {package} installed for --cluster {kind} (pip install specstore[{extra}]). "
            f"Got ImportError instead ({exc})."
        ) from None
    return getattr(mod, name)


def load_cluster_config(path: str | os.PathLike | None, kind: str) -> dict[str, Any]:
    """The config section for `kind` from a YAML or JSON file ({} without a file): a mapping of keyword
    arguments, plus an optional `adapt` mapping."""
    _check_kind(kind)
    if path is None:
        return {}
    file = Path(path)
    if not file.is_file():
        raise NotFoundError(
            f"Expected --cluster-config to be a YAML or JSON file. Got {str(path)!r} instead (no such file)."
        )
    text = file.read_text()
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml  # only for YAML configs (PyYAML comes with dask)

            data = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise ConfigError(
            f"Expected a readable cluster config in {str(path)!r}. Got a parse error instead ({exc})."
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"Expected a mapping of cluster settings in {str(path)!r}. Got {type(data).__name__} instead."
        )
    sections = [k for k in data if k in CLUSTERS]
    if sections:  # sectioned by kind
        if kind not in data:
            raise ConfigError(
                f"Expected a {kind!r} section in {str(path)!r}. Got only {', '.join(map(repr, sections))} instead."
            )
        data = data[kind] or {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"Expected the {kind!r} section of {str(path)!r} to be a mapping. Got {type(data).__name__} instead."
            )
    bad = [k for k in data if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise ConfigError(
            f"Expected setting names in {str(path)!r}. Got {', '.join(map(repr, bad))} instead."
        )
    adapt = data.get("adapt")
    if adapt is not None and not isinstance(adapt, dict):
        raise ConfigError(
            f"Expected adapt in {str(path)!r} to be a mapping (minimum, maximum). Got {adapt!r} instead."
        )
    return dict(data)


def accepted_arguments(cls) -> set[str] | None:
    """Keyword arguments `cls(...)` accepts, or None when it takes any (**kwargs that go nowhere we can
    see). dask-jobqueue clusters pass their **kwargs to their job class, whose parameters are added."""
    names: set[str] = set()
    open_ended = False
    for p in inspect.signature(cls).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            open_ended = True
        elif p.kind is not p.VAR_POSITIONAL:
            names.add(p.name)
    job_cls = getattr(cls, "job_cls", None)
    if job_cls is not None:
        for klass in job_cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            names.update(
                p.name
                for p in inspect.signature(init).parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            )
        open_ended = False
    return None if open_ended else names


def _is_loopback(url: str) -> bool:
    host = (urlparse(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _pass_prefect_api(kind: str, kwargs: dict[str, Any]) -> None:
    """Workers must report task runs to the flow's Prefect server: export $PREFECT_API_URL to them."""
    url = os.environ.get(PREFECT_API_ENV)
    if not url or _is_loopback(url):
        warnings.warn(
            f"--cluster {kind}: PREFECT_API_URL is {'unset' if not url else 'a loopback address'}, so workers on "
            "other machines cannot report to this flow's Prefect server; start one they can reach "
            "(prefect server start --host 0.0.0.0) and export PREFECT_API_URL=http://HOST:4200/api",
            stacklevel=3,
        )
        if not url:
            return
    if kind == "kubernetes":
        env = kwargs.get("env")
        if env is None or isinstance(env, dict):
            kwargs["env"] = {PREFECT_API_ENV: url, **(env or {})}
        return
    prologue = list(kwargs.get("job_script_prologue") or [])
    if not any(PREFECT_API_ENV in line for line in prologue):
        kwargs["job_script_prologue"] = [*prologue, f"export {PREFECT_API_ENV}={url}"]


def cluster_settings(kind: str, config_path: str | os.PathLike | None, workers: int | None) -> tuple:
    """(cluster class, cluster kwargs, adapt kwargs) for `kind` from the config file; `workers` (when given)
    sets n_workers, else the file's n_workers, else 1 (0 with adapt)."""
    cls = cluster_class(kind)
    config = load_cluster_config(config_path, kind)
    adapt = config.pop("adapt", None) or {}
    accepted = accepted_arguments(cls)
    if accepted is not None:
        unknown = sorted(set(config) - accepted)
        if unknown:
            raise ConfigError(
                f"Expected {cls.__name__} settings in {str(config_path)!r} ({', '.join(sorted(accepted))}). "
                f"Got {', '.join(map(repr, unknown))} instead."
            )
    if workers is not None:
        config["n_workers"] = parse_positive_int(workers, "--workers")
    else:
        config.setdefault("n_workers", 0 if adapt else 1)
    if kind in ("slurm", "pbs"):
        import dask.config  # dask (seconds to import) only where a jobqueue cluster is configured

        for key in ("cores", "memory"):
            if config.get(key) is None and dask.config.get(f"jobqueue.{kind}.{key}", None) is None:
                raise ConfigError(
                    f"Expected {key} (per job) in the cluster config for --cluster {kind}. Got none "
                    f"(neither in {str(config_path)!r} nor in dask's jobqueue.{kind}.{key})."
                )
    _pass_prefect_api(kind, config)
    return cls, config, adapt


def cluster_runner(kind: str, config_path: str | None, workers: int | None):
    """A prefect-dask `DaskTaskRunner` on a new SLURM, PBS or Kubernetes Dask cluster built from the config
    file. Nothing starts here: the flow starts the cluster when it begins and closes it when it ends."""
    from prefect_dask import DaskTaskRunner  # Prefect only where a flow runs

    cls, kwargs, adapt = cluster_settings(kind, config_path, workers)
    return DaskTaskRunner(cluster_class=cls, cluster_kwargs=kwargs, adapt_kwargs=adapt or None)


# ---------------------------------------------------------------------------------------------- runners


@dataclass(frozen=True)
class RunnerConfig:
    """Where a flow's tasks run: a local cluster of `workers` (threads of this process, or processes), an
    existing scheduler (`dask_address`), or a SLURM/PBS/Kubernetes cluster (`cluster`, `cluster_config`)."""

    workers: int | None = None
    dask_address: str | None = None
    threads: bool = True
    cluster: str | None = None
    cluster_config: str | None = None

    def __post_init__(self) -> None:
        if self.cluster is None and self.cluster_config:
            raise ConfigError("Expected --cluster with --cluster-config. Got --cluster-config alone instead.")
        if self.cluster is not None and self.dask_address:
            raise ConfigError("Expected one of --cluster and --dask-address. Got both instead.")
        if self.cluster is not None:
            _check_kind(self.cluster)
        if self.workers is not None:
            parse_positive_int(self.workers, "--workers")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def dask_runner(workers: int | None, dask_address: str | None, threads: bool = True):
    """A Prefect task runner on Dask: an existing scheduler, or a local cluster: with `threads` (the default)
    one in-process worker of `workers` threads, else `workers` processes of one thread. Threads skip the
    worker processes' start and imports (seconds each) and the heavy parts (FFT, codecs, decoding) release
    the GIL, so threads are faster than processes here (docs/BENCHMARKS.md)."""
    from prefect_dask import DaskTaskRunner  # Prefect only where a flow runs

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    n = parse_positive_int(workers or os.cpu_count() or 1, "--workers")
    if threads:
        kwargs = {"n_workers": 1, "threads_per_worker": n, "processes": False}
    else:
        kwargs = {"n_workers": n, "threads_per_worker": 1, "processes": True}
    return DaskTaskRunner(
        cluster_kwargs={**kwargs, "dashboard_address": ":0"}
    )  # any free port, never a clash


def task_runner(config: RunnerConfig):
    """The task runner `config` asks for: --cluster, else --dask-address, else a local cluster. Nothing
    starts here: the flow starts the cluster when it begins and closes it when it ends."""
    if config.cluster is None:
        return dask_runner(config.workers, config.dask_address, config.threads)
    return cluster_runner(config.cluster, config.cluster_config, config.workers)  # threads: local only
