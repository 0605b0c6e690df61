"""Feature-set throughput per kind: the `features` flow (Prefect on a local 2-worker Dask cluster) beside the
naive per-file loop of the seed work (`librosa.load` + `librosa.stft` / `reassigned_spectrogram` +
`numpy.save`) and the in-memory compute floor (our feature functions over preloaded signals, one process),
all on the same pairs (every input and target signal); plus the flow's peak memory at two corpus sizes and
the stored bytes per audio hour.

    .venv/bin/python benchmarks/bench_features_flow.py --minutes 60 --small-minutes 10 --large-minutes 120 \
        --work /tmp/bench-features

Pairs: the demo corpus mixed with the demo noises (`noisy`, SNR -5..20 dB). The naive loop reads 16 kHz WAV
exports of the same pair signals with `sr=None` (no resampling, the same work as the flow).

With `--repeats N` each round runs the flow, the floor and the naive loop one after the other, and the
ratios are the medians of each round's own ratios: this VM's speed drifts by up to 2x over minutes (the
same naive loop took 3.6 s and 7.2 s an hour apart), so only measurements taken side by side compare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

KINDS = ("magnitude", "complex", "reassigned", "decomposed")


class PeakMemory:
    """Peak resident memory of this process and, with worker processes, all its children.

    With threads (the default) it is the kernel's own high-water mark (`VmHWM`, reset through
    /proc/self/clear_refs at the start): exact, and free. Sampling instead (psutil walks /proc for the
    children every 50 ms) held the GIL for several ms per sample, which the flow's shard threads felt and
    the naive loop (not sampled) did not. Worker processes are sampled, as they must be."""

    last_peak = 0  # the last sampled peak (worker processes)

    def __init__(self, children: bool = False) -> None:
        self.peak, self._stop, self._children = 0, threading.Event(), children

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self):
        if not self._children and _reset_high_water_mark():
            self._thread = None
            return self
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is None:
            self.peak = _high_water_mark()
            return
        self._stop.set()
        self._thread.join()
        PeakMemory.last_peak = self.peak


def _reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _high_water_mark() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def make_pairset(work: Path, minutes: float, tag: str) -> tuple[str, float]:
    """A store with a `noisy` pair set of about `minutes` of demo speech: -> (store root, audio seconds)."""
    import flows
    from features import feature_config  # noqa: F401  (imported for its registry side effects)
    from pipelines.cluster import dask_runner
    from pipelines.demo import DemoConfig, generate_demo_corpus
    from pipelines.mixing import PairConfig
    from pipelines.sources import parse_source

    per_speaker = 40
    speakers = max(3, round(minutes * 60 / 4.0 / per_speaker))
    corpus = generate_demo_corpus(
        work / f"corpus-{tag}", DemoConfig(speakers=speakers, utterances_per_speaker=per_speaker, seed=11)
    )
    root = str(work / f"store-{tag}")
    if not Path(root).exists():
        flows.ingest_flow.with_options(task_runner=dask_runner(2, None))(
            store=root, corpus="librispeech", source=str(corpus.speech), name="demo", progress=False
        )
        noise = parse_source("noise", str(corpus.noise))
        config = PairConfig(corpus="demo", kind="noisy", noise=noise.corpus, snr=(-5.0, 20.0), seed=0)
        flows.pairs_flow.with_options(task_runner=dask_runner(2, None))(
            store=root, pairset="noisy", config=config, sources=(noise,), progress=False
        )
    from stores import open_store

    rows = open_store(root).read_table("pairs").to_pylist()
    return root, sum(r["num_samples"] for r in rows) / 16000


def export_wavs(root: str, out: Path) -> list[tuple[Path, Path, Path]]:
    """The pair signals as 16 kHz float WAV files (input, clean, noise) for the naive loop."""
    from stores import open_store

    st = open_store(root)
    out.mkdir(parents=True, exist_ok=True)
    triples = []
    for row in st.read_table("pairs").to_pylist():
        paths = tuple(out / f"{row['utterance_id']}.{role}.wav" for role in ("input", "clean", "noise"))
        if not paths[0].exists():
            for path, role in zip(paths, ("input", "clean", "noise"), strict=True):
                sf.write(path, st.audio("noisy", row["utterance_id"], role), 16000, subtype="FLOAT")
        triples.append(paths)
    return triples


def naive_loop(kind: str, triples, out: Path, sr_arg=None) -> float:
    """The seed's way: per file, librosa.load + the librosa transform + numpy.save (dense decomposed).
    `sr_arg=None` keeps the files' 16 kHz (the same work as the flow); librosa's default (22050) resamples,
    as the seed's notebooks did."""
    import librosa

    out.mkdir(parents=True, exist_ok=True)
    kwargs = {"sr": sr_arg} if sr_arg != "default" else {}
    started = time.perf_counter()
    for inp, clean, noise in triples:
        for path in (inp, clean):
            y, sr = librosa.load(path, **kwargs)
            if kind == "magnitude":
                feat = np.abs(librosa.stft(y, n_fft=512, hop_length=256))
            elif kind == "complex":
                spec = librosa.stft(y, n_fft=512, hop_length=100, win_length=400)
                feat = np.stack([spec.real, spec.imag])
            elif kind == "reassigned":
                feat = np.stack(
                    librosa.reassigned_spectrogram(
                        y=y,
                        sr=sr,
                        n_fft=80,
                        hop_length=20,
                        win_length=80,
                        window="hamming",
                        center=False,
                        clip=False,
                    )
                )
            elif path == inp:  # decomposed: the input's 30 dense channels from the oracle IRM
                mag = np.abs(librosa.stft(y, n_fft=512, hop_length=256))
                s = np.abs(librosa.stft(librosa.load(clean, **kwargs)[0], n_fft=512, hop_length=256))
                n = np.abs(librosa.stft(librosa.load(noise, **kwargs)[0], n_fft=512, hop_length=256))
                mask = np.sqrt(s**2 / np.maximum(s**2 + n**2, 1e-20))
                feat = np.stack([mag] + [(mask > i / 30) * mag for i in range(1, 30)])
            else:
                feat = np.abs(librosa.stft(y, n_fft=512, hop_length=256))
            np.save(out / f"{path.stem}.npy", feat.astype(np.float32))
    return time.perf_counter() - started


