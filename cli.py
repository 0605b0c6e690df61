"""The `specstore` command line: its arguments, their conversion to configs, and one dispatcher.

Every argument is checked (and turned into a config) before anything starts, so bad input fails at once with
one line on stderr and exit code 2 (`--debug` shows the traceback). Only the verb asked for has its
arguments built, from its layer's commands module imported then. The verbs that run a Prefect flow
(`ingest`, `pairs`, `features`, `serve`) import `flows.py` when they have work, those that use models
(`evaluate`, `demo`, features computed with a model) `training_flows.py`; the others
(`train`, `results`, `verify`, `download`, `prefect-server`) never load Prefect or Dask, and the catalogue's (`ls`, `show`,
`rm`, `gc`, `du`) load neither torch nor the feature kinds. A verb returns a report whose `lines()` are
printed, or an exit code.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import re
import sys

from stores.errors import SpecstoreError

# argparse takes "-5:20" for an option unless it looks like a negative number: ranges must too (`--snr -5:20`)
_NEGATIVE_RANGE = re.compile(r"^-\d*\.?\d+(:-?\d*\.?\d+)?$")


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_RANGE


def _add_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repair", action="store_true", help="remove leftovers, recompute damaged shards")
    p.add_argument("--no-checksums", action="store_true", help="skip reading every array (faster)")


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default="demo-data", help="where the demo corpus is generated")
    p.add_argument("--epochs", type=int, default=4, help="training epochs of the demo model")


# (verb, help, what adds its arguments, whether it runs a flow: then it takes the runner options too). Only the
# verb asked for has its arguments built, and their modules are imported then ("module:function"): the
# training verbs' import torch and the pipeline verbs' the feature kinds, which `specstore ls` has no use for.
VERBS = (
    ("ingest", "ingest a corpus into the store (a Prefect flow on Dask)", "pipelines.arguments:add_ingest_arguments", True),
    ("pairs", "make noisy / reverberant training pairs from an ingested corpus", "pipelines.arguments:add_pairs_arguments", True),
    ("features", "compute a feature set of a pair set or a corpus (a Prefect flow)", "pipelines.arguments:add_features_arguments", True),
    ("train", "train a model on a feature set (prints the new model_version)", "training.arguments:add_train_arguments", False),
    ("evaluate", "enhance a pair set with a model version or a method; metrics under a new run", "training.arguments:add_evaluate_arguments", True),
    ("enhance", "enhance recordings (files or folders) with a model version into a folder of WAVs", "training.arguments:add_enhance_arguments", False),
    ("export", "an evaluation run's predictions, inputs and references as WAVs, its metrics as CSV", "training.arguments:add_export_arguments", False),
    ("report", "a static HTML listening report of an evaluation run (and runs to compare)", "training.arguments:add_report_arguments", False),
    ("results", "metrics per group: mean, median, 95%% CI, improvement over noisy", "training.arguments:add_results_arguments", False),
    ("verify", "check every committed piece of the store (exit 1 on any problem)", _add_verify, False),
    ("ls", "list the store's objects: id, created, bytes, counts, made from", "stores.arguments:add_ls_arguments", False),
    ("show", "an object's config and lineage both ways", "stores.arguments:add_show_arguments", False),
    ("rm", "remove objects (refuses what others were made from, unless --cascade)", "stores.arguments:add_rm_arguments", False),
    ("gc", "remove what no committed object references; finish killed removals", "stores.arguments:add_gc_arguments", False),
    ("du", "bytes per kind of object and per codec", "stores.arguments:add_du_arguments", False),
    ("serve", "serve the flows as Prefect deployments on a cron or interval schedule", "pipelines.arguments:add_serve_arguments", True),
    ("demo", "the end-to-end demo on the built-in generated corpus", _add_demo, True),
)  # fmt: skip


def _load(spec):
    """A function given as `module:function`, imported now (or a function itself)."""
    if callable(spec):
        return spec
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser of every verb, or with `verb` of that one only (the others are listed by name)."""
    parser = _Parser(prog="specstore", description="specstore: a feature store for speech enhancement")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)
    for name, text, add, runs_flow in VERBS:
        p = sub.add_parser(name, help=text)
        if verb not in (None, name):
            continue
        p.add_argument("--store", required=True, help="store root: a folder or an fsspec URL")
        p.add_argument("--debug", action="store_true", help="show the traceback of an error")
        _load(add)(p)
        if runs_flow:
            _load("pipelines.arguments:add_runner_arguments")(p)
    # verbs without a store
    for name, text, add in (
        ("download", "download LibriSpeech subsets or VoiceBank-DEMAND (checksummed, resumable)",
         "pipelines.download:add_arguments"),
        ("prefect-server", "start, stop or show the Prefect server the flows report to (its UI keeps past runs)",
         "pipelines.arguments:add_prefect_server_arguments"),
    ):  # fmt: skip
        p = sub.add_parser(name, help=text)
        if verb in (None, name):
            p.add_argument("--debug", action="store_true", help="show the traceback of an error")
            _load(add)(p)
    return parser


