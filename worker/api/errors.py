"""One error shape for every failure: ``{"error": short message, "detail": more or null}``.

Handlers turn vidx's own errors, FastAPI's validation errors and unknown
routes into that shape with the right status, and anything unexpected into
a plain 500 whose details go to the log only, never a traceback to the client.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.core.errors import BadInputError, ConfigError, ProcessingError, TransientError, first_line
from pipeline.core.log import get_logger

log = get_logger("vidx.api")


class ApiError(Exception):
    """An answer other than success, raised anywhere in a request."""

    def __init__(self, status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


def not_found(what: str) -> ApiError:
    """The one answer for "missing" and "another owner's": they must be indistinguishable."""
    return ApiError(404, f"no such {what}")


def error_response(status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only where and why: never echo the input (it may be huge or hostile).
    return [{"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))} for err in exc.errors()]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid request", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, message, None, getattr(exc, "headers", None))

    @app.exception_handler(BadInputError)
    async def _bad_input(_: Request, exc: BadInputError) -> JSONResponse:
        return error_response(400, "bad request", first_line(exc))

    @app.exception_handler(TransientError)
    async def _transient(_: Request, exc: TransientError) -> JSONResponse:
        log.warning("api_dependency_unavailable", error=first_line(exc))
        return error_response(503, "service unavailable", first_line(exc), {"Retry-After": "5"})

    @app.exception_handler(ConfigError)
    async def _config(_: Request, exc: ConfigError) -> JSONResponse:
        log.error("api_misconfigured", error=first_line(exc))
        return error_response(503, "service misconfigured", "see the server log")

    @app.exception_handler(ProcessingError)
    async def _processing(_: Request, exc: ProcessingError) -> JSONResponse:
        # ClipUnavailableError is one: the model is disabled, failed to load or hung.
        log.error("api_processing_error", error=first_line(exc))
        return error_response(503, "service unavailable", first_line(exc), {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("api_unhandled_error", error_type=type(exc).__name__)
        return error_response(500, "internal error", None)
