"""The `--where` filter: what it keeps (through `summarize`, as `specstore results` runs it), and what it
refuses before anything runs: other statements, clauses, subqueries, table functions, files."""

import builtins
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stores.errors import ConfigError
from stores.schema import rows_to_table, table_schema
from training.results import summarize
from training.row_filter import FILTER_EXAMPLE, RowFilter, connect, parse_where

VERSIONS = ("crn-60337fdd20b4", "crn-074c732946bd", "unet-b761aaf4c10c", "unet-36e63da7bf90")
MODEL_OF = {v: v.split("-")[0] for v in VERSIONS}
PAIRSETS = ("noisy-test", "voicebank-demand-given", "reverb-test", "noisy-train")
SPLITS = ("test", "train")


def _row(run, version, pairset, split, utterance, snr, **extra):
    model = MODEL_OF.get(version, version)
    return {
        "run_id": run,
        "model": model,
        "model_version": None if model == "noisy" else version,
        "pairset": pairset,
        "split": split,
        "utterance_id": utterance,
        "snr": snr,
        "stoi": 0.5 + snr / 100,
        "reconstruction": {"unet-b761aaf4c10c": "noisy-phase", "unet-36e63da7bf90": "complex"}.get(version),
        **extra,
    }


@pytest.fixture(scope="module")
def rows():
    """Every model version (and its run's noisy input, and two other methods) on every pair set and split,
    three utterances each, so that each expression below keeps some rows and leaves out others."""
    out = []
    for r, version in enumerate(VERSIONS):
        for pairset in PAIRSETS:
            for split in SPLITS:
                run = f"run-{r}-{pairset}-{split}"
                for u in range(3):
                    utterance = f"p232_{u:03d}"
                    out.append(_row(run, version, pairset, split, utterance, float(u - 1)))
                    out.append(_row(run, "noisy", pairset, split, utterance, float(u - 3)))
    for method in ("reassigned-pghi", "zero-phase"):
        out.append(_row(f"run-{method}", method, "noisy-test", "test", "p232_000", 1.5))
    return out


@pytest.fixture(scope="module")
def table(rows):
    return rows_to_table("metrics", rows)


def kept(table, text):
    """The (run, model, utterance) keys of the rows `text` keeps, as `specstore results` selects them."""
    summary = summarize(table, group_by=("run_id", "model", "utterance_id"), where=text, metrics=("snr",))
    assert set(summary.column("rows").to_pylist()) <= {1}
    return {(r["run_id"], r["model"], r["utterance_id"]) for r in summary.to_pylist()}


def expected(rows, keep):
    return {(r["run_id"], r["model"], r["utterance_id"]) for r in rows if keep(r)}


def _common_sh_where(versions):
    """The filter experiments/common.sh builds for its results tables."""
    where, sets = "model == 'noisy'", "pairset == 'none'"
    for v in versions:
        where += f" or model_version == '{v}'"
    for p in ("noisy-test", "voicebank-demand-given"):
        sets += f" or pairset == '{p}'"
    return f"split == 'test' and ({sets}) and ({where})"


# The expressions of README.md, docs/EXPERIMENTS.md, the experiments' scripts and the --where help, with
# the versions filled in, each with what it must keep.
DOCUMENTED = [
    ("split == 'test'", lambda r: r["split"] == "test"),
    (
        "split == 'test' and model != 'noisy'",
        lambda r: r["split"] == "test" and r["model"] != "noisy",
    ),
    (
        _common_sh_where(["crn-60337fdd20b4", "crn-074c732946bd"]),
        lambda r: (
            r["split"] == "test"
            and r["pairset"] in ("noisy-test", "voicebank-demand-given")
            and (r["model"] == "noisy" or r["model_version"] in ("crn-60337fdd20b4", "crn-074c732946bd"))
        ),
    ),
    (
        "split == 'test' and pairset == 'reverb-test' and (model == 'noisy' or "
        "model_version == 'unet-b761aaf4c10c' or (model_version == 'unet-36e63da7bf90' and "
        "reconstruction == 'complex'))",
        lambda r: (
            r["split"] == "test"
            and r["pairset"] == "reverb-test"
            and (r["model"] == "noisy" or r["model_version"] in ("unet-b761aaf4c10c", "unet-36e63da7bf90"))
        ),
    ),
    (
        "split == 'test' and pairset == 'noisy-test' and model != 'noisy' and (model_version == "
        "'crn-60337fdd20b4' or model == 'reassigned-pghi' or model == 'zero-phase')",
        lambda r: (
            r["split"] == "test"
            and r["pairset"] == "noisy-test"
            and r["model"] != "noisy"
            and (r["model_version"] == "crn-60337fdd20b4" or r["model"] in ("reassigned-pghi", "zero-phase"))
        ),
    ),
]