# ---------------------------------------------------------------------------------------------- verbs


def cmd_ingest(args):
    from pipelines import commands as pipeline_args  # the pipeline verbs' layer: loaded for them only

    audio, splits = pipeline_args.ingest_configs(args)
    runner = pipeline_args.runner_config(args)
    done = pipeline_args.ingest_done(args, audio)
    if done is not None:  # nothing to ingest: no Prefect, no Dask, no server, no cluster
        return done
    import flows  # Prefect and Dask: only for the verbs that run a flow, once their arguments are checked

    return flows.run_flow(
        flows.ingest_flow, runner, store=args.store, corpus=args.corpus, source=args.source,
        name=args.name, audio=audio, splits=splits, shard_size=args.shard_size, progress=not args.quiet,
    )  # fmt: skip


def cmd_pairs(args):
    from pipelines import commands as pipeline_args  # the pipeline verbs' layer: loaded for them only

    demo = None
    if pipeline_args.wants_demo_sources(args):
        from pipelines.demo import generate_demo_corpus  # scipy: only where the demo's noises are asked for

        demo = generate_demo_corpus(args.demo_source)
    config, sources = pipeline_args.pair_config_from_args(args, demo)
    runner = pipeline_args.runner_config(args)
    done = pipeline_args.pairs_done(args.store, args.name, config, sources)
    if done is not None:  # nothing to make: no Prefect, no Dask, no server, no cluster
        return done
    import flows  # Prefect and Dask, once the arguments are checked and there is work

    return flows.run_pairs(args.store, args.name, config, sources, args.shard_size, runner, not args.quiet)


def cmd_features(args):
    from pipelines import commands as pipeline_args  # the pipeline verbs' layer: loaded for them only
    from pipelines.reports import found_features  # idem

    plan, runner = pipeline_args.features_plan(args), pipeline_args.runner_config(args)
    if plan.complete:  # nothing to compute: no Prefect, no Dask, no server, no cluster
        return found_features(plan)
    plan.shards.clear()  # the flow plans again under its lock: these would only hold memory meanwhile
    if pipeline_args.needs_model(plan):
        import training_flows  # a first-stage model: torch, with Prefect and Dask

        return training_flows.run_features(args.store, plan, runner, not args.quiet)
    import flows  # Prefect and Dask, once the arguments are checked and there is work

    return flows.run_features(args.store, plan, runner, not args.quiet)


def cmd_train(args):
    from training import commands as training_args  # the training verbs' layer (torch): for them only

    # --nproc N starts this same command line as N ranks (torchrun's agent)
    return training_args.run_train(args, [sys.executable, "-m", "cli", *args.argv])


def cmd_evaluate(args):
    from pipelines import commands as pipeline_args  # where the flow runs: the pipeline layer's arguments
    from training import arguments  # the training verbs' layer: its arguments' helpers
    from training import commands as training_args  # and its configs (torch): for these verbs only
    from training.distributed import resolve_device  # torch: only for the verbs that use models

    device, runner = resolve_device(args.device), pipeline_args.runner_config(args)
    import training_flows  # Prefect and Dask, once the arguments are checked

    return training_flows.run_evaluate(
        args.store, training_args.evaluate_target(args), runner, pairset=args.pairs, split=args.split,
        plots=args.plots, plot_ids=arguments.csv_list(args.plot_ids) or None, device=str(device),
        progress=not args.quiet,
    )  # fmt: skip


