"""The `specstore` command line's arguments: one sub-parser per verb. The verbs' code is in flows.py."""

from __future__ import annotations

import argparse
import re

from features import FEATURES
from pipelines.audio import MONO_POLICIES
from pipelines.corpora import CORPORA
from pipelines.featurize import CODECS
from pipelines.mixing import KINDS, TARGETS


def _add_common(parser: argparse.ArgumentParser, store_required: bool = True) -> None:
    parser.add_argument("--store", required=store_required, help="store root: a folder or an fsspec URL")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a flow's tasks run: --workers, --dask-address, --threads/--processes, --cluster."""
    from pipelines.cluster import add_cluster_arguments

    parser.add_argument("--workers", type=int, default=None, help="local Dask workers (default: cores)")
    parser.add_argument("--dask-address", default=None, help="an existing Dask scheduler, tcp://HOST:PORT")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--threads",
        dest="threads",
        action="store_const",
        const=True,
        default=True,
        help="local workers as threads of this process (the default: measured 2.2x faster)",
    )
    kind.add_argument(
        "--processes",
        dest="threads",
        action="store_const",
        const=False,
        help="local workers as separate processes",
    )
    add_cluster_arguments(parser)


def _add_dask(parser: argparse.ArgumentParser) -> None:
    add_runner_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# argparse takes "-5:20" for an option unless it looks like a negative number: ranges must too (`--snr -5:20`)
