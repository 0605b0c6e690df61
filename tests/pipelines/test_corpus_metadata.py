"""Damaged corpus metadata and odd paths: transcripts that are not UTF-8, cut short or huge, file names that
are not UTF-8, symlink loops, files that vanish between scan and read. Each becomes a reject row (or the
item's transcript is simply absent), never a traceback, and a rerun adds nothing."""

import os
import shutil
from collections import Counter

import pytest

from pipelines.audio import AudioConfig
from pipelines.corpora import MAX_TRANSCRIPT_BYTES, scan_corpus, utf8_text
from pipelines.ingest import ingest_shard, plan_ingest
from pipelines.testing import arrange_librispeech, arrange_vctk, ingest_in_process

CHAPTER = "dev-clean/2412/153948/2412-153948.trans.txt"


def _rejects(store) -> dict[str, dict]:
    return {r["utterance_id"]: r for r in store.read_table("rejects").to_pylist()}


@pytest.mark.parametrize(
    "damage,detail",
    [
        (b"2412-153948-0000 CAF\xe9 AU LAIT\n", "not UTF-8 (byte 0xe9 at offset 20)"),
        ("2412-153948-0000 CAFÉ".encode()[:-1], "cut short inside a UTF-8 character"),
        (b"2412-153948-0000 " + b"A" * MAX_TRANSCRIPT_BYTES, f"more than {MAX_TRANSCRIPT_BYTES:,} bytes"),
    ],
    ids=["latin-1", "cut-short", "huge"],
)
def test_damaged_librispeech_transcripts_reject_their_chapter(store, real_data, tmp_path, damage, detail):
    root = arrange_librispeech(real_data, tmp_path)
    (root / CHAPTER).write_bytes(damage)
    ingest_in_process(store, "librispeech", root, name="ls")
    rejects = _rejects(store)
    assert set(rejects) == {"2412-153948-0000", "2412-153948-0001"}  # the chapter whose file is damaged
    assert {r["reason"] for r in rejects.values()} == {"unreadable transcript"}
    assert all(detail in r["detail"] and "2412-153948.trans.txt" in r["detail"] for r in rejects.values())
    assert [u["utterance_id"] for u in store.read_table("utterances").to_pylist()] == ["1088-134315-0000"]
    assert plan_ingest(store, "librispeech", scan_corpus("librispeech", root), "ls").shards == []


def test_damaged_vctk_transcript_rejects_its_utterance(store, real_data, tmp_path):
    root = arrange_vctk(real_data, tmp_path, "old")
    (root / "txt/p225/p225_002.txt").write_bytes(b"\xff\xfe not text")
    ingest_in_process(store, "vctk", root)
    assert {k: r["reason"] for k, r in _rejects(store).items()} == {"p225_002": "unreadable transcript"}
    assert store.read_table("utterances").num_rows == 5


def test_missing_transcript_is_no_transcript(real_data, tmp_path):
    root = arrange_vctk(real_data, tmp_path, "old")
    (root / "txt/p225/p225_002.txt").unlink()
    item = next(i for i in scan_corpus("vctk", root) if i.utterance_id == "p225_002")
    assert item.transcript is None and item.problem is None


@pytest.fixture
def odd_folder(real_data, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    good = real_data / "clean" / "speechbrain__spk1_snt1.wav"
    shutil.copyfile(good, folder / "good.wav")
    shutil.copyfile(good, folder / os.fsdecode(b"caf\xe9.wav"))  # a Latin-1 name
    os.symlink("loop.wav", folder / "loop.wav")
    os.symlink("gone.wav", folder / "dangling.wav")
    os.symlink(folder, folder / "again")  # a folder loop: not followed
    shutil.copyfile(good, folder / "vanishes.wav")
    return folder


def test_odd_paths_become_rejects(store, odd_folder):
    items = scan_corpus("folder", odd_folder)
    (odd_folder / "vanishes.wav").unlink()  # between the scan and the shard
    plan = plan_ingest(store, "folder", items, "odd", shard_size=8)
    for shard in plan.shards:
        ingest_shard(store, "odd", "folder", shard, AudioConfig())
    rejects = {r["source_path"].rsplit("/", 1)[-1]: r for r in store.read_table("rejects").to_pylist()}
    assert Counter(r["reason"] for r in rejects.values()) == {
        "unreadable file": 3,
        "unsupported file name": 1,
    }
    assert rejects["caf\\xe9.wav"]["utterance_id"] == "caf\\xe9"
    assert "FileNotFoundError" in rejects["vanishes.wav"]["detail"]
    assert "Too many levels of symbolic links" in rejects["loop.wav"]["detail"]
    assert [u["utterance_id"] for u in store.read_table("utterances").to_pylist()] == ["good"]
    # the rerun recognises every rejected path, the Latin-1 one included (by its escaped form)
    assert plan_ingest(store, "folder", scan_corpus("folder", odd_folder), "odd").shards == []


def test_utf8_text_escapes_only_what_is_not_utf8():
    assert utf8_text("café/ünïcode.wav") == "café/ünïcode.wav"
    assert utf8_text(os.fsdecode(b"caf\xe9.wav")) == "caf\\xe9.wav"
    assert utf8_text("lone \ud800") == "lone \\ud800"
