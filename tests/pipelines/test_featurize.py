import json

import librosa
import numpy as np
import pytest

from features import expand_decomposed, feature_config, oracle_irm
from pipelines.featurize import SignalSet, feature_shard, finalize_features, plan_features
from pipelines.testing import features_in_process, ingest_in_process
from stores import ConfigError, NotFoundError, open_store


@pytest.fixture(scope="module")
def vb_store(tmp_path_factory, real_data):
    store = open_store(tmp_path_factory.mktemp("vb") / "store")
    ingest_in_process(store, "voicebank-demand", real_data / "voicebank-demand", shard_size=4)
    return store


def _rel_err(a, b):
    finite = np.isfinite(b)
    return np.max(np.abs(a[finite] - b[finite])) / np.max(np.abs(b[finite]))


def test_magnitude_and_complex_equal_librosa_on_real_pairs(vb_store):
    for kind, n_fft, hop, win in (
        ("magnitude", 512, 256, 512),
        ("magnitude", 1024, 512, 1024),
        ("complex", 512, 100, 400),
    ):
        fid = features_in_process(
            vb_store,
            "voicebank-demand-given",
            feature_config(kind, n_fft=n_fft, hop_length=hop, win_length=win),
        )
        fs = vb_store.features(fid)
        assert len(fs.utterances()) == 11
        for uid in fs.utterances()[:4]:
            for role, signal in (("input", "input"), ("target", "clean")):
                wave = vb_store.audio("voicebank-demand-given", uid, signal)
                ref = librosa.stft(wave, n_fft=n_fft, hop_length=hop, win_length=win).T
                got = fs.read(uid, role)
                if kind == "magnitude":
                    assert _rel_err(got, np.abs(ref)) <= 1e-4
                else:
                    assert got.shape == (ref.shape[0], 2, ref.shape[1])
                    assert _rel_err(got[:, 0], ref.real) <= 1e-4 and _rel_err(got[:, 1], ref.imag) <= 1e-4


@pytest.mark.parametrize("fill_nan", [True, False])
def test_reassigned_equals_librosa_with_identical_nans(vb_store, fill_nan):
    config = feature_config("reassigned", fill_nan=fill_nan)
    fs = vb_store.features(features_in_process(vb_store, "voicebank-demand-given", config))
    for uid in fs.utterances()[:3]:
        wave = vb_store.audio("voicebank-demand-given", uid, "input")
        freqs, times, mags = librosa.reassigned_spectrogram(
            y=wave,
            sr=16000,
            n_fft=80,
            hop_length=20,
            win_length=80,
            window="hamming",
            center=False,
            fill_nan=fill_nan,
            clip=False,
        )
        got = fs.read(uid, "input")
        for plane, ref in enumerate((freqs, times, mags)):
            np.testing.assert_array_equal(np.isnan(got[:, plane]), np.isnan(ref.T))
            assert _rel_err(got[:, plane], ref.T) <= 1e-4


def test_decomposed_is_stored_compactly_and_expands_exactly(vb_store):
    config = feature_config("decomposed", n=30)
    fs = vb_store.features(features_in_process(vb_store, "voicebank-demand-given", config))
    uid = fs.utterances()[0]
    noisy, clean = (vb_store.audio("voicebank-demand-given", uid, r) for r in ("input", "clean"))
    stft = lambda x: np.abs(librosa.stft(x, n_fft=512, hop_length=256)).T  # noqa: E731
    mag, mask = stft(noisy), oracle_irm(stft(clean), stft(noisy - clean))
    dense = fs.read(uid, "input")
    assert dense.shape == (mag.shape[0], 30, 257)
    expected = np.stack([mag] + [(mask > i / 30) * mag for i in range(1, 30)], axis=1)
    assert _rel_err(dense, expected) <= 1e-4
    np.testing.assert_array_equal(
        dense, expand_decomposed(fs.read_stored(uid, "input"), fs.read_stored(uid, "levels"), 30)
    )
    stored = fs.read_stored(uid, "input").nbytes + fs.read_stored(uid, "levels").nbytes
    assert dense.nbytes / stored > 20  # 30 float32 planes vs one float32 plane + one uint8 plane


