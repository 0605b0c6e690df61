"""Summaries of the `metrics` table, for `specstore results` and notebooks, computed by DuckDB over Arrow.

`summarize` groups the per-utterance rows (by model, model version, pair set and split unless told otherwise)
and reports, per group and metric:

| column | meaning |
|---|---|
| `rows` | rows in the group (utterances × runs) |
| `<m>_n` | finite values used (nulls, i.e. refusals such as PESQ on silence, and infinities left out) |
| `<m>_n_inf` | ±inf values (e.g. SNR of an exact estimate): left out of the mean, median and CI, counted here |
| `<m>_mean`, `<m>_median` | of the finite values (the median is exact) |
| `<m>_ci_low`, `<m>_ci_high` | 95% CI of the mean: mean ± t₀.₉₇₅,ₙ₋₁·sd/√n (sd with ddof 1); null for n < 2 |
| `<m>_delta_n` | utterances paired with the unprocessed input (both values finite) |
| `<m>_delta_mean`, `<m>_delta_ci_low`, `<m>_delta_ci_high` | mean (and 95% CI) of metric − noisy metric |

The improvement over `noisy` pairs each row of another model with the `noisy` row of the same `run_id`,
`pairset`, `split` and `utterance_id` — the input evaluated in the same evaluation run — and never across runs.
The `noisy` rows are taken from the whole table, not from the `where` selection, so filtering
`model == 'crn'` still reports the improvement of `crn`. `noisy` groups themselves have null deltas.
Pairs where either value is null or infinite are left out of the delta. For `lsd` lower is better, so its
improvement is negative.

`where` is a SQL filter expression over the table's columns, e.g.
`model in ('crn', 'dccrn') and (snr > 0 or split = 'test')`; `training.row_filter` says which constructs it
accepts and how it is checked before it runs.

Why DuckDB: the filter is parsed and checked with it (`training.row_filter`), and one SQL statement then
selects, pairs each row with its `noisy` row (a join) and aggregates per group (count, mean, exact median,
sample standard deviation) on all cores, reading the Arrow columns in place. The t quantile of the intervals
is `t_quantile` below rather than scipy's: importing `scipy.stats` (or even `scipy.special`) would take a
large share of the time budget of a `specstore results` command (docs/BENCHMARKS.md), and the quantile needs
a few lines of exact formulas.
"""

from __future__ import annotations

import functools
import io
import json
import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from stores.config import parse_choice
from stores.errors import ConfigError
from training.metrics import METRIC_NAMES
from training.row_filter import TABLE, RowFilter, connect, parse_where, run

GROUP_BY: tuple[str, ...] = ("model", "model_version", "pairset", "split")
PAIR_KEYS: tuple[str, ...] = ("run_id", "pairset", "split", "utterance_id")
BASELINE = "noisy"
FORMATS = ("table", "csv", "json")
CONFIDENCE = 0.95
STATS = (
    "n",
    "n_inf",
    "mean",
    "median",
    "ci_low",
    "ci_high",
    "delta_n",
    "delta_mean",
    "delta_ci_low",
    "delta_ci_high",
)
GROUP_BY_METADATA = b"specstore.group_by"
# From this many degrees of freedom on, the Cornish-Fisher series below is exact to a double's precision;
# under it, the exact finite series is short enough.
LARGE_DF = 1000

# ---------------------------------------------------------------------------------------------- t quantile


def _central_probability(theta: float, df: int) -> float:
    """P(|T| <= sqrt(df)·tan(theta)) for Student's T with `df` degrees of freedom: the finite series of
    Abramowitz & Stegun 26.7.3 (odd df) and 26.7.4 (even df), exact for integer df."""
    odd = df % 2
    count = (df - 1) // 2 if odd else df // 2
    j = np.arange(1, count)
    ratios = 2 * j / (2 * j + 1) if odd else (2 * j - 1) / (2 * j)
    coefficients = np.cumprod(np.concatenate([[1.0], ratios]))[:count]
    series = float(coefficients @ math.cos(theta) ** (2 * np.arange(count) + odd))
    if odd:
        return 2.0 / math.pi * (theta + math.sin(theta) * series)
    return math.sin(theta) * series


