"""The ``videos`` table: one row per indexing job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from pipeline.errors import BadInputError

STATUSES = ("queued", "running", "done", "failed")

_VIDEO_COLUMNS = """
    v.id, v.owner_id, v.source, v.status, v.progress, v.error, v.attempts,
    v.duration_s, v.fps, v.frame_count, v.width, v.height, v.codec, v.rotation,
    v.created_at, v.updated_at, v.started_at, v.finished_at,
    (SELECT count(*) FROM scenes s WHERE s.video_id = v.id) AS scene_count,
    (SELECT count(*) FROM scenes s WHERE s.video_id = v.id AND s.embedding_visual_clip IS NOT NULL)
        AS embedded_count
"""


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise BadInputError(f"unknown video status {status!r}: expected one of {', '.join(STATUSES)}")


def upsert_video(
    conn: psycopg.Connection, *, video_id: UUID, owner_id: UUID, source: str, status: str = "queued"
) -> None:
    """Create the video's row, or reset an existing one to ``status`` (re-enqueue, re-index).

    A video id already held by another owner is refused.
    """
    _check_status(status)
    with conn.transaction():
        row = conn.execute(
            """
            INSERT INTO videos (id, owner_id, source, status, started_at)
            VALUES (%(id)s, %(owner)s, %(source)s, %(status)s,
                    CASE WHEN %(status)s = 'running' THEN now() END)
            ON CONFLICT (id) DO UPDATE
               SET source = EXCLUDED.source, status = EXCLUDED.status, progress = 0, error = NULL,
                   started_at = EXCLUDED.started_at, finished_at = NULL
             WHERE videos.owner_id = EXCLUDED.owner_id
            RETURNING id
            """,
            {"id": video_id, "owner": owner_id, "source": source, "status": status},
        ).fetchone()
    if row is None:
        raise BadInputError(f"video {video_id} already exists for another owner")


def set_video_status(
    conn: psycopg.Connection,
    video_id: UUID,
    status: str,
    *,
    progress: float | None = None,
    error: str | None = None,
) -> bool:
    """Move a video to ``status``; the error is replaced (None clears it).

    ``progress`` None keeps the current value (``done`` always sets 1.0).
    ``running`` stamps started_at, ``done``/``failed`` stamp finished_at.
    Returns False when no such video exists.
    """
    _check_status(status)
    if progress is not None:
        progress = min(1.0, max(0.0, float(progress)))
    if status == "done":
        progress = 1.0
    with conn.transaction():
        cur = conn.execute(
            """
            UPDATE videos
               SET status = %(status)s,
                   progress = coalesce(%(progress)s::real, progress),
                   error = %(error)s,
                   started_at = CASE WHEN %(status)s = 'running' THEN now()
                                     WHEN %(status)s = 'queued' THEN NULL ELSE started_at END,
                   finished_at = CASE WHEN %(status)s IN ('done', 'failed') THEN now() ELSE NULL END
             WHERE id = %(id)s
            """,
            {"status": status, "progress": progress, "error": error, "id": video_id},
        )
        return cur.rowcount > 0


def get_video(conn: psycopg.Connection, video_id: UUID) -> dict[str, Any] | None:
    """The video's row plus ``scene_count`` and ``embedded_count``, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_VIDEO_COLUMNS} FROM videos v WHERE v.id = %s", (video_id,)).fetchone()


def list_videos(
    conn: psycopg.Connection,
    video_ids: Sequence[UUID] | None = None,
    limit: int = 50,
    *,
    owner_id: UUID | None = None,
) -> list[dict[str, Any]]:
    """Videos by id (in the order given), or the most recent ``limit`` ones (optionally of one owner)."""
    with conn.cursor(row_factory=dict_row) as cur:
        if video_ids is not None:
            ids = list(video_ids)
            rows = cur.execute(
                f"SELECT {_VIDEO_COLUMNS} FROM videos v WHERE v.id = ANY(%s)", (ids,)
            ).fetchall()
            order = {vid: i for i, vid in enumerate(ids)}
            return sorted(rows, key=lambda r: order.get(r["id"], len(order)))
        return cur.execute(
            f"""
            SELECT {_VIDEO_COLUMNS} FROM videos v
             WHERE %(owner)s::uuid IS NULL OR v.owner_id = %(owner)s
             ORDER BY v.created_at DESC, v.id
             LIMIT %(limit)s
            """,
            {"owner": owner_id, "limit": limit},
        ).fetchall()