def test_second_run_finds_the_set_and_computes_nothing(vb_store):
    config = feature_config("magnitude")
    fid = features_in_process(vb_store, "voicebank-demand-given", config)
    plan = plan_features(vb_store, SignalSet("voicebank-demand-given"), config)
    assert plan.complete and plan.shards == [] and plan.spec.feature_id == fid
    other = plan_features(
        vb_store, SignalSet("voicebank-demand-given"), feature_config("magnitude", hop_length=128)
    )
    assert other.spec.feature_id != fid and not other.complete
    assert (
        plan_features(vb_store, SignalSet("voicebank-demand-given"), config, codec="zstd").spec.feature_id
        != fid
    )


def test_statistics_are_over_the_training_split(tmp_path, real_data):
    store = open_store(tmp_path / "s")
    ingest_in_process(store, "voicebank-demand", real_data / "voicebank-demand", shard_size=4)
    # VoiceBank's test folder is all `test`: a set without training pairs has no statistics
    fs = store.features(features_in_process(store, "voicebank-demand-given", feature_config("magnitude")))
    with pytest.raises(NotFoundError, match="no training utterances"):
        fs.stats("input")
    # relabel two pairs as training pairs for this check (a new fingerprint, so a new feature set)
    rows = store.read_table("pairs").to_pylist()
    for row in rows:
        row["split"] = "train" if row["utterance_id"] in ("p232_002", "p232_003") else "test"
    for shard in {r["shard"] for r in rows}:
        store.write_part("pairs", f"part-{shard}", [r for r in rows if r["shard"] == shard])
    fs = store.features(features_in_process(store, "voicebank-demand-given", feature_config("magnitude")))
    frames = np.concatenate([fs.read(u, "input") for u in ("p232_002", "p232_003")]).astype(np.float64)
    mean, std = fs.stats("input")
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-4, atol=1e-7)


def test_killed_shard_is_finished_by_a_rerun(vb_store):
    config = feature_config("magnitude", n_fft=256, hop_length=64)
    plan = plan_features(vb_store, SignalSet("voicebank-demand-given"), config)
    feature_shard(vb_store, plan.spec, plan.shards[0])  # one shard done, then the run dies
    with pytest.raises(NotFoundError):
        vb_store.features(plan.spec.feature_id)  # not committed: invisible
    rerun = plan_features(vb_store, SignalSet("voicebank-demand-given"), config)
    assert [s.shard_id for s in rerun.shards] == [s.shard_id for s in plan.shards[1:]]
    for shard in rerun.shards:
        feature_shard(vb_store, rerun.spec, shard)
    finalize_features(vb_store, rerun.spec)
    assert len(vb_store.features(plan.spec.feature_id).utterances()) == 11


def test_float16_and_codec_are_recorded(vb_store):
    fid = features_in_process(
        vb_store, "voicebank-demand-given", feature_config("magnitude", dtype="float16"), codec="zstd"
    )
    fs = vb_store.features(fid)
    assert fs.read(fs.utterances()[0]).dtype == np.float16
    spec = json.loads(fs.row["config_json"])
    assert spec["codec"] == "zstd" and spec["feature"]["dtype"] == "float16"
    attrs = dict(vb_store.arrays[f"{fs.index[fs.utterances()[0]]['array']}/input"].attrs)
    assert attrs["pairset"] == "voicebank-demand-given" and attrs["codec"] == "zstd"


def test_each_kind_stores_with_its_default_codec_unless_one_is_named(vb_store):
    def plan(kind, codec=None):
        return plan_features(vb_store, SignalSet("voicebank-demand-given"), feature_config(kind), codec).spec

    assert plan("magnitude").codec == "lz4" and plan("reassigned").codec == "lz4"
    assert plan("complex").codec == "none"  # raw: LZ4 saves ~9 % of a complex plane's bytes
    assert plan("complex", "none").feature_id == plan("complex").feature_id  # naming the default: same set
    assert plan("complex", "lz4").codec == "lz4"
    assert plan("complex", "lz4").feature_id != plan("complex").feature_id
    with pytest.raises(ConfigError, match="--codec"):
        plan("complex", "gzip")


def test_chunks_are_about_a_megabyte_along_time(vb_store):
    fs = vb_store.features(
        features_in_process(vb_store, "voicebank-demand-given", feature_config("magnitude"))
    )
    array = vb_store.arrays[f"{fs.index[fs.utterances()[0]]['array']}/input"]
    chunk_bytes = array.chunks[0] * 257 * 4
    assert chunk_bytes >= 2**20 or array.chunks[0] == array.shape[0]


