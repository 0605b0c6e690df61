"""What the orchestration costs a feature set: the same feature shards run three ways, in interleaved rounds
on the same pair store, the medians reported:

- *pool*: `feature_shard` over the plan's shards on a plain 2-thread pool, then `finalize_features` (the work
  alone: reading pairs, computing, writing, statistics, commits);
- *dask*: the same shards as futures on a local Dask cluster of one in-process worker of 2 threads (what the
  flow's runner starts), cluster start and close included, no Prefect;
- *flow*: `features_flow` on its default Dask runner, end to end (what `specstore features` runs).

    .venv/bin/python benchmarks/bench_flow_overhead.py --work /tmp/bench-features --kind magnitude --rounds 6

Uses the pair store of `bench_features_flow.py` (WORK/store-TAG, built with --minutes of pairs when missing).
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_features_flow import drop_feature_sets, make_pairset, run_flow


def run_pool(root: str, kind: str) -> None:
    from features import feature_config
    from pipelines.featurize import SignalSet, feature_shard, finalize_features, plan_features
    from stores import open_store

    store = open_store(root)
    plan = plan_features(store, SignalSet("noisy"), feature_config(kind))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda shard: feature_shard(store, plan.spec, shard), plan.shards))
    finalize_features(store, plan.spec)


def run_dask(root: str, kind: str) -> None:
    from distributed import Client, LocalCluster

    import flows
    from features import feature_config
    from pipelines.cluster import dask_runner
    from pipelines.featurize import SignalSet, finalize_features, plan_features
    from stores import open_store
    from stores.commits import GroupCommit

    store = open_store(root)
    plan = plan_features(store, SignalSet("noisy"), feature_config(kind))
    cluster = LocalCluster(**dask_runner(2, None).cluster_kwargs)  # the cluster the flow's runner starts
    with cluster, Client(cluster) as client:
        futures = [
            client.submit(flows.features_shard_task.fn, store.root, plan.spec, None, shard, pure=False)
            for shard in plan.shards
        ]
        with GroupCommit(store) as batches:  # the flow's driver commits the held rows the same way
            for _, rows in client.gather(futures):
                batches.add(rows)
    finalize_features(store, plan.spec)


def run_prefect_flow(root: str, kind: str) -> None:
    run_flow(root, kind)


WAYS = {"pool": run_pool, "dask": run_dask, "flow": run_prefect_flow}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default="/tmp/bench-features")
    parser.add_argument("--store-tag", default="main")
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--kind", default="magnitude")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    from pipelines.runner import ensure_prefect_api

    ensure_prefect_api()
    root, seconds = make_pairset(Path(args.work), args.minutes, args.store_tag)
    print(f"{args.kind}: {seconds / 60:.1f} min of pairs, {args.rounds} rounds", flush=True)
    drop_feature_sets(root)
    run_prefect_flow(root, args.kind)  # warm-up: imports, the first cluster, the page cache
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    for round_ in range(args.rounds):
        order = list(WAYS)[round_ % 3 :] + list(WAYS)[: round_ % 3]  # each way first in turn
        for way in order:
            drop_feature_sets(root)
            started = time.perf_counter()
            WAYS[way](root, args.kind)
            times[way].append(time.perf_counter() - started)
    pool = statistics.median(times["pool"])
    for way, values in times.items():
        median = statistics.median(values)
        print(
            f"{way:5s} median {median:.2f} s ({median - pool:+.2f} s against pool; "
            f"{2 * seconds / median:.0f} audio s / s)  all: {' '.join(f'{v:.2f}' for v in values)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
