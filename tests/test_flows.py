"""The `specstore` command line and the ingest flow, end to end (Prefect server, local Dask cluster)."""

import shutil
import subprocess
import sys

import librosa
import numpy as np
import pytest

from cli import main
from pipelines.fuzzing import with_flac_total_frames, with_wav_sample_rate
from pipelines.synthesis import snr_db
from pipelines.testing import make_bad_inputs
from stores import open_store

SPECSTORE = [sys.executable, "-m", "cli"]


def run_cli(*args, timeout=300):
    return subprocess.run([*SPECSTORE, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("verb", ["ingest", "download", "demo"])
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0 and "usage: specstore" in capsys.readouterr().out


def test_ingest_help_lists_every_reader(capsys):
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    assert "demo, folder, librispeech, vctk, voicebank-demand" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    "args,message",
    [
        (["--corpus", "timit", "--source", "."], "Expected a corpus reader name"),
        (["--corpus", "folder", "--source", "/nonexistent/folder"], "no such folder"),
        (["--corpus", "folder", "--source", ".", "--name", "../escape"], "Expected a corpus name"),
        (["--corpus", "folder", "--source", ".", "--splits", "0.9,0.9,0.1"], "split fractions"),
        (["--corpus", "folder", "--source", ".", "--min-duration", "-1"], "min_duration_s"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message, capsys):
    assert main(["ingest", "--store", str(tmp_path / "s"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_console_script_reports_bad_input(tmp_path):
    result = run_cli("ingest", "--store", tmp_path / "s", "--corpus", "timit", "--source", tmp_path)
    assert result.returncode == 2 and "Expected a corpus reader name" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_ingests_voicebank_and_a_rerun_adds_nothing(tmp_path, real_data, prefect_api):
    store = tmp_path / "s"
    args = [
        "ingest",
        "--corpus",
        "voicebank-demand",
        "--source",
        real_data / "voicebank-demand",
        "--store",
        store,
    ]
    first = run_cli(*args, "--workers", 2)
    assert first.returncode == 0, first.stderr
    assert "11 utterances" in first.stdout and "11 pairs" in first.stdout
    second = run_cli(*args, "--workers", 2, "--quiet")
    assert second.returncode == 0 and "0 added now, 11 inputs already done" in second.stdout
    st = open_store(store, create=False)
    assert st.table("utterances").count_rows() == 11 and st.table("pairs").count_rows() == 11


def test_cli_bad_folder_keeps_the_good_file(tmp_path, prefect_api):
    make_bad_inputs(tmp_path / "bad")
    result = run_cli(
        "ingest", "--corpus", "folder", "--source", tmp_path / "bad", "--store", tmp_path / "s", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    assert "1 utterances" in result.stdout
    for reason in (
        "empty file: 1",
        "non-finite samples: 1",
        "not audio: 1",
        "too short: 1",
        "truncated file: 1",
    ):
        assert reason in result.stdout


def test_cli_ingest_rejects_damaged_headers_and_keeps_the_good_file(tmp_path, real_data, prefect_api):
    """The issue's two files (a real WAV whose rate field reads 1 Hz, a real FLAC whose header declares
    68,719,443,936 frames) beside a good one: exit 0, the good file ingested, both rejected; a rerun adds
    nothing."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    clean = real_data / "clean"
    shutil.copyfile(clean / "speechbrain__spk1_snt1.wav", folder / "good.wav")
    wav = (clean / "pyroomacoustics__cmu_arctic_us_aew_a0001.wav").read_bytes()
    (folder / "rate-1hz.wav").write_bytes(with_wav_sample_rate(wav, 1))
    flac = (clean / "lhotse__2412-153948-0001.flac").read_bytes()
    (folder / "frames-68g.flac").write_bytes(with_flac_total_frames(flac, 68_719_443_936))
    args = ["ingest", "--corpus", "folder", "--source", folder, "--store", tmp_path / "s", "--quiet"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "1 utterances" in result.stdout
    assert "implausible frame count: 1" in result.stdout and "unsupported sample rate: 1" in result.stdout
    again = run_cli(*args)
    assert again.returncode == 0 and "0 added now, 3 inputs already done" in again.stdout, again.stdout


def test_cli_pairs_are_identical_with_one_or_two_workers(tmp_path, real_data, prefect_api):
    stores = []
    for workers in (1, 2):
        store = tmp_path / f"s{workers}"
        ingest = run_cli(
            "ingest",
            "--corpus",
            "folder",
            "--source",
            real_data / "clean",
            "--store",
            store,
            "--name",
            "real",
            "--quiet",
        )
        assert ingest.returncode == 0, ingest.stderr
        made = run_cli(
            "pairs",
            "--store",
            store,
            "--corpus",
            "real",
            "--kind",
            "noisy",
            "--name",
            "noisy",
            "--noise",
            real_data / "noise",
            "--snr",
            "-5:20",
            "--workers",
            workers,
            "--quiet",
        )
        assert made.returncode == 0, made.stderr
        assert "26 pairs" in made.stdout
        stores.append(open_store(store, create=False))
    a, b = stores
    rows = a.read_table("pairs").to_pylist()
    assert {r["noise_id"] for r in rows} <= {
        r["utterance_id"] for r in a.read_table("utterances").to_pylist()
    }
    for row in rows:
        clean, noisy = (
            a.audio("noisy", row["utterance_id"], "clean"),
            a.audio("noisy", row["utterance_id"], "input"),
        )
        np.testing.assert_array_equal(noisy, b.audio("noisy", row["utterance_id"], "input"))
        assert abs(snr_db(clean, noisy) - row["snr_db_target"]) < 0.05


def test_cli_pairs_bad_input(tmp_path, capsys):
    assert (
        main(
            [
                "pairs",
                "--store",
                str(tmp_path / "s"),
                "--corpus",
                "c",
                "--kind",
                "noisy",
                "--name",
                "p",
                "--noise",
                "demo",
                "--snr",
                "20:-5",
            ]
        )
        == 2
    )
    assert "LOW <= HIGH" in capsys.readouterr().err
    assert (
        main(["pairs", "--store", str(tmp_path / "s"), "--corpus", "c", "--kind", "reverb", "--name", "p"])
        == 2
    )
    assert "Expected --rir" in capsys.readouterr().err


def test_cli_features_then_a_second_run_computes_nothing(tmp_path, real_data, prefect_api):
    store = tmp_path / "s"
    assert (
        run_cli(
            "ingest",
            "--corpus",
            "voicebank-demand",
            "--source",
            real_data / "voicebank-demand",
            "--store",
            store,
            "--quiet",
        ).returncode
        == 0
    )
    args = [
        "features",
        "--store",
        store,
        "--pairs",
        "voicebank-demand-given",
        "--kind",
        "magnitude",
        "--n-fft",
        "1024",
        "--hop",
        "512",
        "--quiet",
    ]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "11 pairs, 11 computed now" in first.stdout
    second = run_cli(*args)
    assert second.returncode == 0 and "nothing computed" in second.stdout
    st = open_store(store, create=False)
    (row,) = st.read_table("features").to_pylist()
    fs = st.features(row["feature_id"])
    assert fs.read("p232_002", "input").shape[1] == 513


def test_cli_features_bad_input(tmp_path, capsys):
    open_store(tmp_path / "s")
    assert (
        main(
            [
                "features",
                "--store",
                str(tmp_path / "s"),
                "--pairs",
                "p",
                "--kind",
                "magnitude",
                "--hop",
                "1024",
                "--n-fft",
                "512",
            ]
        )
        == 2
    )
    assert "Expected" in capsys.readouterr().err
    assert main(["features", "--store", str(tmp_path / "s"), "--pairs", "nope", "--kind", "magnitude"]) == 2
    assert "pair set" in capsys.readouterr().err


@pytest.mark.slow
def test_features_of_a_corpus_through_the_cli_and_a_rerun_computes_nothing(tmp_path, real_data, prefect_api):
    store = tmp_path / "s"
    ingest = run_cli("ingest", "--store", store, "--corpus", "folder", "--source", real_data / "clean",
                     "--name", "real", "--quiet", "--workers", "2")  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    args = ["features", "--corpus", "real", "--kind", "magnitude", "--quiet", "--workers", "2"] + ["--store", store]  # fmt: skip
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    feature_id = first.stdout.split()[2]
    again = run_cli(*args)
    assert again.returncode == 0 and f"feature set {feature_id} (magnitude) found" in again.stdout
    assert "nothing computed" in again.stdout
    st = open_store(store, create=False)
    fs = st.features(feature_id)
    (row,) = st.read_table("features").to_pylist()
    assert (row["corpus"], row["pairset"]) == ("real", None) and fs.roles == ("clean",)
    utterances = st.read_table("utterances").to_pylist()
    assert sorted(fs.utterances()) == sorted(u["utterance_id"] for u in utterances)
    for utt in fs.utterances()[:3]:
        audio = st.audio("real", utt, "clean")
        expected = np.abs(librosa.stft(audio, n_fft=512, hop_length=256)).T
        np.testing.assert_allclose(fs.read(utt, "clean"), expected, atol=1e-4 * expected.max())
    mean, std = fs.stats()
    assert mean.shape == (257,) and (std > 0).all()


def test_features_flow_refuses_a_kind_that_needs_a_model_without_one(demo_sets):
    """`flows.py` never loads models (no torch): `training_flows.run_features` hands the flow the mask."""
    from features import feature_config
    from flows import features_flow
    from pipelines.featurize import SignalSet
    from stores.errors import ConfigError

    root, _ = demo_sets
    config = feature_config("decomposed", n=8, mask="model:crn-000000000000")
    with pytest.raises(ConfigError, match="first-stage model 'crn-000000000000'"):
        features_flow.fn(root, SignalSet("noisy"), config)