@functools.lru_cache(maxsize=4096)
def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided critical value of Student's t: P(|T| <= t) = `confidence` with `df` degrees of freedom
    (scipy's `t.ppf(0.5 + confidence / 2, df)`). Under `LARGE_DF` it bisects the exact series on the angle
    atan(t / sqrt(df)) to a double's resolution; from it on, the Cornish-Fisher expansion to 1/df^4 (A&S
    26.7.5) around the normal quantile."""
    if df < 1:
        raise ConfigError(f"Expected at least 1 degree of freedom. Got {df} instead.")
    if df >= LARGE_DF:
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        g1 = (z**3 + z) / 4
        g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
        g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
        g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
        return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
    low, high = 0.0, math.pi / 2
    for _ in range(64):  # 64 halvings of an interval under 2 leave less than a double's resolution
        middle = (low + high) / 2
        if _central_probability(middle, df) < confidence:
            low = middle
        else:
            high = middle
    return math.sqrt(df) * math.tan((low + high) / 2)


# ---------------------------------------------------------------------------------------------- summarize


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _summary_sql(
    group_by: Sequence[str], metrics: Sequence[str], row_filter: RowFilter | None, can_pair: bool
) -> str:
    """One statement: the selected rows, each paired with the mean of its run's `noisy` rows for the same
    utterance (taken from the whole table), aggregated per group. Non-finite values become NULL before the
    aggregates, which leave NULLs out (cheaper than a FILTER clause on each aggregate)."""
    keys = [_quoted(k) for k in group_by]
    selection = row_filter.query if row_filter else f"SELECT * FROM {TABLE}"
    pair = [_quoted(k) for k in PAIR_KEYS]
    baseline = join = ""
    if can_pair:
        means = [f"avg(CAST({_quoted(m)} AS DOUBLE)) AS {_quoted(m)}" for m in metrics]
        baseline = (
            f"baseline AS (SELECT {', '.join(pair + means)} FROM {TABLE} "
            f"WHERE model = '{BASELINE}' GROUP BY {', '.join(pair)}),"
        )
        join = "LEFT JOIN baseline b ON " + " AND ".join(f"s.{k} = b.{k}" for k in pair)
    paired = [f"s.{k}" for k in keys]
    aggregates = [f"count(*) AS {_quoted('rows')}"]
    for metric in metrics:
        value, delta = _quoted(metric), _quoted(f"{metric}_delta")
        raw = f"CAST(s.{value} AS DOUBLE)"
        difference = (
            f"CASE WHEN s.model IS DISTINCT FROM '{BASELINE}' THEN {raw} - b.{value} END"
            if can_pair
            else "NULL"
        )
        paired += [
            f"CASE WHEN isfinite({raw}) THEN {raw} END AS {value}",
            f"CAST(isinf({raw}) AS INTEGER) AS {_quoted(metric + '_inf')}",
            f"CASE WHEN isfinite({difference}) THEN {difference} END AS {delta}",
        ]
        for column, prefix in ((value, metric), (delta, f"{metric}_delta")):
            aggregates += [
                f"count({column}) AS {_quoted(prefix + '_n')}",
                f"avg({column}) AS {_quoted(prefix + '_mean')}",
                f"stddev_samp({column}) AS {_quoted(prefix + '_sd')}",
            ]
        aggregates += [
            f"coalesce(sum({_quoted(metric + '_inf')}), 0) AS {_quoted(metric + '_n_inf')}",
            f"median({value}) AS {_quoted(metric + '_median')}",
        ]
    grouping = f"GROUP BY {', '.join(keys)}" if keys else ""
    order = f"ORDER BY {', '.join(f'{k} ASC NULLS LAST' for k in keys)}" if keys else ""
    return (
        f"WITH {baseline} paired AS (SELECT {', '.join(paired) or '1'} FROM ({selection}) s {join}) "
        f"SELECT {', '.join(keys + aggregates)} FROM paired {grouping} HAVING count(*) > 0 {order}"
    )


def _float_column(values: np.ndarray) -> pa.Array:
    return pa.array(values, mask=~np.isfinite(values), type=pa.float64())


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return column.cast(pa.float64()).fill_null(np.nan).to_numpy()


def _interval(n: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """mean ± t(n-1)·sd/sqrt(n), null where n < 2."""
    half = np.full(n.shape, np.nan)
    many = n > 1
    quantiles = np.array([t_quantile(int(k) - 1) for k in n[many]], dtype=np.float64)
    half[many] = quantiles * sd[many] / np.sqrt(n[many])
    return _float_column(mean - half), _float_column(mean + half)


def _key_type(schema: pa.Schema, name: str) -> pa.DataType:
    kind = schema.field(name).type
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _estimates(aggregated: pa.Table, prefix: str) -> dict[str, pa.Array | pa.ChunkedArray]:
    """`<prefix>_n`, `_mean`, `_ci_low` and `_ci_high` from the statement's count, mean and deviation."""
    n = aggregated.column(f"{prefix}_n").cast(pa.int64())
    mean = _floats(aggregated.column(f"{prefix}_mean"))
    low, high = _interval(n.to_numpy(), mean, _floats(aggregated.column(f"{prefix}_sd")))
    return {
        f"{prefix}_n": n,
        f"{prefix}_mean": _float_column(mean),
        f"{prefix}_ci_low": low,
        f"{prefix}_ci_high": high,
    }


