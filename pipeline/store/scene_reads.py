"""Reading scenes back, always through their owner: the API's way to a scene and its frame.

Every query here takes ``owner_id`` and filters on it in SQL, so a scene or
video id of another owner reads exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

_SCENE_COLUMNS = """
    s.id, s.video_id, s.owner_id, s.scene_index, s.start_s, s.end_s, s.start_frame, s.end_frame,
    s.best_frame, s.best_time_s, s.frame_path, s.frame_quality, s.labels, s.description, s.embedding_model,
    (s.embedding_visual_clip IS NOT NULL) AS embedded, s.visual_clip_metadata->>'error' AS embedding_error,
    v.source
"""


def get_scene(conn: psycopg.Connection, scene_id: UUID, *, owner_id: UUID) -> dict[str, Any] | None:
    """One scene of ``owner_id`` (with its video's source), or None (missing or another owner's)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_SCENE_COLUMNS} FROM scenes s JOIN videos v ON v.id = s.video_id"
            " WHERE s.id = %s AND s.owner_id = %s",
            (scene_id, owner_id),
        ).fetchone()


def list_scenes(conn: psycopg.Connection, video_id: UUID, *, owner_id: UUID) -> list[dict[str, Any]]:
    """The scenes of one video of ``owner_id`` in order (empty for another owner's video)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_SCENE_COLUMNS} FROM scenes s JOIN videos v ON v.id = s.video_id"
            " WHERE s.video_id = %s AND s.owner_id = %s ORDER BY s.scene_index",
            (video_id, owner_id),
        ).fetchall()
