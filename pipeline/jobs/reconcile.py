"""The reconciler: every worker runs it on a timer, so no video is lost with its run or its message.

A video whose lease expired (its worker died) goes back to ``queued``, and a
``queued`` video with no news for ``VIDX_STALE_AFTER_S`` (its message was
lost) has its clock restarted; each gets a fresh message. Sending needs the
task runner, so the caller passes ``send``; duplicates are harmless (the
claim skips or re-publishes them).
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import psycopg

from pipeline.core.config import Settings
from pipeline.core.log import get_logger
from pipeline.store import videos

log = get_logger("vidx.jobs")

# Sends one indexing message: (video_id, owner_id, fetch_url: the full URL when the row holds its redacted form).
SendIndex = Callable[[UUID, UUID, str | None], object]


def reconcile(conn: psycopg.Connection, settings: Settings, send: SendIndex) -> list[UUID]:
    """Send a fresh message for every video whose run died or whose message was lost; the ids sent."""
    sent: list[UUID] = []
    for reason, rows in (
        ("lease_expired", videos.requeue_expired(conn)),
        ("queued_stale", videos.touch_stale_queued(conn, stale_after_s=settings.stale_after_s)),
    ):
        for row in rows:
            send(row["video_id"], row["owner_id"], row.get("fetch_url"))
            sent.append(row["video_id"])
        if rows:
            log.warning("reconcile_requeued", reason=reason, count=len(rows),
                        video_ids=[str(r["video_id"]) for r in rows])
    return sent
