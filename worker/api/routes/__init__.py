"""The API's routers, one module per resource."""

from __future__ import annotations

from uuid import UUID

from worker.api.errors import not_found


def parse_id(raw: str, what: str) -> UUID:
    """A path id as a UUID; anything else (traversal attempts included) is simply "no such thing"."""
    try:
        return UUID(raw)
    except ValueError:
        raise not_found(what) from None
