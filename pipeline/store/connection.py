"""Connections: which server (DATABASE_URL or the embedded one), pgvector present, schema current."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import conninfo_to_dict

from pipeline.core.config import Settings
from pipeline.core.errors import ConfigError, TransientError, first_line
from pipeline.store import embedded
from pipeline.store.migrations import migrate, scalar

MIN_PGVECTOR = (0, 8, 0)
CONNECT_TIMEOUT_S = 10

_migrated_urls: set[str] = set()
_migrate_lock = threading.Lock()


class PgvectorMissingError(ConfigError):
    """The server cannot provide pgvector 0.8+; the message says how to enable it."""

    def __init__(self, message: str) -> None:
        self.variable = "DATABASE_URL"
        Exception.__init__(self, message)


def redact(url: str) -> str:
    """A URL or conninfo fit for messages: no password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable DATABASE_URL>"
    params.pop("password", None)
    host = params.get("host", "localhost")
    port = params.get("port", "5432")
    return f"{params.get('dbname', '')}@{host}:{port}" if not str(host).startswith("/") else f"{params.get('dbname', '')}@{host}"


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database (tests, benchmarks)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL if set, else the embedded server's URL (started when needed)."""
    if settings.database_url:
        return settings.database_url
    return embedded.start(settings.data_dir)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def ensure_pgvector(conn: psycopg.Connection) -> str:
    """Create the vector extension if needed; raise a clear error if the server cannot.

    Returns the installed pgvector version.
    """
    row = conn.execute(
        "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    if row is None:
        raise PgvectorMissingError(
            "the PostgreSQL server has no pgvector extension: install pgvector 0.8+ on it "
            "(Debian/Ubuntu: apt install postgresql-<major>-pgvector; Docker: the pgvector/pgvector image; "
            "Supabase/Railway: enable the 'vector' extension), or unset DATABASE_URL to use the embedded server"
        )
    default_version, installed = row
    if installed is None:
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege:
            raise PgvectorMissingError(
                "pgvector is available but not enabled in this database, and this user may not enable it: "
                "ask an administrator to run CREATE EXTENSION vector; (Supabase: Database > Extensions > vector)"
            ) from None
        installed = scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    if _version_tuple(installed) < MIN_PGVECTOR:
        how = (
            "run ALTER EXTENSION vector UPDATE;"
            if _version_tuple(default_version) >= MIN_PGVECTOR
            else "upgrade the pgvector package on the server, then run ALTER EXTENSION vector UPDATE;"
        )
        raise PgvectorMissingError(
            f"pgvector {installed} is too old: vidx needs 0.8+ (iterative HNSW scans for per-owner search): {how}"
        )
    return installed


def open_connection(url: str, *, autocommit: bool = True) -> psycopg.Connection:
    """A raw connection (no schema check); connection failures become TransientError."""
    try:
        # No server-side prepared statements: behind a transaction-mode pooler (PgBouncer
        # before 1.21, Supabase, Neon) the next statement may reach another server session.
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S, prepare_threshold=None)
    except psycopg.OperationalError as exc:
        raise TransientError(f"cannot connect to PostgreSQL ({redact(url)}): {first_line(exc)}") from exc
    except psycopg.ProgrammingError as exc:
        raise ConfigError("DATABASE_URL", redact(url), f"a valid PostgreSQL URL ({exc})") from exc


def connect(settings: Settings, *, autocommit: bool = True, apply_migrations: bool = True) -> psycopg.Connection:
    """A connection ready for the store functions.

    Starts the embedded server when there is no DATABASE_URL, checks pgvector
    and applies pending migrations once per process and URL, and registers
    the pgvector types. Connections are autocommit by default: each store
    function opens its own transaction where it needs one.

    The server going away at any step here (connect, migrations) raises
    :class:`TransientError`, so callers never see a raw ``OperationalError`` from it.
    """
    url = resolve_database_url(settings)
    conn = open_connection(url, autocommit=autocommit)
    try:
        if apply_migrations and url not in _migrated_urls:
            with _migrate_lock:
                if url not in _migrated_urls:
                    _prepare_schema(conn)
                    _migrated_urls.add(url)
        if apply_migrations or scalar(conn, "SELECT to_regtype('vector') IS NOT NULL"):
            register_vector(conn)
    except psycopg.OperationalError as exc:
        conn.close()
        raise TransientError(f"database unavailable ({redact(url)}): {first_line(exc)}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare_schema(conn: psycopg.Connection) -> list[str]:
    ensure_pgvector(conn)
    if not conn.autocommit:
        conn.commit()
    return migrate(conn)


__all__ = [
    "PgvectorMissingError",
    "connect",
    "ensure_pgvector",
    "open_connection",
    "redact",
    "resolve_database_url",
]
