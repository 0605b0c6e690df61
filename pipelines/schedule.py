"""`specstore serve`: scheduled feature extraction as Prefect deployments.

`nightly_features_flow` finds every pair set of the store that lacks a feature set of the configured kinds
(for its current committed pairs: pairs added since the last run make a new set) and computes it, one
`features` subflow per (pair set, kind). `run_serve` registers it as a deployment with a cron or interval
schedule and serves it with `prefect.serve` (a long-running process that polls the Prefect API at
$PREFECT_API_URL, e.g. a `prefect server start`, and runs each scheduled flow run in a subprocess);
`--once` runs it once now and exits (for a system cron job or a quick check).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from argparse import Namespace
from dataclasses import dataclass

from prefect import flow, get_run_logger

from stores.errors import ConfigError, SpecstoreError

DEFAULT_CRON = "0 2 * * *"
DEPLOYMENT = "nightly-features"


@dataclass
class NightlyItem:
    """What a nightly run did for one (pair set, kind)."""

    pairset: str
    kind: str
    status: str  # computed | present | skipped
    feature_id: str | None = None
    detail: str = ""

    def line(self) -> str:
        what = f"{self.pairset} {self.kind}: {self.status}"
        if self.feature_id:
            what += f" {self.feature_id}"
        return what + (f" ({self.detail})" if self.detail else "")


def store_pairsets(st) -> list[str]:
    """Pair sets with rows in the store's `pairs` table, sorted."""
    return sorted(set(st.read_table("pairs", columns=["pairset"])["pairset"].to_pylist()))


def _runner(workers, dask_address, threads, cluster, cluster_config):
    from pipelines.cluster import task_runner

    return task_runner(
        Namespace(
            workers=workers,
            dask_address=dask_address,
            threads=threads,
            cluster=cluster,
            cluster_config=cluster_config,
        )
    )


@flow(name=DEPLOYMENT)
def nightly_features_flow(
    store: str,
    kinds: list[str] | None = None,
    pairsets: list[str] | None = None,
    codec: str | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
    threads: bool = True,
    cluster: str | None = None,
    cluster_config: str | None = None,
) -> list[NightlyItem]:
    """Compute the missing feature sets (seed-default configs of `kinds`) of `pairsets` (default: every
    pair set in the store), each by the `features` flow as a subflow on the configured Dask cluster."""
    from dataclasses import replace

    import flows  # lazily: flows.py will import this module for its command line
    from features import feature_config
    from pipelines.featurize import plan_features
    from stores.locks import run_lock
    from stores.store import open_store

    logger = get_run_logger()
    st = open_store(store, create=False)
    done: list[NightlyItem] = []
    for pairset in pairsets or store_pairsets(st):
        for kind in kinds or ["magnitude"]:
            try:
                config = replace(feature_config(kind), sample_rate=st.sample_rate)
                plan = plan_features(st, pairset, config, codec)
                if plan.complete:
                    item = NightlyItem(pairset, kind, "present", plan.spec.feature_id)
                else:
                    # a pairs run still writing this pair set holds its lock: compute next time, not half a set
                    with run_lock(st, f"pairs-{pairset}"):
                        pass
                    report = flows.features_flow.with_options(
                        task_runner=_runner(workers, dask_address, threads, cluster, cluster_config)
                    )(store=store, pairset=pairset, config=plan.spec.config, codec=codec, progress=False)
                    item = NightlyItem(
                        pairset, kind, "computed" if report.computed else "present", report.feature_id
                    )
                    if report.computed:
                        item.detail = f"{report.pairs} pairs in {report.seconds:.1f} s"
            except SpecstoreError as exc:  # one pair set's problem does not stop the others
                item = NightlyItem(pairset, kind, "skipped", None, str(exc))
            done.append(item)
            logger.info(item.line())
    return done


# ---------------------------------------------------------------------------------------------- command line