_NEGATIVE_RANGE = re.compile(r"^-\d*\.?\d+(:-?\d*\.?\d+)?$")


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_RANGE


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="specstore", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    ingest = sub.add_parser("ingest", help="ingest a corpus into the store (a Prefect flow on Dask)")
    _add_common(ingest)
    ingest.add_argument("--corpus", required=True, help=f"corpus reader: {', '.join(CORPORA.names())}")
    ingest.add_argument("--source", required=True, help="the corpus folder (demo: where it is generated)")
    ingest.add_argument("--name", default=None, help="corpus name in the store (default: the reader's name)")
    ingest.add_argument(
        "--sample-rate", type=int, default=16000, help="the store's sample rate (default 16000)"
    )
    ingest.add_argument(
        "--mono", default="mean", choices=MONO_POLICIES, help="multichannel policy (default mean)"
    )
    ingest.add_argument("--min-duration", type=float, default=0.25, help="shorter inputs are rejected (s)")
    ingest.add_argument(
        "--splits", default=None, help="TRAIN,VALID,TEST fractions by speaker (default 0.8,0.1,0.1)"
    )
    ingest.add_argument(
        "--shard-size", type=int, default=None, help="utterances per task (default: automatic)"
    )
    _add_dask(ingest)

    pairs = sub.add_parser("pairs", help="make noisy / reverberant training pairs from an ingested corpus")
    _add_common(pairs)
    pairs.add_argument("--corpus", required=True, help="an ingested corpus")
    pairs.add_argument("--kind", required=True, choices=KINDS, help="what degrades the input")
    pairs.add_argument("--name", required=True, help="the new pair set's name")
    pairs.add_argument("--noise", default=None, help="a folder of noise recordings, or demo")
    pairs.add_argument("--rir", default=None, help="a folder of measured RIRs, demo, or simulate")
    pairs.add_argument("--snr", default="-5:20", help="SNR range in dB, LOW:HIGH (default -5:20)")
    pairs.add_argument("--t60", default="0.2:1.0", help="T60 range of simulated rooms in s (default 0.2:1.0)")
    pairs.add_argument("--level", default="-35:-15", help="input RMS level range in dBFS (default -35:-15)")
    pairs.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    pairs.add_argument(
        "--copies", type=int, default=1, help="pairs per utterance, each with its own draws (default 1)"
    )
    pairs.add_argument("--splits", default="train,valid,test", help="which splits get pairs")
    pairs.add_argument(
        "--target", default="dry", choices=TARGETS, help="reverb target: dry speech or early (50 ms)"
    )
    pairs.add_argument(
        "--demo-source", default="demo-data", help="where the demo corpus is (for --noise/--rir demo)"
    )
    pairs.add_argument(
        "--shard-size", type=int, default=None, help="utterances per task (default: automatic)"
    )
    _add_dask(pairs)

    feats = sub.add_parser("features", help="compute a feature set of a pair set (a Prefect flow on Dask)")
    _add_common(feats)
    feats.add_argument("--pairs", required=True, help="the pair set")
    feats.add_argument("--kind", required=True, choices=FEATURES.names(), help="the feature")
    feats.add_argument("--n-fft", type=int, default=None, help="FFT size (default: the kind's seed setting)")
    feats.add_argument("--hop", type=int, default=None, help="hop length in samples")
    feats.add_argument("--win", type=int, default=None, help="window length in samples")
    feats.add_argument("--window", default=None, help="window name (hann, hamming, ...)")
    feats.add_argument("--center", default=None, action=argparse.BooleanOptionalAction, help="centre frames")
    feats.add_argument("--n", type=int, default=None, help="decomposed: number of channels (default 30)")
    feats.add_argument("--mask", default=None, help="decomposed: oracle-irm or model:<version>")
    feats.add_argument(
        "--fill-nan", default=None, action=argparse.BooleanOptionalAction, help="reassigned: fill NaN"
    )
    feats.add_argument("--clip", default=None, action=argparse.BooleanOptionalAction, help="reassigned: clip")
    feats.add_argument("--dtype", default=None, choices=("float32", "float16"), help="stored dtype")
    feats.add_argument(
        "--codec", default=None, choices=sorted(CODECS), help="Zarr codec (default: lz4; none for complex)"
    )
    _add_dask(feats)

    from training.models import MODELS

    tr = sub.add_parser("train", help="train a model on a feature set (prints the new model_version)")
    _add_common(tr)
    tr.add_argument("--model", required=True, choices=MODELS.names(), help="architecture")
    tr.add_argument("--features", required=True, help="the feature_id to train on")
    tr.add_argument("--epochs", type=int, default=10)
    tr.add_argument("--batch-size", type=int, default=16)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--segment", type=int, default=100, help="frames per training segment")
    tr.add_argument("--optimizer", default="adam", choices=("adam", "adamw"))
    tr.add_argument("--amsgrad", action="store_true")
    tr.add_argument("--accumulate", type=int, default=1, help="gradient accumulation steps")
    tr.add_argument("--clip-grad", type=float, default=5.0)
    tr.add_argument("--patience", type=int, default=5, help="early stopping patience (epochs)")
    tr.add_argument("--max-steps", type=int, default=0, help="optimizer steps per epoch (0: whole epoch)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--loader-workers", type=int, default=0, help="DataLoader worker processes")
    tr.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help='a model config field, e.g. --model-arg output="mapping" (repeatable)',
    )
    tr.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    tr.add_argument("--resume", action="store_true", help="continue an interrupted run of this config")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")

    ev = sub.add_parser(
        "evaluate", help="enhance a pair set with a model version or a method; metrics under a new run"
    )
    _add_common(ev)
    target = ev.add_mutually_exclusive_group(required=True)
    target.add_argument("--model-version", default=None, help="a trained model version")
    target.add_argument(
        "--method",
        default=None,
        help="a non-learned method instead of a model: reassigned-pghi or zero-phase (needs --features)",
    )
    ev.add_argument(
        "--features",
        default=None,
        help="with --method: the feature set whose config it uses (a reassigned set)",
    )
    ev.add_argument("--pairs", required=True, help="the pair set to enhance")
    ev.add_argument("--split", default="test", choices=("train", "valid", "test"))
    ev.add_argument(
        "--reconstruction", default="auto", help="auto, noisy-phase or griffin-lim (magnitude models)"
    )
    ev.add_argument("--plots", default=None, help="a folder for clean/input/enhanced spectrogram PNGs")
    ev.add_argument(
        "--plot-ids", default=None, help="comma-separated utterance ids to plot (default: first 3)"
    )
    ev.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    _add_dask(ev)

    res = sub.add_parser("results", help="metrics per group: mean, median, 95%% CI, improvement over noisy")
    _add_common(res)
    res.add_argument(
        "--group-by", default="model,model_version,pairset,split", help="comma-separated columns"
    )
    res.add_argument("--where", default=None, help="a filter, e.g. \"split == 'test' and model != 'noisy'\"")
    res.add_argument("--format", default="table", choices=("table", "csv", "json"))
    res.add_argument("--metrics", default=None, help="comma-separated metrics to show (default: all)")
    res.add_argument(
        "--brief", action="store_true", help="only each metric's mean and mean improvement over noisy"
    )
    res.add_argument("--plot", default=None, help="a PNG comparing the groups")
    res.add_argument("--metric", default="pesq_wb", help="the metric to plot (default pesq_wb)")

    from pipelines.schedule import add_serve_arguments

    serve = sub.add_parser(
        "serve", help="serve the flows as Prefect deployments on a cron or interval schedule"
    )
    add_serve_arguments(serve)

    verify = sub.add_parser("verify", help="check every committed piece of the store (exit 1 on any problem)")
    _add_common(verify)
    verify.add_argument("--repair", action="store_true", help="remove leftovers, recompute damaged shards")
    verify.add_argument("--no-checksums", action="store_true", help="skip reading every array (faster)")

    from pipelines import download

    dl = sub.add_parser(
        "download", help="download LibriSpeech subsets or VoiceBank-DEMAND (checksummed, resumable)"
    )
    dl.add_argument("--debug", action="store_true", help="show the traceback of an error")
    download.add_arguments(dl)

    demo = sub.add_parser("demo", help="the end-to-end demo on the built-in generated corpus")
    _add_common(demo)
    demo.add_argument("--source", default="demo-data", help="where the demo corpus is generated")
    demo.add_argument("--epochs", type=int, default=4, help="training epochs of the demo model")
    _add_dask(demo)
    return parser
