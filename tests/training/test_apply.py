"""`specstore enhance` and `training.apply`: files and numpy waveforms through a trained model, in blocks."""

import numpy as np
import pyarrow.dataset as ds
import pytest
import soundfile as sf
import soxr

from cli import main
from features import feature_config
from pipelines.testing import build_demo_store, make_bad_inputs, write_audio
from stores.paths import member
from training.apply import enhance_waveform
from training.enhance import Enhancer, enhance_stream
from training.trainer import TrainConfig, train

# The block path is stateless overlapping blocks: a block of 2 s with 2 s of context on either side differs
# from one pass over the whole 60 s recording only where the LSTMs' state would still carry information
# from more than 2 s back. Measured worst case on these enhance_models: see BLOCK_TOLERANCE's uses (the figures are
# in docs/BENCHMARKS.md, "Enhancement").
BLOCK_TOLERANCE = 1e-5


def _enhance(store, version, *args):
    return main(["enhance", "--store", store.root, "--model-version", version, "--quiet", *map(str, args)])


@pytest.mark.parametrize("name", ["crn", "dccrn"])
def test_enhanced_files_equal_what_evaluate_stored(enhance_models, evaluate_real, real_data, tmp_path, name):
    store, versions = enhance_models
    run = evaluate_real(store, versions[name])
    noisy = real_data / "voicebank-demand" / "noisy_testset_wav"
    assert _enhance(store, versions[name], noisy, "--out", tmp_path / "out") == 0
    rows = store.read_table("predictions", filter=ds.field("run_id") == run).to_pylist()
    assert len(rows) == 11
    for row in rows:
        stored = store.read_samples(member(row["array"], "wave"), row["offset"], row["num_samples"])
        written, rate = sf.read(tmp_path / "out" / f"{row['utterance_id']}.wav", dtype="float32")
        assert rate == 16000 and written.shape == stored.shape
        assert np.max(np.abs(written - stored)) <= 1e-5


def test_a_44k_stereo_file_comes_back_at_44k_mono(enhance_models, real_data, tmp_path):
    store, versions = enhance_models
    a, _ = sf.read(real_data / "clean" / "speechbrain__spk1_snt1.wav", dtype="float32")
    b, _ = sf.read(real_data / "clean" / "speechbrain__spk2_snt1.wav", dtype="float32")
    n = min(len(a), len(b))
    stereo = soxr.resample(np.stack([a[:n], b[:n]], axis=1), 16000, 44100)
    write_audio(tmp_path / "in" / "stereo.wav", stereo, 44100, subtype="FLOAT")
    assert _enhance(store, versions["crn"], tmp_path / "in", "--out", tmp_path / "out") == 0
    written, rate = sf.read(tmp_path / "out" / "stereo.wav", dtype="float32", always_2d=True)
    assert rate == 44100 and written.shape[1] == 1
    assert abs(written.shape[0] - stereo.shape[0]) <= 2
    # the Python function on the same samples: the same output (mean of the channels, soxr both ways)
    direct = enhance_waveform(Enhancer(store, versions["crn"]), stereo, 44100)
    assert direct.shape[0] == written.shape[0]
    assert np.max(np.abs(direct - written[:, 0])) <= 1e-5
    # --rate and --subtype
    out = tmp_path / "pcm"
    assert (
        _enhance(
            store, versions["crn"], tmp_path / "in", "--out", out, "--rate", 16000, "--subtype", "PCM_16"
        )
        == 0
    )
    info = sf.info(out / "stereo.wav")
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")


