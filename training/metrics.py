"""Per-utterance speech-enhancement metrics: pure functions on float waveforms (16 kHz).

| name | definition | unit |
|---|---|---|
| `snr` | 10·log10(Σs² / Σ(s−ŝ)²), float64 | dB |
| `si_snr` | DCCRN: both zero-mean; s_t = <ŝ,s>·s/‖s‖²; 10·log10(‖s_t‖² / ‖ŝ−s_t‖²) | dB |
| `pesq_wb` | `pesq.pesq(16000, clean, estimate, "wb")` (ITU-T P.862.2) | MOS-LQO |
| `stoi` | `pystoi.stoi(clean, estimate, sr)` | 0…1 |
| `estoi` | `pystoi.stoi(clean, estimate, sr, extended=True)` | 0…1 |
| `lsd` | log-spectral distance (lower is better): mean over frames of √(mean over bins of (P_dB − P̂_dB)²) | dB |

`lsd` convention: P = |STFT|² with a periodic Hann window of 512 samples and a hop of 256 (32 / 16 ms at
16 kHz; the same sample counts at any rate), frames starting at sample 0 and the signal zero-padded at the
end to whole frames (one frame for a signal of at most 512 samples), float64; P_dB = 10·log10(max(P, floor))
for both signals with floor = 1e-8 · max(P of the reference), i.e. 80 dB below the reference's loudest bin,
so bins the reference does not have (digital silence, deep spectral valleys) cannot dominate; then the root
mean square over the 257 bins of each frame, averaged over all frames.

Each metric function returns a float or raises `MetricUndefined` with a human reason when the metric does not
exist for that input; `compute_metrics` turns those into `None` plus a note, so that one odd utterance never
stops an evaluation run. The policies:

- **Identical signals**: `snr` and `si_snr` are `+inf` (and `-inf` for an estimate orthogonal to the
  reference in `si_snr`); `lsd` is 0. Infinities are stored as they are (Parquet float64 holds them); `training.results`
  leaves them out of means and CIs and counts them in `<metric>_n_inf`.
- **Silent reference** (clean all zeros; for `si_snr` also a constant one): every metric is `None`
  ("silent reference") — no ratio to the reference exists and PESQ/STOI would only return noise.
- **Silent estimate**: `snr` is 0 dB (the error is the reference), `si_snr` is `None` (0/0), PESQ refuses
  (`None`), STOI and ESTOI are what pystoi returns (≈ 0), `lsd` compares with the floor (finite).
- **PESQ refusals** (under 0.25 s, no utterance detected, any other `pesq` error): `None` with the reason.
- **Too short for STOI**: pystoi needs 30 frames of 25.6 ms (≈ 0.4 s) of speech left after it drops silent
  frames; on less it warns and returns the sentinel 1e-5, which is not a score. We return `None` with the
  reason instead of storing 1e-5 (the warning is caught with `warnings.catch_warnings`, which is
  process-global: run metric workers as processes, or accept a rare misattributed warning between threads).
- **Non-finite estimate** (NaN or ±inf samples, e.g. a diverged model): every metric `None`, reason
  "non-finite estimate".
- **Bad input** (not 1-D, different lengths, empty, a non-finite reference, wide-band PESQ at a rate other
  than 16 kHz): `ConfigError` — these are bugs of the caller, not properties of an utterance.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from stores.config import Registry
from stores.errors import ConfigError, SpecstoreError

SAMPLE_RATE = 16000
# schema order of the `metrics` table
METRIC_NAMES: tuple[str, ...] = ("snr", "si_snr", "pesq_wb", "stoi", "estoi", "lsd")

PESQ_MIN_SECONDS = 0.25
LSD_N_FFT, LSD_HOP, LSD_RANGE_DB = 512, 256, 80.0
NON_FINITE_ESTIMATE = "non-finite estimate"
SILENT_REFERENCE = "silent reference: the clean signal is all zeros"
STOI_TOO_SHORT = (
    "too short for STOI: pystoi needs 30 frames of 25.6 ms (about 0.4 s) of speech after dropping "
    "silent frames"
)


class MetricUndefined(SpecstoreError):
    """The metric does not exist for this input; `reason` says why (it becomes a `MetricResult` note)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[np.ndarray, np.ndarray, int], float]  # (clean, estimate, sr) -> value
    unit: str
    description: str
    higher_is_better: bool = True


METRICS: Registry[Metric] = Registry("metric")


