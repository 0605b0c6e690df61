import numpy as np
import pyarrow.compute as pc
import pytest
import soundfile as sf

from pipelines.audio import AudioConfig
from pipelines.corpora import scan_corpus
from pipelines.ingest import ingest_shard, plan_ingest
from pipelines.synthesis import snr_db
from pipelines.testing import (
    arrange_librispeech,
    arrange_vctk,
    ingest_in_process,
    make_bad_inputs,
    tone,
    write_audio,
)


def _ids(store, table="utterances"):
    return sorted(store.read_table(table)["utterance_id"].to_pylist())


def test_bad_inputs_become_rejects_and_the_good_file_is_ingested(store, tmp_path):
    expected = make_bad_inputs(tmp_path / "bad")
    ingest_in_process(store, "folder", tmp_path / "bad")
    assert _ids(store) == ["good"]
    rejects = {r["source_path"].rsplit("/", 1)[-1]: r for r in store.read_table("rejects").to_pylist()}
    assert {name: r["reason"] for name, r in rejects.items()} == {k: v for k, v in expected.items() if v}
    assert all(r["detail"] for r in rejects.values())


def test_voicebank_demand_gives_utterances_and_given_pairs(store, real_data):
    ingest_in_process(store, "voicebank-demand", real_data / "voicebank-demand")
    utts = store.read_table("utterances")
    assert utts.num_rows == 11 and set(utts["split"].to_pylist()) == {"test"}
    pairs = store.read_table("pairs")
    assert pairs.num_rows == 11
    assert set(pairs["kind"].to_pylist()) == {"given"}
    assert set(pairs["pairset"].to_pylist()) == {"voicebank-demand-given"}
    # the stored signals are the dataset's own, and the achieved SNR is measured on exactly them
    row = pairs.to_pylist()[0]
    uid = row["utterance_id"]
    noisy, rate = sf.read(real_data / "voicebank-demand/noisy_testset_wav" / f"{uid}.wav", dtype="float32")
    assert rate == 16000
    np.testing.assert_array_equal(store.audio("voicebank-demand-given", uid, "input"), noisy)
    np.testing.assert_array_equal(store.audio("voicebank-demand", uid, "input"), noisy)
    clean = store.audio("voicebank-demand-given", uid, "clean")
    assert row["snr_db_achieved"] == pytest.approx(snr_db(clean, noisy))
    np.testing.assert_allclose(store.audio("voicebank-demand-given", uid, "noise"), noisy - clean, atol=1e-7)


def test_folder_of_real_clean_speech_is_resampled_to_16k(store, real_data):
    ingest_in_process(store, "folder", real_data / "clean", name="real-clean")
    utts = store.read_table("utterances")
    assert utts.num_rows == 26
    assert set(utts["sample_rate"].to_pylist()) == {16000}
    assert {22050, 44100} <= set(utts["source_sample_rate"].to_pylist())
    lj = utts.filter(pc.equal(utts["utterance_id"], "lhotse__LJ002-0020")).to_pylist()[0]
    info = sf.info(real_data / "clean" / "lhotse__LJ002-0020.wav")
    assert abs(lj["num_samples"] - round(info.frames * 16000 / info.samplerate)) <= 1
    assert store.audio("real-clean", "lhotse__LJ002-0020").shape == (lj["num_samples"],)


@pytest.mark.parametrize("reader,arrange", [("librispeech", arrange_librispeech), ("vctk", arrange_vctk)])
def test_readers_ingest_real_files(store, real_data, tmp_path, reader, arrange):
    root = arrange(real_data, tmp_path)
    ingest_in_process(store, reader, root)
    utts = store.read_table("utterances").to_pylist()
    assert len(utts) == len(scan_corpus(reader, root)) and all(u["transcript"] for u in utts)


def test_rerun_adds_and_rewrites_nothing(store, real_data):
    ingest_in_process(store, "voicebank-demand", real_data / "voicebank-demand")
    before = {
        p: store.fs.info(f"{store.table_path(t)}/{p}.parquet")["mtime"]
        for t in ("utterances", "pairs")
        for p in store.part_names(t)
    }
    done, pairs = ingest_in_process(store, "voicebank-demand", real_data / "voicebank-demand")
    assert done == [] and pairs == []
    after = {
        p: store.fs.info(f"{store.table_path(t)}/{p}.parquet")["mtime"]
        for t in ("utterances", "pairs")
        for p in store.part_names(t)
    }
    assert before == after
    assert store.table("utterances").count_rows() == 11 and store.table("pairs").count_rows() == 11


def test_rerun_with_a_new_file_adds_only_it(store, tmp_path):
    for n in range(3):
        write_audio(tmp_path / "src" / f"u{n}.wav", tone(0.5, seed=n))
    ingest_in_process(store, "folder", tmp_path / "src")
    write_audio(tmp_path / "src" / "u9.wav", tone(0.5, seed=9))
    done, _ = ingest_in_process(store, "folder", tmp_path / "src")
    assert sum(s.utterances for s in done) == 1
    assert _ids(store) == ["u0", "u1", "u2", "u9"]


def test_duplicate_and_unsafe_ids_are_rejected(store, tmp_path):
    write_audio(tmp_path / "src" / "a.wav", tone(0.5))
    write_audio(tmp_path / "src" / "a.flac", tone(0.5, seed=1))  # same id "a"
    # a file named "...wav" has the id "..", which would escape the store
    (tmp_path / "src" / "...wav").write_bytes((tmp_path / "src" / "a.wav").read_bytes())
    ingest_in_process(store, "folder", tmp_path / "src")
    reasons = sorted(store.read_table("rejects")["reason"].to_pylist())
    assert reasons == ["duplicate utterance id", "unsafe utterance id"]
    assert _ids(store) == ["a"]


def test_killed_shard_is_finished_by_the_rerun_without_duplicates(store, tmp_path, monkeypatch):
    for n in range(6):
        write_audio(tmp_path / "src" / f"u{n}.wav", tone(0.5, seed=n))
    plan = plan_ingest(store, "folder", scan_corpus("folder", tmp_path / "src"), shard_size=3)
    ingest_shard(store, plan.corpus, "folder", plan.shards[0], AudioConfig())
    # the second shard dies after writing its audio, before its commit
    real_commit = store.commit
    monkeypatch.setattr(store, "commit", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        ingest_shard(store, plan.corpus, "folder", plan.shards[1], AudioConfig())
    monkeypatch.setattr(store, "commit", real_commit)
    assert _ids(store) == ["u0", "u1", "u2"]  # nothing of the dead shard is visible
    rerun = plan_ingest(store, "folder", scan_corpus("folder", tmp_path / "src"), shard_size=3)
    assert [s.shard_id for s in rerun.shards] == [plan.shards[1].shard_id]  # same id: replaces its leftovers
    ingest_shard(store, rerun.corpus, "folder", rerun.shards[0], AudioConfig())
    assert _ids(store) == [f"u{n}" for n in range(6)]


def test_arrays_record_their_lineage(store, tmp_path):
    write_audio(tmp_path / "src" / "x.wav", tone(0.5))
    ingest_in_process(store, "folder", tmp_path / "src")
    row = store.read_table("utterances").to_pylist()[0]
    attrs = dict(store.arrays[row["array"]].attrs)
    assert attrs["reader"] == "folder" and attrs["audio_config"]["sample_rate"] == 16000
    assert row["sha256"] and row["source_sha256"]
