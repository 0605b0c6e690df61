"""The training verbs' command-line arguments (`cli.py` composes the parser; `training/commands.py` turns
them into configs): `train`, `evaluate`, `results`.

This module imports neither torch nor any numerical library, so that `specstore VERB --help` and `results`
start at once: the model names and the defaults of torch-importing modules are written here, and
`tests/training/test_arguments.py` checks them against their homes so that they never drift apart.
"""

from __future__ import annotations

import argparse

# Names and defaults of modules that import torch (checked against them by the test named above)
MODEL_NAMES = ("cnn1d", "cnn2d", "crn", "dccrn", "reassigned-inverter", "unet")  # training.models.MODELS
DIST_TIMEOUT = 600.0  # training.distributed.DEFAULT_TIMEOUT
SPLITS = ("train", "valid", "test")
BLOCK_S, CONTEXT_S = 30.0, 2.0  # training.enhance.BLOCK_S, CONTEXT_S


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, choices=MODEL_NAMES, help="architecture")
    p.add_argument("--features", required=True, help="the feature_id to train on")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--segment", type=int, default=100, help="frames per training segment")
    p.add_argument("--optimizer", default="adam", choices=("adam", "adamw"))
    p.add_argument("--amsgrad", action="store_true")
    p.add_argument("--accumulate", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--clip-grad", type=float, default=5.0)
    p.add_argument("--patience", type=int, default=5, help="early stopping patience (epochs)")
    p.add_argument("--max-steps", type=int, default=0, help="optimizer steps per epoch (0: whole epoch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--loader-workers",
        type=int,
        default=0,
        help="loader threads reading the store (0: the training thread)",
    )
    p.add_argument(
        "--model-arg", action="append", default=[], metavar="KEY=JSON",
        help='a model config field, e.g. --model-arg output="mapping" (repeatable)',
    )  # fmt: skip
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of this config")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--nproc", type=int, default=1,
        help="ranks to start on this machine (DDP; torchrun --standalone); --batch-size is per rank",
    )  # fmt: skip
    p.add_argument(
        "--dist-timeout", type=float, default=DIST_TIMEOUT,
        help="seconds a rank waits in a collective for a silent peer before it stops (default 600)",
    )  # fmt: skip


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--model-version", default=None, help="a trained model version")
    target.add_argument(
        "--method", default=None,
        help="a non-learned method instead of a model: reassigned-pghi or zero-phase (needs --features)",
    )  # fmt: skip
    p.add_argument("--features", default=None, help="with --method: the feature set whose config it uses")
    p.add_argument("--pairs", required=True, help="the pair set to enhance")
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument(
        "--reconstruction", default="auto", help="auto, noisy-phase or griffin-lim (magnitude models)"
    )
    p.add_argument("--plots", default=None, help="a folder for clean/input/enhanced spectrogram PNGs")
    p.add_argument(
        "--plot-ids", default=None, help="comma-separated utterance ids to plot (default: first 3)"
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def add_enhance_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders (searched recursively)")
    p.add_argument("--model-version", required=True, help="a trained model version")
    p.add_argument("--out", required=True, help="the folder the enhanced WAV files are written to")
    p.add_argument("--rate", type=int, default=None, help="output sample rate (default: each input's own)")
    p.add_argument(
        "--subtype", default="FLOAT", help="WAV sample format: FLOAT (default), PCM_16, PCM_24, PCM_32"
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--workers", type=int, default=1, help="files enhanced at once (threads)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--max-duration", type=float, default=None, help="refuse longer inputs (s; default: none)")
    p.add_argument(
        "--block-seconds", type=float, default=BLOCK_S, help=f"block length (default {BLOCK_S:g} s)"
    )
    p.add_argument(
        "--context-seconds", type=float, default=CONTEXT_S,
        help=f"recording run with each block on either side, then dropped (default {CONTEXT_S:g} s)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="the evaluation run's id")
    p.add_argument("--out", required=True, help="the folder the WAV files and metrics.csv are written to")
    p.add_argument("--roles", default="input,clean,enhanced", help="comma-separated: input, clean, enhanced")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="the evaluation run's id")
    p.add_argument("--compare", nargs="*", default=[], metavar="RUN_ID", help="runs to compare with it")
    p.add_argument("--out", required=True, help="the folder of the page (index.html) and its audio")
    p.add_argument("--metric", default="pesq_wb", help="the metric that ranks the sample (default pesq_wb)")
    p.add_argument("--overwrite", action="store_true", help="write into a folder that has a report already")


def add_results_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group-by", default="model,model_version,pairset,split", help="comma-separated columns")
    p.add_argument("--where", default=None, help="a filter, e.g. \"split = 'test' and model != 'noisy'\"")
    p.add_argument("--format", default="table", choices=("table", "csv", "json"))
    p.add_argument("--metrics", default=None, help="comma-separated metrics to show (default: all)")
    p.add_argument(
        "--brief", action="store_true", help="only each metric's mean and mean improvement over noisy"
    )
    p.add_argument("--plot", default=None, help="a PNG comparing the groups")
    p.add_argument("--metric", default="pesq_wb", help="the metric to plot (default pesq_wb)")


def csv_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]
