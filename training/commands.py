"""The training verbs' arguments turned into configs (`training/arguments.py` defines the arguments, `cli.py`
composes the parser and dispatches): `train`, `evaluate`; and the `train` verb's run (one process, a rank
under torchrun, or the launcher of `--nproc` ranks)."""

from __future__ import annotations

from stores.config import parse_assignments, parse_positive_float, parse_positive_int
from stores.errors import ConfigError
from stores.store import open_store
from training import distributed
from training.apply import EnhanceOptions
from training.config import TrainConfig
from training.trainer import train


def train_config_from_args(args):
    return TrainConfig(
        model=args.model, feature_id=args.features, model_args=parse_assignments(args.model_arg, "--model-arg"),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        amsgrad=args.amsgrad, clip_grad=args.clip_grad, accumulate=args.accumulate, segment=args.segment,
        seed=args.seed, patience=args.patience, max_steps=args.max_steps, num_workers=args.loader_workers,
    )  # fmt: skip


def run_train(args, relaunch: list[str]) -> int:
    """The `train` verb: with --nproc N outside torchrun, `relaunch` (this command line) started as N ranks;
    else this process trains (alone, or as torchrun's rank) and rank 0 prints the model version."""
    config = train_config_from_args(args)
    parse_positive_int(args.nproc, "--nproc")
    parse_positive_float(args.dist_timeout, "--dist-timeout")
    ranks = distributed.environment()
    if ranks is None and args.nproc > 1:
        return distributed.launch(args.nproc, relaunch)
    if ranks is not None and args.nproc not in (1, ranks[1]):
        raise ConfigError(
            f"Expected --nproc 1 under torchrun (it starts the ranks). Got --nproc {args.nproc} with "
            f"{ranks[1]} ranks instead."
        )
    store = open_store(args.store, create=False)
    version = train(store, config, args.device, args.resume, not args.quiet, args.dist_timeout)
    if ranks is None or ranks[0] == 0:
        print(version)
    return 0


def evaluate_target(args) -> dict:
    """What `specstore evaluate` evaluates: a model version, or a method with a feature set's config."""
    return {
        "version": args.model_version, "method": args.method, "feature_id": args.features,
        "reconstruction": args.reconstruction,
    }  # fmt: skip


def enhance_options(args) -> EnhanceOptions:
    return EnhanceOptions(
        rate=args.rate, subtype=args.subtype.upper(), overwrite=args.overwrite, workers=args.workers,
        block_s=args.block_seconds, context_s=args.context_seconds,
    )  # fmt: skip
