import math

import numpy as np
import pytest
import torch

from features import ModelLayout
from stores.errors import ConfigError, NotFoundError
from training.models import MODELS, OUTPUTS, build_model, model_class

# name -> (config kwargs, input batch, expected output shape); tiny so that the suite stays fast on a CPU
TINY = {
    "cnn1d": (dict(channels=(4, 8)), (2, 5, 513), (2, 5, 513)),
    "cnn2d": (dict(channels=(2, 2, 2, 2)), (2, 5, 513), (2, 5, 513)),
    "unet": (dict(n_bins=33, channels=(4, 8, 16)), (2, 7, 33), (2, 7, 33)),
    "crn": (dict(n_bins=65, channels=(4, 8, 8, 8, 8)), (2, 6, 65), (2, 6, 65)),
    "dccrn": (dict(channels=(4, 4, 4, 4, 4, 4), rnn_units=8), (2, 1600), (2, 1600)),
    "reassigned-inverter": (dict(channels=(4, 8), hidden=16), (2, 9, 3, 41), (2, 180)),
}
VARIANTS = [
    ("unet", dict(n_bins=33, channels=(4, 8, 16), in_channels=2), (2, 7, 2, 33), (2, 7, 2, 33)),
    ("unet", dict(n_bins=33, channels=(4, 8), output="mask"), (1, 3, 33), (1, 3, 33)),
    ("crn", dict(n_bins=65, channels=(4, 8, 8, 8, 8), in_channels=3), (2, 6, 3, 65), (2, 6, 65)),
    ("crn", dict(n_bins=65, channels=(4, 8, 8, 8, 8), output="mapping"), (1, 4, 65), (1, 4, 65)),
    ("cnn1d", dict(channels=(4,), output="mask"), (1, 3, 513), (1, 3, 513)),
    *[("dccrn", dict(channels=(4,) * 6, rnn_units=8, variant=v), (1, 800), (1, 800)) for v in "RCE"],
    ("reassigned-inverter", dict(channels=(4,), hidden=8, block_length=80), (1, 9, 3, 41), (1, 240)),
]
CASES = [(name, *TINY[name]) for name in sorted(TINY)] + VARIANTS


def make_input(shape):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    return x if len(shape) == 2 else x.abs()


def test_every_registered_model_has_a_test_case():
    assert MODELS.names() == ["cnn1d", "cnn2d", "crn", "dccrn", "reassigned-inverter", "unet"]
    assert set(MODELS.names()) == set(TINY)


@pytest.mark.parametrize(("name", "kwargs", "in_shape", "out_shape"), CASES)
def test_forward_shape_and_backward(name, kwargs, in_shape, out_shape):
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    assert model.name == name and model.output in OUTPUTS and type(model) is model_class(name)
    y = model(make_input(in_shape))
    assert tuple(y.shape) == out_shape and torch.isfinite(y).all()
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_outputs_follow_the_config():
    assert build_model("crn", n_bins=65, channels=(4,) * 5).output == "mask"
    assert build_model("crn", n_bins=65, channels=(4,) * 5, output="mapping").output == "mapping"
    dccrn = build_model("dccrn", channels=(4,) * 6, rnn_units=8)
    assert (dccrn.output, dccrn.own_reconstruction) == ("crm", "complex")
    inverter = build_model("reassigned-inverter", channels=(4,), hidden=8)
    assert (inverter.output, inverter.own_reconstruction, inverter.input_role) == (
        "waveform",
        "waveform",
        "target",
    )


def layout(domain, channels, bins=257):
    return ModelLayout(channels, bins, domain, {"n_fft": 512, "hop_length": 128, "win_length": 400})


