"""Which models made the stored embeddings: the figure a model change is watched by (``vidx stats``)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row


def model_coverage(conn: psycopg.Connection, *, owner_id: UUID | None = None) -> list[dict[str, Any]]:
    """One row per ``embedding_model`` (None: scenes without an embedding), most scenes first.

    Each: ``embedding_model``, ``scenes``, ``videos``, ``share`` of all scenes counted, ``labelled``.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT s.embedding_model,
                   count(*) AS scenes,
                   count(DISTINCT s.video_id) AS videos,
                   (count(*)::float8 / sum(count(*)) OVER ()) AS share,
                   count(*) FILTER (WHERE s.labels IS NOT NULL) AS labelled
              FROM scenes s
             WHERE %(owner)s::uuid IS NULL OR s.owner_id = %(owner)s
             GROUP BY s.embedding_model
             ORDER BY count(*) DESC, s.embedding_model NULLS LAST
            """,
            {"owner": owner_id},
        ).fetchall()