def compute_floor(kind: str, signals) -> float:
    """Our feature functions over preloaded signals, one process, no I/O."""
    from features import feature_config, get_kind

    config, features = feature_config(kind), get_kind(kind)
    started = time.perf_counter()
    for inp, clean, noise in signals:  # what a feature shard computes of each pair: input and target
        for role in ("input", "target"):
            features.compute_stored({"input": inp, "clean": clean, "noise": noise}, config, role)
    return time.perf_counter() - started


THREADS = {"value": True}
RUNNER = {"prefect_threads": False}


def flow_runner():
    """The flow's task runner: the default local Dask cluster (threads, or processes with --processes), or
    with --prefect-threads Prefect's own ThreadPoolTaskRunner (2 threads, no Dask), to measure what the Dask
    task runner costs per task (its context serialisation and hydration: about 0.25 s of CPU per task)."""
    from pipelines.cluster import dask_runner

    if RUNNER["prefect_threads"]:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=2)
    return dask_runner(2, None, THREADS["value"])


def drop_feature_sets(root: str) -> None:
    """Remove every feature set of the benchmark's store, so that the next flow computes again."""
    for part in ("arrays.zarr/features", "tables/features", "tables/feature_frames"):
        shutil.rmtree(Path(root) / part, ignore_errors=True)


def run_flow(root: str, kind: str, config_overrides: dict | None = None, codec: str | None = None):
    import flows
    from features import feature_config
    from pipelines.featurize import SignalSet

    config = feature_config(kind, **(config_overrides or {}))
    with PeakMemory(children=not THREADS["value"]) as memory:
        started = time.perf_counter()
        report = flows.features_flow.with_options(task_runner=flow_runner())(
            store=root, source=SignalSet("noisy"), config=config, codec=codec, progress=False
        )
        seconds = time.perf_counter() - started
    return report, seconds, memory.peak


def _flow_peak(root: str, threads: bool) -> tuple[float, int]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    THREADS["value"] = threads
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):  # as ensure_prefect_api
        _, seconds, _ = run_flow(root, "magnitude")
    if threads:
        return seconds, _high_water_mark()  # the whole process's peak, from its start
    return seconds, PeakMemory.last_peak


