import io

import numpy as np
import pytest
import torch

from features import feature_config
from pipelines.testing import build_demo_store
from stores import ConfigError, NotFoundError
from training.checkpoint import load_model
from training.stream import StreamConfig, make_loader
from training.trainer import TrainConfig, Trainer, train

TINY = {
    "crn": ("mag", {"channels": [4, 8, 8, 8, 8]}),
    "crn-decomposed": ("dec", {"channels": [4, 8, 8, 8, 8]}),
    "unet": ("mag", {"channels": [4, 8]}),
    "dccrn": ("cx", {"channels": [4, 8, 8, 8, 8, 8], "rnn_units": 16}),
    "cnn1d": ("m513", {"channels": [8, 8]}),
    "cnn2d": ("m513", {"channels": [8, 8]}),
    "reassigned-inverter": ("re", {"channels": [8, 8], "hidden": 32}),
    # log-mel bands: the kind's band-gain target makes them mask models whatever their default output
    "cnn1d-logmel": ("lm", {"channels": [8, 8]}),
    "crn-logmel": ("lm", {"channels": [4, 8, 8, 8, 8]}),
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    kinds = {
        "mag": feature_config("magnitude"),
        "cx": feature_config("complex"),
        "dec": feature_config("decomposed", n=8),
        "re": feature_config("reassigned"),
        "m513": feature_config("magnitude", n_fft=1024, hop_length=512),
        "lm": feature_config("logmel"),
    }
    return build_demo_store(tmp_path_factory.mktemp("demo"), kinds, speakers=3, utterances=4)


def _config(ids, name, **overrides):
    fid, args = TINY[name]
    base = {
        "model": name.removesuffix("-decomposed").removesuffix("-logmel"),
        "feature_id": ids[fid],
        "model_args": args,
        "epochs": 4,
        "max_steps": 4,
        "batch_size": 4,
        "segment": 20,
        "lr": 3e-3,
    }
    return TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize("name", sorted(TINY))
def test_each_model_trains_and_its_loss_falls(demo, name):
    store, ids = demo
    version = train(store, _config(ids, name), device="cpu", progress=False)
    curve = [r for r in store.read_table("curves").to_pylist() if r["model_version"] == version]
    losses = [r["train_loss"] for r in sorted(curve, key=lambda r: r["epoch"])]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    (row,) = [r for r in store.read_table("models").to_pylist() if r["model_version"] == version]
    assert row["feature_id"] == ids[TINY[name][0]] and row["epochs"] == 4 and row["pairset"] == "noisy"
    assert store.fs.exists(f"{store.path}/checkpoints/{version}/curves.png")


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(demo):
    store, ids = demo
    config = _config(ids, "crn", seed=5, epochs=3)
    whole = Trainer(store, config, "cpu", progress=False)
    whole.folder += "-uninterrupted"
    whole.fit()
    first = Trainer(store, config, "cpu", progress=False)  # a run that dies after its second epoch
    first.config = _config(ids, "crn", seed=5, epochs=2)
    Trainer.fit(first)
    resumed = Trainer(store, config, "cpu", progress=False)
    assert resumed.resume() and resumed.state.epoch == 2
    resumed.fit()
    for (name, a), b in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_interrupted_run_needs_resume(demo):
    store, ids = demo
    config = _config(ids, "unet", seed=9, epochs=3)
    partial = Trainer(store, config, "cpu", progress=False)
    partial.config = _config(ids, "unet", seed=9, epochs=1)
    Trainer.fit(partial)
    with pytest.raises(ConfigError, match="--resume"):
        train(store, config, device="cpu", progress=False)
    version = train(store, config, device="cpu", resume=True, progress=False)
    assert [r["epochs"] for r in store.read_table("models").to_pylist() if r["model_version"] == version] == [
        3
    ]


def test_checkpoint_rebuilds_the_model_without_training_code(demo):
    store, ids = demo
    version = train(store, _config(ids, "crn", seed=11, epochs=1), device="cpu", progress=False)
    path = f"{store.path}/checkpoints/{version}/epoch-0001.pt"
    with store.fs.open(path, "rb") as handle:
        model, extra = load_model(io.BytesIO(handle.read()))
    trainer = Trainer(store, _config(ids, "crn", seed=11, epochs=1), "cpu", progress=False)
    trainer.resume()
    x = torch.rand(2, 30, 257)
    torch.testing.assert_close(model(x), trainer.model.eval()(x), rtol=0, atol=0)
    assert extra["feature_id"] == ids["mag"]


def test_wrong_features_for_a_model(demo):
    store, ids = demo
    with pytest.raises(ConfigError, match="Expected complex features of 2 channels for model 'dccrn'"):
        Trainer(store, TrainConfig(model="dccrn", feature_id=ids["mag"]), "cpu")
    with pytest.raises(NotFoundError, match="model"):
        Trainer(store, TrainConfig(model="transformer", feature_id=ids["mag"]), "cpu")


def test_stream_splits_work_across_workers_without_overlap(demo):
    store, ids = demo
    config = StreamConfig(feature_id=ids["mag"], split="train", segment=0)
    alone = sorted(u for b in make_loader(store.root, config, 1) for u in b["utterance_id"])
    split = sorted(u for b in make_loader(store.root, config, 1, num_workers=2) for u in b["utterance_id"])
    assert alone == split and len(alone) == len(set(alone)) > 0


def test_stream_is_deterministic_for_a_seed(demo):
    store, ids = demo
    config = StreamConfig(feature_id=ids["mag"], segment=20, seed=3)
    first = [b["input"].sum().item() for b in make_loader(store.root, config, 4)]
    again = [b["input"].sum().item() for b in make_loader(store.root, config, 4)]
    other = [b["input"].sum().item() for b in make_loader(store.root, config, 4, epoch=1)]
    assert first == again and first != other


def test_first_stage_masks_feed_a_model_decomposition(demo):
    from features import expand_decomposed
    from pipelines.testing import features_in_process
    from training.inference import load_version, mask_model_for, predict_mask

    def with_model_masks(config):  # what the features flow does: the mask model handed to the shards
        return features_in_process(store, "noisy", config, mask=mask_model_for(store, config))

    store, ids = demo
    version = train(store, _config(ids, "crn", seed=21, epochs=1), device="cpu", progress=False)
    fid = with_model_masks(feature_config("decomposed", n=8, mask=f"model:{version}"))
    fs = store.features(fid)
    uid = fs.utterances()[0]
    model, normalizer, _ = load_version(store, version)
    magnitude = fs.read_stored(uid, "input")
    mask = predict_mask(model, normalizer, magnitude)
    expected = np.stack([magnitude] + [(mask > i / 8) * magnitude for i in range(1, 8)], axis=1)
    np.testing.assert_array_equal(
        fs.read(uid), expand_decomposed(magnitude, fs.read_stored(uid, "levels"), 8)
    )
    np.testing.assert_allclose(fs.read(uid), expected, rtol=0, atol=0)
    oracle = store.features(ids["dec"])
    assert not np.array_equal(fs.read_stored(uid, "levels"), oracle.read_stored(uid, "levels"))
    with pytest.raises(ConfigError, match="STFT"):
        with_model_masks(
            feature_config("decomposed", n=8, n_fft=256, hop_length=128, mask=f"model:{version}")
        )
    with pytest.raises(NotFoundError, match="trained model version"):
        with_model_masks(feature_config("decomposed", n=8, mask="model:nope"))
    with pytest.raises(ConfigError, match="Expected the mask model"):  # a shard without its model
        features_in_process(store, "noisy", feature_config("decomposed", n=6, mask=f"model:{version}"))
