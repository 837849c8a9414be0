"""The FastAPI application: routers, error handlers, metrics, the web page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from pipeline.core.config import Settings, load_settings
from worker.api.bodylimit import BodyLimitMiddleware
from worker.api.context import ApiContext
from worker.api.errors import install_error_handlers
from worker.api.metrics import MetricsMiddleware
from worker.api.routes import scenes, search, service, videos, web

DESCRIPTION = (
    "Search video scenes by text, by image and by example. Every /v1 endpoint except /v1/health "
    "and /v1/live needs `Authorization: Bearer <API key>` (`vidx apikey create`); the key decides the owner. "
    'Errors are JSON: `{"error": "...", "detail": ...}`.'
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready app on ``settings`` (default: the environment)."""
    settings = settings or load_settings()
    ctx = ApiContext.build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.db.close()

    app = FastAPI(title="vidx", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.vidx = ctx
    install_error_handlers(app)
    for module in (videos, search, scenes, service, web):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=web.WEB_DIR), name="static")
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics)  # outermost: it also counts refusals
    return app
