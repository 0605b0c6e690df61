"""A store written by the code before the restructuring (commit be81100, tests/data) opens, reads, finds its
own feature sets again, enhances with its model and passes `verify` with today's code."""

import tarfile
from pathlib import Path

import numpy as np
import pytest

from features import feature_config
from pipelines.featurize import SignalSet, plan_features
from stores import open_store
from stores.verify import verify_store
from training.enhance import Enhancer
from training.results import summarize

FIXTURE = Path(__file__).parent / "data" / "legacy-store-be81100.tar.gz"
FEATURE_SETS = {  # as the old code computed them: (pair set, config)
    "magnitude-10375ec719f3": ("noisy", feature_config("magnitude")),
    "complex-b43d43e3034e": ("noisy", feature_config("complex", n_fft=128, hop_length=64, win_length=128)),
    "decomposed-785dc7f51ed4": ("noisy", feature_config("decomposed", n=4)),
    "magnitude-fedd12de0ec5": ("vb-given", feature_config("magnitude")),
}
MODEL = "crn-000a180813d5"


@pytest.fixture(scope="module", params=["direct", "zarr"])
def legacy(tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("legacy")
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(folder, filter="data")
    return open_store(folder / "store", create=False, arrays=request.param)


def test_it_verifies(legacy):
    assert verify_store(legacy) == []


def test_audio_of_corpora_and_pair_sets_reads(legacy):
    pairs = legacy.read_table("pairs").to_pylist()
    assert {p["pairset"] for p in pairs} == {"noisy", "vb-given"}
    for pair in pairs:
        clean = legacy.audio(pair["pairset"], pair["utterance_id"], "clean")
        noisy = legacy.audio(pair["pairset"], pair["utterance_id"], "input")
        noise = legacy.audio(pair["pairset"], pair["utterance_id"], "noise")
        assert clean.dtype == np.float32 and clean.shape == noisy.shape == (pair["num_samples"],)
        np.testing.assert_allclose(noise, noisy - clean, atol=1e-6)


@pytest.mark.parametrize("feature_id", sorted(FEATURE_SETS))
def test_feature_sets_read_and_are_found_again_by_their_config(legacy, feature_id):
    pairset, config = FEATURE_SETS[feature_id]
    fs = legacy.features(feature_id)
    assert fs.roles == ("input", "target") and fs.corpus is None  # a column the old rows lack reads as null
    for utt in fs.utterances():
        inp, target = fs.read(utt, "input"), fs.read(utt, "target")
        assert inp.shape[0] == target.shape[0] == fs.index[utt]["num_frames"]
        if fs.kind == "decomposed":  # expanded from |Y| and the stored levels, as before
            assert inp.shape[1:] == (4, 257) and np.array_equal(inp[:, 0], fs.read_stored(utt, "input"))
    plan = plan_features(legacy, SignalSet(pairset), config)  # the same ids: nothing is recomputed
    assert plan.complete and plan.spec.feature_id == feature_id


def test_its_model_enhances_and_its_metrics_summarise(legacy):
    enhancer = Enhancer(legacy, MODEL)
    pair = next(p for p in legacy.read_table("pairs").to_pylist() if p["pairset"] == "noisy")
    signals = {r: legacy.audio("noisy", pair["utterance_id"], r) for r in ("input", "clean", "noise")}
    wave, spectrum = enhancer(signals)
    assert wave.shape == signals["input"].shape and np.isfinite(wave).all() and spectrum.shape[1] == 257
    table = summarize(legacy.table("metrics"), group_by=("model",))
    assert set(table.column("model").to_pylist()) == {"noisy", "crn"}
