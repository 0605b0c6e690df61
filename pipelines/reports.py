"""What the pipeline flows return and the command line prints (`lines()`): counts and where things went,
never arrays. Evaluation's report is `training.evaluate.EvaluateReport`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow.compute as pc
import pyarrow.dataset as ds

from pipelines.ingest import ShardSummary


@dataclass
class IngestReport:
    corpus: str
    added: ShardSummary
    already_done: int
    utterances: int = 0
    hours: float = 0.0
    rejects: Counter = field(default_factory=Counter)
    pairset: str | None = None
    pairs: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        rejects = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.rejects.items())) or "none"
        out = [
            f"corpus {self.corpus}: {self.utterances} utterances, {self.hours:.3f} h "
            f"({self.added.utterances} added now, {self.already_done} inputs already done)",
            f"rejects by reason: {rejects}",
        ]
        if self.pairset:
            out.append(f"given pair set {self.pairset}: {self.pairs} pairs")
        out.append(f"wall time {self.seconds:.1f} s")
        return out


def ingest_report(
    st, corpus: str, added: ShardSummary, already: int, pairset: str | None, seconds: float
) -> IngestReport:
    """What an ingest leaves in the store for `corpus` (and its given pair set)."""
    utts = st.read_table("utterances", filter=ds.field("corpus") == corpus, columns=["duration_s"])
    rejects = st.read_table("rejects", filter=ds.field("corpus") == corpus, columns=["reason"])
    report = IngestReport(
        corpus,
        added,
        already,
        utts.num_rows,
        float(pc.sum(utts["duration_s"]).as_py() or 0) / 3600,
        Counter(rejects["reason"].to_pylist()),
        pairset,
        seconds=seconds,
    )
    if pairset:
        report.pairs = st.read_table(
            "pairs", filter=ds.field("pairset") == pairset, columns=["utterance_id"]
        ).num_rows
    return report


@dataclass
class PairsReport:
    pairset: str
    kind: str
    added: ShardSummary
    rows: list[dict]
    seconds: float

    def lines(self) -> list[str]:
        out = [
            f"pair set {self.pairset} ({self.kind}): {len(self.rows)} pairs ({self.added.utterances} added now)"
        ]
        deltas = [
            abs(r["snr_db_achieved"] - r["snr_db_target"])
            for r in self.rows
            if r["snr_db_target"] is not None
        ]
        if deltas:
            snrs = [r["snr_db_achieved"] for r in self.rows]
            out.append(
                f"SNR achieved {min(snrs):.2f} to {max(snrs):.2f} dB, |achieved - target| <= {max(deltas):.4f} dB"
            )
        t60s = [r["t60_s"] for r in self.rows if r["t60_s"] is not None]
        if t60s:
            out.append(
                f"T60 {min(t60s):.2f} to {max(t60s):.2f} s over {len({r['rir_id'] for r in self.rows})} RIR ids"
            )
        limited = sum(bool(r["clip_prevented"]) for r in self.rows)
        out.append(f"level lowered to prevent clipping: {limited} pairs; wall time {self.seconds:.1f} s")
        return out


@dataclass
class FeaturesReport:
    feature_id: str
    kind: str
    computed: bool
    pairs: int
    added: ShardSummary
    stored_bytes: int
    seconds: float

    def lines(self) -> list[str]:
        if not self.computed:
            return [
                f"feature set {self.feature_id} ({self.kind}) found: {self.pairs} pairs, nothing computed"
            ]
        rate = self.added.seconds / self.seconds if self.seconds else 0.0
        return [
            f"feature set {self.feature_id} ({self.kind}): {self.pairs} pairs, {self.added.utterances} computed now "
            f"({self.added.seconds / 3600:.3f} h of pairs, {rate:.0f} audio s per wall s)",
            f'stored {self.stored_bytes / 2**20:.1f} MiB; read with stores.open_store(ROOT).features("{self.feature_id}")',
        ]


def found_features(plan) -> FeaturesReport:
    """The report of a feature set found committed (`plan.complete`): nothing computed."""
    return FeaturesReport(
        plan.spec.feature_id, plan.spec.config.kind, False, plan.pairs, ShardSummary("all"), 0, 0.0
    )
