"""When a job is tried again: the one home of vidx's retry policy.

Backoff after a failed attempt, the look-again delay for a video another
run holds, the bounds on retries, and the publish retries of a message.
The Celery tasks apply these numbers; ``RETRY_BACKOFF_MAX_S`` lives in the
configuration because the broker's redelivery timeout is derived from it.
"""

from __future__ import annotations

import random
from typing import Any

from pipeline.core.config import RETRY_BACKOFF_MAX_S

RETRY_BACKOFF_BASE_S = 1  # integers: full jitter draws with random.randrange
# When the database cannot even be reached to claim the job, attempts cannot
# be counted in the row; bound the retries of that phase separately.
MAX_UNCLAIMED_RETRIES = 30
MAX_REEMBED_RETRIES = 5
# A busy video's message comes back just after the other run's lease would expire.
BUSY_MIN_DELAY_S = 1.0
BUSY_MAX_DELAY_S = 60.0
# Publishing a message: a few quick retries if the broker blips (kombu's retry policy).
PUBLISH_RETRY_POLICY: dict[str, Any] = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}


def retry_countdown(retries: int) -> float:
    """Exponential backoff with full jitter (Celery's formula): up to 1, 2, 4, ... seconds, capped."""
    ceiling = min(int(RETRY_BACKOFF_MAX_S), RETRY_BACKOFF_BASE_S * 2 ** max(0, retries))
    return float(random.randrange(ceiling + 1))


def busy_countdown(lease_left_s: float | None) -> float:
    """When to look again at a video another run holds: right after its lease would expire."""
    return min(BUSY_MAX_DELAY_S, max(BUSY_MIN_DELAY_S, (lease_left_s or 0.0) + 1.0))
