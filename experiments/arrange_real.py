"""Arrange the real clean recordings of ../shared/data/real/clean by speaker, as symbolic links, so that the
`folder` reader (speaker = first sub-folder) splits them by speaker and the test split holds speakers never
seen in training. The files are named `<source>__<recording>`; the speaker is read from the recording's name.

    .venv/bin/python experiments/arrange_real.py ../shared/data/real/clean /tmp/specstore-experiments/real-clean
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# recording-name patterns -> speaker (first match wins); anything else is its own speaker
SPEAKER_PATTERNS = (
    (r"^(\d+)-\d+-\d+$", r"libri-\1"),  # LibriSpeech speaker-chapter-utterance
    (r"^libri-(\d+)-", r"libri-\1"),
    (r"^(LJ)\d+-", r"\1"),  # LJ Speech: one speaker
    (r"^(ES\d+\w)\.", r"ami-\1"),  # AMI meeting headset
    (r"^cmu_arctic_us_(\w+?)_a\d+$", r"arctic-\1"),
    (r"^(spk\d+)_snt\d+$", r"sb-\1"),
)


def speaker_of(recording: str) -> str:
    for pattern, speaker in SPEAKER_PATTERNS:
        match = re.match(pattern, recording)
        if match:
            return match.expand(speaker)
    return recording


def arrange(source: Path, target: Path) -> dict[str, list[str]]:
    """Link every audio file of `source` into `target/<speaker>/`; -> {speaker: [file names]}."""
    speakers: dict[str, list[str]] = {}
    for path in sorted(source.iterdir()):
        if path.suffix.lower() not in (".wav", ".flac"):
            continue
        recording = path.stem.split("__", 1)[-1]
        speaker = speaker_of(recording)
        folder = target / speaker
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
        speakers.setdefault(speaker, []).append(path.name)
    if not speakers:
        raise SystemExit(f"Expected audio files in {source}. Got none.")
    return speakers


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: arrange_real.py SOURCE_FOLDER TARGET_FOLDER")
    for speaker, names in sorted(arrange(Path(sys.argv[1]), Path(sys.argv[2])).items()):
        print(f"{speaker}: {len(names)} file(s)")