def test_unknown_feature_set_and_pairset(vb_store):
    with pytest.raises(NotFoundError, match="Expected a committed feature set"):
        vb_store.features("magnitude-000000000000")
    with pytest.raises(NotFoundError, match="pair set"):
        plan_features(vb_store, SignalSet("nope"), feature_config("magnitude"))


@pytest.mark.parametrize("kind, overrides", [("magnitude", {"hop_length": 64}), ("decomposed", {})])
def test_batches_of_a_shard_store_what_the_whole_shard_stores(
    tmp_path, real_data, monkeypatch, kind, overrides
):
    import pipelines.featurize as featurize

    def feature_files(batch_samples, name):
        monkeypatch.setattr(featurize, "BATCH_SAMPLES", batch_samples)
        store = open_store(tmp_path / name)
        ingest_in_process(store, "voicebank-demand", real_data / "voicebank-demand", shard_size=11)
        fid = features_in_process(store, "voicebank-demand-given", feature_config(kind, **overrides))
        folder = tmp_path / name / "arrays.zarr" / "features" / fid
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    whole, batched = feature_files(1 << 30, "whole"), feature_files(20_000, "batched")  # one pair a batch
    inputs = [json.loads(whole[name]) for name in whole if name.endswith("/input/zarr.json")]
    assert [doc["codecs"][0]["name"] for doc in inputs] == ["sharding_indexed"]  # one shard of several chunks
    assert batched == whole  # byte for byte, statistics and zarr.json included


@pytest.mark.parametrize("kind", ["magnitude", "complex", "decomposed"])
def test_features_beyond_the_store_dtype_fail_naming_the_pair(real_data, kind):
    import soundfile as sf

    from features.stft import n_frames
    from pipelines.featurize import FeatureSpec, batch_features, stored_shapes
    from stores.errors import FeatureRangeError

    clean, _ = sf.read(real_data / "voicebank-demand" / "clean_testset_wav" / "p232_002.wav", dtype="float32")
    noisy, _ = sf.read(real_data / "voicebank-demand" / "noisy_testset_wav" / "p232_002.wav", dtype="float32")
    spec = FeatureSpec("test", feature_config(kind, dtype="float16"), "none", SignalSet("pairs"), "-")
    loud = noisy * np.float32(3000 / np.abs(noisy).max())  # far beyond float16 once transformed
    signals = [
        ({"utterance_id": "p232_002", "split": "train"}, {"input": noisy, "clean": clean, "noise": noisy - clean}),
        ({"utterance_id": "p232_002-loud", "split": "test"}, {"input": loud, "clean": clean, "noise": loud - clean}),
    ]  # fmt: skip
    counts = [n_frames(clean.size, spec.config)] * 2
    arrays = {n: np.zeros((sum(counts), *a.tail), a.dtype) for n, a in stored_shapes(spec).items()}
    with pytest.raises(FeatureRangeError, match=r"p232_002-loud \(input\): Expected .* fit float16"):
        batch_features(signals, counts, spec, None, arrays)


def test_features_of_a_corpus_are_found_again_and_read_as_clean(tmp_path, real_data):
    store = open_store(tmp_path / "s")
    ingest_in_process(store, "voicebank-demand", real_data / "voicebank-demand", shard_size=4)
    config = feature_config("logmel")
    fid = features_in_process(store, None, config, corpus="voicebank-demand")
    plan = plan_features(store, SignalSet("voicebank-demand", corpus=True), config)
    assert plan.complete and plan.spec.feature_id == fid and not plan.shards  # found, not recomputed
    pairs = features_in_process(store, "voicebank-demand-given", config)
    assert pairs != fid  # the same config over the given pair set of the same name is another set
    fs = store.features(fid)
    assert fs.roles == ("clean",) and fs.corpus == "voicebank-demand" and fs.pairset is None
    utt = fs.utterances()[0]
    np.testing.assert_array_equal(fs.read(utt), fs.read(utt, "clean"))
    np.testing.assert_array_equal(fs.read(utt), store.features(pairs).read(utt, "target"))
    with pytest.raises(ConfigError, match="role"):
        fs.read(utt, "input")
    with pytest.raises(ConfigError, match="Expected a pair set for decomposed features"):
        features_in_process(store, None, feature_config("decomposed"), corpus="voicebank-demand")
