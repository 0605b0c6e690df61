"""A short seeded run of the fuzz campaign (`benchmarks/fuzz_audio.py` runs 100,000 files): every mutated
real recording is decoded or rejected with a reason; no other exception, no native crash, no hang. Time and
memory per file are the benchmark's business, not asserted here."""

from pipelines.fuzzing import MUTATIONS, campaign_bases, hostile_file, outcome_counts, run_campaign

REASONS = {
    "decoded",
    "unreadable file",
    "file too large",
    "empty file",
    "not audio",
    "truncated file",
    "unsupported sample rate",
    "implausible frame count",
    "too long",
    "multichannel",
    "decoding failed",
    "empty audio",
    "too short",
    "non-finite samples",
    "samples out of range",
    "silent",
}


def test_short_fuzz_run_only_decodes_or_rejects(real_data, tmp_path):
    paths = campaign_bases(real_data, tmp_path / "bases")
    outcomes = run_campaign(paths, 300, seed=24, work=tmp_path, workers=1)
    assert [o.index for o in outcomes] == list(range(300))
    counts = outcome_counts(outcomes)
    assert set(counts) <= REASONS, counts
    assert {o.mutation for o in outcomes} == set(MUTATIONS)
    assert counts["decoded"] > 0 and len(counts) >= 5, counts  # the mutations reach many checks


def test_hostile_files_are_reproducible_from_seed_and_index():
    bases = [bytes(range(256)) * 40, b"RIFF" + bytes(4000)]
    assert hostile_file(bases, 7, 12) == hostile_file(bases, 7, 12)
    assert len({hostile_file(bases, 7, i)[1] for i in range(50)}) >= 45  # (two may coincide)
    assert hostile_file(bases, 8, 12) != hostile_file(bases, 7, 12)