@dataclasses.dataclass(frozen=True)
class MetricResult:
    """The metrics of one utterance; `None` where undefined, with `notes[metric]` saying why."""

    snr: float | None = None
    si_snr: float | None = None
    pesq_wb: float | None = None
    stoi: float | None = None
    estoi: float | None = None
    lsd: float | None = None
    notes: dict[str, str] = dataclasses.field(default_factory=dict)

    def values(self) -> dict[str, float | None]:
        """{metric: value} in the `metrics` table's column order."""
        return {name: getattr(self, name) for name in METRIC_NAMES}


# ---------------------------------------------------------------------------------------------- checks


def _waveform(x: object, what: str) -> np.ndarray:
    a = np.asarray(x)
    if (
        a.ndim != 1
        or a.size == 0
        or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating))
    ):
        raise ConfigError(
            f"Expected {what} as a non-empty 1-D real waveform. Got shape {a.shape} of {a.dtype} instead."
        )
    # float samples go to pesq/pystoi exactly as given (a float32 signal from the store scores the same as
    # a direct call on it); integers become float64. SNR and SI-SNR cast to float64 themselves.
    return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)


def _pair(clean: object, estimate: object) -> tuple[np.ndarray, np.ndarray]:
    """Both as arrays; ConfigError on bad input, MetricUndefined on a non-finite estimate or a
    silent reference."""
    s = _waveform(clean, "the clean reference")
    e = _waveform(estimate, "the estimate")
    if s.shape != e.shape:
        raise ConfigError(
            f"Expected the clean reference and the estimate of the same length. Got {s.size} and {e.size} "
            "samples instead."
        )
    if not np.all(np.isfinite(s)):
        raise ConfigError("Expected a finite clean reference. Got NaN or infinite samples instead.")
    if not np.all(np.isfinite(e)):
        raise MetricUndefined(NON_FINITE_ESTIMATE)
    if not np.any(s):
        raise MetricUndefined(SILENT_REFERENCE)
    return s, e


def _sample_rate(sr: object) -> int:
    if isinstance(sr, bool) or not isinstance(sr, int | np.integer) or sr <= 0:
        raise ConfigError(f"Expected the sample rate as a positive integer (Hz). Got {sr!r} instead.")
    return int(sr)


def _db(num: float, den: float, undefined: str) -> float:
    if den == 0.0:
        if num == 0.0:
            raise MetricUndefined(undefined)
        return float("inf")
    if num == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(num / den))


# ---------------------------------------------------------------------------------------------- metrics


def snr(clean: np.ndarray, estimate: np.ndarray) -> float:
    """10·log10(Σs² / Σ(s−ŝ)²) in dB, float64; +inf for an exact estimate."""
    s, e = (x.astype(np.float64) for x in _pair(clean, estimate))
    return _db(float(np.dot(s, s)), float(np.dot(s - e, s - e)), SILENT_REFERENCE)


