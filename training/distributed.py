"""Distributed data-parallel training with torch.distributed: the process group, each rank's device, the
reductions the trainer needs, the model wrapped for DDP, and the one-machine launcher.

`specstore train` run under `torchrun` (one process per rank, on one machine or several) finds torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and joins a process group: NCCL with
one GPU per local rank (`cuda:LOCAL_RANK`) where CUDA is used, gloo on CPUs. `specstore train --nproc N`
starts torch's elastic agent itself (what `torchrun --standalone --nproc-per-node N` does) for one machine.
Outside torchrun, and with one rank, nothing here starts: the run is the single-process one.

Decisions, where torch offers a choice:
- Every rank runs the same number of steps per epoch: the shortest rank's batch count (one all-reduce MIN
  per epoch; the counts are exact, `training.stream.batches_per_epoch`). Not torch's Join: under Join the
  ranks with more data keep stepping while finished ranks shadow the all-reduce with zero gradients, so a
  step would average fewer real batches than the global batch the model version records.
- BatchNorm becomes SyncBatchNorm on CUDA. On CPU (gloo) it stays per rank: torch's SyncBatchNorm takes GPU
  tensors only. DDP broadcasts rank 0's buffers (the running statistics) before each forward, so every rank,
  and the checkpoint, holds rank 0's.
- A rank that dies: the others' next collective fails (gloo sees the closed connection at once; a machine
  that goes away silently is noticed when the process group's timeout passes), they stop with an error
  naming the lost contact, and torchrun's agent stops what is left and names the failed rank. Rerunning
  with `--resume` continues from the last checkpoint (rank 0 writes one per epoch).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from stores.config import parse_choice
from stores.errors import ConfigError, SpecstoreError

DEFAULT_TIMEOUT = 600.0  # seconds a collective waits for a silent peer before the rank gives up


class LostRankError(SpecstoreError):
    """A collective failed: another rank died or its machine went away. The command exits with EX_TEMPFAIL
    (75: try again, with --resume), which tells the launcher this rank is not the cause."""

    exit_code = os.EX_TEMPFAIL


def resolve_device(name: str) -> torch.device:
    parse_choice(name, ("auto", "cpu", "cuda"), "--device")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "Expected a CUDA GPU for --device cuda. Got none (torch.cuda.is_available() is False)."
        )
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes; the single-process run is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, curves and table rows."""
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size} (local rank {self.local_rank}, {self.device})"

    def minimum(self, value: int) -> int:
        """The smallest `value` over the ranks."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self._reduce_device)
        self._collective(dist.all_reduce, tensor, op=dist.ReduceOp.MIN)
        return int(tensor.item())

    def sums(self, *values: float) -> list[float]:
        """Each of `values` summed over the ranks (float64)."""
        if not self.distributed:
            return [float(v) for v in values]
        tensor = torch.tensor(values, dtype=torch.float64, device=self._reduce_device)
        self._collective(dist.all_reduce, tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.tolist()]

    def gather(self, value) -> list:
        """Every rank's `value` (picklable), in rank order."""
        if not self.distributed:
            return [value]
        out: list = [None] * self.world_size
        self._collective(dist.all_gather_object, out, value)
        return out

    def barrier(self) -> None:
        if self.distributed:
            self._collective(dist.barrier)

    @property
    def _reduce_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def _collective(self, collective, *args, **kwargs) -> None:
        with lost_rank_errors(self):
            collective(*args, **kwargs)


# what torch's backends put in the errors of a collective whose peer went away (gloo raises plain
# RuntimeErrors from inside DDP: "Read error ...: Connection reset by peer")
_PEER_LOST = ("gloo", "NCCL", "Connection reset", "Connection closed", "Timed out", "timed out")


@contextlib.contextmanager
def lost_rank_errors(ranks: Ranks) -> Iterator[None]:
    """torch's errors of a failed collective as one clear LostRankError."""
    try:
        yield
    except RuntimeError as exc:
        lost = isinstance(exc, dist.DistError) or any(word in str(exc) for word in _PEER_LOST)
        if not (ranks.distributed and lost):
            raise
        detail = " ".join(str(exc).split())[:300]
        raise LostRankError(
            f"Expected every rank to take part in the collective. Got {ranks.describe()} cut off from the "
            f"others: a rank died or its machine went away (the launcher names the failed rank). Rerun with "
            f"--resume to continue from the last checkpoint. ({detail})"
        ) from exc


def environment() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) from torchrun's environment, or None outside torchrun."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise ConfigError(
            f"Expected integer RANK, WORLD_SIZE and LOCAL_RANK (torchrun's environment). Got "
            f"{os.environ.get('RANK')!r}, {os.environ.get('WORLD_SIZE')!r}, {os.environ.get('LOCAL_RANK')!r}."
        ) from None
    if not 0 <= rank < world:
        raise ConfigError(f"Expected 0 <= RANK < WORLD_SIZE. Got RANK={rank}, WORLD_SIZE={world} instead.")
    return rank, world, local


