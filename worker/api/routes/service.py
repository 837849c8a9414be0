"""Unauthenticated service endpoints: liveness, health (database, broker, model), metrics.

Health details are generic ("unreachable"): host names and error texts go to
the log, not to anyone who can reach the port.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.core.errors import first_line
from pipeline.core.log import get_logger
from worker.api.context import ApiContext, get_context
from worker.enqueue import ping_broker

log = get_logger("vidx.api")
router = APIRouter(tags=["service"])


@router.get("/v1/live", summary="Liveness: the process answers (no dependency is checked)")
def live() -> dict[str, str]:
    return {"status": "ok"}


def _check_database(ctx: ApiContext) -> str:
    with ctx.db.connection() as conn:
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        raise RuntimeError("pgvector extension is not installed")
    return f"pgvector {row[0]}"


def _check_broker(ctx: ApiContext) -> str:
    ping_broker(ctx.settings)
    return "reachable"


def _check_model(ctx: ApiContext) -> str:
    if not ctx.settings.clip_enabled:
        raise RuntimeError("CLIP is disabled (CLIP_ENABLED=false): text and image search are unavailable")
    from pipeline.clip import get_model

    get_model(ctx.settings)
    return f"{ctx.settings.clip_model_name} loaded"


def _run_checks(ctx: ApiContext) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for name, check in (("database", _check_database), ("broker", _check_broker), ("model", _check_model)):
        try:
            checks[name] = {"ok": True, "detail": check(ctx)}
        except Exception as exc:  # noqa: BLE001 -- every failing check is reported, none raised
            log.warning("api_health_check_failed", check=name, error=first_line(exc))
            checks[name] = {"ok": False, "detail": "unavailable"}
    return checks


@router.get("/v1/health", summary="Health of the database, the broker and the CLIP model")
async def health(request: Request) -> JSONResponse:
    checks = await run_in_threadpool(_run_checks, get_context(request))
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    body = await run_in_threadpool(get_context(request).metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
