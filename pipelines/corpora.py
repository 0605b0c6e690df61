"""Corpus readers, chosen by name: each turns a source folder into `SourceItem`s (id, speaker, path,
transcript, the corpus's own split where it defines one, and any given degraded counterparts).

Readers only list; decoding and validation happen in the ingest shards, so a bad file never stops a scan.
Metadata problems found while listing (a transcript file that is not UTF-8, ends inside a character, is
huge or unreadable) travel on the item as `problem`, and planning turns them into rejects; a path that is
not valid UTF-8 is rejected by planning too (its `rejects.source_path` shows the odd bytes as `\\xNN`, see
`utf8_text`). Symlinks with an audio extension that lead nowhere (dangling, or a loop) are listed, so that
the shards reject them instead of skipping them silently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.audio import AUDIO_EXTENSIONS, Rejected
from stores.config import Registry
from stores.errors import ConfigError, NotFoundError

# the `given` of an item without degraded counterparts, shared: nothing mutates an item's `given` (items are
# frozen), and an empty dict per item is 64 B times 281,241 files of LibriSpeech
_NO_GIVEN: dict[str, str] = {}


@dataclass(frozen=True, slots=True)  # slots: a scan holds one item per file, hundreds of thousands of them
class SourceItem:
    utterance_id: str
    speaker_id: str
    source_path: str
    split: str | None = None  # None: assigned by speaker
    transcript: str | None = None
    given: dict[str, str] = field(default_factory=lambda: _NO_GIVEN)  # pair kind -> degraded file
    problem: tuple[str, str] | None = None  # (reason, detail) found while listing: the item is rejected


class CorpusReader:
    name = ""
    description = ""
    creates_source = False  # True: the reader fills a missing source folder itself (the generated demo)

    def scan(self, source: Path) -> Iterator[SourceItem]:
        raise NotImplementedError


CORPORA: Registry[type[CorpusReader]] = Registry("corpus reader")


def get_reader(name: str) -> CorpusReader:
    return CORPORA.get(name)()


def scan_corpus(reader: str, source: str | Path) -> list[SourceItem]:
    """All items of a corpus folder, read by the named reader (`demo` creates its folder when missing)."""
    corpus_reader = get_reader(reader)
    if corpus_reader.creates_source:
        Path(source).mkdir(parents=True, exist_ok=True)
    return list(corpus_reader.scan(parse_source(source)))


def parse_source(source: str | Path) -> Path:
    path = Path(source).expanduser()
    if not path.is_dir():
        raise NotFoundError(f"Expected a corpus folder. Got {str(source)!r} instead (no such folder).")
    return path.resolve()


def _audio_files(root: Path, extensions=AUDIO_EXTENSIONS) -> list[Path]:
    """Every file (or link) under `root` whose suffix is one of `extensions`, in `sorted(Path)` order.

    What `root.rglob("*")` filtered by suffix and `is_file() or is_symlink()` gave (linked folders are not
    entered, unreadable ones skipped), walked with `os.scandir` and sorted as strings split at "/": pathlib
    objects cost a stat per file and microseconds per comparison, seconds on a rerun over 50,000 files."""
    found, stack = [], [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as listing:
                entries = list(listing)
        except PermissionError:
            continue
        for entry in entries:
            if _is(entry.is_dir, follow_symlinks=False):
                stack.append(entry.path)
            dot = entry.name.rfind(".")  # pathlib's suffix: after the last dot, not a leading one
            suffix = entry.name[dot:] if 0 < dot < len(entry.name) - 1 else ""
            if suffix.lower() in extensions and (_is(entry.is_file) or _is(entry.is_symlink)):
                found.append(entry.path)
    return [Path(p) for p in sorted(found, key=lambda p: p.split(os.sep))]


def _is(test, **options) -> bool:
    try:
        return test(**options)
    except OSError:  # as pathlib's is_file(): a file that cannot be examined is not one
        return False


def utf8_text(text: str) -> str:
    """`text` as valid UTF-8: a path's bytes that are not UTF-8 (which Python keeps as surrogate escapes) are
    written as `\\xNN`, so a Parquet row can hold them and a person can still find the file. Any other text
    comes back unchanged."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates that are not escaped bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


