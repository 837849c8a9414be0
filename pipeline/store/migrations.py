"""Plain numbered SQL migrations (``infra/migrations/NNN_name.sql``), applied in order.

Each file runs in its own savepoint and is recorded in ``schema_migrations``;
a transaction-level advisory lock (pooler-safe) serialises concurrent migrators (several workers starting at
once), and applied files are skipped, so running it again is harmless.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from pipeline.core.errors import ProcessingError
from pipeline.core.log import get_logger

MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
ADVISORY_LOCK_KEY = 0x76696478  # "vidx"

log = get_logger(__name__)


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    path: Path

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def migrations_dir() -> Path:
    """``infra/migrations`` of the source tree vidx runs from."""
    here = Path(__file__).resolve()
    for base in (here.parents[2], Path.cwd()):
        candidate = base / "infra" / "migrations"
        if candidate.is_dir():
            return candidate
    raise ProcessingError(f"migrations directory infra/migrations not found next to {here.parents[2]} or in the current directory")


def discover(directory: Path | None = None) -> list[Migration]:
    """Migration files in order; a malformed name or duplicate number is an error, not skipped."""
    directory = directory or migrations_dir()
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise ProcessingError(f"migration file {path.name} is not named NNN_lowercase_name.sql")
        found.append(Migration(int(match.group(1)), path.stem, path))
    numbers = [m.number for m in found]
    if len(numbers) != len(set(numbers)):
        raise ProcessingError(f"duplicate migration numbers in {directory}")
    return found


def scalar(conn: psycopg.Connection, sql: str, params: Any = None) -> Any:
    """The first column of the first row of ``sql`` (None when it returns no row)."""
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def applied(conn: psycopg.Connection) -> list[str]:
    """Names recorded in schema_migrations (empty if the table does not exist yet)."""
    exists = scalar(conn, "SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return []
    return [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]


def migrate(conn: psycopg.Connection, directory: Path | None = None) -> list[str]:
    """Apply pending migrations; return the names applied now.

    A connection that is not in autocommit mode has its open transaction
    rolled back first: each migration must commit on its own.
    """
    if conn.autocommit:
        return _migrate(conn, directory)
    conn.rollback()
    conn.autocommit = True
    try:
        return _migrate(conn, directory)
    finally:
        conn.autocommit = False


def _migrate(conn: psycopg.Connection, directory: Path | None) -> list[str]:
    """All pending files in one transaction under a transaction-level lock (pooler-safe), each in a savepoint.

    A failing file is rolled back alone: the files applied before it stay applied.
    """
    pending_all = discover(directory)
    now_applied: list[str] = []
    failure: tuple[Migration, psycopg.Error] | None = None
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                name        text PRIMARY KEY,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        done = set(applied(conn))
        for migration in pending_all:
            if migration.name in done:
                continue
            try:
                with conn.transaction():
                    conn.execute(migration.sql())
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (migration.name,))
            except psycopg.Error as exc:
                failure = (migration, exc)
                break
            log.info("migration_applied", name=migration.name)
            now_applied.append(migration.name)
    if failure is not None:
        failed, error = failure
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ProcessingError(f"migration {failed.name} failed: {first}") from error
    return now_applied
