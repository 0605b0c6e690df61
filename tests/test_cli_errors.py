"""Bad input everywhere: one clear line on stderr, exit code 2, no traceback (unless --debug)."""

import pytest

from cli import main
from stores import SpecstoreError, open_store


@pytest.fixture
def empty_store(tmp_path):
    return str(open_store(tmp_path / "s").root)


CASES = [
    (["ingest", "--corpus", "timit", "--source", "."], "Expected a corpus reader name, one of"),
    (["ingest", "--corpus", "folder", "--source", "/no/such/folder"], "no such folder"),
    (["ingest", "--corpus", "folder", "--source", ".", "--name", "../../etc"], "Expected a corpus name"),
    (["ingest", "--corpus", "folder", "--source", ".", "--name", "/abs"], "Expected a corpus name"),
    (["ingest", "--corpus", "folder", "--source", ".", "--name", "caf\u00e9"], "Expected a corpus name"),
    (["ingest", "--corpus", "folder", "--source", ".", "--sample-rate", "0"], "sample_rate"),
    (["ingest", "--corpus", "folder", "--source", ".", "--shard-size", "0"], "--shard-size"),
    (["ingest", "--corpus", "folder", "--source", ".", "--max-duration", "0"], "max_duration_s"),
    (["ingest", "--corpus", "folder", "--source", ".", "--max-duration", "0.1"], "min_duration_s"),
    (
        ["pairs", "--corpus", "none", "--kind", "noisy", "--name", "p", "--noise", "demo", "--snr", "20:-5"],
        "LOW <= HIGH",
    ),
    (
        ["pairs", "--corpus", "none", "--kind", "noisy", "--name", "p", "--noise", "demo"],
        "Expected an ingested corpus",
    ),
    (
        ["pairs", "--corpus", "c", "--kind", "noisy", "--name", "p", "--noise", "/no/such/noise"],
        "no such folder",
    ),
    (
        ["pairs", "--corpus", "c", "--kind", "reverb", "--name", "p", "--rir", "simulate", "--t60", "0:0.5"],
        "--t60",
    ),
    (["pairs", "--corpus", "c", "--kind", "noisy", "--name", "../p", "--noise", "demo"], "pair set name"),
    (["features", "--pairs", "p", "--kind", "magnitude", "--n-fft", "512", "--hop", "1024"], "Expected"),
    (["features", "--pairs", "p", "--kind", "magnitude", "--n-fft", "0"], "n_fft"),
    (["features", "--pairs", "p", "--kind", "magnitude", "--n-fft", "-4"], "n_fft"),
    (["features", "--pairs", "p", "--kind", "magnitude", "--window", "nope"], "window"),
    (["features", "--pairs", "p", "--kind", "decomposed", "--mask", "model:../x"], "mask"),
    (["features", "--pairs", "missing", "--kind", "magnitude"], "pair set"),
]


@pytest.mark.parametrize("argv,message", CASES, ids=[" ".join(c[0][:4]) for c in CASES])
def test_bad_input_is_one_line_exit_2(empty_store, argv, message, capsys):
    assert main([*argv[:1], "--store", empty_store, *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("store", ["foo://nowhere", "s3://user:SECRET@bucket/x", "http://127.0.0.1:1/store"])
def test_unusable_store_url(store, capsys):
    assert main(["features", "--store", store, "--pairs", "p", "--kind", "magnitude"]) == 2
    err = capsys.readouterr().err
    assert "Expected" in err and "store" in err and "SECRET" not in err and "user" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_store_for_a_verb_that_reads_one(tmp_path, capsys):
    assert main(["verify", "--store", str(tmp_path / "absent")]) == 2
    assert "Expected an existing store" in capsys.readouterr().err


def test_debug_shows_the_traceback(empty_store):
    with pytest.raises(SpecstoreError):
        main(["ingest", "--store", empty_store, "--corpus", "timit", "--source", ".", "--debug"])
