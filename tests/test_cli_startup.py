"""What a command loads before it works (docs/BENCHMARKS.md "Command start-up" has the times): every verb's
`--help` only the standard library and our argument modules; `results` no zarr; a rerun of `features`,
`ingest` or `pairs` with nothing to do neither Prefect nor Dask."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cli

ROOT = Path(__file__).resolve().parents[1]
HEAVY = (
    "numpy",
    "scipy",
    "torch",
    "prefect",
    "distributed",
    "dask",
    "zarr",
    "pyarrow",
    "matplotlib",
    "librosa",
)
VERBS = [name for name, *_ in cli.VERBS] + ["download", "prefect-server"]


def loaded_after(code: str) -> list[str]:
    """The heavy top-level packages a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return [m for m in json.loads(done.stdout.splitlines()[-1]) if m in HEAVY]


@pytest.mark.parametrize("verb", VERBS)
def test_help_loads_no_heavy_library(verb):
    assert loaded_after(f"import cli\ncli.build_parser({verb!r}).format_help()") == []


def test_results_reads_without_zarr(tmp_path):
    from stores import open_store

    open_store(tmp_path / "s")
    code = f"import cli\ncli.main(['results', '--store', {str(tmp_path / 's')!r}, '--format', 'csv'])"
    loaded = loaded_after(code)
    assert "zarr" not in loaded and "torch" not in loaded and "prefect" not in loaded


def test_a_features_rerun_with_nothing_to_do_loads_no_prefect(demo_sets):
    root, ids = demo_sets
    code = (
        f"import cli\ncli.main(['features', '--store', {root!r}, '--pairs', 'noisy', '--kind', 'magnitude'])"
    )
    loaded = loaded_after(code)
    assert "prefect" not in loaded and "distributed" not in loaded and "torch" not in loaded


def test_a_pairs_rerun_with_nothing_to_do_loads_no_prefect(demo_sets, demo_copy):
    from pipelines.commands import pairs_done
    from pipelines.mixing import PairConfig, pairset_group
    from pipelines.sources import SourceRequest, source_audio_config, source_corpus_name
    from pipelines.testing import ingest_in_process, pairs_in_process
    from stores import open_store
    from stores.errors import ConfigError

    store, _ = demo_copy
    noise = str(Path(demo_sets[0]).parent / "demo" / "noise")
    corpus = source_corpus_name("noise", noise)
    ingest_in_process(
        store, "folder", noise, name=corpus, audio=source_audio_config("noise", store.sample_rate)
    )
    config = PairConfig(corpus="demo", kind="noisy", noise=corpus, snr=(0.0, 15.0), seed=0)
    pairs_in_process(store, "again", config)
    argv = ["pairs", "--store", store.root, "--name", "again", "--corpus", "demo", "--kind", "noisy"]
    argv += ["--noise", noise, "--snr", "0:15", "--seed", "0"]
    loaded = loaded_after(f"import cli\nassert cli.main({argv!r}) == 0")
    assert "prefect" not in loaded and "distributed" not in loaded and "torch" not in loaded
    sources = (SourceRequest("noise", corpus, noise),)
    report = pairs_done(store.root, "again", config, sources)
    assert report.pairs == 12 and report.added.utterances == 0 and report.snr_error < 0.01
    # work left (a new pair set, a changed noise folder) goes to the flow; a new set is not recorded here
    assert pairs_done(store.root, "fresh", config, sources) is None
    assert open_store(store.root).group_attrs(pairset_group("fresh")) is None
    with pytest.raises(ConfigError, match="recorded config of pair set 'again'"):
        pairs_done(store.root, "again", PairConfig(**{**config.to_dict(), "seed": 1}), sources)
