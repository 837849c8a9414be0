"""One health report for ``vidx health``, ``/v1/health`` and anything else that asks.

Each check is ``ok``, ``not configured`` (this deployment does not use it:
fine) or ``failing`` with the reason: the database (with pgvector), the
broker (the URL workers connect to, password included), object storage
(only with ``VIDX_STORAGE_URL``) and the CLIP model (skippable: loading it is
the slow part). The CLI prints the operator's detail; the API shows only the
public one, since anyone who can reach the port may ask.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum

import psycopg

from pipeline import store
from pipeline.core.config import Settings
from pipeline.core.errors import TransientError, first_line
from pipeline.storage import open_storage
from worker.broker import ping_broker, shown_broker

# What a failing check shows to anyone: host names and error texts stay with the operator.
UNAVAILABLE = "unavailable"

ConnectDatabase = Callable[[], AbstractContextManager[psycopg.Connection]]


class Status(StrEnum):
    OK = "ok"
    NOT_CONFIGURED = "not configured"
    FAILING = "failing"


@dataclass(frozen=True)
class Check:
    """One dependency's state: ``detail`` for operators, ``public`` fit for an unauthenticated endpoint."""

    name: str
    status: Status
    detail: str
    public: str

    @property
    def ok(self) -> bool:
        return self.status is not Status.FAILING


def _database(connect: ConnectDatabase) -> Check:
    with connect() as conn:
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        raise RuntimeError("pgvector extension is not installed")
    return Check("database", Status.OK, f"pgvector {row[0]}", f"pgvector {row[0]}")


def _broker(settings: Settings, timeout_s: float) -> Check:
    """Reachable and accepting our credentials; with no CELERY_BROKER_URL a missing broker is fine."""
    try:
        waiting = ping_broker(settings, timeout_s)
    except TransientError:
        if settings.broker_configured:
            raise
        detail = "not configured (CELERY_BROKER_URL unset: vidx index needs no broker; workers do)"
        return Check("broker", Status.NOT_CONFIGURED, detail, Status.NOT_CONFIGURED.value)
    return Check("broker", Status.OK, f"{shown_broker(settings)}, {waiting} message(s) waiting", "reachable")


def _storage(settings: Settings) -> Check:
    """The configured storage answers: a bucket accepts the credentials, a directory is writable."""
    return Check("storage", Status.OK, open_storage(settings).probe(), "reachable")


def _model(settings: Settings) -> Check:
    if not settings.clip_enabled:
        detail = "CLIP disabled (CLIP_ENABLED=false)"
        return Check("model", Status.NOT_CONFIGURED, detail, detail)
    from pipeline.clip import get_model  # loads torch: only when the model is checked

    model = get_model(settings)
    dim = getattr(model, "embed_dim", None)
    loaded = f"{settings.clip_model_name} loaded"
    return Check("model", Status.OK, loaded + (f" ({dim}-d)" if dim else ""), loaded)


def health_report(
    settings: Settings, *, model: bool = True, connect: ConnectDatabase | None = None, broker_timeout_s: float = 3.0
) -> list[Check]:
    """Every check, in order; none raises (a failure is a ``failing`` check with its first line).

    ``model=False`` skips loading CLIP (a cheap, frequent probe). ``connect``
    opens a database connection (default: a new one from ``settings``; the
    API passes its pool).
    """
    open_db: ConnectDatabase = connect or (lambda: store.connect(settings))
    checks: list[tuple[str, Callable[[], Check]]] = [
        ("database", lambda: _database(open_db)),
        ("broker", lambda: _broker(settings, broker_timeout_s)),
    ]
    checks.append(("storage", lambda: _storage(settings)))
    if model:
        checks.append(("model", lambda: _model(settings)))
    report = []
    for name, run in checks:
        try:
            report.append(run())
        except Exception as exc:  # noqa: BLE001 -- every failure is reported, none raised
            report.append(Check(name, Status.FAILING, first_line(exc), UNAVAILABLE))
    return report