def test_classes_declare_the_layouts_they_accept():
    assert {name: model_class(name).accepts for name in MODELS.names()} == {
        "cnn1d": (("magnitude", 0), ("log-power", 0)),
        "cnn2d": (("magnitude", 0), ("log-power", 0)),
        "crn": (("magnitude", None), ("log-power", 0)),
        "dccrn": (("complex", 2),),
        "reassigned-inverter": (("reassigned", 3),),
        "unet": (("magnitude", 0), ("complex", 2)),
    }
    model_class("crn").check_layout(layout("magnitude", 30))
    model_class("unet").check_layout(layout("complex", 2))
    with pytest.raises(
        ConfigError, match="Expected complex features of 2 channels for model 'dccrn'. Got magnitude"
    ):
        model_class("dccrn").check_layout(layout("magnitude", 0))
    with pytest.raises(ConfigError, match="Got reassigned features of 3 channels x 41 bins instead"):
        model_class("crn").check_layout(layout("reassigned", 3, 41))


def test_a_layout_sizes_the_config():
    assert model_class("crn").config_args(layout("magnitude", 30)) == {"n_bins": 257, "in_channels": 30}
    assert model_class("cnn1d").config_args(layout("log-power", 0, 64)) == {"n_bins": 64}
    assert model_class("dccrn").config_args(layout("complex", 2)) == {
        "n_fft": 512,
        "hop_length": 128,
        "win_length": 400,
    }


def test_unknown_model_names_are_refused():
    with pytest.raises(NotFoundError, match="Expected a model name"):
        model_class("nope")


def test_mask_outputs_lie_in_the_unit_interval_and_mappings_are_non_negative():
    x = make_input((1, 4, 65))
    mask = build_model("crn", n_bins=65, channels=(4,) * 5)(x)
    assert ((mask >= 0) & (mask <= 1)).all()
    assert (build_model("crn", n_bins=65, channels=(4,) * 5, output="mapping")(x) >= 0).all()


# ------------------------------------------------------------------------------ sizes against the sources


def test_crn_layers_for_257_bins():
    with torch.device("meta"):  # 52 M parameters: no need to allocate them
        model = build_model("crn")
    convs = [layer[0] for layer in model.encoder]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256]
    assert all(c.kernel_size == (2, 3) and c.stride == (1, 2) for c in convs)
    assert model.sizes == [257, 128, 63, 31, 15, 7]  # floor((F - 3) / 2) + 1 per layer: F' = 7
    assert model.lstm.hidden_size == model.lstm.input_size == 1792 and model.lstm.num_layers == 2
    deconvs = [layer[0] for layer in model.decoder]
    assert [d.in_channels for d in deconvs] == [512, 256, 128, 64, 32]  # skip concatenation doubles them
    assert [d.out_channels for d in deconvs] == [128, 64, 32, 16, 1]


def test_crn_matches_the_paper_for_161_bins():
    with torch.device("meta"):
        model = build_model("crn", n_bins=161)
    assert model.sizes[-1] == 4 and model.lstm.hidden_size == 1024
    assert model.num_parameters() == pytest.approx(17.58e6, abs=0.01e6)  # Tan & Wang 2018, Table 1


def test_crn_decoder_restores_the_encoder_sizes():
    model = build_model("crn", n_bins=161, channels=(2,) * 5).eval()
    assert tuple(model(make_input((1, 3, 161))).shape) == (1, 3, 161)


def test_dccrn_parameter_counts_match_the_paper():
    cl = build_model("dccrn")  # DCCRN-CL by default
    assert cl.config.channels == (32, 64, 128, 256, 256, 256)
    assert cl.num_parameters() == pytest.approx(3.7e6, rel=0.1)
    assert cl.hidden_bins == 4
    for variant in "RCE":
        with torch.device("meta"):
            model = build_model("dccrn", variant=variant)
        assert model.config.channels == (16, 32, 64, 128, 256, 256)
        assert model.rnn.hidden_size == 256 and model.rnn.num_layers == 2
        assert model.num_parameters() == pytest.approx(3.7e6, rel=0.1)
    convs = [layer[0].real for layer in cl.encoder]
    assert all(c.kernel_size == (5, 2) and c.stride == (2, 1) for c in convs)
    assert [c.out_channels * 2 for c in convs] == [32, 64, 128, 256, 256, 256]  # real + imaginary
    lstms = list(cl.rnn)
    assert [layer.real.hidden_size for layer in lstms] == [128, 128]
    assert lstms[-1].proj_real.out_features * 2 == 1024 and lstms[0].proj_real is None


