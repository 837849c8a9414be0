"""Reading one video's scenes for display (``vidx show``, contact sheets, the HTTP API).

Owner-scoped: a video of another owner is answered exactly like a missing
one ("not found"), so ids of other tenants cannot be probed.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from pipeline.core.errors import BadInputError

_SCENE_COLUMNS = """
    s.id, s.scene_index, s.start_s, s.end_s, s.start_frame, s.end_frame, s.best_frame, s.best_time_s,
    s.frame_path, s.frame_quality, s.visual_clip_metadata, s.embedding_model, s.labels, s.description,
    (s.embedding_visual_clip IS NOT NULL) AS embedded
"""


def video_owner(conn: psycopg.Connection, video_id: UUID) -> UUID | None:
    """The owner of ``video_id``, or None when there is no such video (operator tools)."""
    row = conn.execute("SELECT owner_id FROM videos WHERE id = %s", (video_id,)).fetchone()
    return None if row is None else row[0]


def owned_video(conn: psycopg.Connection, video_id: UUID, owner_id: UUID) -> dict[str, Any]:
    """The video row of ``owner_id``; :class:`BadInputError` "no video ..." when missing or another owner's."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT id, owner_id, source, status, error, duration_s, fps, width, height FROM videos "
            "WHERE id = %s AND owner_id = %s",
            (video_id, owner_id),
        ).fetchone()
    if row is None:
        raise BadInputError(f"no video {video_id} for owner {owner_id}")
    return row


def video_scenes(conn: psycopg.Connection, video_id: UUID, owner_id: UUID) -> list[dict[str, Any]]:
    """The video's scenes in order (display columns, no vectors); not-found rules of :func:`owned_video`."""
    owned_video(conn, video_id, owner_id)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_SCENE_COLUMNS} FROM scenes s WHERE s.video_id = %s AND s.owner_id = %s ORDER BY s.scene_index",
            (video_id, owner_id),
        ).fetchall()
