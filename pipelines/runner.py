"""How flows run their shards: the persistent Prefect server, a Dask task runner, progress and merging.

Prefect task runs cost milliseconds to seconds each, so flows cut the work into coarse shards and show
progress in utterances as shards complete. On a Dask task runner the shards are plain Dask futures on the
runner's own client (see `ShardRunner`); elsewhere they are Prefect task runs.
"""

from __future__ import annotations

import contextlib
import itertools
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
from pipelines.prefect_server import ensure_server  # noqa: E402
from stores.commits import GroupCommit, HeldCommit  # noqa: E402
from stores.store import open_store  # noqa: E402

_PROCESS_SETTINGS = contextlib.ExitStack()


def ensure_prefect_api() -> None:
    """Point this process's flows and every Dask worker at the persistent Prefect server
    (`pipelines.prefect_server`: started by the first flow verb, reused after), unless $PREFECT_API_URL
    already names one.

    Without a server each Dask worker process starts its own temporary one when it runs its first task,
    seconds each (docs/BENCHMARKS.md, "Ingest throughput").
    """
    if os.environ.get("PREFECT_API_URL"):
        return
    from prefect.settings import (  # Prefect's settings: imported with Prefect by the flows already
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    api_url = ensure_server().api_url
    os.environ["PREFECT_API_URL"] = api_url
    # No heartbeats: Prefect stops the heartbeat thread at the end of every flow run by joining it while it
    # sleeps in 1 s steps, which adds about a second to every flow run; without them the server cannot mark
    # the run of a killed command crashed (it stays "Running" in the UI). Entered for the rest of the
    # process, in this thread (the flows' thread); a settings context also spares Prefect re-reading its
    # settings from the environment on every look-up.
    _PROCESS_SETTINGS.enter_context(
        temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    )


def auto_shard_size(scanned: int) -> int:
    """Coarse enough that task overhead is small, fine enough for ~16 tasks; depends only on the corpus size,
    so a rerun after a kill plans the same shards whatever the worker count."""
    return min(128, max(4, math.ceil(scanned / 16)))


SHARD_WINDOW = 32  # the fewest shards a flow keeps submitted ahead on Dask (`ShardRunner.window`)


class ShardRunner:
    """Submits a flow's shard tasks where the flow runs them. On a Dask task runner each shard is a plain
    Dask future on the runner's client, with the task's retries: prefect-dask serialises Prefect's context
    and re-validates its settings for every task run, a fraction of a second of CPU per task holding the GIL
    the shards need, as much as a shard's own work at an hour of audio (docs/BENCHMARKS.md). Prefect still runs the flow and its single-shot tasks
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

    def run(self, task_fn, args: tuple, shards):
        """`task_fn(*args, shard)` of every shard: the results as the shards complete (a failed shard raises
        its error). On Dask at most `window()` shards are submitted ahead of the finished ones, so the
        driver and the scheduler hold a few tasks' arguments and states at a time, not those of thousands
        of shards (a 281,241-utterance corpus is 2,198 of them)."""
        if self.client is None:
            yield from self.results([self.submit(task_fn, *args, shard) for shard in shards])
            return
        waiting = iter(shards)
        first = [self.submit(task_fn, *args, shard) for shard in itertools.islice(waiting, self.window())]
        done = distributed.as_completed(first, loop=self.client.loop)
        for future in done:
            result = future.result()
            following = next(waiting, None)
            if following is not None:
                done.add(self.submit(task_fn, *args, following))
            yield result

    def window(self) -> int:
        """Shards in flight: four per worker thread the cluster has now (an adaptive one may have none
        yet), at least SHARD_WINDOW."""
        return max(SHARD_WINDOW, 4 * sum(self.client.nthreads().values()))


def run_shards(st, task_fn, shards, args: tuple, label: str, progress: bool) -> ShardSummary:
    """One task per shard (`task_fn(st.root, *args, shard)`, returning its summary and its held rows),
    progress in utterances, the summaries merged (`committing`: the rows committed in batches)."""
    total = ShardSummary("all")
    units = sum(len(s.items) + len(s.prerejected) for s in shards)
    with tqdm(total=units, desc=label, unit="utt", disable=not progress or not shards) as bar:
        for result in committing(st, task_fn, args, shards):
            total.merge(result)
            bar.update(result.utterances + sum(result.rejects.values()))
            bar.set_postfix(hours=f"{total.seconds / 3600:.2f}", rejects=sum(total.rejects.values()))
    return total


def committing(st, task_fn, args: tuple, shards):
    """Each shard's result (`task_fn(st.root, *args, shard)` returns it with its held rows) as the shards
    complete, their rows committed by this driver in batches (`GroupCommit`), the last batch when the
    shards are done or one failed."""
    with GroupCommit(st) as batches:
        for result, rows in ShardRunner().run(task_fn, (st.root, *args), shards):
            batches.add(rows)
            yield result


def holding_rows(shard_fn, store_root: str, *args):
    """A flow task's work: `shard_fn(store, *args)` with its rows held for the driver's batch commit. ->
    (its result, its rows)."""
    held = HeldCommit()
    return shard_fn(open_store(store_root, create=False), *args, commit=held), held.held
