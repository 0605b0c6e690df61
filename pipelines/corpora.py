"""Corpus readers, chosen by name: each turns a source folder into `SourceItem`s (id, speaker, path,
transcript, the corpus's own split where it defines one, and any given degraded counterparts).

Readers only list; decoding and validation happen in the ingest shards, so a bad file never stops a scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.audio import AUDIO_EXTENSIONS
from stores.config import Registry
from stores.errors import ConfigError, NotFoundError


@dataclass(frozen=True)
class SourceItem:
    utterance_id: str
    speaker_id: str
    source_path: str
    split: str | None = None  # None: assigned by speaker
    transcript: str | None = None
    given: dict[str, str] = field(default_factory=dict)  # pair kind -> degraded file (e.g. VoiceBank noisy)


class CorpusReader:
    name = ""
    description = ""

    def scan(self, source: Path) -> Iterator[SourceItem]:
        raise NotImplementedError


CORPORA: Registry[type[CorpusReader]] = Registry("corpus reader")


def get_reader(name: str) -> CorpusReader:
    return CORPORA.get(name)()


def scan_corpus(reader: str, source: str | Path) -> list[SourceItem]:
    """All items of a corpus folder, read by the named reader (`demo` creates its folder when missing)."""
    corpus_reader = get_reader(reader)
    if reader == "demo":
        Path(source).mkdir(parents=True, exist_ok=True)
    return list(corpus_reader.scan(parse_source(source)))


def parse_source(source: str | Path) -> Path:
    path = Path(source).expanduser()
    if not path.is_dir():
        raise NotFoundError(f"Expected a corpus folder. Got {str(source)!r} instead (no such folder).")
    return path.resolve()


def _audio_files(root: Path, extensions=AUDIO_EXTENSIONS) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file())


def _read_lines(path: Path) -> dict[str, str]:
    """'<id> <text>' lines -> {id: text}; a missing or undecodable file gives {}."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, text = line.strip().partition(" ")
        if key:
            out[key] = text.strip()
    return out


def _read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8", errors="replace").strip() if path.is_file() else None


LIBRISPEECH_SUBSET = re.compile(r"^(train|dev|test)-(clean|other)(-\d+)?$")
LIBRISPEECH_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")
SUBSET_SPLIT = {"train": "train", "dev": "valid", "test": "test"}


@CORPORA.register("librispeech")
class LibriSpeechReader(CorpusReader):
    name = "librispeech"
    description = "OpenSLR layout <subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac + .trans.txt"

    def scan(self, source: Path) -> Iterator[SourceItem]:
        transcripts: dict[Path, dict[str, str]] = {}
        for path in _audio_files(source, (".flac", ".wav")):
            match = LIBRISPEECH_ID.match(path.stem)
            speaker = match.group(1) if match else path.parent.parent.name
            if path.parent not in transcripts:
                found = {}
                for trans in path.parent.glob("*.trans.txt"):
                    found.update(_read_lines(trans))
                transcripts[path.parent] = found
            subset = next(
                (p for p in reversed(path.relative_to(source.parent).parts) if LIBRISPEECH_SUBSET.match(p)),
                None,
            )
            split = SUBSET_SPLIT[subset.split("-")[0]] if subset else None
            yield SourceItem(path.stem, speaker, str(path), split, transcripts[path.parent].get(path.stem))


VCTK_092 = re.compile(r"^(p\d+|s\d+)_(\d+)_(mic[12])$")


