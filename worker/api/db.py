"""Pooled database connections for the API: a search must not pay for a connect.

The pool is created on first use (so the server starts even while the
database is down, and /v1/live answers); migrations are applied once then,
through ``pipeline.store.connect``, exactly as every other vidx process does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolTimeout

from pipeline import store
from pipeline.core.config import Settings
from pipeline.core.errors import TransientError, first_line

POOL_WAIT_S = 10.0


class Database:
    """A lazily opened connection pool on the configured database."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()

    def _open(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                store.connect(self._settings).close()  # starts the embedded server if needed; migrates once
                url = store.resolve_database_url(self._settings)
                pool = ConnectionPool(
                    url,
                    min_size=1,
                    max_size=self._settings.api_db_pool_size,
                    kwargs={"autocommit": True, "connect_timeout": store.connection.CONNECT_TIMEOUT_S},
                    configure=register_vector,
                    open=False,
                    name="vidx-api",
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection from the pool; an unreachable database raises TransientError.

        No health query on checkout (it would cost a round trip per request): a connection
        that broke is discarded by the pool when it comes back, and the request gets a 503.
        """
        pool = self._open()
        try:
            with pool.connection(timeout=POOL_WAIT_S) as conn:
                yield conn
        except PoolTimeout as exc:
            raise TransientError(f"database unavailable: {first_line(exc)}") from None
        except psycopg.OperationalError as exc:
            raise TransientError(f"database unavailable: {first_line(exc)}") from None

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