def _has(parser: argparse.ArgumentParser, option: str) -> bool:
    return option in parser._option_string_actions


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `specstore serve` (--store, --debug and the Dask options only where missing)."""
    from features import FEATURES
    from pipelines.featurize import CODECS

    if not _has(parser, "--store"):
        parser.add_argument("--store", required=True, help="store root: a folder or an fsspec URL")
    if not _has(parser, "--debug"):
        parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--features-cron",
        default=None,
        metavar="CRON",
        help=f'when to compute missing feature sets, a cron line in UTC (default "{DEFAULT_CRON}")',
    )
    when.add_argument(
        "--features-interval", type=float, default=None, metavar="SECONDS", help="or every SECONDS"
    )
    parser.add_argument(
        "--kind",
        dest="kinds",
        action="extend",
        nargs="+",
        default=None,
        choices=FEATURES.names(),
        help="feature kinds every pair set should have (repeatable; default magnitude)",
    )
    parser.add_argument(
        "--pairs",
        dest="pairsets",
        action="extend",
        nargs="+",
        default=None,
        metavar="PAIRSET",
        help="only these pair sets (default: every pair set in the store)",
    )
    parser.add_argument(
        "--codec", default=None, choices=sorted(CODECS), help="Zarr codec (default: lz4; none for complex)"
    )
    parser.add_argument(
        "--name", default=None, help="the deployment's name (default: from the store's path or URL)"
    )
    parser.add_argument("--once", action="store_true", help="run the nightly flow once now and exit")
    if not _has(parser, "--workers"):  # the same options as the flows' verbs
        from pipelines.cli import add_runner_arguments

        add_runner_arguments(parser)


def check_cron(cron: str) -> str:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except Exception as exc:  # pydantic's ValidationError
        raise ConfigError(
            f'Expected --features-cron to be a cron line like "{DEFAULT_CRON}". Got {cron!r} instead.'
        ) from exc
    return cron


def serve_parameters(args) -> dict:
    """The nightly flow's parameters from the command line, checked (JSON values: they go to the API)."""
    from features import feature_config
    from pipelines.cluster import task_runner
    from stores.store import open_store

    st = open_store(args.store, create=False)
    kinds = list(dict.fromkeys(args.kinds or ["magnitude"]))
    for kind in kinds:
        feature_config(kind)
    task_runner(args)  # checks the Dask / cluster options; starts nothing
    config = getattr(args, "cluster_config", None)
    return {
        "store": st.root,
        "kinds": kinds,
        "pairsets": list(dict.fromkeys(args.pairsets)) if args.pairsets else None,
        "codec": args.codec,
        "workers": args.workers,
        "dask_address": args.dask_address,
        "threads": bool(args.threads),
        "cluster": getattr(args, "cluster", None),
        "cluster_config": os.path.abspath(config) if config else None,
    }


def deployment_name(name: str | None, store: str) -> str:
    """--name, or one made from the store (one deployment per store on a shared server)."""
    from stores.store import redact

    if name:
        return name
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", redact(store).rstrip("/").rsplit("/", 1)[-1]).strip("-")
    return f"{base[:40] or 'store'}-{hashlib.sha256(store.encode()).hexdigest()[:8]}"


def build_deployment(args, parameters: dict):
    """The nightly flow as a deployment with the schedule of `args` (cron, default nightly, or interval)."""
    from prefect.types.entrypoint import EntrypointType

    if args.features_interval is not None:
        if not args.features_interval > 0:
            raise ConfigError(
                f"Expected --features-interval > 0 seconds. Got {args.features_interval} instead."
            )
        schedule = {"interval": args.features_interval}
    else:
        schedule = {"cron": check_cron(args.features_cron or DEFAULT_CRON)}
    return nightly_features_flow.to_deployment(
        name=deployment_name(args.name, parameters["store"]),
        parameters=parameters,
        description=f"compute missing {', '.join(parameters['kinds'])} feature sets",
        entrypoint_type=EntrypointType.MODULE_PATH,
        **schedule,
    )


def run_serve(args) -> int:
    """`specstore serve`: serve the nightly deployment until interrupted (or, with --once, run it now)."""
    from pipelines.runner import ensure_prefect_api
    from stores.store import redact

    parameters = serve_parameters(args)
    deployment = None if args.once else build_deployment(args, parameters)
    if deployment is not None and not os.environ.get("PREFECT_API_URL"):
        # a temporary (ephemeral) server runs no scheduler service: the deployment would never run
        raise ConfigError(
            "Expected PREFECT_API_URL to point at a Prefect server (prefect server start --host 127.0.0.1; "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api). Got none instead (a temporary server "
            "schedules nothing)."
        )
    ensure_prefect_api()
    api = redact(os.environ.get("PREFECT_API_URL", ""))
    if args.once:
        items = nightly_features_flow(**parameters)
        for item in items:
            print(item.line())
        print(f"nightly features of {redact(parameters['store'])}: {len(items)} checked")
        return 1 if any(i.status == "skipped" for i in items) else 0
    when = (
        f"every {args.features_interval:g} s"
        if args.features_interval is not None
        else f'cron "{args.features_cron or DEFAULT_CRON}" (UTC)'
    )
    print(
        f"serving deployment {DEPLOYMENT}/{deployment.name}: missing {', '.join(parameters['kinds'])} feature sets "
        f"of {redact(parameters['store'])}, {when}; Prefect API {api}; Ctrl-C stops"
    )
    sys.stdout.flush()
    from prefect import serve

    # one flow run at a time: a slow run delays the next instead of racing it for the same locks
    serve(deployment, limit=1, print_starting_message=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.schedule ...`: `specstore serve` until flows.py wires it."""
    parser = argparse.ArgumentParser(prog="specstore serve", description=run_serve.__doc__)
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_serve(args)
    except SpecstoreError as exc:
        if args.debug:
            raise
        print(f"specstore serve: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("specstore serve: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # through the importable module, so that the deployment's entrypoint names pipelines.schedule, not __main__
    from pipelines.schedule import main as _main

    sys.exit(_main())
