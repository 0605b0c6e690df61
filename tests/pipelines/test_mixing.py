import json

import numpy as np
import pytest

from pipelines.mixing import PairConfig
from pipelines.synthesis import snr_db
from pipelines.testing import deconvolution_lag, ingest_in_process, pairs_in_process, tone, write_audio
from stores import ConfigError, NotFoundError, open_store


@pytest.fixture(scope="module")
def real_store(tmp_path_factory, real_data):
    store = open_store(tmp_path_factory.mktemp("real") / "store")
    ingest_in_process(store, "folder", real_data / "clean", name="real", shard_size=8)
    return store


def _rows(store, pairset):
    return [r for r in store.read_table("pairs").to_pylist() if r["pairset"] == pairset]


def test_noisy_pairs_hit_their_snr_on_the_stored_signals(real_store, real_data):
    config = PairConfig(corpus="real", kind="noisy", noise="x", snr=(-5.0, 20.0), seed=1)
    pairs_in_process(real_store, "noisy", config, noise_folder=real_data / "noise", shard_size=8)
    rows = _rows(real_store, "noisy")
    assert len(rows) == 26
    for row in rows:
        clean = real_store.audio("noisy", row["utterance_id"], "clean")
        noisy = real_store.audio("noisy", row["utterance_id"], "input")
        measured = snr_db(clean, noisy)
        assert abs(measured - row["snr_db_target"]) < 0.05
        assert abs(measured - row["snr_db_achieved"]) < 1e-9
        assert -5 <= row["snr_db_target"] <= 20
        np.testing.assert_allclose(
            real_store.audio("noisy", row["utterance_id"], "noise"), noisy - clean, atol=1e-7
        )
        assert np.max(np.abs(noisy)) <= 0.99 + 1e-6
    assert len({r["noise_id"] for r in rows}) > 1  # noises are drawn per utterance
    targets = sorted(r["snr_db_target"] for r in rows)
    assert len(set(np.round(targets, 3))) == 26  # continuous draws, not integers


def test_copies_give_each_utterance_several_distinct_pairs(real_store, real_data):
    config = PairConfig(corpus="real", kind="noisy", noise="x", seed=3, copies=3)
    pairs_in_process(real_store, "copies", config, noise_folder=real_data / "noise", shard_size=10)
    rows = {r["utterance_id"]: r for r in _rows(real_store, "copies")}
    assert len(rows) == 3 * 26
    utterances = {r["utterance_id"]: r for r in real_store.read_table("utterances").to_pylist()}
    for uid, row in rows.items():
        source = uid.rsplit("+", 1)[0] if uid not in utterances else uid
        assert row["split"] == utterances[source]["split"]
        if uid != source:
            assert json.loads(row["params_json"])["utterance_id"] == source
    first = next(u for u in utterances if u in rows)
    draws = {rows[k]["snr_db_target"] for k in (first, f"{first}+1", f"{first}+2")}
    assert len(draws) == 3  # each copy has its own draws
    # the clean target is the same speech in every copy (up to the drawn level)
    a, b = (real_store.audio("copies", k, "clean") for k in (first, f"{first}+1"))
    assert abs(np.corrcoef(a, b)[0, 1] - 1) < 1e-6
    assert pairs_in_process(real_store, "copies", config, noise_folder=real_data / "noise") == []


def test_a_damaged_shard_of_copies_is_recomputed_identically(real_store, real_data):
    from pipelines.repair import repair
    from stores.verify import verify_store

    config = PairConfig(corpus="real", kind="noisy", noise="x", seed=4, copies=2)
    pairs_in_process(real_store, "copies2", config, noise_folder=real_data / "noise", shard_size=6)
    row = next(r for r in _rows(real_store, "copies2") if r["utterance_id"].endswith("+1"))
    before = real_store.audio("copies2", row["utterance_id"], "input")
    folder = f"{real_store.path}/arrays.zarr/{row['array']}/input"
    real_store.fs.rm(
        sorted(p for p in real_store.fs.find(folder) if p.rsplit("/", 1)[-1].startswith("c."))[0]
    )
    problems = verify_store(real_store)
    assert any(row["shard"] in p.what for p in problems)
    repair(real_store, problems)
    assert verify_store(real_store) == []
    np.testing.assert_array_equal(real_store.audio("copies2", row["utterance_id"], "input"), before)


def test_same_seed_gives_identical_pairs_whatever_the_sharding(tmp_path, real_data):
    stores = []
    for shard_size in (3, 50):
        store = open_store(tmp_path / f"s{shard_size}")
        ingest_in_process(
            store, "folder", real_data / "voicebank-demand/clean_testset_wav", name="vb", shard_size=4
        )
        config = PairConfig(corpus="vb", kind="reverb+noisy", noise="x", rir="x", seed=7)
        pairs_in_process(
            store,
            "p",
            config,
            noise_folder=real_data / "noise",
            rir_folder=real_data / "rir",
            shard_size=shard_size,
        )
        stores.append(store)
    a, b = stores
    assert len(a.committed_shards("pairs")) != len(b.committed_shards("pairs"))
    for row in _rows(a, "p"):
        for role in ("input", "clean", "noise"):
            np.testing.assert_array_equal(
                a.audio("p", row["utterance_id"], role), b.audio("p", row["utterance_id"], role)
            )
    strip = lambda r: {k: v for k, v in r.items() if k not in ("shard", "array", "offset", "created_at")}  # noqa: E731
    assert sorted(map(json.dumps, map(strip, _rows(a, "p")))) == sorted(
        map(json.dumps, map(strip, _rows(b, "p")))
    )


