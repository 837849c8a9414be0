"""``Authorization: Bearer <key>`` → the owner. The only place a request's owner comes from.

No endpoint takes an owner id from the request: handlers receive a
:class:`Principal` and pass its ``owner_id`` to every store call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipeline.store.api_keys import KeyOwner, find_key_owner
from worker.api.context import ApiContext, get_context
from worker.api.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="An API key from `vidx apikey create`.")


@dataclass(frozen=True)
class Principal:
    key_id: UUID
    owner_id: UUID


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _too_many(wait_s: float) -> ApiError:
    seconds = max(1, math.ceil(wait_s))
    return ApiError(429, "rate limit exceeded", f"retry in {seconds}s", {"Retry-After": str(seconds)})


def _unauthorized(request: Request, reason: str) -> ApiError:
    wait = get_context(request).auth_failures.allow(_client_address(request))
    if wait:
        return _too_many(wait)
    return ApiError(401, "unauthorized", reason, {"WWW-Authenticate": "Bearer"})


async def require_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """The caller's key and owner; 401 without a valid key, 403 for a revoked one, 429 over the rate."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise _unauthorized(request, "send 'Authorization: Bearer <API key>'")
    ctx = get_context(request)
    found = ctx.keys.get(credentials.credentials)
    if found is None:
        found = await run_in_threadpool(_lookup, ctx, credentials.credentials)
    if found is None:
        raise _unauthorized(request, "unknown API key")
    if found.revoked:
        raise ApiError(403, "forbidden", "this API key was revoked")
    wait = ctx.limiter.allow(str(found.key_id))
    if wait:
        raise _too_many(wait)
    request.state.key_id = found.key_id  # for the access log; never the key itself
    return Principal(key_id=found.key_id, owner_id=found.owner_id)


def _lookup(ctx: ApiContext, key: str) -> KeyOwner | None:
    with ctx.db.connection() as conn:
        found = find_key_owner(conn, key)
    if found is not None and not found.revoked:
        ctx.keys.put(key, found)
    return found