@pytest.mark.parametrize(("text", "keep"), DOCUMENTED, ids=lambda x: x if isinstance(x, str) else "")
def test_documented_expressions_keep_what_they_say(table, rows, text, keep):
    want = expected(rows, keep)
    assert 0 < len(want) < len(rows)
    assert kept(table, text) == want


@pytest.mark.parametrize(
    ("text", "keep"),
    [
        ("model = 'crn' and stoi < 0.5", lambda r: r["model"] == "crn" and r["stoi"] < 0.5),
        ("not model == 'crn'", lambda r: r["model"] != "crn"),
        (
            "model_version in ('crn-60337fdd20b4', 'unet-36e63da7bf90',)",
            lambda r: r["model_version"] in VERSIONS[::3],
        ),
        ("snr >= -1e0 AND snr <> 1", lambda r: r["snr"] in (-1.0, 0.0, 1.5)),
        ("model_version is null", lambda r: r["model_version"] is None),
        ("model like 'un%' or model ilike 'ZERO%'", lambda r: r["model"] in ("unet", "zero-phase")),
        ("snr between -2 and 0 and model in ('noisy')", lambda r: r["model"] == "noisy" and r["snr"] >= -2),
        # and binds tighter than or; a comparison with null (model_version of noisy) is not true
        (
            "model == 'crn' or pairset == 'reverb-test' and model_version != 'x'",
            lambda r: (
                r["model"] == "crn" or (r["pairset"] == "reverb-test" and r["model_version"] is not None)
            ),
        ),
        ("(" * 10 + "lower(model) = 'crn'" + ")" * 10, lambda r: r["model"] == "crn"),
    ],
)
def test_sql_expressions_match_python(table, rows, text, keep):
    assert kept(table, text) == expected(rows, keep)


def test_timestamps_compare_with_quoted_iso_times():
    stamped = rows_to_table(
        "metrics",
        [
            {
                "run_id": "r",
                "model": "crn",
                "utterance_id": "a",
                "created_at": datetime(2025, 1, 1, tzinfo=UTC),
            },
            {
                "run_id": "r",
                "model": "crn",
                "utterance_id": "b",
                "created_at": datetime(2025, 6, 1, tzinfo=UTC),
            },
        ],
    )
    assert kept(stamped, "created_at >= '2025-03-01'") == {("r", "crn", "b")}
    # UTC unless the time says otherwise: 01:00+01:00 is midnight UTC
    assert kept(stamped, "created_at < '2025-01-01T01:00:00+01:00'") == set()
    assert kept(stamped, "created_at <= '2025-01-01T01:00:00+01:00'") == {("r", "crn", "a")}
    assert kept(stamped, "created_at between '2024-12-31 23:00:00-01:00' and '2025-02-01'") == {
        ("r", "crn", "a")
    }
    with pytest.raises(ConfigError, match="timestamp"):
        parse_where("created_at > 'yesterday'", stamped.schema)


def test_unknown_columns_name_the_valid_ones(table):
    for text, name in (("speaker == 'p232'", "speaker"), ('model != "noisy"', "noisy"), ("snr > nan", "nan")):
        with pytest.raises(ConfigError) as refused:
            parse_where(text, table.schema)
        message = str(refused.value)
        assert f"unknown column '{name}'" in message and "single quotes" in message
        assert "(columns: " + ", ".join(table.schema.names) + ")" in message