def test_reverb_with_measured_rirs_is_aligned_and_measured(real_store, real_data):
    config = PairConfig(corpus="real", kind="reverb", rir="x", seed=2)
    pairs_in_process(real_store, "reverb", config, rir_folder=real_data / "rir", shard_size=8)
    rows = _rows(real_store, "reverb")
    assert len({r["rir_id"] for r in rows}) == 4
    for row in rows[:10]:
        clean = real_store.audio("reverb", row["utterance_id"], "clean")
        wet = real_store.audio("reverb", row["utterance_id"], "input")
        assert abs(deconvolution_lag(wet.astype(np.float64), clean.astype(np.float64))) <= 16, row["rir_id"]
    t60 = {r["rir_id"]: r["t60_s"] for r in rows}
    assert all(0.2 < t < 1.5 for t in t60.values()), t60
    assert all(r["target"] == "dry" and r["snr_db_target"] is None for r in rows)


def test_reverb_plus_noise_takes_snr_against_reverberant_speech(real_store, real_data):
    config = PairConfig(corpus="real", kind="reverb+noisy", noise="x", rir="x", snr=(0.0, 10.0), seed=3)
    pairs_in_process(
        real_store, "rn", config, noise_folder=real_data / "noise", rir_folder=real_data / "rir", shard_size=8
    )
    for row in _rows(real_store, "rn"):
        params = json.loads(row["params_json"])
        assert abs(params["snr_db_vs_reverberant"] - row["snr_db_target"]) < 0.05
        assert (
            row["snr_db_achieved"] < row["snr_db_target"] + 0.05
        )  # against the dry target reverb counts too


def test_simulated_rooms_stay_in_the_t60_range(tmp_path):
    store = open_store(tmp_path / "s")
    for n in range(4):
        write_audio(tmp_path / "speech" / f"u{n}.wav", tone(1.0, seed=n))
    ingest_in_process(store, "folder", tmp_path / "speech", name="syn")
    config = PairConfig(corpus="syn", kind="reverb", rir="simulate", t60=(0.3, 0.6), seed=4)
    pairs_in_process(store, "sim", config)
    rows = _rows(store, "sim")
    assert len(rows) == 4
    assert all(0.75 * 0.3 <= r["t60_s"] <= 1.25 * 0.6 for r in rows), [r["t60_s"] for r in rows]
    assert all("room" in json.loads(r["params_json"]) for r in rows)


def test_silent_and_too_short_noise_is_rejected_not_used(tmp_path):
    store = open_store(tmp_path / "s")
    write_audio(tmp_path / "speech" / "u0.wav", tone(1.0))
    ingest_in_process(store, "folder", tmp_path / "speech", name="syn")
    write_audio(tmp_path / "noise" / "silent.wav", np.zeros(16000, dtype=np.float32))
    write_audio(tmp_path / "noise" / "short.wav", tone(0.1, seed=5))
    write_audio(
        tmp_path / "noise" / "good.wav",
        np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1,
    )
    pairs_in_process(
        store, "n", PairConfig(corpus="syn", kind="noisy", noise="x"), noise_folder=tmp_path / "noise"
    )
    reasons = {
        r["source_path"].rsplit("/", 1)[-1]: r["reason"] for r in store.read_table("rejects").to_pylist()
    }
    assert reasons == {"silent.wav": "silent", "short.wav": "too short"}
    (row,) = _rows(store, "n")
    assert row["noise_id"] == "good"  # 0.25 s of noise looped under a 1 s utterance
    assert (
        abs(snr_db(store.audio("n", "u0", "clean"), store.audio("n", "u0", "input")) - row["snr_db_target"])
        < 0.05
    )


def test_only_bad_noise_is_a_clear_error(tmp_path):
    store = open_store(tmp_path / "s")
    write_audio(tmp_path / "speech" / "u0.wav", tone(1.0))
    ingest_in_process(store, "folder", tmp_path / "speech", name="syn")
    write_audio(tmp_path / "noise" / "silent.wav", np.zeros(16000, dtype=np.float32))
    with pytest.raises(NotFoundError, match="usable recordings"):
        pairs_in_process(
            store, "n", PairConfig(corpus="syn", kind="noisy", noise="x"), noise_folder=tmp_path / "noise"
        )


def test_pairset_records_its_config_and_refuses_another(real_store, real_data):
    config = PairConfig(corpus="real", kind="noisy", noise="x", seed=9, splits=("test",))
    pairs_in_process(real_store, "rec", config, noise_folder=real_data / "noise")
    recorded = dict(real_store.arrays["pairs/rec"].attrs)["config"]
    assert recorded["seed"] == 9 and recorded["splits"] == ["test"]
    assert {r["split"] for r in _rows(real_store, "rec")} == {"test"}
    assert (
        pairs_in_process(real_store, "rec", config, noise_folder=real_data / "noise") == []
    )  # rerun: nothing
    with pytest.raises(ConfigError, match="recorded config"):
        pairs_in_process(
            real_store,
            "rec",
            PairConfig(corpus="real", kind="noisy", noise="x", seed=10),
            noise_folder=real_data / "noise",
        )


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"kind": "noisy"}, "--noise"),
        ({"kind": "reverb"}, "--rir"),
        ({"kind": "noisy", "noise": "n", "snr": (20.0, -5.0)}, "LOW <= HIGH"),
        ({"kind": "reverb", "rir": "simulate", "t60": (0.0, 0.5)}, "--t60"),
        ({"kind": "noisy", "noise": "n", "level": (-20.0, 3.0)}, "below 0 dBFS"),
        ({"kind": "echo"}, "--kind"),
        ({"kind": "noisy", "noise": "n", "splits": ("dev",)}, "split"),
        ({"kind": "noisy", "noise": "n", "copies": 0}, "--copies"),
    ],
)
def test_bad_pair_configs(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PairConfig(corpus="c", **kwargs)
