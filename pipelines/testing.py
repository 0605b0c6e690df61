"""Fixtures for tests and benchmarks: synthetic audio, the bad-input set, and the real recordings of
`../shared/data/real` arranged in each corpus layout. Importable so that tests, benchmarks and users' own
tests build the same inputs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

from pipelines.audio import AudioConfig, load_audio
from pipelines.corpora import scan_corpus
from pipelines.demo import DemoConfig, generate_demo_corpus
from pipelines.featurize import SignalSet, feature_shard, finalize_features, plan_features
from pipelines.ingest import ingest_shard, plan_ingest
from pipelines.mixing import PairConfig, check_pairset_config, load_sources, make_pairs_shard, plan_pairs
from pipelines.pairs import given_pairs_shard, plan_given_pairs
from pipelines.sources import source_audio_config
from pipelines.splits import SplitConfig
from stores import open_store
from stores.commits import GroupCommit, HeldCommit

REAL_DATA_ENV = "SPECSTORE_REAL_DATA"


def real_data_root() -> Path | None:
    """`../shared/data/real` beside the project root (or $SPECSTORE_REAL_DATA), None when absent."""
    env = os.environ.get(REAL_DATA_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / "real")
    return next((p for p in candidates if (p / "voicebank-demand").is_dir()), None)


def tone(
    seconds: float = 1.0,
    sample_rate: int = 16000,
    freq: float = 220.0,
    amplitude: float = 0.3,
    channels: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """A harmonic tone with a little noise: (frames,) or (frames, channels) float32."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6))
    x = amplitude * x / np.max(np.abs(x)) + 0.01 * np.random.default_rng(seed).standard_normal(t.shape)
    x = x.astype(np.float32)
    return np.stack([x * (1 - 0.1 * c) for c in range(channels)], axis=1) if channels > 1 else x


def write_audio(
    path: str | Path, samples: np.ndarray, sample_rate: int = 16000, subtype: str | None = None
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sample_rate, subtype=subtype)
    return path


def make_bad_inputs(folder: str | Path) -> dict[str, str]:
    """One good file and the five bad inputs of the foundation issue; returns {file name: expected reason}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_audio(folder / "good.wav", tone(1.0))
    (folder / "empty.wav").write_bytes(b"")
    flac = write_audio(folder / "full.flac", tone(2.0, seed=1)).read_bytes()
    (folder / "full.flac").unlink()
    (folder / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    (folder / "text.wav").write_text("this is a text file, not audio\n")
    write_audio(folder / "nan.wav", np.full(16000, np.nan, dtype=np.float32), subtype="FLOAT")
    write_audio(folder / "short.wav", tone(0.05))
    return {
        "good.wav": "",
        "empty.wav": "empty file",
        "truncated.flac": "truncated file",
        "text.wav": "not audio",
        "nan.wav": "non-finite samples",
        "short.wav": "too short",
    }


def _copy_as(src: Path, dest: Path) -> None:
    """Copy, converting the container when the extensions differ (e.g. WAV -> FLAC for a FLAC layout)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix.lower() == dest.suffix.lower():
        shutil.copyfile(src, dest)
    else:
        data, rate = sf.read(src, dtype="float32")
        sf.write(dest, data, rate, subtype="PCM_16")


def arrange_librispeech(real: Path, dest: Path) -> Path:
    """The real LibriSpeech files in the OpenSLR layout: dev-clean (2412) and train-clean-100 (1088)."""
    root = dest / "LibriSpeech"
    clean = real / "clean"
    for n in ("0000", "0001"):
        _copy_as(
            clean / f"lhotse__2412-153948-{n}.flac", root / "dev-clean/2412/153948" / f"2412-153948-{n}.flac"
        )
    (root / "dev-clean/2412/153948/2412-153948.trans.txt").write_text(
        "2412-153948-0000 FIRST TRANSCRIPT\n2412-153948-0001 SECOND TRANSCRIPT\n"
    )
    _copy_as(
        clean / "lhotse__libri-1088-134315-0000.wav",
        root / "train-clean-100/1088/134315/1088-134315-0000.flac",
    )
    (root / "train-clean-100/1088/134315/1088-134315.trans.txt").write_text("1088-134315-0000 THIRD ONE\n")
    return root


def arrange_vctk(real: Path, dest: Path, layout: str = "0.92") -> Path:
    """Two real read-speech speakers as VCTK p225/p226: 0.92 (FLAC, mic1 + mic2) or the older wav48/ WAVs."""
    root = dest / f"VCTK-{layout}"
    for spk_src, spk in (("spk1", "p225"), ("spk2", "p226")):
        for n in range(1, 4):
            src = real / "clean" / f"speechbrain__{spk_src}_snt{n}.wav"
            uid = f"{spk}_{n:03d}"
            if layout == "0.92":
                for mic in ("mic1", "mic2"):
                    _copy_as(src, root / "wav48_silence_trimmed" / spk / f"{uid}_{mic}.flac")
            else:
                _copy_as(src, root / "wav48" / spk / f"{uid}.wav")
            txt = root / "txt" / spk / f"{uid}.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            txt.write_text(f"Sentence {n} of {spk}.\n")
    return root


def arrange_voicebank_train(real: Path, dest: Path, count: int = 3) -> Path:
    """Some real VoiceBank-DEMAND pairs in the training-set layout (clean/noisy 28spk)."""
    root = dest / "VoiceBank-DEMAND"
    src = real / "voicebank-demand"
    for path in sorted((src / "clean_testset_wav").glob("*.wav"))[:count]:
        _copy_as(path, root / "clean_trainset_28spk_wav" / path.name)
        _copy_as(src / "noisy_testset_wav" / path.name, root / "noisy_trainset_28spk_wav" / path.name)
    return root


