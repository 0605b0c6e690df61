"""Summaries of the `metrics` table with pyarrow, for `specstore results` and notebooks.

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

`where` is a small filter language, parsed (never evaluated) into a `pyarrow.compute` expression:
`col == 'x'`, `!=`, `<`, `<=`, `>`, `>=` against a quoted string or a number, `col in ('a', 'b')`, joined by
`and` / `or` (`and` binds tighter) with parentheses; a timestamp column compares with a quoted ISO 8601 time
(UTC unless it says otherwise); as in SQL a comparison with a null value is false. E.g. `model in ('crn', 'dccrn') and (snr > 0 or split ==
'test')`.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from stores.config import parse_choice
from stores.errors import ConfigError
from training.metrics import METRIC_NAMES, SAMPLE_RATE

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
MAX_NESTING = 32
FILTER_EXAMPLE = "Expected a filter like model == 'crn' and split == 'test'"

# ---------------------------------------------------------------------------------------------- where


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<string>'[^']*'|"[^"]*")
      | (?P<op>==|!=|<=|>=|<|>|\(|\)|,)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_COMPARE = {
    "==": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_number(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_integer(t) or pa.types.is_floating(t)


class _FilterParser:
    def __init__(self, text: str, schema: pa.Schema) -> None:
        self.text = text
        self.schema = schema
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                self.fail(f"cannot read {text[pos:].strip()[:20]!r}")
            kind = m.lastgroup
            value = m.group(kind)  # type: ignore[arg-type]
            if kind == "word" and value.lower() in ("and", "or", "in"):
                kind, value = "op", value.lower()
            self.tokens.append((kind, value))  # type: ignore[arg-type]
            pos = m.end()
        self.pos = 0
        self.depth = 0

    def fail(self, why: str) -> NoReturn:
        raise ConfigError(
            f"{FILTER_EXAMPLE} (columns: {', '.join(self.schema.names)}). Got {self.text!r} ({why}) instead."
        )

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (kind and token[0] != kind) or (value and token[1] != value):
            expected = value or kind or "more"
            self.fail(f"expected {expected!r} {'at the end' if token is None else f'before {token[1]!r}'}")
        self.pos += 1
        return token  # type: ignore[return-value]

    def parse(self) -> pc.Expression:
        if not self.tokens:
            self.fail("empty filter")
        expr = self.disjunction()
        if self.peek() is not None:
            self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return expr

    def disjunction(self) -> pc.Expression:
        expr = self.conjunction()
        while self.peek() == ("op", "or"):
            self.take()
            expr = expr | self.conjunction()
        return expr

    def conjunction(self) -> pc.Expression:
        expr = self.atom()
        while self.peek() == ("op", "and"):
            self.take()
            expr = expr & self.atom()
        return expr

    def atom(self) -> pc.Expression:
        if self.peek() == ("op", "("):
            self.take()
            self.depth += 1
            if self.depth > MAX_NESTING:
                self.fail(f"more than {MAX_NESTING} nested parentheses")
            expr = self.disjunction()
            self.take("op", ")")
            self.depth -= 1
            return expr
        _, column = self.take("word")
        if column not in self.schema.names:
            self.fail(f"unknown column {column!r}")
        ctype = self.schema.field(column).type
        _, op = self.take("op")
        if op == "in":
            self.take("op", "(")
            values = [self.literal(column, ctype)]
            while self.peek() == ("op", ","):
                self.take()
                if self.peek() == ("op", ")"):
                    break
                values.append(self.literal(column, ctype))
            self.take("op", ")")
            if _is_number(ctype):
                value_set = pa.array([float(v) for v in values], type=pa.float64())
            elif pa.types.is_timestamp(ctype):
                value_set = pa.array([v.as_py() for v in values], type=ctype)
            else:
                value_set = pa.array(values, type=pa.string())
            return pc.field(column).isin(value_set)
        if op not in _COMPARE:
            self.fail(f"{op!r} is not a comparison (==, !=, <, <=, >, >=, in)")
        return _COMPARE[op](pc.field(column), self.literal(column, ctype))

    def literal(self, column: str, ctype: pa.DataType) -> str | float | int | pa.Scalar:
        kind, raw = self.take()
        if kind == "string" and _is_text(ctype):
            return raw[1:-1]
        if kind == "string" and pa.types.is_timestamp(ctype):
            try:
                when = datetime.fromisoformat(raw[1:-1])
            except ValueError:
                self.fail(f"column {column!r} compares with an ISO 8601 time, not {raw}")
            return pa.scalar(when.replace(tzinfo=UTC) if when.tzinfo is None else when, type=ctype)
        if kind == "number" and _is_number(ctype):
            value = float(raw)
            if not math.isfinite(value):
                self.fail(f"{raw} is not a finite number")
            return int(value) if pa.types.is_integer(ctype) and value.is_integer() else value
        want = (
            "a quoted string"
            if _is_text(ctype)
            else "a number"
            if _is_number(ctype)
            else "a quoted ISO 8601 time"
            if pa.types.is_timestamp(ctype)
            else "nothing"
        )
        self.fail(f"column {column!r} ({ctype}) compares with {want}, not {raw}")


def parse_where(text: str, schema: pa.Schema) -> pc.Expression:
    """The filter `text` as a pyarrow expression over `schema`'s columns; ConfigError on anything else."""
    if not isinstance(text, str):
        raise ConfigError(f"{FILTER_EXAMPLE}. Got {text!r} instead.")
    return _FilterParser(text, schema).parse()


