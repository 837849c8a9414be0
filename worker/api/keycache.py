"""Valid keys remembered for a moment, so a request does not pay a database round trip to authenticate.

Entries are keyed by the key's SHA-256 (the key itself is not kept) and live
``KEY_CACHE_TTL_S`` seconds: a revocation takes effect within that time.
Unknown and revoked keys are never cached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pipeline.store.api_keys import KeyOwner, hash_key

KEY_CACHE_TTL_S = 2.0
MAX_ENTRIES = 10_000


class KeyCache:
    def __init__(self, ttl_s: float = KEY_CACHE_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._entries: dict[bytes, tuple[float, KeyOwner]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> KeyOwner | None:
        digest = hash_key(key)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[digest]
                return None
            return entry[1]

    def put(self, key: str, owner: KeyOwner) -> None:
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[hash_key(key)] = (self._clock() + self._ttl, owner)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