@CORPORA.register("vctk")
class VCTKReader(CorpusReader):
    """VCTK 0.92 (wav48_silence_trimmed/pNNN/pNNN_MMM_mic1.flac) and the older wav48/pNNN/pNNN_MMM.wav."""

    name = "vctk"
    description = "VCTK 0.92 wav48_silence_trimmed/ (mic1) or the older wav48/, transcripts from txt/"
    mic = "mic1"

    def scan(self, source: Path) -> Iterator[SourceItem]:
        new, old = source / "wav48_silence_trimmed", source / "wav48"
        if not new.is_dir() and not old.is_dir():
            raise ConfigError(
                f"Expected a VCTK folder with wav48_silence_trimmed/ or wav48/. Got {str(source)!r} instead."
            )
        if new.is_dir():
            for path in _audio_files(new, (".flac",)):
                match = VCTK_092.match(path.stem)
                if match and match.group(3) != self.mic:
                    continue  # the other microphone of the same utterance
                uid = f"{match.group(1)}_{match.group(2)}" if match else path.stem
                yield self._item(source, uid, path)
        else:
            for path in _audio_files(old, (".wav",)):
                yield self._item(source, path.stem, path)

    @staticmethod
    def _item(source: Path, uid: str, path: Path) -> SourceItem:
        speaker = uid.split("_")[0]
        return SourceItem(uid, speaker, str(path), None, _read_text(source / "txt" / speaker / f"{uid}.txt"))


VOICEBANK_FOLDERS = {
    "clean_trainset_28spk_wav": ("noisy_trainset_28spk_wav", "trainset_28spk_txt", "train"),
    "clean_trainset_56spk_wav": ("noisy_trainset_56spk_wav", "trainset_56spk_txt", "train"),
    "clean_trainset_wav": ("noisy_trainset_wav", "trainset_txt", "train"),
    "clean_testset_wav": ("noisy_testset_wav", "testset_txt", "test"),
}


@CORPORA.register("voicebank-demand")
class VoiceBankDemandReader(CorpusReader):
    """The clean files become utterances; the dataset's own noisy files become a pair set of kind `given`."""

    name = "voicebank-demand"
    description = "clean_*set_wav/ (utterances) with noisy_*set_wav/ (a given pair set) and *_txt/"

    def scan(self, source: Path) -> Iterator[SourceItem]:
        found = False
        for clean_dir, (noisy_dir, txt_dir, split) in VOICEBANK_FOLDERS.items():
            if not (source / clean_dir).is_dir():
                continue
            found = True
            for path in _audio_files(source / clean_dir, (".wav",)):
                noisy = source / noisy_dir / path.name
                given = {"given": str(noisy)} if noisy.is_file() else {}
                transcript = _read_text(source / txt_dir / f"{path.stem}.txt")
                yield SourceItem(path.stem, path.stem.split("_")[0], str(path), split, transcript, given)
        if not found:
            raise ConfigError(
                f"Expected a VoiceBank-DEMAND folder with one of {', '.join(VOICEBANK_FOLDERS)}. "
                f"Got {str(source)!r} instead."
            )


@CORPORA.register("folder")
class FolderReader(CorpusReader):
    """Any folder of audio files. Id: the relative path without extension, '/' as '_'. Speaker: the first
    sub-folder when files are nested, else the file's own id (each file its own speaker)."""

    name = "folder"
    description = "any folder of audio files (speaker = first sub-folder)"

    def scan(self, source: Path) -> Iterator[SourceItem]:
        for path in _audio_files(source):
            rel = path.relative_to(source)
            uid = "_".join(rel.with_suffix("").parts)
            speaker = rel.parts[0] if len(rel.parts) > 1 else uid
            yield SourceItem(uid, speaker, str(path))


@CORPORA.register("demo")
class DemoReader(CorpusReader):
    """The built-in generated corpus: generated into the source folder when missing (deterministically),
    then read through the LibriSpeech reader, exactly as a downloaded LibriSpeech would be."""

    name = "demo"
    description = "the built-in generated corpus (LibriSpeech layout), created in --source when missing"

    def scan(self, source: Path) -> Iterator[SourceItem]:
        from pipelines.demo import generate_demo_corpus

        corpus = generate_demo_corpus(source)
        yield from LibriSpeechReader().scan(Path(corpus.speech))
