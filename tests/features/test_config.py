import dataclasses
import json

import numpy as np
import pytest

import features as F
from stores.errors import ConfigError, NotFoundError

CONFIG_CLASSES = [F.MagnitudeConfig, F.ComplexConfig, F.ReassignedConfig, F.DecomposedConfig]


def test_registry_lists_the_kinds():
    assert F.FEATURES.names() == ["complex", "decomposed", "logmel", "magnitude", "reassigned"]
    for name in F.FEATURES.names():
        kind = F.get_kind(name)
        assert kind.name == name and kind.config_cls().kind == name and callable(kind.compute)


def test_unknown_kind_lists_the_valid_names():
    for call in (
        lambda: F.get_kind("mfcc"),
        lambda: F.feature_config("mfcc"),
        lambda: F.config_from_dict({"kind": "mfcc"}),
        lambda: F.get_preset("nope"),
    ):
        with pytest.raises(NotFoundError, match="Expected") as info:
            call()
        assert "Got 'mfcc' instead" in str(info.value) or "Got 'nope' instead" in str(info.value)
    with pytest.raises(NotFoundError, match="complex, decomposed, logmel, magnitude, reassigned"):
        F.get_kind("mfcc")


@pytest.mark.parametrize("name", sorted(F.PRESETS))
def test_round_trip_through_dict_and_json(name):
    cfg = F.PRESETS[name]
    data = cfg.to_dict()
    assert data["kind"] == cfg.kind and data["win_length"] is not None  # None resolved to n_fft
    assert type(cfg).from_dict(data) == cfg
    assert F.config_from_dict(json.loads(cfg.to_json())) == cfg
    assert F.config_from_dict(data).config_hash() == cfg.config_hash()


def test_presets_match_the_design_seed_defaults():
    crn, cnn = F.PRESETS["magnitude-crn"], F.PRESETS["magnitude-cnn"]
    assert (crn.n_fft, crn.hop_length, crn.win_length, crn.window, crn.sample_rate) == (
        512,
        256,
        512,
        "hann",
        16000,
    )
    assert (cnn.n_fft, cnn.hop_length, cnn.win_length) == (1024, 512, 1024)
    dccrn = F.PRESETS["complex-dccrn"]
    assert (dccrn.n_fft, dccrn.win_length, dccrn.hop_length) == (512, 400, 100)
    r = F.PRESETS["reassigned-inversion"]
    assert (r.n_fft, r.win_length, r.hop_length, r.window, r.center, r.fill_nan, r.clip) == (
        80, 80, 20, "hamming", False, True, False,
    )  # fmt: skip
    d = F.PRESETS["decomposed-30"]
    assert (d.n, d.n_fft, d.hop_length, d.mask) == (30, 512, 256, "oracle-irm")


def test_config_hash_is_stable_and_distinguishes_configs():
    a = F.MagnitudeConfig()
    assert (
        a.config_hash()
        == F.MagnitudeConfig().config_hash()
        == F.MagnitudeConfig(win_length=512).config_hash()
    )
    # pinned: the hash is a store version key, so it must not change between processes or releases
    assert a.to_json() == (
        '{"center":true,"dtype":"float32","hop_length":256,"kind":"magnitude","n_fft":512,'
        '"pad_mode":"constant","sample_rate":16000,"win_length":512,"window":"hann"}'
    )
    assert a.config_hash() == "88a6321b71734dd9"
    hashes = {cfg.config_hash() for cfg in F.PRESETS.values()}
    hashes |= {F.MagnitudeConfig(hop_length=128).config_hash(), F.MagnitudeConfig(center=False).config_hash()}
    hashes |= {
        F.DecomposedConfig(mask="model:crn-1").config_hash(),
        F.ReassignedConfig(fill_nan=False).config_hash(),
    }
    assert len(hashes) == len(F.PRESETS) + 4
    assert a.config_hash("pairs-1") != a.config_hash("pairs-2")


def test_feature_config_applies_overrides_and_validates():
    cfg = F.feature_config("reassigned", n_fft=256, win_length=256, hop_length=64, fill_nan=False)
    assert isinstance(cfg, F.ReassignedConfig) and cfg.n_fft == 256 and cfg.fill_nan is False
    assert F.feature_config("magnitude", n_fft=1024, hop_length=512) == F.PRESETS["magnitude-cnn"]
    with pytest.raises(ConfigError, match="Expected options of 'magnitude'.*Got unknown \\['nfft'\\]"):
        F.feature_config("magnitude", nfft=1024)
    with pytest.raises(ConfigError, match="Expected keys"):
        F.MagnitudeConfig.from_dict({"kind": "magnitude", "hop": 3})


