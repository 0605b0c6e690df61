import pytest

from features import feature_config
from pipelines.testing import build_demo_store, ingest_in_process
from training.enhance import Enhancer
from training.evaluate import EvalRun, enhance_shard, metrics_shard, new_run_id, plan_evaluation
from training.trainer import TrainConfig, train

TINY = {"crn": {"channels": [4, 8, 8, 8, 8]}, "dccrn": {"channels": [4] * 6, "rnn_units": 8}}


@pytest.fixture(scope="session")
def enhance_models(tmp_path_factory, real_data):
    """(store, {"crn": version, "dccrn": version}): tiny models trained briefly on the demo corpus, and the
    real VoiceBank-DEMAND pairs ingested (pair set `voicebank-demand-given`)."""
    kinds = {"crn": feature_config("magnitude"), "dccrn": feature_config("complex")}
    store, ids = build_demo_store(tmp_path_factory.mktemp("enhance-models"), kinds)
    versions = {}
    for name, args in TINY.items():
        config = TrainConfig(
            model=name, feature_id=ids[name], model_args=args, epochs=2, max_steps=3, batch_size=4, segment=20,
            seed=1,
        )  # fmt: skip
        versions[name] = train(store, config, device="cpu", progress=False)
    ingest_in_process(store, "voicebank-demand", real_data / "voicebank-demand")
    return store, versions


@pytest.fixture(scope="session")
def tiny_models():
    """{architecture: model args} of the tiny models the enhancement tests train."""
    return TINY


@pytest.fixture(scope="session")
def evaluate_real():
    """evaluate_real(store, version) -> run id: an evaluation run on the real pairs, in this process."""
    return _evaluate_real


def _evaluate_real(store, version: str) -> str:
    """An evaluation run of `version` on the real pairs, in this process; -> its run id."""
    enhancer = Enhancer(store, version)
    run = EvalRun(
        new_run_id(), version, enhancer.name, "voicebank-demand-given", "test", enhancer.reconstruction
    )
    for shard in plan_evaluation(store, run.pairset, run.split):
        metrics_shard(store, run, shard, enhance_shard(store, run, enhancer, shard))
    return run.run_id
