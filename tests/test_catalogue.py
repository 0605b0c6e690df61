"""The store as a catalogue, through the command line: `ls`, `show`, `rm`, `gc` and `du` on a store with two pair
sets, three feature sets, two models and three evaluation runs (built once, copied for each test)."""

import json
import os
import shutil
import time

import pytest

import cli
from features import feature_config
from pipelines.mixing import PairConfig
from pipelines.testing import (
    build_demo_store,
    copy_store,
    features_in_process,
    ingest_in_process,
    pairs_in_process,
    tone,
    write_audio,
)
from stores.locks import run_lock
from stores.verify import verify_store
from training.enhance import Enhancer
from training.evaluate import evaluate_serially
from training.inference import mask_model_for
from training.trainer import TrainConfig, train

TINY = {"channels": [4, 8, 8, 8, 8]}


def evaluate_in_process(store, version, pairset, split="test"):
    return evaluate_serially(store, Enhancer(store, version), pairset, split)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """pairs `noisy` and `noisy2` (corpus demo, noises of corpus noise-noisy); features `mag` and `mel` of noisy,
    `mag2` of noisy2; models m1, m2 trained on mag; runs r1 (m1 on noisy), r2 (m1 on noisy2), r3 (m2 on noisy)."""
    folder = tmp_path_factory.mktemp("catalogue")
    store, ids = build_demo_store(
        folder, {"mag": feature_config("magnitude"), "mel": feature_config("logmel")}
    )
    config = PairConfig(corpus="demo", kind="noisy", noise="noise-noisy", snr=(0.0, 15.0), seed=1)
    pairs_in_process(store, "noisy2", config)
    ids["mag2"] = features_in_process(store, "noisy2", feature_config("magnitude"))
    base = {"feature_id": ids["mag"], "epochs": 1, "max_steps": 2, "batch_size": 4, "segment": 20}
    for k, seed in (("m1", 1), ("m2", 2)):
        ids[k] = train(
            store, TrainConfig(model="crn", model_args=TINY, seed=seed, **base), "cpu", progress=False
        )
    ids["r1"] = evaluate_in_process(store, ids["m1"], "noisy")
    ids["r2"] = evaluate_in_process(store, ids["m1"], "noisy2")
    ids["r3"] = evaluate_in_process(store, ids["m2"], "noisy")
    return store.root, ids


@pytest.fixture
def scenario(built, tmp_path):
    root, ids = built
    return copy_store(root, tmp_path), ids


def specstore(capsys, store, *args):
    """(exit code, stdout lines, stderr) of `specstore ARGS --store ROOT`."""
    code = cli.main([*map(str, args), "--store", store.root])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def file_bytes(store) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(store.path) for f in files)


def test_ls_lists_every_object_with_counts_sizes_and_what_it_was_made_from(scenario, capsys):
    store, ids = scenario
    code, out, _ = specstore(capsys, store, "ls", "--format", "json")
    assert code == 0
    listed = {o["id"]: o for o in json.loads("\n".join(out))}
    mag, mel, mag2 = (f"features:{ids[k]}" for k in ("mag", "mel", "mag2"))
    m1, m2 = f"model:{ids['m1']}", f"model:{ids['m2']}"
    r1, r2, r3 = (f"run:{ids[k]}" for k in ("r1", "r2", "r3"))
    assert set(listed) == {
        "corpus:demo", "corpus:noise-noisy", "pairs:noisy", "pairs:noisy2", mag, mel, mag2, m1, m2, r1, r2, r3,
    }  # fmt: skip
    assert listed["pairs:noisy2"]["made_from"] == ["corpus:demo", "corpus:noise-noisy"]
    assert listed[mag]["made_from"] == ["pairs:noisy"] and listed[mag2]["made_from"] == ["pairs:noisy2"]
    assert listed[m1]["made_from"] == [mag] and listed[m1]["counts"] == {"epochs": 1}
    assert listed[r2]["made_from"] == [m1, "pairs:noisy2"] and listed[r3]["made_from"] == [m2, "pairs:noisy"]
    assert listed["corpus:demo"]["counts"] == {"utterances": 12}
    assert listed["pairs:noisy"]["counts"] == {"pairs": 12}
    frames = sum(
        r["num_frames"]
        for r in store.read_table("feature_frames").to_pylist()
        if r["feature_id"] == ids["mag"]
    )
    assert listed[mag]["counts"] == {"utterances": 12, "frames": frames}
    metric_rows = store.read_table("metrics").to_pylist()
    assert listed[r1]["counts"] == {"metric rows": sum(r["run_id"] == ids["r1"] for r in metric_rows)}
    # every byte of the store belongs to one object but the group metadata of arrays.zarr's top groups
    location = store.array_location()
    metadata = sum(
        os.path.getsize(p) for p in [f"{location}/zarr.json", *store.fs.glob(f"{location}/*/zarr.json")]
    )
    assert sum(o["bytes"] for o in listed.values()) + metadata == file_bytes(store)
    code, out, _ = specstore(capsys, store, "ls", "models")
    assert code == 0 and out[0].split() == ["id", "created", "(UTC)", "bytes", "counts", "made", "from"]
    assert [line.split()[0] for line in out[1:3]] == sorted([m1, m2], key=lambda m: listed[m]["created"])
    assert out[1].endswith(f"1 epochs  {mag}") and out[-1] == "2 object(s)"


