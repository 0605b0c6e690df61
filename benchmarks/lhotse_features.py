"""lhotse's side of `benchmarks/bench_cli.py`, run by the Python of an environment with lhotse (not a
specstore dependency): recordings of a folder of WAVs, cuts, then `compute_and_store_features(Spectrogram(),
num_jobs=N)` into its LilcomChunkyWriter storage, as one command.

    /tmp/lhotse-venv/bin/python benchmarks/lhotse_features.py FOLDER OUT --jobs 2
"""

import argparse

from lhotse import CutSet, LilcomChunkyWriter, RecordingSet, Spectrogram


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    recordings = RecordingSet.from_dir(args.source, "*.wav", num_jobs=args.jobs)
    cuts = CutSet.from_manifests(recordings=recordings)
    cuts = cuts.compute_and_store_features(
        extractor=Spectrogram(), storage_path=args.out, num_jobs=args.jobs, storage_type=LilcomChunkyWriter
    )
    print(f"{len(cuts)} cuts, {sum(c.num_frames for c in cuts)} frames")


if __name__ == "__main__":
    main()
