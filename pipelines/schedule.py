"""Scheduled feature extraction: what the nightly flow (`flows.nightly_features_flow`) reports, and the
schedule and deployment settings of `specstore serve`.

The nightly flow finds every pair set of the store that lacks a feature set of the configured kinds (for its
current committed pairs: pairs added since the last run make a new set) and computes it. `specstore serve`
registers it as a Prefect deployment with a cron or interval schedule and serves it with `prefect.serve`
(a long-running process that polls the Prefect API at $PREFECT_API_URL and runs each scheduled flow run in
a subprocess); `--once` runs it once now and exits (for a system cron job or a quick check).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from stores.commits import committed_values
from stores.errors import ConfigError
from stores.store import redact

DEFAULT_CRON = "0 2 * * *"
DEPLOYMENT = "nightly-features"


@dataclass
class NightlyItem:
    """What a nightly run did for one (pair set, kind)."""

    pairset: str
    kind: str
    status: str  # computed | present | skipped
    feature_id: str | None = None
    detail: str = ""

    def line(self) -> str:
        what = f"{self.pairset} {self.kind}: {self.status}"
        if self.feature_id:
            what += f" {self.feature_id}"
        return what + (f" ({self.detail})" if self.detail else "")


def store_pairsets(st) -> list[str]:
    """Pair sets with committed pairs in the store, sorted."""
    return sorted(committed_values(st, "pairs", "pairset"))


def check_cron(cron: str) -> str:
    from prefect.client.schemas.schedules import CronSchedule  # Prefect only for the verb that serves

    try:
        CronSchedule(cron=cron)
    except Exception as exc:  # pydantic's ValidationError
        raise ConfigError(
            f'Expected --features-cron to be a cron line like "{DEFAULT_CRON}". Got {cron!r} instead.'
        ) from exc
    return cron


def parse_schedule(cron: str | None, interval: float | None) -> dict:
    """{"interval": seconds} or {"cron": line} (default: nightly at 02:00 UTC)."""
    if interval is not None:
        if not interval > 0:
            raise ConfigError(f"Expected --features-interval > 0 seconds. Got {interval} instead.")
        return {"interval": interval}
    return {"cron": check_cron(cron or DEFAULT_CRON)}


def describe_schedule(schedule: dict) -> str:
    if "interval" in schedule:
        return f"every {schedule['interval']:g} s"
    return f'cron "{schedule["cron"]}" (UTC)'


def deployment_name(name: str | None, store: str) -> str:
    """--name, or one made from the store (one deployment per store on a shared server)."""
    if name:
        return name
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", redact(store).rstrip("/").rsplit("/", 1)[-1]).strip("-")
    return f"{base[:40] or 'store'}-{hashlib.sha256(store.encode()).hexdigest()[:8]}"


def require_prefect_server() -> None:
    """A deployment needs a server of the user's: a temporary one runs no scheduler service."""
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "Expected PREFECT_API_URL to point at a Prefect server (prefect server start --host 127.0.0.1; "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api). Got none instead (a temporary server "
            "schedules nothing)."
        )
