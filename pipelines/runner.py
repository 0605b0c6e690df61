"""How flows run their shards: one shared Prefect server, a Dask task runner, progress and merging.

Prefect task runs cost milliseconds to seconds each, so flows cut the work into coarse shards and show
progress in utterances as shards complete. On a Dask task runner the shards are plain Dask futures on the
runner's own client (see `ShardRunner`); elsewhere they are Prefect task runs.
"""

from __future__ import annotations

import contextlib
import math
import os

# Before Prefect or distributed are imported: they log every task at INFO (the command line shows a progress
# bar and a summary instead), and the temporary server would try to send telemetry from a machine that may
# have no network. Users who want the logs set PREFECT_LOGGING_LEVEL themselves.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import distributed  # noqa: E402
from prefect.context import FlowRunContext  # noqa: E402
from prefect.futures import as_completed  # noqa: E402
from prefect_dask import DaskTaskRunner  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pipelines.ingest import ShardSummary  # noqa: E402
from stores.config import parse_positive_int  # noqa: E402

_PROCESS_SETTINGS = contextlib.ExitStack()


def ensure_prefect_api() -> None:
    """Start one temporary Prefect server for this process and point every Dask worker at it.

    Without this each Dask worker process starts its own temporary server when it runs its first task
    (about 10 s each): measured 38.7 s against 6.3 s for an 8-task flow on 2 workers.
    """
    if os.environ.get("PREFECT_API_URL"):
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    server = SubprocessASGIServer()
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    # Flow runs on this process's own server send no heartbeats: heartbeats let a server mark the runs of a
    # dead process crashed, and this server dies with the process. Prefect stops the heartbeat thread at
    # the end of every flow run by joining it while it sleeps in 1 s steps: measured 1.0 s added to every
    # flow run (a flow with one empty task: 1.15 s). Entered for the rest of the process, in this thread
    # (the flows' thread); a settings context also spares Prefect re-reading its settings from the
    # environment on every look-up.
    _PROCESS_SETTINGS.enter_context(
        temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    )


def dask_runner(workers: int | None, dask_address: str | None, threads: bool = True):
    """A Prefect task runner on Dask: an existing scheduler, or a local cluster: with `threads` (the default)
    one in-process worker of `workers` threads, else `workers` processes of one thread. Threads skip the
    worker processes' start and imports (seconds each) and the heavy parts (FFT, codecs, decoding) release
    the GIL: the features flow on 1 h of pairs took 9.0 s with threads against 20.0 s with processes."""
    from prefect_dask import DaskTaskRunner

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


def auto_shard_size(scanned: int) -> int:
    """Coarse enough that task overhead is small, fine enough for ~16 tasks; depends only on the corpus size,
    so a rerun after a kill plans the same shards whatever the worker count."""
    return min(128, max(4, math.ceil(scanned / 16)))


class ShardRunner:
    """Submits a flow's shard tasks where the flow runs them. On a Dask task runner each shard is a plain
    Dask future on the runner's client, with the task's retries: prefect-dask serialises Prefect's context
    and re-validates its settings for every task run (measured ~0.25 s of CPU per task, holding the GIL the
    shards need; 16 empty tasks took 3.1-4.0 s against 1.1 s on Prefect's thread runner), which is as much
    as a shard's own work at an hour of audio. Prefect still runs the flow and its single-shot tasks
    (statistics, commits); the shards' progress is the flow's progress bar. Any other task runner gets
    Prefect task runs, as before."""

    def __init__(self) -> None:
        context = FlowRunContext.get()
        runner = context.task_runner if context else None
        self.client = runner.client if isinstance(runner, DaskTaskRunner) else None

    def submit(self, task_fn, *args):
        if self.client is None:
            return task_fn.submit(*args)
        return self.client.submit(task_fn.fn, *args, retries=task_fn.retries, pure=False)

    def results(self, futures):
        """Each future's result, as the futures complete (a failed shard raises its error)."""
        if self.client is None:
            done = as_completed(futures)
        else:  # the runner's client is not registered as the default one: name its loop
            done = distributed.as_completed(futures, loop=self.client.loop)
        for future in done:
            yield future.result()


def run_shards(task_fn, shards, args: tuple, label: str, progress: bool) -> ShardSummary:
    """Submit one task per shard, show progress in utterances, merge the summaries."""
    total, runner = ShardSummary("all"), ShardRunner()
    futures = [runner.submit(task_fn, *args, shard) for shard in shards]
    units = sum(len(s.items) + len(s.prerejected) for s in shards)
    with tqdm(total=units, desc=label, unit="utt", disable=not progress or not shards) as bar:
        for result in runner.results(futures):
            total.merge(result)
            bar.update(result.utterances + sum(result.rejects.values()))
            bar.set_postfix(hours=f"{total.seconds / 3600:.2f}", rejects=sum(total.rejects.values()))
    return total