BAD = [
    (F.MagnitudeConfig, {"hop_length": 600}, "hop_length <= win_length"),
    (F.ComplexConfig, {"hop_length": 401}, "hop_length <= win_length"),
    (F.MagnitudeConfig, {"n_fft": 0}, "n_fft to be a positive integer"),
    (F.MagnitudeConfig, {"n_fft": -512}, "n_fft to be a positive integer"),
    (F.MagnitudeConfig, {"n_fft": 512.0}, "n_fft to be a positive integer"),
    (F.MagnitudeConfig, {"n_fft": True}, "n_fft to be a positive integer"),
    (F.MagnitudeConfig, {"hop_length": 0}, "hop_length to be a positive integer"),
    (F.MagnitudeConfig, {"win_length": 1024}, "win_length <= n_fft"),
    (F.MagnitudeConfig, {"window": "hannn"}, "window to be a name"),
    (F.MagnitudeConfig, {"window": "kaiser"}, "window to be a name"),  # needs a parameter
    (F.MagnitudeConfig, {"window": ["kaiser", 8.0]}, "window to be a window name"),
    (F.MagnitudeConfig, {"dtype": "float64"}, "dtype to be one of float32, float16"),
    (F.MagnitudeConfig, {"pad_mode": "wrap"}, "pad_mode to be one of"),
    (F.MagnitudeConfig, {"center": 1}, "center to be true or false"),
    (F.MagnitudeConfig, {"sample_rate": 0}, "sample_rate"),
    (F.MagnitudeConfig, {"kind": "complex"}, "kind 'magnitude'"),
    (F.ReassignedConfig, {"ref_power": -1.0}, "ref_power to be a finite number >= 0"),
    (F.ReassignedConfig, {"ref_power": float("nan")}, "ref_power"),
    (F.ReassignedConfig, {"reassign_frequencies": False, "reassign_times": False}, "reassign_frequencies or"),
    (F.ReassignedConfig, {"fill_nan": "yes"}, "fill_nan to be true or false"),
    (F.ReassignedConfig, {"dtype": "float16"}, "dtype 'float32' for reassigned"),
    (F.DecomposedConfig, {"n": 1}, "n \\(decomposed channels\\) to be an integer from 2 to 256"),
    (F.DecomposedConfig, {"n": 257}, "from 2 to 256"),
    (F.DecomposedConfig, {"n": 30.0}, "from 2 to 256"),
    (F.DecomposedConfig, {"mask": "oracle"}, "mask to be 'oracle-irm' or 'model:<version>'"),
    (F.DecomposedConfig, {"mask": "model:"}, "model:<version>"),
    (F.DecomposedConfig, {"mask": "model:../x"}, "model:<version>"),
    (F.DecomposedConfig, {"mask": "model:a/b"}, "model:<version>"),
]


@pytest.mark.parametrize(("cls", "kwargs", "message"), BAD, ids=[f"{c.__name__}-{k}" for c, k, _ in BAD])
def test_bad_config_raises_config_error(cls, kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        cls(**kwargs)
    assert "Expected" in str(info.value) and "instead" in str(info.value)


def test_good_variants_are_accepted():
    assert F.DecomposedConfig(mask="model:crn-2025.1_a+b").mask == "model:crn-2025.1_a+b"
    assert F.MagnitudeConfig(window="hamming", dtype="float16", pad_mode="reflect").window == "hamming"
    assert F.ReassignedConfig(ref_power=0).ref_power == 0.0
    assert F.MagnitudeConfig(hop_length=512).hop_length == 512  # hop == window is allowed
    with pytest.raises(dataclasses.FrozenInstanceError):
        F.MagnitudeConfig().n_fft = 3  # type: ignore[misc]


WAVES = [
    (np.zeros(0, dtype=np.float32), True, "at least 1 sample \\(centred\\). Got 0"),
    (np.zeros(511, dtype=np.float32), False, "at least 512 samples \\(uncentred, n_fft=512\\). Got 511"),
    (np.zeros((2, 1000), dtype=np.float32), True, "1-D waveform"),
    (np.full(1000, np.nan, dtype=np.float32), True, "finite waveform. Got 1000 NaN or infinite"),
    (np.r_[np.zeros(999), np.inf], True, "finite waveform. Got 1 NaN or infinite"),
    # finite, but not representable in float32: said so, not called NaN or infinite
    (
        np.r_[np.zeros(999), 1e300],
        True,
        "Got 1 float64 samples out of float32 range \\(largest \\|x\\| 1e\\+300\\)",
    ),
    (np.r_[np.zeros(999), -1e39], False, "Got 1 float64 samples out of float32 range"),
    (np.zeros(1000, dtype=np.complex64), True, "real floating-point waveform"),
    # integer PCM is refused as librosa refuses it: its scale is not known
    (
        np.zeros(1000, dtype=np.int16),
        True,
        "real floating-point waveform, as librosa requires .* Got dtype int16",
    ),
    (np.zeros(1000, dtype=bool), False, "Got dtype bool"),
]


@pytest.mark.parametrize("kind", ["magnitude", "complex", "reassigned", "decomposed"])
@pytest.mark.parametrize(("wave", "center", "message"), WAVES, ids=[m.split(".")[0] for *_, m in WAVES])
def test_bad_waves_raise_config_error(kind, wave, center, message):
    cfg = F.feature_config(kind, n_fft=512, win_length=512, hop_length=128, center=center)
    with pytest.raises(ConfigError, match=message):
        F.compute_feature((wave, wave, wave) if kind == "decomposed" else wave, cfg)


def test_compute_feature_dispatches_on_kind():
    wave = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    assert np.array_equal(
        F.compute_feature(wave, F.PRESETS["magnitude-crn"]), F.magnitude(wave, F.PRESETS["magnitude-crn"])
    )
    assert F.compute_feature(wave, F.PRESETS["complex-dccrn"]).shape == (41, 2, 257)
    assert F.compute_feature(wave, F.PRESETS["reassigned-inversion"]).shape == (197, 3, 41)
    assert F.compute_feature((wave, wave, wave * 0), F.PRESETS["decomposed-30"]).shape == (16, 30, 257)
    with pytest.raises(NotFoundError, match="Expected a feature kind name"):
        F.compute_feature(wave, object())


def test_plain_windows_are_accepted_by_scipy():
    """Configs check these names without importing scipy.signal: each must be one scipy accepts as is."""
    import scipy.signal

    from features.config import PLAIN_WINDOWS

    for name in PLAIN_WINDOWS:
        assert scipy.signal.get_window(name, 400, fftbins=True).shape == (400,)