def test_show_gives_the_config_and_the_lineage_both_ways(scenario, capsys):
    store, ids = scenario
    code, out, _ = specstore(capsys, store, "show", ids["mag"])
    assert code == 0 and out[0].startswith(f"features:{ids['mag']}: feature set, created ")
    assert '    "kind": "magnitude",' in out and "made from: pairs:noisy" in out
    tree = out[out.index("made from it:") + 1 :]
    m1, m2 = sorted([ids["m1"], ids["m2"]])
    runs = {
        m: sorted(ids[r] for r in ("r1", "r2", "r3") if ids["m1" if r != "r3" else "m2"] == m)
        for m in (m1, m2)
    }
    assert tree == [
        f"  model:{m1}",
        *(f"    run:{r}" for r in runs[m1]),
        f"  model:{m2}",
        *(f"    run:{r}" for r in runs[m2]),
    ]
    code, out, _ = specstore(capsys, store, "show", "corpus:noise-noisy", "--format", "json")
    doc = json.loads("\n".join(out))
    assert doc["used_by"] == ["pairs:noisy", "pairs:noisy2"] and doc["made_from"] == []
    assert f"run:{ids['r2']}" in doc["made_from_it"] and f"model:{ids['m1']}" in doc["made_from_it"]


def test_rm_of_a_feature_set_with_models_refuses_and_names_them(scenario, capsys):
    store, ids = scenario
    before = file_bytes(store)
    code, out, err = specstore(capsys, store, "rm", f"features:{ids['mag']}")
    assert code == 2 and out == [] and len(err.splitlines()) == 1
    for key in ("m1", "m2", "r1", "r2", "r3"):
        assert ids[key] in err
    assert "--cascade" in err and file_bytes(store) == before


def test_rm_cascade_removes_the_set_its_models_and_their_runs_freeing_what_ls_reported(scenario, capsys):
    store, ids = scenario
    _, out, _ = specstore(capsys, store, "ls", "--format", "json")
    sizes = {o["id"]: o["bytes"] for o in json.loads("\n".join(out))}
    gone = [
        f"features:{ids['mag']}",
        *(f"model:{ids[k]}" for k in ("m1", "m2")),
        *(f"run:{ids[k]}" for k in ("r1", "r2", "r3")),
    ]
    _, dry, _ = specstore(capsys, store, "rm", ids["mag"], "--cascade", "--dry-run")
    before = file_bytes(store)
    code, out, _ = specstore(capsys, store, "rm", ids["mag"], "--cascade")
    assert code == 0
    assert [line.replace("would remove", "removed") for line in dry[:-1]] == out[:-1]
    assert sorted(line.split()[1] for line in out[:-1]) == sorted(gone)
    assert out[-2] == f"removed features:{ids['mag']} ({sizes[gone[0]]} bytes)"  # made-from-it first
    freed = sum(sizes[g] for g in gone)
    assert out[-1] == f"rm: freed {freed} bytes ({freed / 2**20:.1f} MiB), 6 object(s)"
    assert before - file_bytes(store) == freed
    assert verify_store(store) == []
    _, out, _ = specstore(capsys, store, "ls", "--format", "json")
    assert {o["id"] for o in json.loads("\n".join(out))} == set(sizes) - set(gone)
    assert {r["run_id"] for r in store.read_table("predictions").to_pylist()} == set()
    assert not store.fs.exists(f"{store.path}/checkpoints/{ids['m1']}")
    code, out, _ = specstore(capsys, store, "gc")
    assert code == 0 and out == ["gc: freed 0 bytes (0.0 MiB), 0 item(s)"]
    assert store.features(ids["mag2"]).read(store.features(ids["mag2"]).utterances()[0]).shape[1] == 257


