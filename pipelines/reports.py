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
    """A pair set's summary: counts and ranges, read as columns (a pair set may hold hundreds of thousands
    of pairs: no row is kept)."""

    pairset: str
    kind: str
    added: ShardSummary
    pairs: int
    seconds: float
    snr: tuple[float, float] | None = None  # achieved, over pairs with a target
    snr_error: float | None = None  # largest |achieved - target|
    t60: tuple[float, float] | None = None
    rir_ids: int = 0
    clip_limited: int = 0

    def lines(self) -> list[str]:
        out = [
            f"pair set {self.pairset} ({self.kind}): {self.pairs} pairs ({self.added.utterances} added now)"
        ]
        if self.snr is not None:
            out.append(
                f"SNR achieved {self.snr[0]:.2f} to {self.snr[1]:.2f} dB, |achieved - target| <= "
                f"{self.snr_error:.4f} dB"
            )
        if self.t60 is not None:
            out.append(f"T60 {self.t60[0]:.2f} to {self.t60[1]:.2f} s over {self.rir_ids} RIR ids")
        out.append(
            f"level lowered to prevent clipping: {self.clip_limited} pairs; wall time {self.seconds:.1f} s"
        )
        return out


def pairs_report(st, pairset: str, kind: str, added: ShardSummary, seconds: float) -> PairsReport:
    """What a pairs run leaves in the store for `pairset`."""
    columns = ["snr_db_achieved", "snr_db_target", "t60_s", "rir_id", "clip_prevented"]
    rows = st.read_table("pairs", filter=ds.field("pairset") == pairset, columns=columns)
    report = PairsReport(pairset, kind, added, rows.num_rows, seconds)
    targeted = rows.filter(pc.is_valid(rows["snr_db_target"]))
    if targeted.num_rows:
        achieved = targeted["snr_db_achieved"]
        report.snr = (pc.min(achieved).as_py(), pc.max(achieved).as_py())
        report.snr_error = pc.max(pc.abs(pc.subtract(achieved, targeted["snr_db_target"]))).as_py()
    reverberant = rows.filter(pc.is_valid(rows["t60_s"]))
    if reverberant.num_rows:
        report.t60 = (pc.min(reverberant["t60_s"]).as_py(), pc.max(reverberant["t60_s"]).as_py())
        report.rir_ids = len(pc.unique(reverberant["rir_id"]))
    report.clip_limited = int(
        pc.sum(pc.cast(pc.fill_null(rows["clip_prevented"], False), "int64")).as_py() or 0
    )
    return report


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