def test_dccrn_stft_matches_the_complex_features():
    from features.config import ComplexConfig
    from features.stft import complex_stft

    rng = np.random.default_rng(0)
    wave = rng.standard_normal(3000).astype(np.float32) * 0.1
    model = build_model("dccrn", channels=(4,) * 6, rnn_units=8)
    spec = model.stft(torch.from_numpy(wave)[None])[0].numpy()
    reference = complex_stft(wave, ComplexConfig())
    assert spec.shape == reference.shape == (31, 2, 257)
    np.testing.assert_allclose(spec, reference, atol=2e-5 * np.abs(reference).max())
    back = model.istft(torch.from_numpy(spec)[None], len(wave))[0].numpy()
    np.testing.assert_allclose(back, wave, atol=1e-5)


def test_dccrn_e_mask_equals_the_polar_form():
    model = build_model("dccrn", channels=(4,) * 6, rnn_units=8, variant="E")
    torch.manual_seed(1)
    mask, spec = torch.randn(2, 2, 5, 3, dtype=torch.float64), torch.randn(2, 2, 5, 3, dtype=torch.float64)
    out = model.apply_mask(mask, spec)
    mag = torch.tanh(torch.hypot(mask[:, 0], mask[:, 1])) * torch.hypot(spec[:, 0], spec[:, 1])
    phase = torch.atan2(spec[:, 1], spec[:, 0]) + torch.atan2(mask[:, 1], mask[:, 0])
    torch.testing.assert_close(out, torch.stack([mag * torch.cos(phase), mag * torch.sin(phase)], 1))


# ---------------------------------------------------------------------------------------------- causality


def _first_frames_unchanged(run, x: torch.Tensor, t: int) -> None:
    changed = x.clone()
    changed[:, t + 1 :] += torch.rand_like(changed[:, t + 1 :]) + 1
    a, b = run(x), run(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_cnn2d_is_causal_with_a_20_frame_context():
    model = build_model("cnn2d", channels=(4, 4, 4, 4)).eval()
    x = make_input((1, 30, 513))
    _first_frames_unchanged(model, x, 12)
    # frame t sees t-19..t: changing frame t-20 leaves output t alone, changing t-19 does not
    out = model(x)
    far, near = x.clone(), x.clone()
    far[:, 5] += 3
    near[:, 6] += 3
    assert torch.equal(model(far)[:, 25], out[:, 25]) and not torch.equal(model(near)[:, 25], out[:, 25])
    assert tuple(model.contexts(x).shape) == (1, 30, 20, 513)
    assert torch.equal(model.contexts(x)[0, 0, :19], torch.zeros(19, 513))


def test_crn_and_dccrn_are_causal_along_frames():
    crn = build_model("crn", n_bins=65, channels=(4, 8, 8, 8, 8)).eval()
    _first_frames_unchanged(crn, make_input((1, 10, 65)), 4)
    dccrn = build_model("dccrn", channels=(4,) * 6, rnn_units=8).eval()
    _first_frames_unchanged(dccrn.forward_spec, torch.randn(1, 10, 2, 257), 4)
    cl = build_model("dccrn", channels=(4,) * 6, rnn_units=8, variant="E").eval()
    _first_frames_unchanged(cl.forward_spec, torch.randn(1, 10, 2, 257), 6)


def test_cnn1d_treats_frames_independently():
    model = build_model("cnn1d", channels=(4, 8)).eval()
    x = make_input((1, 4, 513))
    changed = x.clone()
    changed[:, 2] += 1
    a, b = model(x), model(changed)
    assert torch.equal(a[:, [0, 1, 3]], b[:, [0, 1, 3]]) and not torch.equal(a[:, 2], b[:, 2])


def test_unet_accepts_any_number_of_frames():
    model = build_model("unet", n_bins=33, channels=(4, 8, 16)).eval()
    for frames in (1, 8, 13):
        assert tuple(model(make_input((1, frames, 33))).shape) == (1, frames, 33)


def test_reassigned_inverter_ignores_where_the_chunk_starts():
    model = build_model("reassigned-inverter", channels=(4,), hidden=8).eval()
    x = make_input((1, 6, 3, 41))
    x[:, :, 0] = torch.arange(41) * 200.0 + torch.randn(6, 41)  # Hz near the bin centres
    x[:, :, 1] = 0.01 + 0.001 * torch.randn(6, 41)  # seconds
    later = x.clone()
    later[:, :, 1] += 3.0  # the same frames three seconds later in an utterance
    torch.testing.assert_close(model(x), model(later))
    assert model.sample_offset == 30 and model.output_length(6) == 120


def test_reassigned_inverter_tolerates_nan_planes():
    model = build_model("reassigned-inverter", channels=(4,), hidden=8).eval()
    x = make_input((1, 4, 3, 41))
    x[:, 1, :2, 5:9] = math.nan  # fill_nan False leaves NaN where the power is low
    assert torch.isfinite(model(x)).all()


# ------------------------------------------------------------------------------------------------ errors


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(NotFoundError, match="Expected a model name") as info:
        build_model("transformer")
    assert "cnn1d, cnn2d, crn, dccrn, reassigned-inverter, unet" in str(info.value)
    assert "Got 'transformer' instead" in str(info.value)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("crn", dict(n_bins=20)),
        ("crn", dict(hidden=3)),
        ("crn", dict(channels=())),
        ("crn", dict(in_channels=0)),
        ("crn", dict(output="waveform")),
        ("cnn1d", dict(channels=(4, -1))),
        ("cnn1d", dict(stride=True)),
        ("cnn2d", dict(kernel_size=(3,))),
        ("unet", dict(in_channels=3)),
        ("unet", dict(in_channels=2, output="mask")),
        ("unet", dict(dropout=1.0)),
        ("unet", dict(kernel_size=4)),
        ("dccrn", dict(variant="X")),
        ("dccrn", dict(channels=(3, 4, 4, 4, 4, 4))),
        ("dccrn", dict(n_fft=300)),
        ("dccrn", dict(win_length=600)),
        ("reassigned-inverter", dict(block_length=10)),
        ("reassigned-inverter", dict(normalize="yes")),
    ],
)
def test_bad_configs_raise_config_errors(name, kwargs):
    with pytest.raises(ConfigError, match="Expected"):
        build_model(name, **kwargs)


