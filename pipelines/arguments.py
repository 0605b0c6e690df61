"""The pipeline verbs' command-line arguments (`cli.py` composes the parser; `pipelines/commands.py` turns
them into configs): `ingest`, `pairs`, `features`, `serve`, `prefect-server`, and where a flow's tasks
run (`--workers`, ...).

This module imports no numerical library, so that `specstore VERB --help` answers at once: the names the
choices list are written here, and `tests/pipelines/test_arguments.py` checks them against their homes (the
registries and modules that define them) so that they never drift apart.
"""

from __future__ import annotations

import argparse

from pipelines.cluster import cluster_kinds

# Names of the registries and constants of heavy modules (checked against them by the test named above)
CORPUS_READERS = ("demo", "folder", "librispeech", "vctk", "voicebank-demand")  # pipelines.corpora.CORPORA
FEATURE_KINDS = ("complex", "decomposed", "logmel", "magnitude", "reassigned")  # features' FEATURE_KINDS
MONO_POLICIES = ("mean", "first", "reject")  # pipelines.audio
PAIR_KINDS, TARGETS = ("noisy", "reverb", "reverb+noisy"), ("dry", "early")  # pipelines.mixing
CODECS = ("blosc-zstd", "lz4", "none", "zstd")  # pipelines.featurize.CODECS
DEFAULT_CRON = "0 2 * * *"  # pipelines.schedule


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a flow's tasks run: --workers, --dask-address, --threads/--processes, --cluster."""
    parser.add_argument("--workers", type=int, default=None, help="local Dask workers (default: cores)")
    parser.add_argument("--dask-address", default=None, help="an existing Dask scheduler, tcp://HOST:PORT")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--threads", dest="threads", action="store_const", const=True, default=True,
        help="local workers as threads of this process (the default: faster, docs/BENCHMARKS.md)",
    )  # fmt: skip
    kind.add_argument(
        "--processes", dest="threads", action="store_const", const=False, help="local workers as processes"
    )
    parser.add_argument(
        "--cluster", default=None, choices=cluster_kinds(),
        help="start the Dask workers as SLURM/PBS jobs or in Kubernetes (see docs/CLUSTER.md)",
    )  # fmt: skip
    parser.add_argument(
        "--cluster-config", default=None, metavar="FILE", help="YAML/JSON settings of --cluster (queue, ...)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_ingest_arguments(p: argparse.ArgumentParser) -> None:
    """`specstore ingest`."""
    p.add_argument("--corpus", required=True, help=f"corpus reader: {', '.join(CORPUS_READERS)}")
    p.add_argument("--source", required=True, help="the corpus folder (demo: where it is generated)")
    p.add_argument("--name", default=None, help="corpus name in the store (default: the reader's name)")
    p.add_argument("--sample-rate", type=int, default=16000, help="the store's sample rate (default 16000)")
    p.add_argument("--mono", default="mean", choices=MONO_POLICIES, help="multichannel policy (default mean)")
    p.add_argument("--min-duration", type=float, default=0.25, help="shorter inputs are rejected (s)")
    p.add_argument(
        "--max-duration", type=float, default=600.0, help="longer inputs are rejected (s, default 600)"
    )
    p.add_argument(
        "--splits", default=None, help="TRAIN,VALID,TEST fractions by speaker (default 0.8,0.1,0.1)"
    )
    p.add_argument("--shard-size", type=int, default=None, help="utterances per task (default: automatic)")


def add_pairs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", required=True, help="an ingested corpus")
    p.add_argument("--kind", required=True, choices=PAIR_KINDS, help="what degrades the input")
    p.add_argument("--name", required=True, help="the new pair set's name")
    p.add_argument("--noise", default=None, help="a folder of noise recordings, or demo")
    p.add_argument("--rir", default=None, help="a folder of measured RIRs, demo, or simulate")
    p.add_argument("--snr", default="-5:20", help="SNR range in dB, LOW:HIGH (default -5:20)")
    p.add_argument("--t60", default="0.2:1.0", help="T60 range of simulated rooms in s (default 0.2:1.0)")
    p.add_argument("--level", default="-35:-15", help="input RMS level range in dBFS (default -35:-15)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--copies", type=int, default=1, help="pairs per utterance, each with its own draws")
    p.add_argument("--splits", default="train,valid,test", help="which splits get pairs")
    p.add_argument(
        "--target", default="dry", choices=TARGETS, help="reverb target: dry speech or early (50 ms)"
    )
    p.add_argument(
        "--demo-source", default="demo-data", help="where the demo corpus is (for --noise/--rir demo)"
    )
    p.add_argument("--shard-size", type=int, default=None, help="utterances per task (default: automatic)")


def add_feature_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-fft", type=int, default=None, help="FFT size (default: the kind's seed setting)")
    p.add_argument("--hop", type=int, default=None, help="hop length in samples")
    p.add_argument("--win", type=int, default=None, help="window length in samples")
    p.add_argument("--window", default=None, help="window name (hann, hamming, ...)")
    p.add_argument("--center", default=None, action=argparse.BooleanOptionalAction, help="centre frames")
    p.add_argument("--n", type=int, default=None, help="decomposed: number of channels (default 30)")
    p.add_argument("--mask", default=None, help="decomposed: oracle-irm or model:<version>")
    p.add_argument(
        "--fill-nan", default=None, action=argparse.BooleanOptionalAction, help="reassigned: fill NaN"
    )
    p.add_argument("--clip", default=None, action=argparse.BooleanOptionalAction, help="reassigned: clip")
    p.add_argument(
        "--set", dest="options", action="append", default=[], metavar="KEY=JSON",
        help="any other field of the kind's config, e.g. --set n_mels=40 (repeatable)",
    )  # fmt: skip
    p.add_argument("--dtype", default=None, choices=("float32", "float16"), help="stored dtype")


def add_features_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--pairs", default=None, help="a pair set: features of every pair's input and target")
    what.add_argument(
        "--corpus", default=None, help="a corpus: features of its clean utterances (role clean)"
    )
    p.add_argument("--kind", required=True, choices=FEATURE_KINDS, help="the feature")
    add_feature_options(p)
    p.add_argument("--codec", default=None, choices=CODECS, help="Zarr codec (default: the kind's)")


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--features-cron", default=None, metavar="CRON",
        help=f'when to compute missing feature sets, a cron line in UTC (default "{DEFAULT_CRON}")',
    )  # fmt: skip
    when.add_argument(
        "--features-interval", type=float, default=None, metavar="SECONDS", help="or every SECONDS"
    )
    p.add_argument(
        "--kind", dest="kinds", action="extend", nargs="+", default=None, choices=FEATURE_KINDS,
        help="feature kinds every pair set should have (repeatable; default magnitude)",
    )  # fmt: skip
    p.add_argument(
        "--pairs", dest="pairsets", action="extend", nargs="+", default=None, metavar="PAIRSET",
        help="only these pair sets (default: every pair set in the store)",
    )  # fmt: skip
    p.add_argument("--codec", default=None, choices=CODECS, help="Zarr codec (default: the kind's)")
    p.add_argument(
        "--name", default=None, help="the deployment's name (default: from the store's path or URL)"
    )
    p.add_argument("--once", action="store_true", help="run the nightly flow once now and exit")


def add_prefect_server_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action", choices=("start", "stop", "status"),
        help="start the flows' Prefect server (a flow verb starts it too), stop it, or show its UI URL and "
        "database; its state folder is $SPECSTORE_PREFECT_HOME (default ~/.specstore/prefect)",
    )  # fmt: skip
