import json

import numpy as np
import pesq
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pystoi
import pytest

from features import feature_config
from pipelines.testing import build_demo_store, ingest_in_process, tone, write_audio
from training.enhance import Enhancer
from training.evaluate import evaluate_serially
from training.models import build_model
from training.trainer import TrainConfig, train


def evaluate_in_process(store, version, pairset, split="test", reconstruction="auto"):
    return evaluate_serially(store, Enhancer(store, version, reconstruction), pairset, split)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_data):
    store, ids = build_demo_store(tmp_path_factory.mktemp("eval"), {"mag": feature_config("magnitude")})
    base = {"feature_id": ids["mag"], "epochs": 1, "max_steps": 3, "batch_size": 4, "segment": 20}
    versions = [
        train(
            store,
            TrainConfig(model="crn", model_args={"channels": [4, 8, 8, 8, 8]}, seed=s, **base),
            device="cpu",
            progress=False,
        )
        for s in (1, 2)
    ]
    ingest_in_process(store, "voicebank-demand", real_data / "voicebank-demand")
    return store, versions


def test_noisy_rows_equal_direct_pesq_and_stoi_on_real_pairs(trained):
    store, versions = trained
    run = evaluate_in_process(store, versions[0], "voicebank-demand-given")
    rows = [r for r in store.read_table("metrics").to_pylist() if r["run_id"] == run]
    assert len(rows) == 22 and {r["model"] for r in rows} == {"noisy", "crn"}
    for row in [r for r in rows if r["model"] == "noisy"][:4]:
        clean = store.audio("voicebank-demand-given", row["utterance_id"], "clean")
        noisy = store.audio("voicebank-demand-given", row["utterance_id"], "input")
        assert row["pesq_wb"] == pesq.pesq(16000, clean, noisy, "wb")
        assert row["stoi"] == pystoi.stoi(clean, noisy, 16000)
        # pystoi's ESTOI differs in the last bit between identical calls
        assert row["estoi"] == pytest.approx(pystoi.stoi(clean, noisy, 16000, extended=True), rel=1e-12)
    enhanced = [r for r in rows if r["model"] == "crn"]
    assert all(r["model_version"] == versions[0] and np.isfinite(r["si_snr"]) for r in enhanced)
    assert {r["reconstruction"] for r in enhanced} == {"noisy-phase"}  # how the waveform was made
    assert {r["reconstruction"] for r in rows if r["model"] == "noisy"} == {None}


@pytest.mark.parametrize(
    "name,config,expected",
    [
        ("crn", {"channels": [4, 8, 8, 8, 8]}, None),
        ("unet", {"channels": [4, 8], "in_channels": 1}, None),
        ("unet", {"channels": [4, 8], "in_channels": 2}, None),  # the complex kind reconstructs it
        ("dccrn", {"channels": [4] * 6, "rnn_units": 8}, "complex"),
        ("reassigned-inverter", {}, "waveform"),
    ],
)
def test_models_that_make_their_own_output_record_it_as_their_reconstruction(name, config, expected):
    assert build_model(name, **config).own_reconstruction == expected


def test_two_evaluations_are_two_runs_and_both_stay_queryable(trained):
    store, versions = trained
    first = evaluate_in_process(store, versions[0], "noisy")
    second = evaluate_in_process(store, versions[1], "noisy")
    again = evaluate_in_process(store, versions[0], "noisy")
    assert len({first, second, again}) == 3
    # a query across two model versions from pyarrow alone
    metrics = ds.dataset(store.root + "/tables/metrics", format="parquet", partitioning="hive")
    table = metrics.to_table(
        filter=ds.field("model_version").isin(versions), columns=["model_version", "pesq_wb", "run_id"]
    )
    means = table.group_by("model_version").aggregate([("pesq_wb", "mean"), ("run_id", "count_distinct")])
    assert sorted(means["model_version"].to_pylist()) == sorted(versions)
    assert (
        dict(
            zip(means["model_version"].to_pylist(), means["run_id_count_distinct"].to_pylist(), strict=True)
        )[versions[0]]
        >= 2
    )
    predictions = store.read_table("predictions")
    assert set(pc.unique(predictions["run_id"]).to_pylist()) >= {first, second, again}


def test_pesq_refusal_is_a_null_with_a_reason(trained, tmp_path):
    from pipelines.mixing import PairConfig
    from pipelines.testing import pairs_in_process

    store, versions = trained
    write_audio(tmp_path / "short" / "tiny.wav", tone(0.3, seed=4))  # ingestible (0.3 s), PESQ needs speech
    write_audio(
        tmp_path / "noise" / "n.wav",
        np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.05,
    )
    ingest_in_process(
        store,
        "folder",
        tmp_path / "short",
        name="short",
        splits=__import__("pipelines.splits", fromlist=["SplitConfig"]).SplitConfig(0.0, 0.0, 1.0),
    )
    pairs_in_process(
        store,
        "short-noisy",
        PairConfig(corpus="short", kind="noisy", noise="x"),
        noise_folder=tmp_path / "noise",
    )
    run = evaluate_in_process(store, versions[0], "short-noisy")
    rows = [r for r in store.read_table("metrics").to_pylist() if r["run_id"] == run]
    assert rows and all(r["snr"] is not None for r in rows)
    refused = [r for r in rows if r["pesq_wb"] is None]
    for row in refused:
        assert "pesq_wb" in json.loads(row["notes"])


def test_a_logmel_model_is_scored_through_its_band_gains(tmp_path):
    store, ids = build_demo_store(tmp_path, {"lm": feature_config("logmel")}, speakers=3, utterances=3)
    config = TrainConfig(
        model="cnn1d", feature_id=ids["lm"], model_args={"channels": [8, 8]}, epochs=1, max_steps=3,
        batch_size=4, segment=20,
    )  # fmt: skip
    version = train(store, config, device="cpu", progress=False)
    enhancer = Enhancer(store, version)
    assert enhancer.model.output == "mask" and enhancer.reconstruction == "noisy-phase"
    run = evaluate_in_process(store, version, "noisy")
    rows = [
        r for r in store.read_table("metrics").to_pylist() if r["run_id"] == run and r["model"] == "cnn1d"
    ]
    assert rows and all(np.isfinite(r["snr"]) and np.isfinite(r["lsd"]) for r in rows)
    prediction = store.read_table("predictions").to_pylist()[0]
    assert prediction["num_frames"] > 0  # the enhanced magnitude (bins, not bands) is stored beside the wave