def ingest_in_process(
    store, reader: str, source, name: str | None = None, audio=None, splits=None, shard_size: int = 4
):
    """The ingest flow's stages run sequentially in this process (no Prefect, no Dask): for tests and
    notebooks. Returns (ingest summaries, given-pair summaries)."""
    audio, splits = audio or AudioConfig(), splits or SplitConfig()
    items = scan_corpus(reader, source)
    plan = plan_ingest(store, reader, items, name, shard_size)
    done = committed_together(
        store,
        lambda s, commit: ingest_shard(store, plan.corpus, reader, s, audio, splits, commit=commit),
        plan.shards,
    )
    pairset, shards = plan_given_pairs(store, plan.corpus, items, shard_size=shard_size)
    pairs = committed_together(
        store,
        lambda s, commit: given_pairs_shard(store, plan.corpus, pairset, s, audio, commit=commit),
        shards,
    )
    return done, pairs


def committed_together(store, run_one, shards) -> list:
    """`run_one(shard, commit)` for each shard, their rows committed in batches as a flow's driver commits
    them (`stores.commits.GroupCommit`): stores made here are laid out as the flows lay them out."""
    out = []
    with GroupCommit(store) as batches:
        for shard in shards:
            held = HeldCommit()
            out.append(run_one(shard, held))
            batches.add(held.held)
    return out


def pairs_in_process(store, pairset: str, config, noise_folder=None, rir_folder=None, shard_size: int = 4):
    """A pair set made sequentially in this process (no Prefect, no Dask): noise and RIR folders are
    ingested as the corpora `noise-<pairset>` and `rir-<pairset>` first. Returns the shard summaries."""
    if noise_folder is not None:
        config = replace(config, noise=f"noise-{pairset}")
        ingest_in_process(
            store,
            "folder",
            noise_folder,
            name=config.noise,
            audio=source_audio_config("noise", store.sample_rate),
        )
    if rir_folder is not None:
        config = replace(config, rir=f"rir-{pairset}")
        ingest_in_process(
            store, "folder", rir_folder, name=config.rir, audio=source_audio_config("rir", store.sample_rate)
        )
    check_pairset_config(store, pairset, config)
    sources = load_sources(store, config)
    shards = plan_pairs(store, pairset, config, shard_size)
    return committed_together(
        store, lambda s, commit: make_pairs_shard(store, pairset, config, s, sources, commit=commit), shards
    )


def deconvolution_lag(wet: np.ndarray, dry: np.ndarray, max_lag: int = 2000) -> int:
    """Peak lag of the impulse response estimated by regularised (Wiener) deconvolution of wet by dry."""
    n = 1 << int(np.ceil(np.log2(len(dry) + len(wet))))
    x, y = np.fft.rfft(dry, n), np.fft.rfft(wet, n)
    h = np.fft.irfft(y * np.conj(x) / (np.abs(x) ** 2 + 1e-3 * np.mean(np.abs(x) ** 2)), n)
    window = np.concatenate([h[-max_lag:], h[: max_lag + 1]])
    return int(np.argmax(np.abs(window))) - max_lag


def features_in_process(store, pairset: str | None, config, codec: str | None = None, corpus=None, mask=None):
    """A feature set of a pair set (or of `corpus`) computed sequentially in this process (no Prefect, no
    Dask): -> feature_id. `mask`: the first-stage model function a kind may need."""
    source = SignalSet(corpus, corpus=True) if corpus else SignalSet(pairset)
    plan = plan_features(store, source, config, codec)
    if not plan.complete:
        committed_together(
            store, lambda s, commit: feature_shard(store, plan.spec, s, mask, commit=commit), plan.shards
        )
        finalize_features(store, plan.spec)
    return plan.spec.feature_id


def build_demo_store(
    folder,
    kinds: dict | None = None,
    speakers: int = 3,
    utterances: int = 4,
    seed: int = 0,
    shard_size: int = 4,
    store=None,
):
    """A small store made in-process from the demo corpus: ingest, `noisy` pairs with the demo noises, and
    feature sets (`kinds`: {label: feature config}); `shard_size` utterances per shard. The corpus is
    generated in `folder`, the store is `folder/store` unless given. Returns (store, {label: feature_id})."""
    folder = Path(folder)
    corpus = generate_demo_corpus(
        folder / "demo",
        DemoConfig(
            speakers=speakers,
            utterances_per_speaker=utterances,
            noises=2,
            rirs=2,
            noise_seconds=8.0,
            seed=seed,
        ),
    )
    store = store or open_store(folder / "store")
    ingest_in_process(store, "librispeech", corpus.speech, name="demo", shard_size=shard_size)
    pairs_in_process(
        store,
        "noisy",
        PairConfig(corpus="demo", kind="noisy", noise="x", snr=(0.0, 15.0), seed=seed),
        noise_folder=corpus.noise,
        shard_size=shard_size,
    )
    ids = {label: features_in_process(store, "noisy", config) for label, config in (kinds or {}).items()}
    return store, ids


def abort_on(name: str, path: str, config):
    """A loader for crash tests: `os.abort()` (SIGABRT, a native crash: no exception, no cleanup) on the
    file named `name`, `load_audio` on every other. Only a test that passes it explicitly
    (`ingest_shard(..., loader=functools.partial(abort_on, name))`) can reach it; no file can."""
    if Path(path).name == name:
        os.abort()
    return load_audio(path, config)


def copy_store(root: str, folder) -> object:
    """A copy of the local store at `root` in `folder/store` (tests change a copy of a store built once)."""
    shutil.copytree(root, Path(folder) / "store")
    return open_store(Path(folder) / "store", create=False)
