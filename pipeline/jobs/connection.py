"""The connection a job's bookkeeping runs on (claims, progress, ends, the reconciler)."""

from __future__ import annotations

import psycopg

from pipeline.core.config import Settings
from pipeline.store.connection import connect


def open_job_connection(settings: Settings) -> psycopg.Connection:
    """An autocommit connection: each row transition is its own transaction, nothing held between them.

    Connection failures (also during migrations) arrive as ``TransientError``.
    """
    conn = connect(settings)
    if not conn.autocommit:
        conn.rollback()
        conn.autocommit = True
    return conn
