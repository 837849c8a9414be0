"""Which stored frame the rows of a video point at (issue 15: the object-storage sweep keeps it)."""

from __future__ import annotations

from uuid import UUID

import psycopg


def any_frame_path(conn: psycopg.Connection, video_id: UUID) -> str | None:
    """One ``frame_path`` of the video's scenes (all point into the same published version), or None."""
    row = conn.execute(
        "SELECT frame_path FROM scenes WHERE video_id = %s AND frame_path IS NOT NULL LIMIT 1", (video_id,)
    ).fetchone()
    return None if row is None else str(row[0])
