import csv
import io
import json
import math
import subprocess
import sys

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from scipy.stats import t as student_t

from stores.errors import ConfigError
from stores.schema import rows_to_table
from training.metrics import METRIC_NAMES
from training.results import (
    brief,
    format_table,
    group_columns,
    summarize,
    t_quantile,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
UTTS = [f"p232_{i:03d}" for i in range(12)]


@pytest.fixture(scope="module")
def rows():
    """Two evaluation runs on the same utterances: r1 evaluates crn v1, r2 crn v2, each with the unprocessed
    input as model `noisy` (model_version null). r2's noisy values are shifted by +100 so that pairing across
    runs would show. Some PESQ values are null (refusals), one SNR is +inf, one utterance lacks its noisy row."""
    rng = np.random.default_rng(7)
    out = []
    for run, version, shift in (("r1", "v1", 0.0), ("r2", "v2", 100.0)):
        for i, utt in enumerate(UTTS):
            base = {m: float(rng.normal(2.0, 1.0)) for m in METRIC_NAMES}
            noisy = {m: v + shift for m, v in base.items()}
            enhanced = {m: v + float(rng.normal(1.0, 0.5)) for m, v in base.items()}
            if i in (3, 7):
                enhanced["pesq_wb"] = None
            if i == 5:
                noisy["pesq_wb"] = None
            if i == 9 and run == "r1":
                enhanced["snr"] = math.inf
            common = {"run_id": run, "pairset": "vbd", "split": "test", "utterance_id": utt}
            out.append({**common, "model": "crn", "model_version": version, **enhanced})
            if not (i == 11 and run == "r2"):
                out.append({**common, "model": "noisy", "model_version": None, **noisy})
    return out


@pytest.fixture(scope="module")
def table(rows):
    return rows_to_table("metrics", rows)


@pytest.fixture(scope="module")
def summary(table):
    return summarize(table)


def _group(summary, **keys):
    rows = [r for r in summary.to_pylist() if all(r[k] == v for k, v in keys.items())]
    assert len(rows) == 1, rows
    return rows[0]


def _expected(values):
    x = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    half = student_t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return x.size, x.mean(), np.median(x), x.mean() - half, x.mean() + half


def test_groups_and_counts(summary):
    assert group_columns(summary) == ["model", "model_version", "pairset", "split"]
    groups = [(r["model"], r["model_version"], r["rows"]) for r in summary.to_pylist()]
    # both runs' noisy rows share the group (model_version null): 12 + 11 rows
    assert groups == [("crn", "v1", 12), ("crn", "v2", 12), ("noisy", None, 23)]


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_mean_median_ci_by_hand(rows, summary, metric):
    for version in ("v1", "v2"):
        values = [r[metric] for r in rows if r["model"] == "crn" and r["model_version"] == version]
        got = _group(summary, model="crn", model_version=version)
        n, mean, median, low, high = _expected(values)
        assert got[f"{metric}_n"] == n
        assert got[f"{metric}_mean"] == pytest.approx(mean, rel=1e-12)
        assert got[f"{metric}_median"] == pytest.approx(median, rel=1e-12)
        assert got[f"{metric}_ci_low"] == pytest.approx(low, rel=1e-10)
        assert got[f"{metric}_ci_high"] == pytest.approx(high, rel=1e-10)
        assert got[f"{metric}_n_inf"] == sum(1 for v in values if v is not None and math.isinf(v))


def test_nulls_and_infinities_are_counted_not_averaged(summary):
    v1 = _group(summary, model="crn", model_version="v1")
    assert v1["rows"] == 12 and v1["pesq_wb_n"] == 10 and v1["pesq_wb_n_inf"] == 0
    assert v1["snr_n"] == 11 and v1["snr_n_inf"] == 1 and math.isfinite(v1["snr_mean"])
    assert _group(summary, model="noisy")["pesq_wb_n"] == 21


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_delta_pairs_with_the_noisy_row_of_the_same_run(rows, summary, metric):
    noisy = {(r["run_id"], r["utterance_id"]): r[metric] for r in rows if r["model"] == "noisy"}
    for version in ("v1", "v2"):
        deltas = []
        for r in rows:
            if r["model"] == "crn" and r["model_version"] == version:
                base = noisy.get((r["run_id"], r["utterance_id"]))
                if None not in (r[metric], base) and math.isfinite(r[metric]) and math.isfinite(base):
                    deltas.append(r[metric] - base)
        got = _group(summary, model="crn", model_version=version)
        n, mean, _, low, high = _expected(deltas)
        assert got[f"{metric}_delta_n"] == n
        assert got[f"{metric}_delta_mean"] == pytest.approx(mean, rel=1e-12)
        assert got[f"{metric}_delta_ci_low"] == pytest.approx(low, rel=1e-10)
        assert got[f"{metric}_delta_ci_high"] == pytest.approx(high, rel=1e-10)
    # r2's inputs are 100 higher, so its true deltas are near -99; pairing across runs would give about +1
    assert 0.0 < _group(summary, model="crn", model_version="v1")[f"{metric}_delta_mean"] < 2.0
    assert _group(summary, model="crn", model_version="v2")[f"{metric}_delta_mean"] < -90.0
    assert _group(summary, model="noisy")[f"{metric}_delta_mean"] is None
    assert _group(summary, model="noisy")[f"{metric}_delta_n"] == 0


def test_delta_counts_skip_missing_pairs(summary):
    v1, v2 = _group(summary, model_version="v1"), _group(summary, model_version="v2")
    assert v1["pesq_wb_delta_n"] == 9  # 12 − 2 enhanced nulls − 1 noisy null
    assert v1["snr_delta_n"] == 11  # the +inf is left out
    assert v2["snr_delta_n"] == 11  # p232_011 has no noisy row in r2


def test_where_keeps_the_baseline_and_filters_groups(table, summary):
    only = summarize(table, where="model == 'crn' and model_version == 'v2'")
    assert only.num_rows == 1
    assert only.to_pylist()[0] == _group(summary, model="crn", model_version="v2")


def test_other_group_by_and_metrics(table, rows):
    per_run = summarize(table, group_by=("run_id", "model"), metrics=("snr",))
    assert per_run.column_names[:3] == ["run_id", "model", "rows"]
    assert not any(c.startswith("pesq_wb") for c in per_run.column_names)
    got = {(r["run_id"], r["model"]): r["snr_n"] for r in per_run.to_pylist()}
    assert got == {("r1", "crn"): 11, ("r1", "noisy"): 12, ("r2", "crn"): 12, ("r2", "noisy"): 11}
    overall = summarize(table, group_by=(), metrics=("stoi",))
    assert overall.num_rows == 1 and overall.column("stoi_n")[0].as_py() == len(rows)
    with pytest.raises(ConfigError, match="Expected metrics"):
        summarize(table, metrics=("pesq_nb",))
    with pytest.raises(ConfigError, match="group-by"):
        summarize(table, group_by=("speaker",))


def test_brief_keeps_groups_rows_means_and_mean_gains(summary):
    short = brief(summary)
    assert short.column_names[:5] == ["model", "model_version", "pairset", "split", "rows"]
    assert "snr_mean" in short.column_names and "snr_delta_mean" in short.column_names
    assert not any(c.endswith(("_median", "_ci_low", "_n")) for c in short.column_names)
    assert short.column("snr_mean").to_pylist() == summary.column("snr_mean").to_pylist()


def test_single_value_groups_and_empty_selections(table):
    one = summarize(table, where="utterance_id == 'p232_000' and run_id == 'r1'")
    crn = _group(one, model="crn")
    assert crn["snr_n"] == 1 and crn["snr_mean"] == crn["snr_median"]
    assert crn["snr_ci_low"] is None and crn["snr_ci_high"] is None and crn["snr_delta_n"] == 1
    empty = summarize(table, where="model == 'nobody'")
    assert empty.num_rows == 0 and empty.schema.names == summarize(table).schema.names


def test_dataset_on_disk_gives_the_same_summary(tmp_path, table, summary):
    root = tmp_path / "tables" / "metrics"
    ds.write_dataset(table, root, format="parquet", partitioning=["run_id"], partitioning_flavor="hive")
    dataset = ds.dataset(root, format="parquet", partitioning="hive")
    got = summarize(dataset).to_pylist()
    assert [{k: v for k, v in r.items() if not isinstance(v, float)} for r in got] == [
        {k: v for k, v in r.items() if not isinstance(v, float)} for r in summary.to_pylist()
    ]
    for mine, theirs in zip(got, summary.to_pylist(), strict=True):
        for key, value in theirs.items():
            if isinstance(value, float):
                assert mine[key] == pytest.approx(value, rel=1e-12), key  # row order changes sums' last bits
    assert pq.read_table(next(root.rglob("*.parquet"))).num_rows > 0
    # a filter on a column that is not read (the partition key) and a baseline from the whole dataset
    crn = summarize(dataset, where="run_id == 'r2' and model == 'crn'").to_pylist()
    assert len(crn) == 1 and crn[0]["snr_delta_n"] == 11


def test_metric_parts_written_before_lsd_still_read(tmp_path, table):
    """Parts written before the `lsd` column existed read it as null through the store (its dataset carries
    the current schema); a bare table without the column summarises the metrics it has."""
    import pyarrow as pa

    from stores import open_store

    store = open_store(tmp_path / "s")
    old = table.filter(pc.field("run_id") == "r1").drop_columns(["lsd"])
    folder = store.table_path("metrics")
    store.fs.makedirs(folder, exist_ok=True)
    pq.write_table(old, f"{folder}/part-old.parquet")
    store.write_part("metrics", "part-new", table.filter(pc.field("run_id") == "r2"))
    read = store.read_table("metrics")
    assert read.schema.field("lsd").type == pa.float64() and read.num_rows == table.num_rows
    assert read.filter(pc.field("run_id") == "r1").column("lsd").null_count == old.num_rows
    got = _group(summarize(store.table("metrics")), model="crn", model_version="v1")
    assert got["lsd_n"] == 0 and got["lsd_mean"] is None and got["snr_n"] == 11
    assert _group(summarize(store.table("metrics")), model="crn", model_version="v2")["lsd_n"] == 12
    bare = summarize(old)
    assert "snr_mean" in bare.column_names and not any(c.startswith("lsd") for c in bare.column_names)
    assert "lsd" in format_table(summarize(store.table("metrics")))


# ---------------------------------------------------------------------------------------------- formats


def test_text_table_is_aligned_and_rounded(summary):
    small = summary.select(["model", "model_version", "rows", "pesq_wb_mean", "pesq_wb_ci_low"])
    text = format_table(small, "table")
    lines = text.splitlines()
    assert lines[0].split() == small.column_names
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == 2 + small.num_rows
    value = small.column("pesq_wb_mean")[0].as_py()
    assert f"{value:.3f}" in lines[2]
    # numbers are right-aligned on the header's right edge
    end = lines[0].index("pesq_wb_mean") + len("pesq_wb_mean")
    assert all(
        line[:end].endswith(f"{v:.3f}")
        for line, v in zip(lines[2:], small.column("pesq_wb_mean").to_pylist(), strict=True)
    )
    assert "-" in lines[4].split()  # the noisy group's null model_version


def test_csv_round_trips(summary):
    text = format_table(summary, "csv")
    records = list(csv.DictReader(io.StringIO(text)))
    assert len(records) == summary.num_rows and list(records[0]) == summary.column_names
    assert float(records[0]["snr_mean"]) == pytest.approx(summary.column("snr_mean")[0].as_py(), rel=1e-12)


def test_json_is_a_strict_list_of_records(summary, table):
    records = json.loads(format_table(summary, "json"))
    assert isinstance(records, list) and len(records) == summary.num_rows
    assert records[2]["model_version"] is None and records[2]["snr_delta_mean"] is None
    assert records[0]["rows"] == 12
    raw = json.loads(format_table(table.slice(0, 40), "json"), parse_constant=lambda c: pytest.fail(c))
    assert any(r["snr"] is None for r in raw)  # +inf becomes null in strict JSON


def test_unknown_format(summary):
    with pytest.raises(ConfigError, match="output format"):
        format_table(summary, "xml")


def test_empty_table_formats(table):
    empty = summarize(table, where="model == 'nobody'")
    assert json.loads(format_table(empty, "json")) == []
    assert format_table(empty, "table").count("\n") == 2
    assert format_table(empty, "csv").count("\n") == 1


# ---------------------------------------------------------------------------------------------- t quantile


@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99])
def test_t_quantile_matches_scipy(confidence):
    for df in [*range(1, 1200), 1500, 5000, 10**5, 10**6, 10**8]:
        want = student_t.ppf(0.5 + confidence / 2, df)
        assert t_quantile(df, confidence) == pytest.approx(want, rel=1e-12), df


def test_t_quantile_refuses_no_degrees_of_freedom():
    with pytest.raises(ConfigError, match="degree of freedom"):
        t_quantile(0)


def test_importing_results_loads_no_heavy_library():
    """`specstore results` imports this module: torch, matplotlib, scipy and prefect stay unloaded."""
    heavy = ("torch", "matplotlib", "scipy", "prefect")
    code = f"import sys, training.results; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
