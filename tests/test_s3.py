"""A store on S3 (a local moto server): the whole chain through the command line, ingest -> features ->
train -> evaluate -> results -> verify, and the secret key never shows in any output or table."""

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SECRET = "specstoreTestSecret-7f3a9c0e5b1d"  # distinctive: searched for in every output
KEY_ID = "specstoreTestKeyId"
BUCKET = "speech-bucket"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(monkeypatch):
    """A moto S3 server on 127.0.0.1 with one bucket; this process and its children point at it through
    the standard AWS environment variables (AWS_ENDPOINT_URL, no fsspec-specific settings)."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import logging

    import s3fs

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # moto keeps its buckets in this process, whatever server serves them: start from none
    urllib.request.urlopen(urllib.request.Request(f"{env['AWS_ENDPOINT_URL']}/moto-api/reset", method="POST"))
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir(BUCKET)
    yield fs
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def _voicebank(real: Path, dest: Path, train: int = 6) -> Path:
    """The real VoiceBank-DEMAND test pairs split over the corpus's train and test folders (the trainer
    needs training pairs): the first `train` files as clean/noisy_trainset_28spk_wav, the rest as test."""
    src, root = real / "voicebank-demand", dest / "VoiceBank-DEMAND"
    for i, clean in enumerate(sorted((src / "clean_testset_wav").glob("*.wav"))):
        part = "trainset_28spk" if i < train else "testset"
        for kind in ("clean", "noisy"):
            (root / f"{kind}_{part}_wav").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(
                src / f"{kind}_testset_wav" / clean.name, root / f"{kind}_{part}_wav" / clean.name
            )
    return root


def _run(outputs, *args, ok=True, timeout=600):
    result = subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    outputs.append((args[0], result.stdout + result.stderr))
    if ok:
        assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def test_the_chain_on_s3_and_the_secret_stays_secret(tmp_path, s3, prefect_api, real_data):
    import pyarrow.parquet as pq

    from stores import open_store
    from stores.verify import verify_store

    store, outputs = f"s3://{BUCKET}/store", []
    source = _voicebank(real_data, tmp_path)
    ingest = _run(outputs, "ingest", "--store", store, "--corpus", "voicebank-demand", "--source", source,
                  "--workers", "2", "--quiet")  # fmt: skip
    assert (
        "11 utterances" in ingest.stdout
        and "given pair set voicebank-demand-given: 11 pairs" in ingest.stdout
    )
    features = _run(outputs, "features", "--store", store, "--pairs", "voicebank-demand-given",
                    "--kind", "magnitude", "--workers", "2", "--quiet")  # fmt: skip
    feature_id = features.stdout.split()[2]
    assert feature_id.startswith("magnitude-"), features.stdout
    again = _run(outputs, "features", "--store", store, "--pairs", "voicebank-demand-given",
                 "--kind", "magnitude", "--quiet")  # fmt: skip
    assert "found" in again.stdout and feature_id in again.stdout
    train = _run(outputs, "train", "--store", store, "--model", "crn", "--features", feature_id,
                 "--epochs", "1", "--max-steps", "2", "--batch-size", "2", "--segment", "20",
                 "--model-arg", "channels=[4,8,8,8,8]", "--quiet")  # fmt: skip
    version = train.stdout.strip().splitlines()[-1]
    assert version.startswith("crn-"), train.stdout
    _run(outputs, "evaluate", "--store", store, "--model-version", version, "--pairs", "voicebank-demand-given",
         "--split", "test", "--workers", "2", "--plots", tmp_path / "plots", "--quiet")  # fmt: skip
    results = _run(
        outputs, "results", "--store", store, "--group-by", "model,model_version", "--format", "json"
    )
    assert version in results.stdout and "noisy" in results.stdout
    verify = _run(outputs, "verify", "--store", store)
    assert f"verify {store}: ok" in verify.stdout
    # errors name the store without credentials, and without the secret
    missing = _run(outputs, "verify", "--store", f"s3://no-such-bucket-{os.getpid()}/store", ok=False)
    assert missing.returncode == 2 and "Expected" in missing.stderr
    assert "Traceback" not in missing.stderr

    # the store, read back here
    st = open_store(store, create=False)
    assert verify_store(st) == []
    assert st.table("utterances").count_rows() == 11 and st.table("pairs").count_rows() == 11
    assert st.features(feature_id).read(st.features(feature_id).utterances()[0], "input").shape[1] == 257
    metrics = st.read_table("metrics", columns=["model", "model_version", "split"]).to_pylist()
    assert {m["model"] for m in metrics} >= {"noisy"} and {m["split"] for m in metrics} == {"test"}
    assert sum(m["model_version"] == version for m in metrics) == 5  # the 5 test pairs, enhanced
    models = st.read_table("models").to_pylist()
    assert [m["model_version"] for m in models] == [version] and models[0]["feature_id"] == feature_id
    assert s3.ls(f"{BUCKET}/store/checkpoints/{version}")

    # the secret appears nowhere: command output, any object's bytes, any Parquet value
    for verb, text in outputs:
        assert SECRET not in text, f"the secret key is in the output of {verb}"
    objects = s3.find(BUCKET)
    parquet = [o for o in objects if o.endswith(".parquet")]
    assert parquet and any(o.endswith("zarr.json") for o in objects)
    for key in objects:
        assert SECRET.encode() not in s3.cat_file(key), key
    for key in parquet:
        with s3.open(key, "rb") as handle:
            table = pq.read_table(handle)
        text = str(table.to_pylist()) + str(table.schema.metadata)
        assert SECRET not in text and KEY_ID not in text, key


def test_parts_written_elsewhere_are_seen(s3, monkeypatch):
    """Regression: with s3fs's listing cache on, parts that Dask workers committed were invisible to the
    flow's process, and `read_table` failed with FileNotFoundError; `open_store` turns the cache off."""
    import io

    import fsspec.config
    import pyarrow.parquet as pq
    import s3fs

    from stores import open_store
    from stores.schema import rows_to_table

    # no fsspec config: the default s3fs settings apply (as for a user with only AWS settings)
    monkeypatch.setitem(fsspec.config.conf, "s3", {})
    s3fs.S3FileSystem.clear_instance_cache()
    st = open_store(f"s3://{BUCKET}/elsewhere")
    st.write_part("rejects", "part-mine", [])
    assert st.part_names("rejects") == ["part-mine"]
    # another process (a Dask worker) commits a part: its own S3 client, nothing shared with this one
    buffer = io.BytesIO()
    pq.write_table(rows_to_table("rejects", []), buffer)
    other = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    other.pipe(f"{BUCKET}/elsewhere/tables/rejects/part-theirs.parquet", buffer.getvalue())
    assert st.part_names("rejects") == ["part-mine", "part-theirs"]
    assert st.read_table("rejects").num_rows == 0