# ---------------------------------------------------------------------------------------------- summarize


def _t_ppf(df: np.ndarray) -> np.ndarray:
    from scipy.stats import t

    return t.ppf(0.5 + CONFIDENCE / 2, df)


def _group_codes(table: pa.Table, group_by: Sequence[str]) -> tuple[np.ndarray, pa.Table]:
    """(a group id per row, the groups' key values in id order). Null keys form their own group."""
    if not group_by:
        return np.zeros(table.num_rows, dtype=np.int64), pa.table({})
    codes = []
    dictionaries = []
    for name in group_by:
        encoded = pc.dictionary_encode(table.column(name)).combine_chunks()
        codes.append(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64))
        dictionaries.append(encoded.dictionary)
    stacked = np.stack(codes, axis=1)
    unique, gid = np.unique(stacked, axis=0, return_inverse=True)
    keys = {}
    for i, name in enumerate(group_by):
        col = unique[:, i]
        idx = pa.array(np.where(col < 0, 0, col), mask=col < 0, type=pa.int64())
        values = (
            dictionaries[i].take(idx)
            if len(dictionaries[i])
            else pa.nulls(len(col), table.schema.field(name).type)
        )
        keys[name] = values.cast(
            table.schema.field(name).type.value_type
            if pa.types.is_dictionary(table.schema.field(name).type)
            else table.schema.field(name).type
        )
    return gid.reshape(-1).astype(np.int64), pa.table(keys)


def _stats(gid: np.ndarray, values: pa.ChunkedArray | pa.Array, groups: int) -> dict[str, np.ndarray]:
    """n, n_inf, mean, median, ci_low, ci_high per group (NaN where undefined)."""
    values = pa.chunked_array([values]) if isinstance(values, pa.Array) else values
    values = values.cast(pa.float64())
    finite = pc.fill_null(pc.is_finite(values), False).to_numpy(zero_copy_only=False)
    infinite = pc.fill_null(pc.is_inf(values), False).to_numpy(zero_copy_only=False)
    n_inf = np.bincount(gid[infinite], minlength=groups)
    sub = pa.table({"gid": pa.array(gid[finite]), "v": values.filter(pa.array(finite))})
    agg = sub.group_by("gid").aggregate(
        [("v", "count"), ("v", "mean"), ("v", "stddev", pc.VarianceOptions(ddof=1))]
    )
    at = agg.column("gid").to_numpy()
    n = np.zeros(groups, dtype=np.int64)
    mean = np.full(groups, np.nan)
    sd = np.full(groups, np.nan)
    n[at] = agg.column("v_count").to_numpy()
    mean[at] = pc.fill_null(agg.column("v_mean"), np.nan).to_numpy()
    sd[at] = pc.fill_null(agg.column("v_stddev"), np.nan).to_numpy()
    # exact medians: sort by (group, value), then the middle one or two of each group's run
    order = pc.sort_indices(sub, sort_keys=[("gid", "ascending"), ("v", "ascending")])
    sorted_gid = sub.column("gid").take(order).to_numpy()
    sorted_v = sub.column("v").take(order).to_numpy()
    starts = np.searchsorted(sorted_gid, np.arange(groups), side="left")
    median = np.full(groups, np.nan)
    has = n > 0
    lo = starts[has] + (n[has] - 1) // 2
    hi = starts[has] + n[has] // 2
    median[has] = (sorted_v[lo] + sorted_v[hi]) / 2.0
    half = np.full(groups, np.nan)
    many = n > 1
    half[many] = _t_ppf(n[many] - 1) * sd[many] / np.sqrt(n[many])
    return {
        "n": n,
        "n_inf": n_inf,
        "mean": mean,
        "median": median,
        "ci_low": mean - half,
        "ci_high": mean + half,
    }


