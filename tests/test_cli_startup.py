"""What a command loads before it works (docs/BENCHMARKS.md "Command start-up" has the times): every verb's
`--help` only the standard library and our argument modules; `results` no zarr; a rerun of `features` or
`ingest` with nothing to do neither Prefect nor Dask."""

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
