"""Per-key token buckets: a steady rate plus a burst, kept in this process.

One process per replica is the deployment; with several replicas each one
limits on its own (documented), which bounds a key at replicas x rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MAX_TRACKED = 100_000  # buckets kept at most; idle full ones are dropped first


class RateLimiter:
    """``allow(key)`` spends one token; ``retry_after(key)`` says when the next one comes."""

    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> float:
        """0.0 when the request may go ahead, else the seconds until it could."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                self._trim()
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate

    def _trim(self) -> None:
        if len(self._buckets) > MAX_TRACKED:
            now = self._clock()
            full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self._rate >= self._burst]
            for k in full[: len(self._buckets) - MAX_TRACKED // 2]:
                del self._buckets[k]