MAX_TRANSCRIPT_BYTES = 1 << 20  # a chapter's transcripts are kilobytes; a larger file is not a transcript


def read_transcript_file(path: Path) -> str | None:
    """The text of a transcript file, None when there is none (or it vanished); `Rejected("unreadable
    transcript")` when it is larger than MAX_TRANSCRIPT_BYTES, cannot be read, is not UTF-8 or ends
    inside a character."""
    name = utf8_text(str(path))
    try:
        if not path.is_file():
            return None
        with path.open("rb") as handle:
            data = handle.read(MAX_TRANSCRIPT_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Rejected("unreadable transcript", f"{name}: {type(exc).__name__}: {exc.strerror}") from None
    if len(data) > MAX_TRANSCRIPT_BYTES:
        raise Rejected("unreadable transcript", f"{name}: more than {MAX_TRANSCRIPT_BYTES:,} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        what = f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        if exc.reason == "unexpected end of data":
            what = "cut short inside a UTF-8 character"
        raise Rejected("unreadable transcript", f"{name}: {what}") from None


def _read_lines(path: Path) -> dict[str, str]:
    """'<id> <text>' lines -> {id: text}; a missing file gives {}."""
    out = {}
    for line in (read_transcript_file(path) or "").splitlines():
        key, _, text = line.strip().partition(" ")
        if key:
            out[key] = text.strip()
    return out


def _read_text(path: Path) -> tuple[str | None, tuple[str, str] | None]:
    """(stripped text or None, problem or None) of a one-utterance transcript file."""
    try:
        text = read_transcript_file(path)
    except Rejected as rej:
        return None, (rej.reason, rej.detail)
    return (text.strip() if text is not None else None), None


def _chapter_transcripts(folder: Path) -> tuple[dict[str, str], tuple[str, str] | None]:
    """The transcripts of every `*.trans.txt` in a LibriSpeech chapter folder, and the problem of the
    last one that could not be read (every utterance of the chapter is then rejected with it)."""
    found, problem = {}, None
    for trans in folder.glob("*.trans.txt"):
        try:
            found.update(_read_lines(trans))
        except Rejected as rej:
            problem = (rej.reason, rej.detail)
    return found, problem


LIBRISPEECH_SUBSET = re.compile(r"^(train|dev|test)-(clean|other)(-\d+)?$")
LIBRISPEECH_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")
SUBSET_SPLIT = {"train": "train", "dev": "valid", "test": "test"}


@CORPORA.register("librispeech")
class LibriSpeechReader(CorpusReader):
    name = "librispeech"
    description = "OpenSLR layout <subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac + .trans.txt"

    def scan(self, source: Path) -> Iterator[SourceItem]:
        # per chapter folder: its transcripts, the problem of an unreadable one, and its subset's split
        folders: dict[str, tuple[dict[str, str], tuple[str, str] | None, str | None]] = {}
        for path in _audio_files(source, (".flac", ".wav")):
            folder = os.path.dirname(str(path))
            if folder not in folders:
                subset = next(
                    (
                        p
                        for p in reversed(path.parent.relative_to(source.parent).parts)
                        if LIBRISPEECH_SUBSET.match(p)
                    ),
                    None,
                )
                split = SUBSET_SPLIT[subset.split("-")[0]] if subset else None
                folders[folder] = (*_chapter_transcripts(path.parent), split)
            found, problem, split = folders[folder]
            match = LIBRISPEECH_ID.match(path.stem)
            speaker = match.group(1) if match else path.parent.parent.name
            yield SourceItem(path.stem, speaker, str(path), split, found.get(path.stem), problem=problem)


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
        transcript, problem = _read_text(source / "txt" / speaker / f"{uid}.txt")
        return SourceItem(uid, speaker, str(path), None, transcript, problem=problem)


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
                transcript, problem = _read_text(source / txt_dir / f"{path.stem}.txt")
                speaker = path.stem.split("_")[0]
                yield SourceItem(path.stem, speaker, str(path), split, transcript, given, problem)
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


# The demo corpus generator imports scipy (about a second): it is loaded when the demo is asked for.
CORPORA.declare("demo", "pipelines.demo:DemoReader")
