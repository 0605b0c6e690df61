from pathlib import Path

import pytest

from pipelines.corpora import CORPORA, get_reader, scan_corpus
from pipelines.splits import SplitConfig, parse_split_fractions, speaker_split
from pipelines.testing import arrange_librispeech, arrange_vctk, arrange_voicebank_train
from stores import ConfigError, NotFoundError


def test_registry_names():
    assert set(CORPORA.names()) >= {"librispeech", "vctk", "voicebank-demand", "folder", "demo"}
    with pytest.raises(NotFoundError, match="librispeech"):
        get_reader("timit")


def test_librispeech_layout(real_data, tmp_path):
    root = arrange_librispeech(real_data, tmp_path)
    items = {i.utterance_id: i for i in scan_corpus("librispeech", root)}
    assert set(items) == {"2412-153948-0000", "2412-153948-0001", "1088-134315-0000"}
    assert items["2412-153948-0000"].split == "valid"  # dev-clean keeps its own split
    assert items["1088-134315-0000"].split == "train"
    assert items["2412-153948-0001"].speaker_id == "2412"
    assert items["2412-153948-0001"].transcript == "SECOND TRANSCRIPT"


def test_librispeech_subset_folder_as_source(real_data, tmp_path):
    root = arrange_librispeech(real_data, tmp_path)
    items = scan_corpus("librispeech", root / "dev-clean")
    assert {i.split for i in items} == {"valid"}


@pytest.mark.parametrize("layout", ["0.92", "old"])
def test_vctk_layouts(real_data, tmp_path, layout):
    root = arrange_vctk(real_data, tmp_path, layout)
    items = {i.utterance_id: i for i in scan_corpus("vctk", root)}
    assert set(items) == {f"p22{s}_00{n}" for s in (5, 6) for n in (1, 2, 3)}  # mic2 is not a second copy
    assert items["p226_002"].speaker_id == "p226"
    assert items["p226_002"].transcript == "Sentence 2 of p226."
    assert items["p225_001"].split is None  # VCTK has no split: assigned by speaker


def test_vctk_wrong_folder(tmp_path):
    with pytest.raises(ConfigError, match="wav48"):
        scan_corpus("vctk", tmp_path)


def test_voicebank_test_and_train_layouts(real_data, tmp_path):
    test_items = scan_corpus("voicebank-demand", real_data / "voicebank-demand")
    assert len(test_items) == 11 and {i.split for i in test_items} == {"test"}
    assert all(Path(i.given["given"]).parent.name == "noisy_testset_wav" for i in test_items)
    train = scan_corpus("voicebank-demand", arrange_voicebank_train(real_data, tmp_path))
    assert len(train) == 3 and {i.split for i in train} == {"train"}


def test_folder_reader(real_data):
    items = scan_corpus("folder", real_data / "clean")
    assert len(items) == 26
    assert len({i.utterance_id for i in items}) == 26


def test_folder_reader_nested_speakers(tmp_path):
    for spk in ("alice", "bob"):
        (tmp_path / spk).mkdir()
        (tmp_path / spk / "a.wav").write_bytes(b"")
    items = scan_corpus("folder", tmp_path)
    assert {(i.utterance_id, i.speaker_id) for i in items} == {("alice_a", "alice"), ("bob_a", "bob")}


def test_missing_source_folder(tmp_path):
    with pytest.raises(NotFoundError, match="no such folder"):
        scan_corpus("folder", tmp_path / "absent")


def test_speaker_split_is_deterministic_and_stable():
    speakers = [f"spk{i}" for i in range(400)]
    first = {s: speaker_split(s) for s in speakers}
    assert first == {s: speaker_split(s) for s in reversed(speakers)}
    counts = {k: list(first.values()).count(k) for k in ("train", "valid", "test")}
    assert 280 < counts["train"] < 360 and counts["valid"] > 20 and counts["test"] > 20
    assert {speaker_split(s, SplitConfig(1.0, 0.0, 0.0)) for s in speakers} == {"train"}


@pytest.mark.parametrize("bad", ["0.8,0.1", "0.5,0.5,0.5", "a,b,c", "-0.1,0.6,0.5"])
def test_bad_split_fractions(bad):
    with pytest.raises(ConfigError, match="Expected"):
        parse_split_fractions(bad)