def si_snr(clean: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SNR of DCCRN (Hu et al., 2020) in dB, float64; +inf for an exact (scaled) estimate."""
    s, e = (x.astype(np.float64) for x in _pair(clean, estimate))
    s = s - s.mean()
    e = e - e.mean()
    energy = float(np.dot(s, s))
    if energy == 0.0:
        raise MetricUndefined("silent reference: the clean signal is constant")
    target = (float(np.dot(e, s)) / energy) * s
    residual = e - target
    return _db(
        float(np.dot(target, target)),
        float(np.dot(residual, residual)),
        "silent estimate: SI-SNR is 0/0 when the estimate is constant",
    )


def pesq_wb(clean: np.ndarray, estimate: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Wide-band PESQ (MOS-LQO) from the `pesq` package; MetricUndefined where PESQ refuses the input."""
    import pesq as pesq_lib  # loaded on first use, like every metric library here

    if _sample_rate(sr) != SAMPLE_RATE:
        raise ConfigError(f"Expected a sample rate of {SAMPLE_RATE} Hz for wide-band PESQ. Got {sr} instead.")
    s, e = _pair(clean, estimate)
    if s.size < PESQ_MIN_SECONDS * sr:
        raise MetricUndefined(
            f"PESQ refused: {s.size / sr:.3f} s is shorter than the {PESQ_MIN_SECONDS} s it needs"
        )
    if not np.any(e):
        raise MetricUndefined("PESQ refused: the estimate is silent")
    try:
        with np.errstate(all="ignore"):
            value = pesq_lib.pesq(sr, s, e, "wb")
    except (pesq_lib.PesqError, ValueError) as err:
        detail = err.args[0] if err.args else type(err).__name__
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        raise MetricUndefined(f"PESQ refused: {detail} ({type(err).__name__})") from None
    return float(value)


def _stoi(clean: np.ndarray, estimate: np.ndarray, sr: int, extended: bool) -> float:
    from pystoi import stoi as pystoi_stoi  # loaded on first use (it imports scipy.signal)

    sr = _sample_rate(sr)
    s, e = _pair(clean, estimate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with np.errstate(all="ignore"):
            value = pystoi_stoi(s, e, sr, extended=extended)
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise MetricUndefined(STOI_TOO_SHORT)
    value = float(value)
    if not np.isfinite(value):
        raise MetricUndefined("pystoi returned a non-finite value")
    return value


def stoi(clean: np.ndarray, estimate: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """STOI (Taal et al., 2011) from `pystoi`; MetricUndefined on too little speech."""
    return _stoi(clean, estimate, sr, extended=False)


def estoi(clean: np.ndarray, estimate: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Extended STOI (Jensen & Taal, 2016) from `pystoi`; MetricUndefined on too little speech."""
    return _stoi(clean, estimate, sr, extended=True)


def _power_spectrogram(x: np.ndarray) -> np.ndarray:
    """(frames, 257) float64 |STFT|² of the `lsd` convention (module docstring)."""
    from scipy.signal import get_window  # scipy.signal takes about a second to import

    frames = 1 + max(0, -(-(x.size - LSD_N_FFT) // LSD_HOP))
    padded = np.zeros((frames - 1) * LSD_HOP + LSD_N_FFT)
    padded[: x.size] = x
    framed = np.lib.stride_tricks.sliding_window_view(padded, LSD_N_FFT)[::LSD_HOP]
    return np.abs(np.fft.rfft(framed * get_window("hann", LSD_N_FFT), axis=1)) ** 2


def lsd(clean: np.ndarray, estimate: np.ndarray) -> float:
    """Log-spectral distance in dB (module docstring: 512/256 Hann STFT, 80 dB floor below the reference's
    loudest bin); 0 for identical signals, lower is better."""
    s, e = (x.astype(np.float64) for x in _pair(clean, estimate))
    reference, estimated = _power_spectrogram(s), _power_spectrogram(e)
    peak = float(reference.max())
    if peak == 0.0:  # only samples the window's zero sees (e.g. a lone first sample)
        raise MetricUndefined("silent reference: no energy in the LSD spectrogram")
    floor = peak * 10.0 ** (-LSD_RANGE_DB / 10.0)
    diff = 10.0 * (np.log10(np.maximum(reference, floor)) - np.log10(np.maximum(estimated, floor)))
    return float(np.mean(np.sqrt(np.mean(diff * diff, axis=1))))


METRICS.register("snr")(Metric("snr", lambda s, e, sr: snr(s, e), "dB", "signal-to-noise ratio"))
METRICS.register("si_snr")(
    Metric("si_snr", lambda s, e, sr: si_snr(s, e), "dB", "scale-invariant signal-to-noise ratio (DCCRN)")
)
METRICS.register("pesq_wb")(Metric("pesq_wb", pesq_wb, "MOS-LQO", "wide-band PESQ (ITU-T P.862.2)"))
METRICS.register("stoi")(Metric("stoi", stoi, "", "short-time objective intelligibility"))
METRICS.register("estoi")(Metric("estoi", estoi, "", "extended short-time objective intelligibility"))
METRICS.register("lsd")(
    Metric("lsd", lambda s, e, sr: lsd(s, e), "dB", "log-spectral distance", higher_is_better=False)
)
assert set(METRICS.names()) == set(METRIC_NAMES)


def compute_metrics(
    clean: np.ndarray,
    estimate: np.ndarray,
    sr: int = SAMPLE_RATE,
    metrics: Sequence[str] = METRIC_NAMES,
) -> MetricResult:
    """All (or the named) metrics of one utterance. Undefined metrics are `None` with a note; metrics not
    asked for are `None` with the note "not computed". Raises ConfigError on bad input (see the module)."""
    chosen = [METRICS.get(name) for name in metrics]
    sr = _sample_rate(sr)
    if chosen and any(m.name == "pesq_wb" for m in chosen) and sr != SAMPLE_RATE:
        raise ConfigError(f"Expected a sample rate of {SAMPLE_RATE} Hz for wide-band PESQ. Got {sr} instead.")
    values: dict[str, float | None] = dict.fromkeys(METRIC_NAMES)
    notes = {name: "not computed" for name in METRIC_NAMES if name not in metrics}
    try:
        s, e = _pair(clean, estimate)
    except MetricUndefined as undefined:
        notes.update({m.name: undefined.reason for m in chosen})
        return MetricResult(**values, notes=notes)
    for metric in chosen:
        try:
            values[metric.name] = metric.fn(s, e, sr)
        except MetricUndefined as undefined:
            notes[metric.name] = undefined.reason
    return MetricResult(**values, notes=notes)