def rank_device(name: str, local_rank: int) -> torch.device:
    """One device per local rank: `cuda:LOCAL_RANK` where CUDA is used, else the CPU."""
    device = resolve_device(name)
    if device.type != "cuda":
        return device
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"Expected a GPU per process on this machine. Got local rank {local_rank} with "
            f"{torch.cuda.device_count()} GPU(s): start at most that many processes per machine."
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def process_group(device: str = "auto", timeout: float = DEFAULT_TIMEOUT) -> Iterator[Ranks]:
    """This process's Ranks. Under torchrun with more than one rank, joins (and at the end leaves) a process
    group from its environment: NCCL on CUDA, gloo on CPU, collectives waiting at most `timeout` seconds. A
    group the caller initialised already is used and left open."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        yield Ranks(rank, world, local, rank_device(device, local) if world > 1 else resolve_device(device))
        return
    env = environment()
    if env is None or env[1] == 1:
        yield Ranks(device=resolve_device(device))
        return
    rank, world, local = env
    on = rank_device(device, local)
    if timeout <= 0:
        raise ConfigError(f"Expected a positive --dist-timeout. Got {timeout} instead.")
    dist.init_process_group(
        "nccl" if on.type == "cuda" else "gloo", timeout=datetime.timedelta(seconds=timeout)
    )
    ranks = Ranks(rank, world, local, on)
    try:
        yield ranks
        # every rank leaves the group together: a rank that shut its gloo group down while rank 0 still wrote
        # the model was once seen aborting under load ("terminate called without an active exception")
        ranks.barrier()
    finally:
        dist.destroy_process_group()


def data_parallel(module: nn.Module, ranks: Ranks) -> nn.Module:
    """`module` for training on these ranks: itself alone; with several ranks its BatchNorm layers made
    SyncBatchNorm on CUDA (module docstring) and the whole wrapped in DistributedDataParallel."""
    if not ranks.distributed:
        return module
    cuda = ranks.device.type == "cuda"
    if cuda:  # the new layers take over the same parameter and buffer tensors: the optimizer keeps them
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    with lost_rank_errors(ranks):  # the constructor broadcasts rank 0's parameters
        return nn.parallel.DistributedDataParallel(module, device_ids=[ranks.device.index] if cuda else None)


def no_sync(module: nn.Module, skip: bool):
    """DDP's `no_sync` (no gradient all-reduce in this backward: an accumulating step) when `skip`."""
    if skip and isinstance(module, nn.parallel.DistributedDataParallel):
        return module.no_sync()
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------- launcher


def under_launcher() -> bool:
    """Whether this process is a rank that torchrun (or `--nproc`) started."""
    return environment() is not None


def launch(nproc: int, command: list[str], monitor_interval: float = 0.1) -> int:
    """Runs `command` as `nproc` ranks on this machine under torch's elastic agent (torchrun --standalone
    --nproc-per-node N); 0 when every rank succeeded, else 1 after one line naming each failed rank. The
    agent stops the other ranks as soon as one fails."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # the agent: only here
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch  # (the launching process)

    if nproc < 2:
        raise ConfigError(f"Expected --nproc of at least 2 to launch ranks. Got {nproc} instead.")
    # as torchrun does, but a share of the cores per rank rather than one thread each (CPU training)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()), rdzv_backend="c10d",
        rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=monitor_interval,
    )  # fmt: skip
    try:
        elastic_launch(config, command[0])(*command[1:])
    except ChildFailedError as exc:
        print(failure_line(exc.failures), file=sys.stderr)
        return 1
    return 0


def failure_line(failures: dict) -> str:
    """One line naming the lost rank(s) and how they ended. Ranks that the agent stopped (SIGTERM, once one
    had failed) or that stopped on losing contact (EX_TEMPFAIL) are named as stopped, not lost, unless
    nothing else failed."""

    def describe(rank, failure) -> str:
        how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        return f"rank {rank} (local rank {failure.local_rank}, pid {failure.pid}): {how}"

    stopped = {r for r, f in failures.items() if f.exitcode in (-signal.SIGTERM, LostRankError.exit_code)}
    lost = sorted(set(failures) - stopped) or sorted(stopped)
    others = sorted(stopped - set(lost))
    return (
        f"specstore train: error: lost {'; '.join(describe(r, failures[r]) for r in lost)}"
        + (f"; stopped rank(s) {', '.join(map(str, others))}" if others else "")
        + ". Rerun with --resume to continue from the last checkpoint."
    )