def test_the_catalogue_on_s3(s3, tmp_path, monkeypatch, capsys):
    """ls, show, rm (its removal records, row removal and locks), gc and du on an S3 store."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    import cli
    from features import feature_config
    from pipelines.testing import build_demo_store
    from stores import open_store
    from stores.locks import _create_exclusive
    from stores.store import Store
    from stores.tombstones import pending
    from stores.verify import verify_store

    url = f"s3://{BUCKET}/catalogue"
    kinds = {"mag": feature_config("magnitude"), "mel": feature_config("logmel")}
    st, ids = build_demo_store(tmp_path, kinds, store=open_store(url))

    def specstore(*args):
        code = cli.main([*args, "--store", url])
        out, err = capsys.readouterr()
        return code, out, err

    def total() -> int:
        return sum(int(i["size"]) for i in s3.find(f"{BUCKET}/catalogue", detail=True).values())

    code, out, _ = specstore("ls", "--format", "json")
    sizes = {o["id"]: o["bytes"] for o in json.loads(out)}
    assert code == 0 and set(sizes) == {"corpus:demo", "corpus:noise-noisy", "pairs:noisy",
                                        f"features:{ids['mag']}", f"features:{ids['mel']}"}  # fmt: skip
    code, out, _ = specstore("show", "pairs:noisy")
    assert code == 0 and f"  features:{ids['mag']}" in out.splitlines()
    code, _, err = specstore("rm", "pairs:noisy")
    assert code == 2 and f"features:{ids['mag']}" in err
    before = total()
    code, out, _ = specstore("rm", f"features:{ids['mel']}")
    freed = sizes[f"features:{ids['mel']}"]
    assert (
        code == 0
        and out.splitlines()[-1] == f"rm: freed {freed} bytes ({freed / 2**20:.1f} MiB), 1 object(s)"
    )
    assert before - total() == freed and verify_store(st) == []
    # an rm that stops after removing the arrays is finished by gc
    monkeypatch.setattr(
        Store, "remove_rows", lambda self, name, keys: (_ for _ in ()).throw(RuntimeError("x"))
    )
    code = None
    try:
        specstore("rm", "pairs:noisy", "--cascade", "--debug")
    except RuntimeError:
        code = "stopped"
    monkeypatch.undo()
    assert code == "stopped" and {r["object"] for r in pending(st)} == {
        "pairs:noisy",
        f"features:{ids['mag']}",
    }
    code, out, _ = specstore("gc")
    assert code == 0 and "removed removal of pairs:noisy: an rm that did not finish" in out
    assert pending(st) == [] and verify_store(st) == []
    code, out, _ = specstore("du", "--format", "json")
    assert json.loads(out)["total"] == total()
    # locks are conditional writes (If-None-Match: *): of many racing creators exactly one wins
    path = f"{st.path}/tables/_locks/race.json"
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda k: _create_exclusive(st, path, str(k).encode()), range(8)))
    assert won.count(True) == 1