def _minute(real_data) -> np.ndarray:
    """60 s of real speech (clean recordings concatenated) mixed with a real noise recording at 5 dB SNR."""
    speech = [
        sf.read(p, dtype="float32")[0] for p in sorted((real_data / "clean").glob("speechbrain__*.wav"))
    ]
    speech = np.concatenate(speech * (1 + 60 * 16000 // sum(map(len, speech))))[: 60 * 16000]
    noise, _ = sf.read(real_data / "noise" / "pyroomacoustics__doing_the_dishes.wav", dtype="float32")
    noise = np.resize(noise, speech.shape[0])
    gain = np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10 ** (5 / 10))
    return (speech + gain * noise).astype(np.float32)


@pytest.mark.parametrize("name", ["crn", "dccrn"])
def test_two_second_blocks_equal_the_whole_recording(enhance_models, real_data, tmp_path, name):
    store, versions = enhance_models
    enhancer = Enhancer(store, versions[name])
    x = _minute(real_data)
    whole = enhance_waveform(enhancer, x, 16000, block_s=1000.0)  # one block: the whole recording at once
    blocks = enhance_waveform(enhancer, x, 16000, block_s=2.0, context_s=2.0)
    assert whole.shape == blocks.shape == x.shape
    worst = float(np.max(np.abs(whole - blocks)))
    print(
        f"{name}: 60 s in 2 s blocks (2 s context) vs whole: max |diff| {worst:.3g}, peak {np.abs(whole).max():.3g}"
    )
    assert worst <= BLOCK_TOLERANCE
    # the command line's streamed path (decoder blocks of any size, 2 s model blocks) gives the same samples
    write_audio(tmp_path / "minute.wav", x, 16000, subtype="FLOAT")
    args = ("--out", tmp_path / "out", "--block-seconds", 2, "--context-seconds", 2)
    assert _enhance(store, versions[name], tmp_path / "minute.wav", *args) == 0
    written, _ = sf.read(tmp_path / "out" / "minute.wav", dtype="float32")
    assert np.max(np.abs(written - blocks)) <= 1e-6


def test_block_pieces_are_the_whole_frames_and_samples():
    """enhance_stream hands each block's own samples and frames, whatever the pieces the input comes in."""

    def segment(signals):
        x = signals["input"]
        return x * 2, np.pad(x, (0, 10))[::10][: 1 + x.shape[0] // 10, None]  # frame j: sample 10 j

    from training.enhance import Blocks

    x = np.random.default_rng(0).standard_normal(1234).astype(np.float32)
    whole = segment({"input": x})
    for cut in (1, 7, 100, 1234):
        pieces = [{"input": x[i : i + cut]} for i in range(0, x.shape[0], cut)]
        out = list(enhance_stream(segment, pieces, Blocks(100, 30, 10)))
        np.testing.assert_array_equal(np.concatenate([w for w, _ in out]), whole[0])
        assert sum(s.shape[0] for _, s in out) == whole[1].shape[0]


def test_bad_inputs_are_each_a_line_and_nothing_is_overwritten(enhance_models, tmp_path, capsys):
    store, versions = enhance_models
    expected = make_bad_inputs(tmp_path / "bad")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no audio here")
    out = tmp_path / "out"
    out.mkdir()
    (out / "good.wav").write_bytes(b"keep me")
    code = _enhance(
        store, versions["crn"], tmp_path / "bad", tmp_path / "missing.wav", tmp_path / "notes", "--out", out
    )
    printed = capsys.readouterr().out
    assert code == 1
    for name, reason in expected.items():
        if reason:
            assert f"failed: {tmp_path / 'bad' / name}: {reason}" in printed
            assert not (out / name).with_suffix(".wav").exists()
    assert f"failed: {tmp_path / 'missing.wav'}: missing path" in printed
    assert f"failed: {tmp_path / 'notes'}: no audio" in printed
    assert f"failed: {tmp_path / 'bad' / 'good.wav'}: output exists" in printed
    assert (out / "good.wav").read_bytes() == b"keep me"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial file left behind
    # --overwrite replaces it
    assert _enhance(store, versions["crn"], tmp_path / "bad" / "good.wav", "--out", out, "--overwrite") == 0
    assert sf.info(out / "good.wav").samplerate == 16000


def test_unknown_version_and_output_inside_input_are_refused_before_anything(
    enhance_models, tmp_path, capsys
):
    store, versions = enhance_models
    write_audio(tmp_path / "in" / "a.wav", np.zeros(16000, np.float32) + 0.1)
    assert _enhance(store, "crn-000000000000", tmp_path / "in", "--out", tmp_path / "out") == 2
    assert "Expected a trained model version" in capsys.readouterr().err
    assert _enhance(store, versions["crn"], tmp_path / "in", "--out", tmp_path / "in" / "out") == 2
    assert "Expected an output folder outside the input folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "in" / "out").exists()


def test_a_model_needing_the_clean_signal_is_refused_with_the_reason(tmp_path, capsys):
    store, ids = build_demo_store(tmp_path, {"dec": feature_config("decomposed")}, speakers=2, utterances=2)
    config = TrainConfig(
        model="crn",
        feature_id=ids["dec"],
        model_args={"channels": [4, 8, 8, 8, 8]},
        epochs=1,
        max_steps=1,
        batch_size=2,
        segment=20,
    )
    version = train(store, config, device="cpu", progress=False)
    write_audio(
        tmp_path / "in" / "a.wav", np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    )
    assert _enhance(store, version, tmp_path / "in", "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "oracle IRM, computed from the clean signal" in err and not (tmp_path / "out").exists()
