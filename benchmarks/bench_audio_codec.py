"""Audio arrays, LZ4 + byte shuffle against raw: stored bytes and whole-array read time, per kind of audio,
in the same run. What `stores.store.audio_codec` decides from.

    .venv/bin/python benchmarks/bench_audio_codec.py [--pairs-store /tmp/bench-features/store-main]

Kinds: the real recordings of ../shared/data/real (16-bit and 24-bit files, decoded to float32), and, with
`--pairs-store`, the input and clean arrays of a generated pair set (mixtures at float SNR gains). Each
kind's audio is written as one array per 2^22 samples with each codec into a fresh local store and read
back whole with `LocalChunks` into reused memory, as feature shards read it, best of 5.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ARRAY_SAMPLES = 1 << 22


def real_audio(root: Path) -> dict[str, np.ndarray]:
    kinds: dict[str, list[np.ndarray]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".wav", ".flac"):
            continue
        info = sf.info(path)
        samples = sf.read(path, dtype="float32", always_2d=True)[0][:, 0]
        kinds.setdefault(f"real {path.relative_to(root).parts[0]} {info.subtype}", []).append(samples)
    return {kind: np.concatenate(parts) for kind, parts in kinds.items()}


def pair_audio(root: str) -> dict[str, np.ndarray]:
    from stores import open_store

    st = open_store(root, create=False)
    arrays = sorted({r["array"] for r in st.read_table("pairs").to_pylist()})
    return {
        f"pairs {role}": np.concatenate([st.read_array(f"{a}/{role}") for a in arrays])
        for role in ("input", "clean")
    }


def measure(samples: np.ndarray, codec, work: Path) -> tuple[float, float]:
    """(stored bytes / raw bytes, best read seconds per GB of samples)."""
    from stores import open_store
    from stores.scratch import Scratch

    st = open_store(work)
    paths = []
    for i, start in enumerate(range(0, samples.shape[0], ARRAY_SAMPLES)):
        path = f"audio/bench/a{i}"
        st.write_array(path, samples[start : start + ARRAY_SAMPLES], {}, (1 << 20,), codec)
        paths.append(path)
    stored = sum(f.stat().st_size for f in Path(st.path, "arrays.zarr/audio/bench").rglob("c*"))
    scratch, best = Scratch(), float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for path in paths:
            chunks = st.span_reader(path)  # as feature shards read their audio
            chunks.read(0, chunks.shape[0], scratch.array("audio", chunks.shape, chunks.dtype))
        best = min(best, time.perf_counter() - started)
    return stored / samples.nbytes, best / (samples.nbytes / 1e9)


def main() -> None:
    from pipelines.testing import real_data_root
    from stores.store import AUDIO_CODEC, audio_codec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs-store", default=None)
    args = parser.parse_args()
    kinds = real_audio(real_data_root()) if real_data_root() else {}
    if args.pairs_store:
        kinds.update(pair_audio(args.pairs_store))
    print("| audio | MB | LZ4 bytes / raw | read s per GB, LZ4 | raw | LZ4 / raw | stored as |")
    print("|---|---|---|---|---|---|---|")
    for kind, samples in kinds.items():
        with tempfile.TemporaryDirectory() as lz4_dir, tempfile.TemporaryDirectory() as raw_dir:
            ratio, lz4_read = measure(samples, AUDIO_CODEC, Path(lz4_dir))
            _, raw_read = measure(samples, None, Path(raw_dir))
        chosen = "LZ4" if audio_codec(samples) is not None else "raw"
        print(
            f"| {kind} | {samples.nbytes / 1e6:.1f} | {ratio:.3f} | {lz4_read:.3f} | {raw_read:.3f} "
            f"| {lz4_read / raw_read:.1f} | {chosen} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