def cmd_enhance(args):
    # composition: the pipelines' decoder (ingest's checks, rejects and mono policy) handed to training's
    # file enhancement, which may not import the pipelines layer
    from pipelines.audio import AUDIO_EXTENSIONS, AudioConfig, stream_audio
    from stores.store import open_store  # idem
    from training import commands as training_args  # the training verbs' layer (torch): for them only
    from training.apply import Source, enhance_files  # idem
    from training.distributed import resolve_device  # idem
    from training.enhance import Enhancer  # idem

    options = training_args.enhance_options(args)
    st = open_store(args.store, create=False)
    audio = AudioConfig(
        sample_rate=st.sample_rate, max_duration_s=args.max_duration or 1e9, max_file_bytes=1 << 42
    )  # no limit on length by default: memory does not grow with it
    enhancer = Enhancer(st, args.model_version, device=str(resolve_device(args.device)))
    source = Source(lambda path: stream_audio(path, audio), AUDIO_EXTENSIONS)
    report = enhance_files(enhancer, args.inputs, args.out, source, options, progress=not args.quiet)
    print("\n".join(report.lines()))
    return 1 if report.failures else 0


def cmd_results(args):
    from stores.tables import open_table  # the tables alone: no zarr (the verb's layers load when it runs)
    from training import arguments as training_args  # the verb's arguments (no torch)
    from training.plots import plot_results  # matplotlib itself only when a plot is drawn
    from training.results import brief, format_table, summarize  # the query engine

    metrics = training_args.csv_list(args.metrics)
    group_by = tuple(training_args.csv_list(args.group_by))
    table = summarize(
        open_table(args.store, "metrics"), group_by=group_by, where=args.where,
        **({"metrics": metrics} if metrics else {}),
    )  # fmt: skip
    print(format_table(brief(table) if args.brief else table, args.format))
    if args.plot:
        print(f"plot: {plot_results(table, args.plot, args.metric)}")
    return 0


def cmd_verify(args):
    from pipelines.repair import repair  # the layers of this verb, when it runs
    from stores.store import open_store, redact  # idem
    from stores.verify import verify_store  # idem
    from training.inference import mask_model_for  # a repaired set whose kind needs a model gets it here

    st = open_store(args.store, create=False)
    problems = verify_store(st, checksums=not args.no_checksums)
    for problem in problems:
        print(problem.line())
    if problems and args.repair:
        for action in repair(st, problems, lambda config: mask_model_for(st, config)):
            print(f"repair: {action}")
        problems = verify_store(st, checksums=not args.no_checksums)
        for problem in problems:
            print(f"still: {problem.line()}")
    print(f"verify {redact(st.root)}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def cmd_serve(args):
    from pipelines import commands as pipeline_args  # the pipeline verbs' layer: loaded for them only
    from pipelines.schedule import parse_schedule  # the same layer

    parameters = pipeline_args.serve_parameters(args)
    schedule = None if args.once else parse_schedule(args.features_cron, args.features_interval)
    import flows  # Prefect and Dask, once the arguments are checked

    return flows.run_serve(parameters, schedule, args.name)


def cmd_demo(args):
    from pipelines import commands as pipeline_args  # the pipeline verbs' layer: loaded for them only

    runner = pipeline_args.runner_config(args)
    import training_flows  # Prefect, Dask and torch, once the arguments are checked

    return training_flows.run_demo(args.store, args.source, args.epochs, runner, not args.quiet)


COMMANDS = {
    "ingest": cmd_ingest,
    "pairs": cmd_pairs,
    "features": cmd_features,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "enhance": cmd_enhance,
    "export": "training.listening:run_export",
    "report": "training.listening:run_report",
    "results": cmd_results,
    "verify": cmd_verify,
    "ls": "stores.commands:run_ls",
    "show": "stores.commands:run_show",
    "rm": "stores.commands:run_rm",
    "gc": "stores.commands:run_gc",
    "du": "stores.commands:run_du",
    "serve": cmd_serve,
    "download": "pipelines.download:run",
    "prefect-server": "pipelines.prefect_server:run",
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    verb = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(verb if verb in COMMANDS else None).parse_args(argv)
    args.argv = argv
    try:
        result = _load(COMMANDS[args.verb])(args)
    except SpecstoreError as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split())  # one line, whatever a library put in its message
        print(f"specstore {args.verb}: error: {message}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # 2, or an error's own (a rank cut off from the others: 75)
    except KeyboardInterrupt:
        print(f"specstore {args.verb}: interrupted", file=sys.stderr)
        return 130
    if isinstance(result, int):
        return result
    print("\n".join(result.lines()))
    return 0


def entry_point() -> None:
    """The `specstore` command: `main`, then the process ends without the interpreter's finalisation.

    After reading Parquet through fsspec (object stores), pyarrow's C++ thread pools can abort the process
    while the interpreter tears down, with the command's work done and its output printed: "terminate
    called without an active exception", exit -6 (apache/arrow#39162, #34314, open). Python's atexit
    handlers (Prefect's temporary server, Dask, logging) still run first."""
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry_point()
