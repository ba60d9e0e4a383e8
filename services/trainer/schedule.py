"""``vigil train --schedule "<cron>"``: run training at the times a cron expression names.

Local scheduling only (one process, in the foreground); on Kubernetes the chart's CronJob /
RayJob plays this part. A failed run is logged and the schedule goes on.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Callable

from vigil.clock import utcnow

log = logging.getLogger(__name__)


def cron_iter(expr: str, start: datetime | None = None):
    try:
        from croniter import croniter
    except ImportError:  # pragma: no cover - the dependency is declared
        raise RuntimeError("--schedule needs the croniter package (pip install croniter)") from None
    if not croniter.is_valid(expr):
        raise ValueError(f"not a valid cron expression: {expr!r} (five fields, e.g. '0 3 * * *')")
    return croniter(expr, start or utcnow())


def run_schedule(expr: str, job: Callable[[], object], stop: threading.Event, *,
                 max_runs: int | None = None, echo: Callable[[str], None] = print,
                 now: Callable[[], datetime] = utcnow) -> int:
    """Call ``job`` at every time of ``expr`` until ``stop`` is set (or ``max_runs`` runs); returns runs."""
    it = cron_iter(expr, now())
    runs = 0
    while not stop.is_set() and (max_runs is None or runs < max_runs):
        at = it.get_next(datetime)
        echo(f"next training run at {at.isoformat()}")
        if stop.wait(max(0.0, (at - now()).total_seconds())):
            break
        try:
            job()
        except Exception as exc:  # noqa: BLE001 - one failed run must not end the schedule
            log.exception("scheduled training run failed")
            echo(f"training run failed: {exc}")
        runs += 1
    return runs