def test_bad_input_is_one_line_and_exit_2(scenario, capsys, tmp_path):
    store, ids = scenario
    for n in range(2):
        write_audio(tmp_path / "other" / f"u{n}.wav", tone(1.0, seed=n))
    ingest_in_process(store, "folder", tmp_path / "other", name="noisy")  # a corpus named like a pair set
    cases = {
        ("show", "no-such-thing"): "Expected an object of the store",
        ("rm", f"model:{ids['mag']}"): f"which is a feature set (features:{ids['mag']})",
        ("rm",): "Expected at least one object id",
        ("show", "noisy"): "Got 2: corpus:noisy, pairs:noisy (name one as KIND:ID)",
        ("rm", "widget:x"): "Expected object kind (KIND:ID) to be one of",
        ("ls", "widgets"): "Expected one of corpora, pairs, features, models, runs",
        ("ls", "--format", "xml"): "Expected --format",
    }
    for args, message in cases.items():
        code, out, err = specstore(capsys, store, *args)
        assert code == 2 and out == [] and len(err.splitlines()) == 1, (args, err)
        assert message in err and err.startswith(f"specstore {args[0]}: error: "), (args, err)
    code, out, _ = specstore(capsys, store, "show", "corpus:noisy")
    assert code == 0 and out[0].startswith("corpus:noisy: corpus") and '   "reader": "folder",' in out


def test_a_decomposed_set_whose_masks_came_from_a_model_is_made_from_it(scenario, capsys):
    store, ids = scenario
    config = feature_config("decomposed", mask=f"model:{ids['m1']}", n=4)
    decomposed = features_in_process(store, "noisy", config, mask=mask_model_for(store, config))
    code, out, _ = specstore(capsys, store, "show", f"model:{ids['m1']}")
    assert f"  features:{decomposed}" in out
    code, _, err = specstore(capsys, store, "rm", f"model:{ids['m1']}")
    assert code == 2 and f"features:{decomposed}" in err
    code, out, _ = specstore(capsys, store, "rm", f"model:{ids['m1']}", "--cascade")
    assert code == 0 and any(line.startswith(f"removed features:{decomposed} ") for line in out)
    assert verify_store(store) == []


def test_rm_refuses_while_a_run_uses_the_object_or_writes_it(scenario, capsys):
    store, ids = scenario
    with run_lock(store, "train-crn-0123456789ab", uses=(f"features:{ids['mag2']}",)):
        code, _, err = specstore(capsys, store, "rm", ids["mag2"])
    assert code == 2 and "train-crn-0123456789ab" in err and f"uses features:{ids['mag2']}" in err
    with run_lock(store, f"features-{ids['mag2']}"):
        code, _, err = specstore(capsys, store, "rm", "pairs:noisy2", "--cascade")
    assert code == 2 and f"Expected no other run writing features-{ids['mag2']}" in err
    assert verify_store(store) == [] and store.features(ids["mag2"]).utterances()
    code, _, _ = specstore(capsys, store, "rm", "pairs:noisy2", "--cascade")
    assert code == 0 and verify_store(store) == []