def test_bad_inputs_raise_config_errors():
    with pytest.raises(
        ConfigError, match=r"Expected a magnitude batch as a float tensor \(batch, frames, 65\)"
    ):
        build_model("crn", n_bins=65, channels=(4,) * 5)(torch.zeros(1, 3, 64))
    with pytest.raises(ConfigError, match="Expected a waveform batch"):
        build_model("dccrn", channels=(4,) * 6, rnn_units=8)(torch.zeros(1, 3, 64))
    with pytest.raises(ConfigError, match="Expected a reassigned batch"):
        build_model("reassigned-inverter", channels=(4,), hidden=8)(torch.zeros(1, 3, 2, 41))


@pytest.mark.parametrize("name", sorted(TINY))
def test_configs_round_trip_through_dicts(name):
    cls = MODELS.get(name).config_class
    config = cls(**TINY[name][0])
    assert cls.from_dict(config.to_dict()) == config
    assert cls.from_dict(config.to_dict()).config_hash() == config.config_hash()


def test_dccrn_default_channels_are_resolved_in_the_config():
    e = MODELS.get("dccrn").config_class(variant="E")
    assert e.to_dict()["channels"] == [16, 32, 64, 128, 256, 256] and e.masking_mode == "E"
    assert MODELS.get("dccrn").config_class().masking_mode == "E"
    assert MODELS.get("dccrn").config_class(variant="R").masking_mode == "R"


# ---------------------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("name", "kwargs", "shape"), [("crn", {}, (2, 50, 257)), ("dccrn", {}, (2, 16000))])
def test_forward_backward_on_cuda_under_bf16_autocast(name, kwargs, shape):
    torch.manual_seed(0)
    model = build_model(name, **kwargs).cuda()
    x = make_input(shape).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = model(x)
        loss = y.float().square().mean()
    loss.backward()
    assert tuple(y.shape) == shape and torch.isfinite(y.float()).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
