"""The `--where` filter of `specstore results`: a SQL expression, parsed by DuckDB and checked before it runs.

A filter is a DuckDB SQL boolean expression over the `metrics` columns, e.g.
`model in ('crn', 'dccrn') and (snr > 0 or split = 'test')`: comparisons (`=` or `==`, `!=` or `<>`, `<`,
`<=`, `>`, `>=`, `is [not] distinct from`), `[not] in (...)`, `between ... and ...`, `is [not] null`,
`[not] like` / `ilike`, `and`, `or`, `not`, parentheses, arithmetic, casts, and the functions
`ALLOWED_FUNCTIONS`. Strings take single quotes (a double-quoted word is a column name, as in SQL). A
timestamp column compares with a quoted ISO 8601 time, UTC unless it says otherwise; a comparison with a
null value is not true.

Why DuckDB: it gives the whole parse tree of a statement as JSON (`json_serialize_sql`) without running
anything, so the filter is checked node by node against a list of allowed kinds before it runs: exactly one
`SELECT * FROM metrics WHERE <filter>` with no other clause, and in the filter only column references,
constants, comparisons, `and`/`or`/`not`, `in` lists, `between`, `is null`, casts and the listed functions.
Subqueries, table functions (`read_parquet`, `read_csv`), other statements and any other function are
refused with a `ConfigError` before DuckDB binds them; what runs is DuckDB's own rendering of the checked
tree, not the text. The connection also has file access, Python-object scans and configuration changes
switched off, so a construct the check missed still could not read a file. polars' `sql_expr` parses an
expression only too, but it turns a subquery over `read_csv('/etc/passwd')` into a file scan while it parses,
and it offers no parse tree to check first. The same connection computes the statistics (`training.results`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from stores.errors import ConfigError

FILTER_EXAMPLE = "Expected a filter like model == 'crn' and split == 'test'"
TABLE = "metrics"
MAX_FILTER_CHARS = 10_000
SHOWN_CHARS = 200  # of a refused filter, in its error
# Deeper expressions than this are refused by DuckDB's parser; it also bounds the JSON tree's depth well
# below Python's recursion limit when it is read back.
MAX_EXPRESSION_DEPTH = 100
ALLOWED_FUNCTIONS = frozenset(
    {
        # like, not like, ilike, not ilike (how DuckDB's parser names them)
        "~~",
        "!~~",
        "~~*",
        "!~~*",
        "+",
        "-",
        "*",
        "/",
        "abs",
        "lower",
        "upper",
        "isfinite",
        "isinf",
        "isnan",
        "starts_with",
    }
)
ALLOWED_OPERATORS = frozenset(
    {"OPERATOR_NOT", "OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL", "COMPARE_IN", "COMPARE_NOT_IN"}
)
# node classes with nothing to check beyond their children
PLAIN_CLASSES = frozenset({"CONSTANT", "COMPARISON", "CONJUNCTION", "BETWEEN", "CAST", "TYPE"})
ONLY_A_FILTER = "a filter expression only, no other clause or statement"
NODE_NAMES = {"SUBQUERY": "a subquery", "STAR": "a star", "PARAMETER": "a parameter", "WINDOW": "a window"}


@dataclass(frozen=True)
class RowFilter:
    """A checked filter: `query` is DuckDB's rendering of `SELECT * FROM metrics WHERE <filter>` (what runs),
    `columns` the columns the filter reads, `valid_columns` those it could have named."""

    text: str
    query: str
    columns: tuple[str, ...]
    valid_columns: tuple[str, ...]

    def refuse(self, why: str) -> ConfigError:
        return refuse(self.text, self.valid_columns, why)


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that reads only the Arrow tables registered on it: no file or network
    access, no scans of Python variables by name, and settings that a query cannot change."""
    return duckdb.connect(
        ":memory:",
        config={
            "enable_external_access": False,
            "python_enable_replacements": False,
            "autoload_known_extensions": False,
            "autoinstall_known_extensions": False,
            "max_expression_depth": MAX_EXPRESSION_DEPTH,
            "lock_configuration": True,
        },
    )


def refuse(text: str, columns: Sequence[str], why: str) -> ConfigError:
    """The one-line error for a filter that cannot run."""
    first_line = why.strip().splitlines()[0] if why.strip() else "an empty filter"
    shown = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."
    return ConfigError(
        f"{FILTER_EXAMPLE} (columns: {', '.join(columns)}). Got {shown!r} ({first_line}) instead."
    )


def _statement_tree(con: duckdb.DuckDBPyConnection, statement: str) -> dict:
    # the statement is a bound parameter of json_serialize_sql: it is parsed, never run
    serialized = con.execute("SELECT json_serialize_sql(?)", [statement]).fetchall()[0][0]
    try:
        return json.loads(serialized)
    except RecursionError:
        return {"error": True, "error_message": "nested too deeply"}


