"""Distributed data-parallel training: configs and versions, the split of the data across ranks, and (slow)
real gloo jobs of two ranks under torchrun and under `specstore train --nproc 2`."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from features import feature_config
from pipelines.testing import build_demo_store
from stores import ConfigError
from training.checkpoint import load_model
from training.config import TrainConfig
from training.distributed import Ranks, failure_line
from training.stream import FeatureStream, StreamConfig, assign, batches_per_epoch, make_loader
from training.trainer import Trainer, check_start

HERE = Path(__file__).parent
TINY_CRN = {"channels": [4, 8, 8, 8, 8]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """5 speakers x 3 utterances: the train split spans 3 shards (4, 4 and 1 utterances)."""
    store, ids = build_demo_store(
        tmp_path_factory.mktemp("ddp"), {"mag": feature_config("magnitude")}, speakers=5, utterances=3
    )
    return store, ids["mag"]


def _config(feature_id, **overrides) -> TrainConfig:
    base = dict(
        model="crn", feature_id=feature_id, model_args=TINY_CRN, epochs=2, max_steps=3, batch_size=4,
        segment=20, lr=3e-3,
    )  # fmt: skip
    return TrainConfig(**{**base, **overrides})


def test_single_process_versions_keep_their_hashes_and_ranks_enter_the_config():
    # versions computed before distributed training existed (main at e2e4245)
    one = TrainConfig(model="crn", feature_id="magnitude-155f59be03a5", model_args={"channels": [4, 8]},
                      accumulate=2, num_workers=1)  # fmt: skip
    assert one.version == "crn-edc9d47b2e9a" and TrainConfig(model="dccrn", feature_id="f").version == (
        "dccrn-f4c1cc4e4b1d"
    )
    assert "world_size" not in one.to_dict() and "global_batch" not in one.to_dict()
    two = one.on_ranks(2)
    assert two.to_dict()["world_size"] == 2 and two.to_dict()["global_batch"] == 16 * 2 * 2
    assert two.version != one.version and TrainConfig.from_dict(two.to_dict()) == two
    assert one.on_ranks(1) is one and two.without_ranks() == one.without_ranks()
    with pytest.raises(ConfigError, match="global_batch"):
        TrainConfig.from_dict({**two.to_dict(), "global_batch": 8})
    with pytest.raises(ConfigError, match="Expected 2 ranks"):
        two.on_ranks(3)


def test_assign_balances_and_rotates_with_the_epoch():
    assert assign([5, 5, 1], 1) == [[0, 1, 2]]  # one consumer: every unit, in order
    assert assign([5, 5, 1], 2, rotate=0) == [[0, 2], [1]]
    assert assign([5, 5, 1], 2, rotate=1) == [[1], [0, 2]]
    assert assign([1, 1], 3) == [[0], [1], []]


def test_ranks_and_workers_read_disjoint_data_and_every_rank_gets_some(demo):
    store, fid = demo
    whole = StreamConfig(feature_id=fid, segment=0)
    everything = sorted(item["utterance_id"] for item in FeatureStream(store.root, whole))
    for world, workers in ((2, 1), (2, 2), (5, 1)):  # 5 ranks > 3 shards: shards cut into runs
        seen = []
        for rank in range(world):
            stream = FeatureStream(store.root, whole, epoch=1, rank=rank, world=world)
            mine = [item["utterance_id"] for w in range(workers) for item in stream.items(w, workers)]
            assert mine, (world, workers, rank)
            assert stream.segments_per_worker(workers) == [
                sum(1 for _ in stream.items(w, workers)) for w in range(workers)
            ]
            seen += mine
        assert sorted(seen) == everything


def test_batch_counts_are_exact_and_uneven_across_ranks(demo):
    store, fid = demo
    config = StreamConfig(feature_id=fid, segment=20)
    counts = []
    for rank in range(2):
        for workers in (0, 2):
            loader = make_loader(store.root, config, 4, workers, epoch=0, rank=rank, world=2)
            assert batches_per_epoch(loader) == sum(1 for _ in loader)
        counts.append(batches_per_epoch(loader))
    assert counts[0] != counts[1]  # 3 shards on 2 ranks: the shortest count is what both run


def test_resume_with_another_number_of_ranks_is_refused(demo):
    store, fid = demo
    config = _config(fid, seed=31, epochs=2)
    first = Trainer(store, config, "cpu", progress=False)  # a single-process run killed after epoch 1
    save = first.save

    def save_then_die():
        save()
        raise KeyboardInterrupt

    first.save = save_then_die
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    two = Trainer(store, config.on_ranks(2), progress=False, ranks=Ranks(0, 2))
    with pytest.raises(ConfigError, match="number of ranks of the interrupted run"):
        check_start(two, resume=True)
    check_start(two, resume=False)  # a new run of the two-rank version is allowed


def test_a_rank_without_data_is_refused_clearly(demo):
    store, fid = demo

    class Apart(Ranks):  # one rank of many, without the others' collectives
        def minimum(self, value: int) -> int:
            return value

    trainer = Trainer(store, _config(fid, world_size=50), progress=False, ranks=Apart(49, 50))
    with pytest.raises(ConfigError, match="on every rank. Got a rank with none"):
        trainer.train_epoch(0)


def test_the_launchers_line_names_the_lost_rank_not_the_ones_it_stopped():
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    def failure(local_rank, exitcode):
        return ProcessFailure(local_rank=local_rank, pid=100 + local_rank, exitcode=exitcode, error_file="")

    line = failure_line({0: failure(0, -signal.SIGTERM), 1: failure(1, -signal.SIGKILL)})
    assert line.startswith("specstore train: error: lost rank 1 (local rank 1, pid 101): signal SIGKILL")
    assert "stopped rank(s) 0" in line and "--resume" in line
    assert "lost rank 0 (local rank 0, pid 100): exit code 2" in failure_line({0: failure(0, 2)})
    cut_off = failure_line({0: failure(0, os.EX_TEMPFAIL), 1: failure(1, -signal.SIGKILL)})
    assert "lost rank 1 (local rank 1, pid 101): signal SIGKILL; stopped rank(s) 0" in cut_off


# ---------------------------------------------------------------------------------------------- slow: jobs


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_two_gloo_ranks_train_on_disjoint_data_and_the_checkpoint_is_rank_0s_model(demo, tmp_path):
    store, fid = demo
    config = _config(fid, seed=3, epochs=3)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        str(HERE / "ddp_rank.py"), store.root, config.to_json(), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    version = config.on_ranks(2).version
    assert {r["version"] for r in ranks} == {version} and all(r["world"] == 2 for r in ranks)
    # every epoch ends on both ranks, with the same steps and the same (reduced) losses; 3 shards on 2 ranks
    # give them uneven data (test_batch_counts_are_exact_and_uneven_across_ranks)
    keys = ("epoch", "steps", "train_loss", "valid_loss", "lr")
    histories = [[{k: h[k] for k in keys} for h in r["history"]] for r in ranks]
    assert len(histories[0]) == 3 and histories[0] == histories[1]
    for epoch in range(3):
        mine = [
            {u for read in r["reads"] if read["epoch"] == epoch for u in read["utterances"]} for r in ranks
        ]
        assert mine[0] and mine[1] and not mine[0] & mine[1], epoch
    # rank 0 alone wrote the checkpoints and the row; the checkpoint is rank 0's model
    (row,) = [r for r in store.read_table("models").to_pylist() if r["model_version"] == version]
    assert json.loads(row["config_json"])["global_batch"] == 8 and row["epochs"] == 3
    path = f"{store.path}/checkpoints/{version}/epoch-0003.pt"
    with store.fs.open(path, "rb") as handle:
        model, extra = load_model(io.BytesIO(handle.read()))
    sys.path.insert(0, str(HERE))
    from ddp_rank import fixed_batch  # the test's own helper script

    with torch.no_grad():
        torch.testing.assert_close(
            model(fixed_batch()), torch.load(tmp_path / "outputs.pt"), rtol=0, atol=1e-6
        )
    assert len(extra["rng_torch_ranks"]) == 2


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _rank_pid(launcher: int, rank: int) -> int | None:
    for pid in _children(launcher):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return pid
    return None


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _launch(store, fid: str, folder: Path, name: str, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "cli", "train", "--store", store.root, "--model", "crn", "--features", fid,
        "--model-arg", f"channels={json.dumps(TINY_CRN['channels'])}", "--epochs", "5", "--batch-size", "4",
        "--segment", "20", "--max-steps", "6", "--seed", "7", "--device", "cpu", "--quiet", "--nproc", "2",
        *extra,
    ]  # fmt: skip
    out, err = open(folder / f"{name}.out", "w"), open(folder / f"{name}.err", "w")  # noqa: SIM115
    return subprocess.Popen(command, stdout=out, stderr=err, env=_env())


@pytest.mark.slow
def test_a_killed_rank_stops_the_job_and_resume_finishes_after_a_kill_of_the_whole_job(demo, tmp_path):
    store, fid = demo
    jobs: list[subprocess.Popen] = []
    try:
        # 1. rank 1 killed mid-run: the job ends, non-zero, within 60 s, naming rank 1
        job = _launch(store, fid, tmp_path, "killed-rank")
        jobs.append(job)
        rank1 = _wait_for(lambda: _rank_pid(job.pid, 1), 120, "rank 1 to start")
        folder = _wait_for(lambda: _checkpoint_folder(store), 180, "the first checkpoint")
        os.kill(rank1, signal.SIGKILL)
        killed = time.monotonic()
        code = job.wait(timeout=90)
        assert code != 0 and time.monotonic() - killed < 60
        errors = (tmp_path / "killed-rank.err").read_text()
        assert "lost rank 1 (local rank 1" in errors and "--resume" in errors, errors[-2000:]
        # 2. resumed, then the whole job killed at once (launcher and ranks)
        before = len(_epochs(store, folder))
        job = _launch(store, fid, tmp_path, "whole-job", "--resume")
        jobs.append(job)
        ranks = [_wait_for(lambda r=r: _rank_pid(job.pid, r), 120, f"rank {r}") for r in range(2)]
        _wait_for(lambda: len(_epochs(store, folder)) > before, 180, "a checkpoint of the resumed run")
        for pid in (job.pid, *ranks):
            os.kill(pid, signal.SIGKILL)
        job.wait(timeout=30)
        assert len(_epochs(store, folder)) < 5, "the run ended before it was killed"
        # 3. resumed again: it continues from the last checkpoint and finishes
        job = _launch(store, fid, tmp_path, "finish", "--resume")
        jobs.append(job)
        assert job.wait(timeout=300) == 0, (tmp_path / "finish.err").read_text()[-3000:]
    finally:
        for job in jobs:
            for pid in _children(job.pid):
                os.kill(pid, signal.SIGKILL)
            job.kill()
    printed = (tmp_path / "finish.out").read_text().split()
    (row,) = [r for r in store.read_table("models").to_pylist() if r["model_version"] == printed[-1]]
    assert row["epochs"] == 5 and json.loads(row["config_json"])["world_size"] == 2
    curve = sorted(
        r["epoch"] for r in store.read_table("curves").to_pylist() if r["model_version"] == printed[-1]
    )
    assert curve == [1, 2, 3, 4, 5]


def _checkpoint_folder(store) -> str | None:
    root = f"{store.path}/checkpoints"
    if not store.fs.exists(root):
        return None
    for folder in store.fs.ls(root, detail=False):  # the command line's run: seed 7, two ranks
        record = f"{folder}/training.json"
        if store.fs.exists(record) and _epochs(store, folder):
            config = json.loads(store.fs.cat_file(record))["config"]
            if config["seed"] == 7 and config.get("world_size") == 2:
                return folder
    return None


def _epochs(store, folder: str) -> list[str]:
    return [p for p in store.fs.ls(folder, detail=False) if "/epoch-" in p and p.endswith(".pt")]
