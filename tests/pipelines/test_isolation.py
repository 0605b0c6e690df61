"""A decoder that crashes the process (a real SIGABRT) on one chosen file: the run dies, and its rerun finds
the shard's in-flight marker, decodes that shard's files one by one in child processes, rejects the file
that kills its child (`decoder crashed`) and ingests the rest."""

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial

import pytest

from pipelines.audio import AudioConfig, Rejected, load_audio
from pipelines.corpora import scan_corpus
from pipelines.ingest import ingest_shard, plan_ingest
from pipelines.isolation import ChildCaller, ChildDied, ChildTimedOut
from pipelines.pairs import given_pairs_shard, plan_given_pairs
from pipelines.testing import abort_on, arrange_voicebank_train
from stores import open_store
from stores.inflight import in_flight, marker_path
from stores.verify import verify_store

FILES = ["speechbrain__spk1_snt1.wav", "speechbrain__spk1_snt2.wav", "speechbrain__spk2_snt1.wav"]

# The first run, in a process of its own: plans the corpus and runs its shards with the aborting loader.
FIRST_RUN = textwrap.dedent(
    """
    import sys
    from functools import partial
    from pipelines.audio import AudioConfig
    from pipelines.corpora import scan_corpus
    from pipelines.ingest import ingest_shard, plan_ingest
    from pipelines.testing import abort_on
    from stores import open_store

    store = open_store(sys.argv[1])
    plan = plan_ingest(store, "folder", scan_corpus("folder", sys.argv[2]), "real", shard_size=2)
    for shard in plan.shards:
        ingest_shard(store, "real", "folder", shard, AudioConfig(), loader=partial(abort_on, sys.argv[3]))
    """
)


@pytest.fixture
def corpus(real_data, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in FILES:
        shutil.copyfile(real_data / "clean" / name, folder / name)
    return folder


def test_a_crashing_decoder_is_rejected_by_the_rerun(corpus, tmp_path):
    crash = FILES[1]  # in the first shard of two files
    first = subprocess.run(
        [sys.executable, "-c", FIRST_RUN, str(tmp_path / "store"), str(corpus), crash],
        capture_output=True,
        timeout=120,
    )
    assert first.returncode == -signal.SIGABRT, first.stderr
    store = open_store(tmp_path / "store", create=False)
    assert store.committed_shards("utterances") == set()
    plan = plan_ingest(store, "folder", scan_corpus("folder", corpus), "real", shard_size=2)
    crashed_shard, other_shard = plan.shards
    marker = json.loads(store.fs.cat_file(marker_path(store, crashed_shard.shard_id)))
    assert marker["pid"] != 0 and not store.fs.exists(marker_path(store, other_shard.shard_id))

    loader = partial(abort_on, crash)  # the rerun's decoder crashes on the same file again
    summaries = [ingest_shard(store, "real", "folder", s, AudioConfig(), loader=loader) for s in plan.shards]

    assert [s.utterances for s in summaries] == [1, 1] and summaries[0].rejects == {"decoder crashed": 1}
    (reject,) = store.read_table("rejects").to_pylist()
    assert reject["source_path"] == str(corpus / crash) and "killed by SIGABRT" in reject["detail"]
    assert f"pid {marker['pid']}" in reject["detail"]
    utterances = store.read_table("utterances").to_pylist()
    assert sorted(u["utterance_id"] for u in utterances) == sorted(n[:-4] for n in FILES if n != crash)
    assert not store.fs.exists(marker_path(store, crashed_shard.shard_id))
    assert verify_store(store) == []
    assert plan_ingest(store, "folder", scan_corpus("folder", corpus), "real").shards == []


def test_marker_is_removed_when_the_shard_raises(tmp_path):
    store = open_store(tmp_path / "store")
    with pytest.raises(KeyError), in_flight(store, "ingest-x-1") as previous:
        assert previous is None and store.fs.exists(marker_path(store, "ingest-x-1"))
        raise KeyError("a bug in the shard: the retry should decode normally")
    assert not store.fs.exists(marker_path(store, "ingest-x-1"))


def test_given_pairs_shard_left_in_flight_isolates_its_files(real_data, tmp_path):
    root = arrange_voicebank_train(real_data, tmp_path / "vb", count=2)
    store = open_store(tmp_path / "store")
    items = scan_corpus("voicebank-demand", root)
    for shard in plan_ingest(store, "voicebank-demand", items, "vb", 4).shards:
        ingest_shard(store, "vb", "voicebank-demand", shard, AudioConfig())
    pairset, (shard,) = plan_given_pairs(store, "vb", items, shard_size=4)
    # what a dead attempt leaves behind: its marker
    store.fs.pipe_file(marker_path(store, shard.shard_id), json.dumps({"pid": 1, "host": "h"}).encode())
    crash = items[0].given["given"].rsplit("/", 1)[-1]
    summary = given_pairs_shard(store, "vb", pairset, shard, AudioConfig(), loader=partial(abort_on, crash))
    assert summary.utterances == 1 and summary.rejects == {"decoder crashed": 1}
    (reject,) = store.read_table("rejects").to_pylist()
    assert reject["stage"] == f"pairs:{pairset}" and "pid 1 on h" in reject["detail"]


def test_child_caller_returns_results_rejects_and_survives_deaths():
    with ChildCaller() as child:
        assert child.call(sorted, [3, 1, 2]) == [1, 2, 3]
        with pytest.raises(Rejected) as info:  # a Rejected comes back whole
            child.call(load_audio, "/no/such/file.wav", AudioConfig())
        assert info.value.reason == "unreadable file" and "FileNotFoundError" in info.value.detail
        with pytest.raises(ChildDied, match="killed by SIGABRT"):
            child.call(abort_on, "x.wav", "x.wav", None)
        assert child.call(sorted, "ba") == ["a", "b"]  # a fresh child
        started = time.monotonic()
        with pytest.raises(ChildTimedOut):
            child.call(time.sleep, 30, timeout=1)
        assert time.monotonic() - started < 15