def _skeleton(node: object) -> object:
    """A parse tree without its source positions, to compare statements by shape."""
    if isinstance(node, dict):
        return {k: _skeleton(v) for k, v in node.items() if not k.startswith("query_location")}
    if isinstance(node, list):
        return [_skeleton(v) for v in node]
    return node


def _problem(node: dict, columns: dict[str, str], read: list[str]) -> str | None:
    """Why one parse-tree node is not allowed in a filter (None if it is); the columns it reads go to `read`.
    `columns` maps lower-case names to names: DuckDB resolves column names regardless of case."""
    kind = node["class"]
    if kind == "COLUMN_REF":
        name = node["column_names"]
        if len(name) != 1 or name[0].lower() not in columns:
            return f"unknown column {'.'.join(name)!r}; strings take single quotes"
        read.append(columns[name[0].lower()])
        return None
    if kind == "FUNCTION":
        name = node["function_name"]
        if name not in ALLOWED_FUNCTIONS or node.get("schema") or node.get("catalog"):
            allowed = ", ".join(sorted(f for f in ALLOWED_FUNCTIONS if f[0].isalpha()))
            return (
                f"function {name!r} is not allowed in a filter (allowed: like, ilike, arithmetic, {allowed})"
            )
        if node.get("filter") or node.get("distinct") or node.get("order_bys", {}).get("orders"):
            return f"function {name!r} with an aggregate's clauses"
        return None
    if kind == "OPERATOR":
        return None if node["type"] in ALLOWED_OPERATORS else f"operator {node['type']} is not allowed"
    if kind in PLAIN_CLASSES:
        return None
    return f"{NODE_NAMES.get(kind, kind.lower())} is not a filter expression"


def _check_tree(where: dict, columns: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the first reason to refuse the WHERE tree or None, the columns it reads). Visits every dict of the
    tree, whatever key holds it, so no node escapes the check."""
    by_lower = {c.lower(): c for c in columns}
    read: list[str] = []
    stack: list[object] = [where]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if "class" in item:
                why = _problem(item, by_lower, read)
                if why:
                    return why, read
            stack.extend(item.values())
    return None, list(dict.fromkeys(read))


def _parse_problem(tree: dict) -> str:
    """Why DuckDB's parser refused the statement, in the filter's terms."""
    message = tree.get("error_message", "")
    if tree.get("error_type") != "parser":  # e.g. a second statement that is not a SELECT
        return ONLY_A_FILTER
    if "expression depth" in message:
        return f"nested more than {MAX_EXPRESSION_DEPTH} levels deep"
    return message or "not a filter"


def _only_where(node: dict) -> object:
    return _skeleton({k: v for k, v in node.items() if k != "where_clause"})


def parse_where(text: str, schema: pa.Schema, con: duckdb.DuckDBPyConnection | None = None) -> RowFilter:
    """The filter `text` checked against `schema`'s columns; `ConfigError` on anything but a filter expression
    over them. It is also bound on an empty table of `schema`, so that a type error (`snr > 'x'`) shows here."""
    columns = tuple(schema.names)
    if not isinstance(text, str) or not text.strip():
        raise refuse(str(text), columns, "an empty filter")
    if len(text) > MAX_FILTER_CHARS:
        raise refuse(text, columns, f"longer than {MAX_FILTER_CHARS} characters")
    con = (con or connect()).cursor()  # its own registrations: the caller's `metrics` stays
    tree = _statement_tree(con, f"SELECT * FROM {TABLE} WHERE {text}")
    if tree.get("error"):
        raise refuse(text, columns, _parse_problem(tree))
    template = _statement_tree(con, f"SELECT * FROM {TABLE} WHERE true")["statements"][0]["node"]
    statements = tree["statements"]
    if len(statements) != 1 or _only_where(statements[0]["node"]) != _only_where(template):
        raise refuse(text, columns, ONLY_A_FILTER)
    why, read = _check_tree(statements[0]["node"]["where_clause"], columns)
    if why:
        raise refuse(text, columns, why)
    query = con.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchall()[0][0]
    checked = RowFilter(text=text, query=query, columns=tuple(read), valid_columns=columns)
    # one row of nulls: DuckDB casts a constant (`created_at > 'yesterday'`) only when a row reaches it
    con.register(TABLE, pa.table({f.name: pa.nulls(1, f.type) for f in schema}, schema=schema))
    run(con, f"SELECT count(*) FROM ({query})", checked)
    return checked


def run(con: duckdb.DuckDBPyConnection, sql: str, row_filter: RowFilter | None = None) -> pa.Table:
    """The result of `sql` as Arrow. With a filter, a DuckDB error (the filter's values not matching a
    column's type, say: our own SQL around it is fixed) becomes the filter's `ConfigError`."""
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as error:
        if row_filter is None:
            raise
        raise row_filter.refuse(str(error)) from None
