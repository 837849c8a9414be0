"""The broker as every part of vidx sees it: the queue's name and the one ping.

The ping connects to :func:`pipeline.core.config.broker_url`, the URL the
Celery app is configured with (password from ``VIDX_BROKER_PASSWORD``
included), so a broker the workers cannot log in to never looks healthy.
"""

from __future__ import annotations

from pipeline.core.config import Settings, broker_url
from pipeline.core.errors import TransientError
from pipeline.core.redaction import redact_connection_url

QUEUE = "vidx"


def shown_broker(settings: Settings) -> str:
    """The broker's URL fit for messages and logs: host, port and database; any password masked."""
    return redact_connection_url(broker_url(settings))


def ping_broker(settings: Settings, timeout_s: float = 1.0) -> int:
    """Messages waiting in the queue; :class:`TransientError` at once when the broker cannot be used.

    Refused credentials count as unreachable: a worker could not take a task either.
    """
    import redis  # ~0.1 s to import (its asyncio client too): only a ping needs it, not every vidx command

    client = redis.Redis.from_url(broker_url(settings), socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        client.ping()
        return int(client.llen(QUEUE))
    except redis.RedisError as exc:
        raise TransientError(f"broker unavailable ({shown_broker(settings)}): {exc}") from None
    finally:
        client.close()
