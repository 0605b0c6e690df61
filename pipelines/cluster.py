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

import inspect
import json
import os
import warnings
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
            import yaml

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
        import dask.config

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
    from prefect_dask import DaskTaskRunner

    cls, kwargs, adapt = cluster_settings(kind, config_path, workers)
    return DaskTaskRunner(cluster_class=cls, cluster_kwargs=kwargs, adapt_kwargs=adapt or None)


# ---------------------------------------------------------------------------------------------- command line


def add_cluster_arguments(parser) -> None:
    """`--cluster KIND` and `--cluster-config FILE` (beside the flows' --workers / --dask-address)."""
    parser.add_argument(
        "--cluster",
        default=None,
        choices=cluster_kinds(),
        help="start the Dask workers as SLURM/PBS jobs or in Kubernetes (see docs/CLUSTER.md)",
    )
    parser.add_argument(
        "--cluster-config",
        default=None,
        metavar="FILE",
        help="YAML/JSON settings of --cluster (queue, cores, ...)",
    )


def task_runner(args):
    """The task runner the flags ask for: --cluster, else --dask-address, else a local cluster."""
    from pipelines.runner import dask_runner

    kind = getattr(args, "cluster", None)
    if kind is None:
        if getattr(args, "cluster_config", None):
            raise ConfigError("Expected --cluster with --cluster-config. Got --cluster-config alone instead.")
        return dask_runner(args.workers, args.dask_address, getattr(args, "threads", True))
    if getattr(args, "dask_address", None):
        raise ConfigError("Expected one of --cluster and --dask-address. Got both instead.")
    return cluster_runner(kind, args.cluster_config, args.workers)  # --threads/--processes: local only
