"""The flows' shard runner (`pipelines/runner.py`): on Dask it keeps at most its window of shards submitted
ahead of the finished ones, and still returns every shard's result."""

from distributed import Client, LocalCluster

from pipelines import runner as runner_module
from pipelines.runner import ShardRunner


class _Task:
    """Stands in for a Prefect task: its function and its retries."""

    retries = 0

    @staticmethod
    def fn(offset: int, shard: int) -> int:
        return offset + shard


def test_at_most_a_window_of_shards_is_submitted_ahead(monkeypatch):
    monkeypatch.setattr(runner_module, "SHARD_WINDOW", 3)
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster, Client(cluster) as client:
        runner = ShardRunner()
        runner.client = client
        window = runner.window()
        assert window == 4  # four per worker thread, at least SHARD_WINDOW
        submitted, submit = [], runner.submit
        monkeypatch.setattr(runner, "submit", lambda *args: submitted.append(args) or submit(*args))
        results, ahead = [], []
        for result in runner.run(_Task, (100,), range(25)):
            results.append(result)
            ahead.append(len(submitted) - len(results))  # submitted and not yet returned
    assert sorted(results) == [100 + i for i in range(25)] and len(submitted) == 25
    assert max(ahead) == window
