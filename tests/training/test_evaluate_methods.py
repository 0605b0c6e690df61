"""Non-learned methods evaluated like model versions: `specstore evaluate --method NAME --features ID`."""

import json

import numpy as np
import pyarrow.dataset as ds
import pytest

from cli import main
from features import feature_config, invert_reassigned, reassigned_spectrogram
from pipelines.testing import build_demo_store
from stores.errors import ConfigError, NotFoundError
from training.enhance import METHODS, MethodEnhancer, make_enhancer
from training.evaluate import enhance_shard, metrics_shard, new_run, plan_evaluation


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    kinds = {"re": feature_config("reassigned"), "mag": feature_config("magnitude")}
    return build_demo_store(tmp_path_factory.mktemp("methods"), kinds, speakers=3, utterances=2)


def rows_of(store, table, run_id):
    return store.read_table(table, filter=ds.field("run_id") == run_id).to_pylist()


def test_registry_lists_the_methods():
    assert METHODS.names() == ["reassigned-pghi", "zero-phase"]
    with pytest.raises(
        NotFoundError, match="Expected a non-learned method name, one of reassigned-pghi, zero-phase"
    ):
        METHODS.get("griffin-lim-clean")


def test_pghi_is_stored_like_a_model(demo):
    """Predictions and metrics rows as a model's: model = the method, model_version = method@features; the
    stored waveform is the clean signal's triple inverted."""
    store, ids = demo
    enhancer = make_enhancer(store, method="reassigned-pghi", feature_id=ids["re"])
    run = new_run(enhancer, "noisy", "test")
    assert (run.version, run.architecture, run.reconstruction) == (
        f"reassigned-pghi@{ids['re']}",
        "reassigned-pghi",
        "pghi",
    )
    for shard in plan_evaluation(store, "noisy", "test"):
        metrics_shard(store, run, shard, enhance_shard(store, run, enhancer, shard))
    predictions = rows_of(store, "predictions", run.run_id)
    metrics = rows_of(store, "metrics", run.run_id)
    assert predictions and len(metrics) == 2 * len(predictions)
    assert {r["model"] for r in metrics} == {"noisy", "reassigned-pghi"}
    assert {r["model_version"] for r in metrics if r["model"] != "noisy"} == {run.version}
    assert {(r["model_version"], r["reconstruction"], r["num_frames"]) for r in predictions} == {
        (run.version, "pghi", 0)
    }
    row = predictions[0]
    clean = store.audio("noisy", row["utterance_id"], "clean")
    stored = np.asarray(
        store.arrays[f"{row['array']}/wave"][row["offset"] : row["offset"] + row["num_samples"]]
    )
    expected = invert_reassigned(
        reassigned_spectrogram(clean, enhancer.config), enhancer.config, length=clean.size
    )
    assert stored.shape == clean.shape and np.array_equal(stored, expected)
    assert all(np.isfinite(r["lsd"]) and r["lsd"] >= 0 for r in metrics)


def test_cli_evaluates_both_methods_and_results_compare_them(demo, prefect_api, capsys):
    store, ids = demo
    for method in ("reassigned-pghi", "zero-phase"):
        argv = ["evaluate", "--store", str(store.root), "--method", method, "--features", ids["re"]]
        assert main([*argv, "--pairs", "noisy", "--split", "test", "--workers", "1", "--quiet"]) == 0
        out = capsys.readouterr().out
        assert f"model {method}@{ids['re']} on noisy/test" in out and "lsd_mean" in out
    assert main(["results", "--store", str(store.root), "--group-by", "model", "--format", "json"]) == 0
    summary = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"noisy", "reassigned-pghi", "zero-phase"} <= set(summary)
    # both rebuild the clean signal from its own magnitudes; the rebuilt phase is what tells them apart
    assert summary["reassigned-pghi"]["lsd_mean"] < summary["zero-phase"]["lsd_mean"] - 3.0
    assert summary["reassigned-pghi"]["stoi_mean"] > summary["zero-phase"]["stoi_mean"] + 0.1


def test_method_enhancer_checks_its_feature_set(demo):
    store, ids = demo
    with pytest.raises(ConfigError, match="Expected a reassigned feature set for method 'zero-phase'"):
        MethodEnhancer(store, "zero-phase", ids["mag"])


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--method", "bogus", "--features", "{re}"], "Expected a non-learned method name, one of"),
        (["--method", "reassigned-pghi"], "Expected a feature set (--features) for method"),
        (["--method", "reassigned-pghi", "--features", "missing"], "Expected a committed feature set"),
        (["--method", "reassigned-pghi", "--features", "{mag}"], "Expected a reassigned feature set"),
        (["--method", "zero-phase", "--features", "{re}", "--reconstruction", "griffin-lim"], "own"),
        (["--model-version", "crn-x", "--features", "{re}"], "Expected no feature set with a model version"),
        (["--model-version", "crn-x"], "Expected a trained model version"),
    ],
)
def test_bad_targets_are_one_line_before_any_server(demo, extra, message, capsys):
    store, ids = demo
    extra = [a.format(**ids) for a in extra]
    assert main(["evaluate", "--store", str(store.root), "--pairs", "noisy", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_model_version_and_method_are_mutually_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--store", str(tmp_path), "--pairs", "p", "--model-version", "v", "--method", "m"])
    assert exit_info.value.code == 2 and "not allowed with" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--store", str(tmp_path), "--pairs", "p"])
    assert "one of the arguments --model-version --method is required" in capsys.readouterr().err
