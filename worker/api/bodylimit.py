"""A cap on request bodies FastAPI would read whole into memory (JSON), before anything parses them.

The two upload endpoints stream their bodies to disk under their own caps and
are left alone. Everything else gets ``JSON_BODY_MAX_BYTES``: refused from the
``Content-Length`` when declared, and while reading when the body is chunked.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.api.errors import error_response

JSON_BODY_MAX_BYTES = 64 * 1024
STREAMED_PATHS = frozenset({"/v1/videos/upload", "/v1/search/image"})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int = JSON_BODY_MAX_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in STREAMED_PATHS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(413, "request body too large", f"the limit is {self.max_bytes} bytes")
            await response(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, limited_receive, send)
