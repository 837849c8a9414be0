"""What every request handler needs, built once per app: settings, the pool, limits, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from pipeline.core.config import Settings
from worker.api.db import Database
from worker.api.keycache import KeyCache
from worker.api.metrics import ApiMetrics
from worker.api.ratelimit import RateLimiter

# Failed authentications per client address: cheap insurance against key guessing floods.
AUTH_FAILURES_PER_MINUTE = 30
AUTH_FAILURE_BURST = 10


@dataclass
class ApiContext:
    settings: Settings
    db: Database
    limiter: RateLimiter
    auth_failures: RateLimiter
    metrics: ApiMetrics
    keys: KeyCache

    @classmethod
    def build(cls, settings: Settings) -> ApiContext:
        db = Database(settings)
        return cls(
            settings=settings,
            db=db,
            limiter=RateLimiter(settings.api_rate_per_minute, settings.api_rate_burst),
            auth_failures=RateLimiter(AUTH_FAILURES_PER_MINUTE, AUTH_FAILURE_BURST),
            metrics=ApiMetrics(settings, db),
            keys=KeyCache(),
        )


def get_context(request: Request) -> ApiContext:
    return request.app.state.vidx

