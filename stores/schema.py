"""Column schemas of the store's Parquet tables.

The design's columns come first (they are the contract); the extra columns record where each row's samples
live in `arrays.zarr` and what the audio looked like, so that a row alone is enough to read and audit it.
"""

from __future__ import annotations

import pyarrow as pa

from stores.errors import NotFoundError

TS = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "utterances": pa.schema(
        [
            ("corpus", pa.string()),
            ("utterance_id", pa.string()),
            ("speaker_id", pa.string()),
            ("split", pa.string()),
            ("source_path", pa.string()),
            ("sample_rate", pa.int32()),
            ("num_samples", pa.int64()),
            ("duration_s", pa.float64()),
            ("transcript", pa.string()),
            ("sha256", pa.string()),  # of the float32 samples as stored
            ("source_sha256", pa.string()),  # of the source file's bytes
            ("source_sample_rate", pa.int32()),
            ("source_channels", pa.int32()),
            ("peak", pa.float32()),
            ("clipped_samples", pa.int64()),
            ("array", pa.string()),
            ("offset", pa.int64()),
            ("shard", pa.string()),
            ("created_at", TS),
        ]
    ),
    "rejects": pa.schema(
        [
            ("corpus", pa.string()),
            ("source_path", pa.string()),
            ("reason", pa.string()),
            ("detail", pa.string()),
            ("utterance_id", pa.string()),
            ("stage", pa.string()),  # "ingest" or "pairs:<pairset>"
            ("shard", pa.string()),
            ("created_at", TS),
        ]
    ),
    "pairs": pa.schema(
        [
            ("pairset", pa.string()),
            ("corpus", pa.string()),
            ("utterance_id", pa.string()),
            ("split", pa.string()),
            ("kind", pa.string()),
            ("snr_db_target", pa.float64()),
            ("snr_db_achieved", pa.float64()),
            ("noise_id", pa.string()),
            ("noise_offset", pa.int64()),
            ("rir_id", pa.string()),
            ("t60_s", pa.float64()),
            ("gain_db", pa.float64()),
            ("seed", pa.int64()),
            ("level_dbfs", pa.float64()),  # drawn output level (RMS of the input)
            ("clip_prevented", pa.bool_()),  # the level was lowered so that no peak exceeds 0.99
            ("target", pa.string()),  # "dry" or "early" (reverberant kinds), "clean" otherwise
            ("params_json", pa.string()),  # everything else drawn for this pair (room, offsets, ...)
            ("source_path", pa.string()),
            ("num_samples", pa.int64()),
            ("array", pa.string()),  # group holding this shard's input/clean/noise arrays
            ("offset", pa.int64()),
            ("roles", pa.string()),  # comma-separated roles stored in `array`
            ("shard", pa.string()),
            ("created_at", TS),
        ]
    ),
    "features": pa.schema(
        [
            ("feature_id", pa.string()),
            ("kind", pa.string()),
            ("pairset", pa.string()),  # null for a corpus's features
            ("corpus", pa.string()),  # set for a corpus's features (null for a pair set's); added later:
            # sets written before read it as null
            ("config_json", pa.string()),
            ("created_at", TS),
            ("code_version", pa.string()),
        ]
    ),
    # where each utterance's frames of a feature set live (one part per shard; the set's commit is its
    # `features` row, written last)
    "feature_frames": pa.schema(
        [
            ("feature_id", pa.string()),
            ("pairset", pa.string()),
            ("utterance_id", pa.string()),
            ("split", pa.string()),
            ("array", pa.string()),  # group holding the shard's input/target (and levels) arrays
            ("frame_offset", pa.int64()),
            ("num_frames", pa.int64()),
            ("num_samples", pa.int64()),
            ("shard", pa.string()),
            ("created_at", TS),
        ]
    ),
    "models": pa.schema(
        [
            ("model_version", pa.string()),
            ("architecture", pa.string()),
            ("config_json", pa.string()),
            ("feature_id", pa.string()),
            ("pairset", pa.string()),
            ("epochs", pa.int32()),
            ("train_loss", pa.float64()),
            ("valid_loss", pa.float64()),
            ("created_at", TS),
        ]
    ),
    # one row per (model version, epoch): the training curves
    "curves": pa.schema(
        [
            ("model_version", pa.string()),
            ("epoch", pa.int32()),
            ("steps", pa.int64()),
            ("train_loss", pa.float64()),
            ("valid_loss", pa.float64()),
            ("lr", pa.float64()),
            ("seconds", pa.float64()),
            ("created_at", TS),
        ]
    ),
    # one row per (evaluation run, utterance): where the run's enhanced waveform and spectrogram live
    "predictions": pa.schema(
        [
            ("run_id", pa.string()),
            ("model_version", pa.string()),
            ("pairset", pa.string()),
            ("split", pa.string()),
            ("utterance_id", pa.string()),
            ("array", pa.string()),  # group with `wave` (and `spec`) arrays
            ("offset", pa.int64()),
            ("num_samples", pa.int64()),
            ("frame_offset", pa.int64()),
            ("num_frames", pa.int64()),
            ("reconstruction", pa.string()),
            ("shard", pa.string()),
            ("created_at", TS),
        ]
    ),
    "metrics": pa.schema(
        [
            ("run_id", pa.string()),
            ("model", pa.string()),
            ("model_version", pa.string()),
            ("pairset", pa.string()),
            ("split", pa.string()),
            ("utterance_id", pa.string()),
            ("snr", pa.float64()),
            ("si_snr", pa.float64()),
            ("pesq_wb", pa.float64()),
            ("stoi", pa.float64()),
            ("estoi", pa.float64()),
            ("lsd", pa.float64()),  # added after the first release: older parts read it as null
            ("reconstruction", pa.string()),  # how the waveform was made (null for noisy); later addition too
            ("created_at", TS),
            ("notes", pa.string()),  # JSON {metric: why it is null}, e.g. PESQ's refusals
        ]
    ),
}


def table_schema(name: str) -> pa.Schema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise NotFoundError(
            f"Expected a table name, one of {', '.join(sorted(SCHEMAS))}. Got {name!r} instead."
        ) from None


def rows_to_table(name: str, rows: list[dict]) -> pa.Table:
    """Rows (dicts) -> a table of exactly the schema's columns; missing columns are null."""
    schema = table_schema(name)
    columns = {f.name: [row.get(f.name) for row in rows] for f in schema}
    return pa.table(columns, schema=schema)