def _refused(text):
    with pytest.raises(ConfigError) as refused:
        parse_where(text, table_schema("metrics"))
    message = str(refused.value)
    assert message.startswith(FILTER_EXAMPLE) and "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1=1; DROP TABLE x", "filter expression only"),
        ("snr > 0; SELECT 1", "filter expression only"),
        ("model == 'crn'; import os", "syntax error"),
        ("snr > 0 order by snr", "filter expression only"),
        ("snr > 0 group by model", "filter expression only"),
        ("snr > 0 limit 1", "filter expression only"),
        ("snr > 0) union (select 1", "syntax error"),
        ("snr > (select 1)", "subquery"),
        ("exists (select 1)", "subquery"),
        ("model in (select model from read_csv('/etc/passwd'))", "subquery"),
        ("read_parquet('x') is not null", "function 'read_parquet'"),
        ("read_text('/etc/passwd') like '%root%'", "function 'read_text'"),
        ("getenv('HOME') = '/root'", "function 'getenv'"),
        ("current_setting('threads') > 0", "function 'current_setting'"),
        ("open('/etc/passwd')", "function 'open'"),
        ("__import__('os').system('true')", "function 'system'"),
        ("sum(snr) > 0", "function 'sum'"),
        ("model in ()", "not allowed"),
        ("snr > ?", "parameter"),
        ("metrics.snr > 0", "unknown column 'metrics.snr'"),
        ("", "empty"),
        ("   ", "empty"),
        ("model == 'crn' and", "syntax error"),
        ("(model == 'crn'", "syntax error"),
        ("model == 'crn' split == 'test'", "syntax error"),
        ("snr > 'x'", "Could not convert string 'x'"),
        ("(" * 500 + "snr > 0" + ")" * 500, "nested more than 100 levels"),
        ("snr > 0 and " * 2000 + "snr > 0", "longer than 10000 characters"),
    ],
    ids=lambda x: x[:40],
)
def test_refused_before_running(text, why):
    assert why in _refused(text)


def test_a_subquery_over_a_real_file_reads_nothing(tmp_path):
    """The file exists and DuckDB could read it: the check refuses the filter before, and the connection
    refuses file access anyway."""
    secret = tmp_path / "secret.parquet"
    pq.write_table(pa.table({"model": ["the-secret-value"]}), secret)
    for text in (
        f"model in (select model from read_parquet('{secret}'))",
        f"model in (select model from '{secret}')",
        f"snr > (select count(*) from glob('{tmp_path}/*'))",
    ):
        assert "the-secret-value" not in _refused(text)
    with pytest.raises(duckdb.PermissionException):
        connect().sql(f"SELECT * FROM read_parquet('{secret}')").fetchall()
    with pytest.raises(duckdb.Error, match="locked"):
        connect().execute("SET enable_external_access = true")
    python_side = pa.table({"model": ["the-secret-value"]})  # DuckDB scans such a variable by its name...
    assert python_side.num_rows == 1
    with pytest.raises(duckdb.CatalogException):  # ...unless told not to, as this connection is
        connect().sql("SELECT * FROM python_side").fetchall()


def test_a_value_of_the_wrong_type_is_refused_when_it_runs(table):
    assert isinstance(parse_where("model == 3", table.schema), RowFilter)  # a column cast: rows decide
    with pytest.raises(ConfigError, match="Could not convert string"):
        summarize(table, where="model == 3")


def test_nothing_is_evaluated_as_python(table, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec/compile called")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    checked = parse_where("model in ('crn') and snr < 100", table.schema)
    assert set(checked.columns) == {"snr", "model"}
    assert checked.query.startswith("SELECT * FROM metrics WHERE")
    with pytest.raises(ConfigError):
        summarize(table, where="open('/etc/passwd')")
