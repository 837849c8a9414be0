"""Unauthenticated service endpoints: liveness, health, metrics.

Health is the report ``vidx health`` prints (worker.health: database, broker,
storage when configured, model), so the two always agree. Its details here
are the public ones ("unavailable"): host names and error texts go to the
log, not to anyone who can reach the port.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.core.log import get_logger
from worker.api.context import ApiContext, get_context
from worker.health import health_report

log = get_logger("vidx.api")
# The API's probe answers quickly: a load balancer's health request has a short deadline of its own.
BROKER_TIMEOUT_S = 1.0
router = APIRouter(tags=["service"])


@router.get("/v1/live", summary="Liveness: the process answers (no dependency is checked)")
def live() -> dict[str, str]:
    return {"status": "ok"}


def _report(ctx: ApiContext) -> dict[str, Any]:
    """The one health report (worker.health), shown with its public details; the reasons go to the log."""
    checks: dict[str, Any] = {}
    for check in health_report(ctx.settings, connect=ctx.db.connection, broker_timeout_s=BROKER_TIMEOUT_S):
        if not check.ok:
            log.warning("api_health_check_failed", check=check.name, error=check.detail)
        checks[check.name] = {"ok": check.ok, "status": check.status.value, "detail": check.public}
    return checks


@router.get("/v1/health", summary="Health of the database, the broker, object storage and the CLIP model")
async def health(request: Request) -> JSONResponse:
    checks = await run_in_threadpool(_report, get_context(request))
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    body = await run_in_threadpool(get_context(request).metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