def _float_column(values: np.ndarray) -> pa.Array:
    return pa.array(values, mask=~np.isfinite(values), type=pa.float64())


def _read(data: ds.Dataset | pa.Table, columns: list[str], expr: pc.Expression | None) -> pa.Table:
    if isinstance(data, pa.Table):
        return (data.filter(expr) if expr is not None else data).select(columns)
    return data.to_table(columns=columns, filter=expr)


def summarize(
    data: ds.Dataset | pa.Table,
    group_by: Sequence[str] = GROUP_BY,
    where: str | None = None,
    metrics: Sequence[str] | None = None,
) -> pa.Table:
    """Per-group statistics of a `metrics` table or dataset; see the module for the columns and policies.
    `metrics` defaults to every metric the data has (a table read from parts written before `lsd` existed
    has no `lsd` column). Groups come sorted by their keys; the group columns are recorded in the schema
    metadata."""
    if not isinstance(data, pa.Table | ds.Dataset):
        raise ConfigError(
            f"Expected a pyarrow Table or Dataset of metrics. Got {type(data).__name__} instead."
        )
    schema = data.schema
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
    expr = parse_where(where, schema) if where is not None and where.strip() else None

    can_pair = all(k in schema.names for k in (*PAIR_KEYS, "model"))
    columns = list(
        dict.fromkeys(
            [*group_by, *(PAIR_KEYS if can_pair else ()), *(["model"] if can_pair else []), *metrics]
        )
    )
    table = _read(data, columns, expr)
    gid, keys = _group_codes(table, group_by)
    groups = keys.num_rows if group_by else (1 if table.num_rows else 0)

    deltas: dict[str, pa.ChunkedArray] = {}
    if can_pair and table.num_rows:
        run_ids = pc.unique(table.column("run_id")).drop_null()
        base_expr = (pc.field("model") == BASELINE) & pc.field("run_id").isin(run_ids)
        base = _read(data, [*PAIR_KEYS, *metrics], base_expr)
        # one baseline per key (a duplicate would be a damaged table; its values are averaged)
        base = base.group_by(list(PAIR_KEYS)).aggregate([(m, "mean") for m in metrics])
        base = pa.table(
            {k: base.column(k) for k in PAIR_KEYS}
            | {f"__base_{m}": base.column(f"{m}_mean") for m in metrics}
        )
        rows = table.select([*PAIR_KEYS, "model"]).append_column("__row", pa.array(np.arange(table.num_rows)))
        joined = rows.join(base, keys=list(PAIR_KEYS), join_type="left outer").sort_by("__row")
        not_base = pc.fill_null(pc.not_equal(joined.column("model"), BASELINE), True)
        for m in metrics:
            d = pc.subtract(
                table.column(m).cast(pa.float64()), joined.column(f"__base_{m}").cast(pa.float64())
            )
            deltas[m] = pc.if_else(not_base, d, pa.scalar(None, pa.float64()))

    out: dict[str, pa.Array] = {name: keys.column(name) for name in group_by}
    out["rows"] = pa.array(np.bincount(gid, minlength=groups).astype(np.int64))
    for m in metrics:
        stats = _stats(gid, table.column(m), groups)
        if m in deltas:
            d = _stats(gid, deltas[m], groups)
        else:
            d = {k: np.full(groups, np.nan) for k in ("mean", "ci_low", "ci_high")} | {
                "n": np.zeros(groups, np.int64)
            }
        out[f"{m}_n"] = pa.array(stats["n"].astype(np.int64))
        out[f"{m}_n_inf"] = pa.array(stats["n_inf"].astype(np.int64))
        for s in ("mean", "median", "ci_low", "ci_high"):
            out[f"{m}_{s}"] = _float_column(stats[s])
        out[f"{m}_delta_n"] = pa.array(d["n"].astype(np.int64))
        for s in ("mean", "ci_low", "ci_high"):
            out[f"{m}_delta_{s}"] = _float_column(d[s])
    result = pa.table(out)
    if group_by:
        result = result.sort_by([(name, "ascending") for name in group_by])
    return result.replace_schema_metadata({GROUP_BY_METADATA: json.dumps(group_by).encode()})


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
        import pyarrow.csv as pacsv

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