def test_gc_removes_garbage_keeps_resumable_training_and_skips_what_a_writer_holds(scenario, capsys):
    store, ids = scenario
    old = time.time() - 3600
    # a staging part of a killed writer; arrays of a feature shard that never committed
    staging = f"{store.table_path('pairs')}/_staging/part-x.0123.parquet"
    store.fs.makedirs(staging.rsplit("/", 1)[0], exist_ok=True)
    store.fs.pipe_file(staging, b"half a part")
    os.utime(staging, (old, old))
    group = store.read_table("feature_frames").to_pylist()[0]["array"]
    src = store.array_location(group)
    orphan = group.rsplit("/", 1)[0] + "/features-never-committed"
    shutil.copytree(src, store.array_location(orphan))
    # an evaluation killed before its metrics committed: predictions arrays and rows
    prediction = store.read_table("predictions").to_pylist()[0]["array"]
    killed = "run-20990101T000000-abcdef"
    shutil.copytree(store.array_location(prediction), store.array_location(f"predictions/{killed}/shard"))
    # trainings killed before their models row: one resumable (its features exist), one not
    for version, feature_id in (("crn-aaaaaaaaaaaa", ids["mag"]), ("crn-bbbbbbbbbbbb", "magnitude-gone")):
        folder = f"{store.path}/checkpoints/{version}"
        store.fs.makedirs(folder, exist_ok=True)
        store.fs.pipe_file(f"{folder}/epoch-0001.pt", b"x" * 1000)
        store.fs.pipe_file(f"{folder}/training.json", json.dumps({"feature_id": feature_id}).encode())
    sizes = {p: sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs) for p in
             (store.array_location(orphan), store.array_location(f"predictions/{killed}"))}  # fmt: skip
    before = file_bytes(store)
    with run_lock(store, f"evaluate-{killed}"):  # its writer still runs
        code, out, _ = specstore(capsys, store, "gc")
    assert code == 0
    assert f"removed {staging}: a staging file whose write never finished (11 bytes)" in out
    assert (
        f"removed {orphan}: arrays of a shard that never committed ({sizes[store.array_location(orphan)]} bytes)"
        in out
    )
    assert any(line.startswith(f"skipped predictions/{killed}: Expected no other run") for line in out)
    assert any(line.startswith(f"kept {store.path}/checkpoints/crn-aaaaaaaaaaaa: ") for line in out)
    assert any(line.startswith(f"removed {store.path}/checkpoints/crn-bbbbbbbbbbbb: ") for line in out)
    freed = (
        11 + sizes[store.array_location(orphan)] + 1000 + len(json.dumps({"feature_id": "magnitude-gone"}))
    )
    assert out[-1] == f"gc: freed {freed} bytes ({freed / 2**20:.1f} MiB), 3 item(s)"
    assert before - file_bytes(store) == freed
    code, out, _ = specstore(capsys, store, "gc", "--include-resumable")
    assert (
        f"removed predictions/{killed}: predictions whose metrics never committed ({sizes[store.array_location(f'predictions/{killed}')]} bytes)"
        in out
    )
    assert any(line.startswith(f"removed {store.path}/checkpoints/crn-aaaaaaaaaaaa: ") for line in out)
    assert verify_store(store) == []
    code, out, _ = specstore(capsys, store, "gc", "--dry-run")
    assert out == ["gc: would free 0 bytes (0.0 MiB), 0 item(s)"]


def test_du_counts_every_byte_by_kind_and_by_codec(scenario, capsys):
    store, _ = scenario
    code, out, _ = specstore(capsys, store, "du", "--format", "json")
    doc = json.loads("\n".join(out))
    assert code == 0 and doc["total"] == file_bytes(store)
    assert sum(v["bytes"] for v in doc["kinds"].values()) == doc["total"]
    assert doc["kinds"]["models"]["objects"] == 2 and doc["kinds"]["garbage (specstore gc)"]["bytes"] == 0
    assert {"blosc-lz4", "raw"} <= set(doc["codecs"])
    arrays = sum(v["bytes"] for v in doc["codecs"].values())
    checkpoints = sum(os.path.getsize(p) for p in store.fs.find(f"{store.path}/checkpoints"))
    assert arrays + doc["tables"] + checkpoints == doc["total"]
