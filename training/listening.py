"""Listening to an evaluation run: `specstore export` (its predictions, the pairs' inputs and clean references
as WAV files, its metrics as CSV) and `specstore report` (a static HTML page, `index.html`, that works from
file:// without a server: lineage, summary with 95 % CIs and improvement over `noisy`, a sortable
per-utterance table, and the best, median and worst utterances by improvement in one metric with audio
players and spectrograms). The page's audio is FLAC files beside it (lossless, and every browser plays
it), its images PNGs; nothing is inlined but a few lines of CSS and script.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import soundfile as sf

from stores.errors import ConfigError, NotFoundError
from stores.paths import member
from stores.store import Store, open_store
from training.inference import load_version, model_row
from training.metrics import METRIC_NAMES
from training.plots import plot_spectrograms
from training.results import BASELINE, summarize

ROLES = ("input", "clean", "enhanced")
ASSETS = ("audio", "img")


@dataclass(frozen=True)
class Run:
    """An evaluation run as its rows say: its predictions and metrics (model and `noisy`)."""

    run_id: str
    version: str
    pairset: str
    split: str
    predictions: dict[str, dict]  # utterance_id -> predictions row
    metrics: pa.Table

    @classmethod
    def load(cls, store: Store, run_id: str) -> Run:
        metrics = store.read_table("metrics", filter=ds.field("run_id") == run_id)
        rows = store.read_table("predictions", filter=ds.field("run_id") == run_id).to_pylist()
        done = set(metrics["utterance_id"].to_pylist())
        predictions = {r["utterance_id"]: r for r in rows if r["utterance_id"] in done}  # committed shards
        if not predictions:
            known = sorted(set(store.read_table("metrics", columns=["run_id"])["run_id"].to_pylist()))
            raise NotFoundError(
                f"Expected an evaluation run ({', '.join(known[-5:]) or 'none stored'}). Got {run_id!r} instead."
            )
        first = next(iter(predictions.values()))
        return cls(run_id, first["model_version"], first["pairset"], first["split"], predictions, metrics)

    def samples(self, store: Store, utterance_id: str, role: str) -> np.ndarray:
        if role == "enhanced":
            row = self.predictions[utterance_id]
            return store.read_samples(member(row["array"], "wave"), row["offset"], row["num_samples"])
        return store.audio(self.pairset, utterance_id, role)

    def scores(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """utterance_id -> {"noisy" | "enhanced": {metric: value}}."""
        out: dict[str, dict] = {}
        for row in self.metrics.to_pylist():
            side = "noisy" if row["model"] == BASELINE else "enhanced"
            out.setdefault(row["utterance_id"], {})[side] = {m: row.get(m) for m in METRIC_NAMES}
        return out


def parse_roles(text: str) -> tuple[str, ...]:
    roles = tuple(r.strip() for r in text.split(",") if r.strip())
    if not roles or any(r not in ROLES for r in roles):
        raise ConfigError(f"Expected --roles from {', '.join(ROLES)}, comma-separated. Got {text!r} instead.")
    return tuple(dict.fromkeys(roles))


def _check_out(out: Path, marker: str, overwrite: bool) -> None:
    if (out / marker).exists() and not overwrite:
        raise ConfigError(f"Expected a folder without {marker} (or --overwrite). Got {out} with one instead.")
    out.mkdir(parents=True, exist_ok=True)


@dataclass
class Written:
    what: str
    path: str
    count: int

    def lines(self) -> list[str]:
        return [f"{self.what}: {self.count} file(s) -> {self.path}"]


def export_run(store: Store, run_id: str, out: str | Path, roles=ROLES, overwrite: bool = False) -> Written:
    """`out/<role>/<utterance_id>.wav` (float32, the store's rate) for each role, and `out/metrics.csv`."""
    run, out = Run.load(store, run_id), Path(out)
    _check_out(out, "metrics.csv", overwrite)
    count = 0
    for role in roles:
        (out / role).mkdir(exist_ok=True)
        for uid in sorted(run.predictions):
            sf.write(out / role / f"{uid}.wav", run.samples(store, uid, role), store.sample_rate, "FLOAT")
            count += 1
    metrics = run.metrics.sort_by([("utterance_id", "ascending"), ("model", "ascending")])
    pacsv.write_csv(metrics, out / "metrics.csv")
    return Written(f"export of {run_id}", str(out), count + 1)


def run_export(args) -> Written:
    roles = parse_roles(args.roles)
    return export_run(open_store(args.store, create=False), args.run, args.out, roles, args.overwrite)


# ---------------------------------------------------------------------------------------------- report


def pick_sample(run: Run, metric: str) -> list[tuple[str, str, float]]:
    """(label, utterance_id, improvement) of the best, median and worst utterance by improvement over
    `noisy` in `metric` (utterances where it is null are left out)."""
    if metric not in METRIC_NAMES:
        raise ConfigError(f"Expected a metric ({', '.join(METRIC_NAMES)}). Got {metric!r} instead.")
    gains = []
    for uid, sides in run.scores().items():
        a, b = sides.get("enhanced", {}).get(metric), sides.get("noisy", {}).get(metric)
        if a is not None and b is not None and math.isfinite(a - b):
            gains.append((a - b, uid))
    if not gains:
        return []
    gains.sort()
    picks = [("best", gains[-1]), ("median", gains[(len(gains) - 1) // 2]), ("worst", gains[0])]
    seen, out = set(), []
    for label, (gain, uid) in picks:
        if uid not in seen:
            seen.add(uid)
            out.append((label, uid, gain))
    return out


def _num(value) -> str:
    """A table cell: the exact stored value in `data-value` (what sorting and tests read), 4 decimals shown."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '<td data-value="">–</td>'
    shown = f"{value:,}" if isinstance(value, int) else f"{float(value):.4f}"
    return f'<td data-value="{float(value)!r}">{shown}</td>'


def _text(value) -> str:
    return f'<td data-value="{html.escape(str(value))}">{html.escape(str(value))}</td>'


def _table(table_id: str, header: list[str], rows: list[str]) -> str:
    head = "".join(f'<th onclick="sortBy(this)">{html.escape(h)}</th>' for h in header)
    body = "\n".join(f"<tr>{r}</tr>" for r in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def summary_section(store: Store, run_ids: list[str]) -> str:
    data = store.read_table("metrics", filter=ds.field("run_id").isin(run_ids))
    table = summarize(data, group_by=("run_id", "model"), metrics=METRIC_NAMES)
    header = ["run", "model", "n"]
    for m in METRIC_NAMES:
        header += [f"{m} mean", f"{m} 95% CI low", f"{m} 95% CI high", f"{m} Δ noisy"]
    rows = []
    for r in table.to_pylist():
        cells = [_text(r["run_id"]), _text(r["model"]), _num(r.get("rows"))]
        for m in METRIC_NAMES:
            cells += [_num(r.get(f"{m}_{s}")) for s in ("mean", "ci_low", "ci_high", "delta_mean")]
        rows.append("".join(cells))
    return _table("summary", header, rows)


def utterance_section(run: Run) -> str:
    header = ["utterance"] + [f"{m} {side}" for m in METRIC_NAMES for side in ("noisy", "enhanced", "Δ")]
    rows = []
    for uid, sides in sorted(run.scores().items()):
        cells = [_text(uid)]
        for m in METRIC_NAMES:
            a, b = sides.get("noisy", {}).get(m), sides.get("enhanced", {}).get(m)
            cells += [_num(a), _num(b), _num(None if a is None or b is None else b - a)]
        rows.append("".join(cells))
    return _table("utterances", header, rows)


def lineage_section(store: Store, run: Run, out: Path) -> str:
    """Model version, architecture and parameter count, feature set, pair set, training curves."""
    items = [
        ("run", run.run_id),
        ("pair set", f"{run.pairset} ({run.split})"),
        ("model version", run.version),
    ]
    curves = ""
    try:
        row = model_row(store, run.version)
    except NotFoundError:  # a method's run (`<method>@<feature_id>`): no trained model
        row = None
    if row is not None:
        model = load_version(store, run.version)[0]
        features = store.features(row["feature_id"])
        items += [
            ("architecture", f"{row['architecture']}, {model.num_parameters():,} parameters"),
            ("feature set", f"{row['feature_id']} ({features.kind}: {json.dumps(features.config)})"),
            ("trained on", f"{row['pairset']}, {row['epochs']} epochs"),
        ]
        curves = _curves_image(store, run.version, out)
    listed = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items)
    return f"<dl>{listed}</dl>" + (
        f'<img id="curves" alt="training curves" src="{curves}">' if curves else ""
    )


def _curves_image(store: Store, version: str, out: Path) -> str:
    from matplotlib.figure import Figure  # slow to import: only when a report is drawn

    rows = store.read_table("curves", filter=ds.field("model_version") == version).to_pylist()
    if not rows:
        return ""
    rows.sort(key=lambda r: r["epoch"])
    fig = Figure(figsize=(6.0, 3.0))
    ax = fig.subplots()
    for key in ("train_loss", "valid_loss"):
        values = [np.nan if r[key] is None else r[key] for r in rows]
        ax.plot([r["epoch"] for r in rows], values, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "img" / "curves.png", format="png", dpi=90)
    return "img/curves.png"


def sample_section(store: Store, run: Run, metric: str, out: Path) -> str:
    parts = []
    for label, uid, gain in pick_sample(run, metric):
        signals = {role: run.samples(store, uid, role) for role in ("input", "enhanced", "clean")}
        players = []
        for role, samples in signals.items():
            name = f"audio/{label}-{role}.flac"
            sf.write(out / name, np.clip(samples, -1.0, 1.0), store.sample_rate, "PCM_16", format="FLAC")
            players.append(
                f'<figure><figcaption>{role}</figcaption><audio controls preload="auto" src="{name}"></audio>'
                "</figure>"
            )
        image = f"img/{label}.png"
        plot_spectrograms(
            signals["clean"], signals["input"], signals["enhanced"], out / image, sr=store.sample_rate,
            title=f"{label}: {uid}",
        )  # fmt: skip
        parts.append(
            f"<h3>{label}: {html.escape(uid)} ({metric} {gain:+.3f} over noisy)</h3>"
            f'<div class="players">{"".join(players)}</div><img alt="spectrograms of {html.escape(uid)}" '
            f'src="{image}">'
        )
    return "\n".join(parts) or "<p>No utterance has this metric for both the model and noisy.</p>"


SCRIPT = """
function sortBy(th) {
  const table = th.closest('table'), body = table.tBodies[0];
  const col = Array.from(th.parentNode.children).indexOf(th);
  const up = th.dataset.order !== 'asc';
  th.parentNode.querySelectorAll('th').forEach(h => delete h.dataset.order);
  th.dataset.order = up ? 'asc' : 'desc';
  const key = r => r.children[col].dataset.value;
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
    if (x === '' || y === '') return (x === '') - (y === '');
    const c = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
    return up ? c : -c;
  });
  rows.forEach(r => body.appendChild(r));
}
"""
STYLE = """
body { font-family: sans-serif; margin: 2em; } table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; } th { cursor: pointer; background: #eee; }
td:first-child { text-align: left; } th[data-order=asc]::after { content: " ▲"; }
th[data-order=desc]::after { content: " ▼"; } .players { display: flex; gap: 1em; } img { max-width: 100%; }
dt { font-weight: bold; } .scroll { overflow-x: auto; }
"""


def write_report(
    store: Store, run_id: str, out: str | Path, compare=(), metric: str = "pesq_wb", overwrite: bool = False
) -> Written:
    """The listening report of `run_id` (and the runs in `compare`) as `out/index.html` with its files."""
    run, out = Run.load(store, run_id), Path(out)
    others = [Run.load(store, r).run_id for r in compare]
    _check_out(out, "index.html", overwrite)
    for sub in ASSETS:
        (out / sub).mkdir(exist_ok=True)
    body = [
        f"<h1>Listening report: {html.escape(run.run_id)}</h1>",
        "<h2>Lineage</h2>",
        lineage_section(store, run, out),
        "<h2>Summary</h2>",
        f'<div class="scroll">{summary_section(store, [run.run_id, *others])}</div>',
        f"<h2>Sample (best, median, worst by {html.escape(metric)} improvement over noisy)</h2>",
        sample_section(store, run, metric, out),
        "<h2>Per utterance (click a column to sort)</h2>",
        f'<div class="scroll">{utterance_section(run)}</div>',
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<title>{html.escape(run.run_id)}</title><style>{STYLE}</style><script>{SCRIPT}</script></head>"
        f"<body>\n{chr(10).join(body)}\n</body></html>\n"
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    return Written(f"report of {run_id}", str(out / "index.html"), len(list(out.rglob("*.*"))))


def run_report(args) -> Written:
    store = open_store(args.store, create=False)
    return write_report(store, args.run, args.out, args.compare, args.metric, args.overwrite)