# ---------------------------------------------------------------------------------------------- plots


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def plot_results(table: pa.Table, path: str | Path, metric: str = "pesq_wb") -> Path:
    """A PNG bar chart of a `summarize` result: each group's mean `metric` with its 95% CI and, where the
    table has it, the mean improvement over `noisy` beside it."""
    from matplotlib.figure import Figure

    if f"{metric}_mean" not in table.column_names:
        have = sorted(
            {c[: -len("_mean")] for c in table.column_names if c.endswith("_mean") and "_delta" not in c}
        )
        raise ConfigError(
            f"Expected a metric of this summary ({', '.join(have) or 'none'}). Got {metric!r} instead."
        )
    keys = group_columns(table)
    labels = []
    for row in table.select(keys).to_pylist() if keys else [{}] * table.num_rows:
        labels.append("\n".join(str(row[k]) for k in keys if row[k] is not None) or "all")

    def bars(ax, prefix: str, title: str) -> None:
        mean = np.array([np.nan if v is None else v for v in table.column(f"{prefix}_mean").to_pylist()])
        low = np.array([np.nan if v is None else v for v in table.column(f"{prefix}_ci_low").to_pylist()])
        high = np.array([np.nan if v is None else v for v in table.column(f"{prefix}_ci_high").to_pylist()])
        x = np.arange(len(labels))
        err = np.nan_to_num(np.stack([mean - low, high - mean]), nan=0.0)
        ax.bar(x, np.nan_to_num(mean, nan=0.0), yerr=err, capsize=4, color="tab:blue", alpha=0.8)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_title(title)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.grid(axis="y", alpha=0.3)

    with_delta = (
        f"{metric}_delta_mean" in table.column_names
        and table.column(f"{metric}_delta_mean").null_count < table.num_rows
    )
    width = max(6.0, 1.2 * max(1, table.num_rows)) * (2 if with_delta else 1)
    fig = Figure(figsize=(min(width, 30.0), 4.5))
    axes = fig.subplots(1, 2 if with_delta else 1, squeeze=False)[0]
    bars(axes[0], metric, f"{metric}: mean, 95% CI")
    if with_delta:
        bars(axes[1], f"{metric}_delta", f"{metric}: improvement over {BASELINE}, 95% CI")
    fig.tight_layout()
    return _save(fig, path)


def _log_spectrogram(
    x: np.ndarray, sr: int, n_fft: int, hop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.signal import stft

    f, t, z = stft(x, fs=sr, nperseg=n_fft, noverlap=n_fft - hop, boundary=None, padded=True)
    return f, t, 20.0 * np.log10(np.abs(z) + 1e-8)


def plot_spectrograms(
    clean: np.ndarray,
    noisy: np.ndarray,
    enhanced: np.ndarray | None,
    path: str | Path,
    sr: int = SAMPLE_RATE,
    title: str | None = None,
    n_fft: int = 512,
    hop: int = 128,
    dynamic_range_db: float = 80.0,
) -> Path:
    """A PNG of log-magnitude spectrograms (dB), one row each: clean, input, enhanced (left out when None),
    on one colour scale (the loudest bin to `dynamic_range_db` below it)."""
    from matplotlib.figure import Figure

    rows = [("clean", clean), ("input", noisy)] + ([("enhanced", enhanced)] if enhanced is not None else [])
    specs = []
    for name, x in rows:
        a = np.asarray(x)
        if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise ConfigError(
                f"Expected the {name} signal as a non-empty 1-D waveform. Got shape {a.shape} instead."
            )
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if a.size < n_fft:
            a = np.pad(a, (0, n_fft - a.size))
        specs.append((name, *_log_spectrogram(a, sr, n_fft, hop)))
    vmax = max(float(s[3].max()) for s in specs)
    fig = Figure(figsize=(10.0, 2.6 * len(specs) + (0.4 if title else 0.0)))
    axes = fig.subplots(len(specs), 1, squeeze=False, sharex=True)[:, 0]
    image = None
    for ax, (name, f, t, db) in zip(axes, specs, strict=True):
        image = ax.pcolormesh(
            t, f / 1000.0, db, shading="auto", vmin=vmax - dynamic_range_db, vmax=vmax, cmap="magma"
        )
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=10, loc="left")
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    fig.colorbar(image, ax=list(axes), label="dB")
    return _save(fig, path)
