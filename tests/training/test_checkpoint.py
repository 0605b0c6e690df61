import io

import fsspec
import pytest
import torch

from stores.errors import ConfigError, IntegrityError, NotFoundError
from training.checkpoint import load_checkpoint, load_model, save_checkpoint
from training.models import MODELS, build_model

TINY = {
    "cnn1d": (dict(channels=(4, 8)), (1, 3, 513)),
    "cnn2d": (dict(channels=(2, 2, 2, 2)), (1, 3, 513)),
    "unet": (dict(n_bins=33, channels=(4, 8), in_channels=2), (1, 5, 2, 33)),
    "crn": (dict(n_bins=65, channels=(4, 8, 8, 8, 8), in_channels=3), (1, 4, 3, 65)),
    "dccrn": (dict(channels=(4,) * 6, rnn_units=8), (1, 800)),
    "reassigned-inverter": (dict(channels=(4,), hidden=8), (1, 5, 3, 41)),
}


def trained(name):
    """A model whose weights and batch-norm statistics differ from a fresh build."""
    kwargs, shape = TINY[name]
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    x = torch.randn(*shape).abs() if len(shape) > 2 else torch.randn(*shape)
    model.train()
    model(x).square().mean().backward()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval(), x


def test_every_model_has_a_checkpoint_case():
    assert set(TINY) == set(MODELS.names())


@pytest.mark.parametrize("name", sorted(TINY))
def test_round_trip_gives_identical_outputs(name):
    model, x = trained(name)
    buf = io.BytesIO()
    save_checkpoint(buf, model, name=name, config=model.config, extra={"epochs": 3, "valid_loss": 0.25})
    buf.seek(0)
    loaded, extra = load_model(buf)
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    assert extra == {"epochs": 3, "valid_loss": 0.25}
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_checkpoint_layout_loads_with_weights_only():
    model, _ = trained("crn")
    buf = io.BytesIO()
    save_checkpoint(
        buf, model, name="crn", config=model.config, extra={"feature_id": "abc", "losses": [1.0, 0.5]}
    )
    payload = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    assert sorted(payload) == ["architecture", "config", "extra", "state_dict"]
    assert payload["architecture"] == "crn" and payload["config"] == model.config.to_dict()
    assert payload["extra"]["losses"] == [1.0, 0.5]
    assert set(payload["state_dict"]) == set(model.state_dict())


def test_fsspec_urls_and_file_objects():
    model, x = trained("cnn1d")
    save_checkpoint(
        "memory://specstore-test/ckpt/model.pt", model, extra={}
    )  # name and config from the model
    loaded, extra = load_model("memory://specstore-test/ckpt/model.pt")
    assert extra == {} and torch.equal(loaded(x), model(x))
    with fsspec.open("memory://specstore-test/ckpt/model.pt", "rb") as f:
        loaded, _ = load_model(f)
    assert torch.equal(loaded(x), model(x))
    fsspec.filesystem("memory").rm("/specstore-test", recursive=True)


def test_local_paths(tmp_path):
    model, x = trained("reassigned-inverter")
    save_checkpoint(
        tmp_path / "inv.pt", model, name="reassigned-inverter", config=model.config, extra={"n": 1}
    )
    loaded, extra = load_model(str(tmp_path / "inv.pt"))
    assert extra == {"n": 1} and torch.equal(loaded(x), model(x))


def test_unknown_architecture_raises_not_found():
    model, _ = trained("cnn1d")
    payload = {"architecture": "wavenet", "config": {}, "state_dict": model.state_dict(), "extra": {}}
    buf = io.BytesIO()
    torch.save(payload, buf)
    buf.seek(0)
    with pytest.raises(NotFoundError, match="Expected a model name, one of cnn1d") as info:
        load_model(buf)
    assert "Got 'wavenet' instead" in str(info.value)


def test_bad_checkpoints_raise():
    model, _ = trained("cnn1d")
    buf = io.BytesIO()
    torch.save({"architecture": "cnn1d", "config": {"n_bins": 0}, "state_dict": {}, "extra": {}}, buf)
    with pytest.raises(ConfigError, match="Expected n_bins"):
        load_model(io.BytesIO(buf.getvalue()))
    buf = io.BytesIO()
    torch.save({"architecture": "cnn1d", "config": {}, "state_dict": {}, "extra": {}}, buf)
    with pytest.raises(IntegrityError, match="Expected weights matching"):
        load_model(io.BytesIO(buf.getvalue()))
    buf = io.BytesIO()
    torch.save({"weights": 1}, buf)
    with pytest.raises(IntegrityError, match="Expected a checkpoint with keys"):
        load_checkpoint(io.BytesIO(buf.getvalue()))
    with pytest.raises(IntegrityError, match="Expected a specstore model checkpoint"):
        load_model(io.BytesIO(b"not a checkpoint"))


def test_save_rejects_what_weights_only_loading_could_not_read():
    model, _ = trained("cnn1d")
    with pytest.raises(ConfigError, match="Expected plain data in extra"):
        save_checkpoint(io.BytesIO(), model, extra={"when": object()})
    with pytest.raises(ConfigError, match="Expected a CRN"):
        save_checkpoint(io.BytesIO(), model, name="crn")
    with pytest.raises(NotFoundError, match="Expected a model name"):
        save_checkpoint(io.BytesIO(), model, name="nope")
    other = MODELS.get("cnn2d").config_class()
    with pytest.raises(ConfigError, match="Expected a CNN1DConfig"):
        save_checkpoint(io.BytesIO(), model, config=other)