def flow_in_fresh_process(root: str) -> tuple[float, int]:
    """(seconds, peak bytes) of the magnitude flow run in a new process (sharing this one's Prefect
    server): this process holds every pair signal for the floor, and a high-water mark reset here would
    start from that, hiding how the flow's own memory grows with the corpus."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_flow_peak, (root, THREADS["value"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--small-minutes", type=float, default=10)
    parser.add_argument("--large-minutes", type=float, default=120)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument(
        "--store-tag",
        default="main",
        help="the per-kind table's pair store, WORK/store-TAG, built with --minutes of pairs when missing (the "
        "memory run's 2-hour store is 'large', built with --large-minutes)",
    )
    parser.add_argument("--work", default="/tmp/bench-features")
    parser.add_argument("--processes", action="store_true", help="the flow's local workers as processes")
    parser.add_argument(
        "--prefect-threads",
        action="store_true",
        help="run the flow's tasks on Prefect's ThreadPoolTaskRunner (2 threads) instead of Dask",
    )
    parser.add_argument(
        "--seed-naive",
        action="store_true",
        help="also time the naive loop with librosa.load's "
        "default sample rate (22050 Hz: it resamples, as the seed's notebooks did)",
    )
    parser.add_argument("--no-extras", action="store_true", help="skip the codec and memory measurements")
    parser.add_argument("--repeats", type=int, default=1, help="flow runs per kind (the median is reported)")
    parser.add_argument(
        "--codec",
        default=None,
        help="the flows' codec for the per-kind table (default: each kind's own, lz4 or none for complex; none "
        "stores raw values, as numpy.save)",
    )
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    THREADS["value"] = not args.processes
    RUNNER["prefect_threads"] = args.prefect_threads

    from features import get_kind
    from pipelines.runner import ensure_prefect_api

    ensure_prefect_api()
    results = {}
    root, seconds = make_pairset(work, args.minutes, args.store_tag)
    print(
        f"pair set: {seconds / 60:.1f} min of pairs ({2 * seconds / 60:.1f} min of input+target signal); "
        f"codec {args.codec or 'each kind default'}"
    )
    triples = export_wavs(root, work / ("wav" if args.store_tag == "main" else f"wav-{args.store_tag}"))
    signals = [tuple(sf.read(p, dtype="float32")[0] for p in t) for t in triples]
    for kind in args.kinds.split(","):
        flows_s, floors_s, naives_s = [], [], []
        for _ in range(args.repeats):  # flow, floor and naive side by side in each round (see the docstring)
            drop_feature_sets(root)
            report, seconds_one, peak = run_flow(root, kind, codec=args.codec)
            flows_s.append(seconds_one)
            floors_s.append(compute_floor(kind, signals))
            naives_s.append(naive_loop(kind, triples, work / f"npy-{kind}"))
        seed_s = naive_loop(kind, triples, work / f"npy-seed-{kind}", "default") if args.seed_naive else None
        shutil.rmtree(work / f"npy-seed-{kind}", ignore_errors=True)
        naive_bytes = sum(p.stat().st_size for p in (work / f"npy-{kind}").glob("*.npy"))
        shutil.rmtree(work / f"npy-{kind}")
        flow_s, naive_s = float(np.median(flows_s)), float(np.median(naives_s))
        row = {
            "flow_s": flow_s,
            "flow_min_s": min(flows_s),
            "flow_max_s": max(flows_s),
            "naive_s": naive_s,
            "floor_s": float(np.median(floors_s)),
            "audio_s": seconds,
            "flow_audio_s_per_s": seconds / flow_s,
            "naive_over_flow": float(np.median(np.divide(naives_s, flows_s))),
            "flow_over_floor": float(np.median(np.divide(flows_s, floors_s))),
            "codec": args.codec or get_kind(kind).default_codec,
            "stored_bytes_per_hour": report.stored_bytes * 3600 / seconds,
            "naive_bytes_per_hour": naive_bytes * 3600 / seconds,
            "peak_rss": peak,
        }
        if seed_s is not None:
            row.update(seed_naive_s=seed_s, seed_naive_over_flow=seed_s / flow_s)
        results[kind] = row
        rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
        print(kind, json.dumps(rounded), flush=True)
    if args.no_extras:
        return
    for label, overrides, codec in (
        ("magnitude float16 lz4", {"dtype": "float16"}, "lz4"),
        ("magnitude float32 zstd", {}, "zstd"),
        ("magnitude float32 none", {}, "none"),
    ):
        report, _, _ = run_flow(root, "magnitude", overrides, codec)
        print(label, f"{report.stored_bytes * 3600 / seconds / 2**30:.3f} GiB per audio hour", flush=True)
    for tag, minutes in (("small", args.small_minutes), ("large", args.large_minutes)):
        size_root, size_s = make_pairset(work, minutes, tag)
        drop_feature_sets(size_root)  # computed again, not found from an earlier run
        flow_s, peak = flow_in_fresh_process(size_root)
        print(
            f"memory {tag}: {size_s / 60:.1f} min of pairs, flow {flow_s:.1f} s, peak RSS {peak / 2**20:.0f} MiB "
            "(a fresh process: imports, flow and all)",
            flush=True,
        )


if __name__ == "__main__":
    main()