def _result_table(
    aggregated: pa.Table, schema: pa.Schema, group_by: Sequence[str], metrics: Sequence[str]
) -> pa.Table:
    """The summary's columns (module docstring), in order, from the statement's result."""
    out: dict[str, pa.Array | pa.ChunkedArray] = {
        k: aggregated.column(k).cast(_key_type(schema, k)) for k in group_by
    }
    out["rows"] = aggregated.column("rows").cast(pa.int64())
    for m in metrics:
        values = _estimates(aggregated, m)
        out[f"{m}_n"] = values[f"{m}_n"]
        out[f"{m}_n_inf"] = aggregated.column(f"{m}_n_inf").cast(pa.int64())
        out[f"{m}_mean"] = values[f"{m}_mean"]
        out[f"{m}_median"] = _float_column(_floats(aggregated.column(f"{m}_median")))
        out[f"{m}_ci_low"], out[f"{m}_ci_high"] = values[f"{m}_ci_low"], values[f"{m}_ci_high"]
        out.update(_estimates(aggregated, f"{m}_delta"))
    return pa.table(out).replace_schema_metadata({GROUP_BY_METADATA: json.dumps(list(group_by)).encode()})


def _checked_columns(
    schema: pa.Schema, group_by: Sequence[str], metrics: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    group_by = list(group_by)
    metrics = [m for m in METRIC_NAMES if m in schema.names] if metrics is None else list(metrics)
    for name in metrics:
        if name not in METRIC_NAMES or name not in schema.names:
            raise ConfigError(
                f"Expected metrics among {', '.join(n for n in METRIC_NAMES if n in schema.names)}. "
                f"Got {name!r} instead."
            )
    for name in group_by:
        if name not in schema.names or name in metrics:
            raise ConfigError(
                f"Expected group-by columns among {', '.join(n for n in schema.names if n not in METRIC_NAMES)}. "
                f"Got {name!r} instead."
            )
    if len(set(group_by)) != len(group_by):
        raise ConfigError(f"Expected distinct group-by columns. Got {group_by} instead.")
    return group_by, metrics


def summarize(
    data: ds.Dataset | pa.Table,
    group_by: Sequence[str] = GROUP_BY,
    where: str | None = None,
    metrics: Sequence[str] | None = None,
) -> pa.Table:
    """Per-group statistics of a `metrics` table or dataset; see the module for the columns and policies.
    `metrics` defaults to every metric the data has (a table read from parts written before `lsd` existed
    has no `lsd` column). Groups come sorted by their keys (nulls last); the group columns are recorded in the
    schema metadata."""
    if not isinstance(data, pa.Table | ds.Dataset):
        raise ConfigError(
            f"Expected a pyarrow Table or Dataset of metrics. Got {type(data).__name__} instead."
        )
    schema = data.schema
    group_by, metrics = _checked_columns(schema, group_by, metrics)
    filtering = where is not None and (not isinstance(where, str) or where.strip())
    with connect() as con:
        row_filter = parse_where(where, schema, con) if filtering else None
        can_pair = all(k in schema.names for k in (*PAIR_KEYS, "model"))
        columns = [
            *group_by,
            *((*PAIR_KEYS, "model") if can_pair else ()),
            *metrics,
            *(row_filter.columns if row_filter else ()),
        ]
        columns = list(dict.fromkeys(columns))
        table = data.select(columns) if isinstance(data, pa.Table) else data.to_table(columns=columns)
        con.register(TABLE, table)
        aggregated = run(con, _summary_sql(group_by, metrics, row_filter, can_pair), row_filter)
    return _result_table(aggregated, schema, group_by, metrics)


def brief(table: pa.Table) -> pa.Table:
    """A summary with only its group columns, `rows`, and each metric's mean and mean gain over noisy: the
    columns an experiment's results table needs."""
    keep = {"rows", *group_columns(table)}
    return table.select([c for c in table.column_names if c in keep or c.endswith("_mean")])


def group_columns(table: pa.Table) -> list[str]:
    """The group-by columns of a `summarize` result (from its metadata; else the columns before `rows`)."""
    meta = table.schema.metadata or {}
    if GROUP_BY_METADATA in meta:
        return [c for c in json.loads(meta[GROUP_BY_METADATA]) if c in table.column_names]
    names = table.column_names
    return names[: names.index("rows")] if "rows" in names else []


# ---------------------------------------------------------------------------------------------- formats


def _is_number(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return (
            f"{value:.3f}"
            if math.isfinite(value)
            else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
        )
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[union-attr]
    return str(value)


def _json_value(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[union-attr]
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def format_table(table: pa.Table, fmt: str = "table") -> str:
    """`table`: aligned text (floats to 3 decimals, null as '-'); `csv`: pyarrow's CSV writer (full precision);
    `json`: a list of records (strict JSON: NaN and ±inf become null, timestamps ISO 8601)."""
    parse_choice(fmt, FORMATS, "the output format")
    if fmt == "csv":
        import pyarrow.csv as pacsv  # only the csv format writes with it

        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        return sink.getvalue().decode()
    if fmt == "json":
        records = [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]
        return json.dumps(records, indent=2, allow_nan=False)
    names = table.column_names
    columns = [[_cell(v) for v in table.column(name).to_pylist()] for name in names]
    numeric = [_is_number(table.schema.field(name).type) for name in names]
    widths = [max([len(name), *(len(c) for c in col)]) for name, col in zip(names, columns, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    lines = [line(names), line(["-" * w for w in widths])]
    lines += [line([col[i] for col in columns]) for i in range(table.num_rows)]
    return "\n".join(lines) + "\n"
