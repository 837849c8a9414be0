"""Monitoring figures the replaced CLIP service tracked, computed in SQL from the scenes table."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from pipeline.clip.errors import TIMEOUT_PREFIX
from pipeline.store.model_coverage import model_coverage  # issue 14: coverage per embedding model
from pipeline.store.videos import status_counts

# One aggregate, used overall and grouped by owner.
_FIGURES = """
    count(*)                                                        AS scenes,
    count(s.embedding_visual_clip)                                  AS embedded,
    coalesce(avg((s.embedding_visual_clip IS NOT NULL)::int), 0)::float8 AS embedded_share,
    avg((s.visual_clip_metadata->>'inference_time_ms')::float8)     AS mean_inference_ms,
    percentile_cont(0.95) WITHIN GROUP (
        ORDER BY (s.visual_clip_metadata->>'inference_time_ms')::float8)  AS p95_inference_ms,
    count(*) FILTER (WHERE s.visual_clip_metadata->>'error' IS NOT NULL) AS failures,
    coalesce(avg((s.visual_clip_metadata->>'error' IS NOT NULL)::int), 0)::float8 AS failure_rate,
    count(*) FILTER (WHERE s.visual_clip_metadata->>'error' LIKE %(timeout_like)s) AS timeouts,
    coalesce(avg((coalesce(s.visual_clip_metadata->>'error', '') LIKE %(timeout_like)s)::int), 0)::float8
                                                                    AS timeout_rate
"""


def stats(conn: psycopg.Connection, *, owner_id: UUID | None = None) -> dict[str, Any]:
    """Embedding coverage, inference time, failure and timeout rates; overall and per owner.

    ``{"overall": {...}, "per_owner": [{"owner_id": ..., ...}], "videos": {status: count},
    "per_model": [{"embedding_model": ..., "scenes": ..., ...}]}``;
    with ``owner_id`` only that owner's rows count.
    """
    params = {"owner": owner_id, "timeout_like": TIMEOUT_PREFIX + "%"}
    where = "WHERE %(owner)s::uuid IS NULL OR s.owner_id = %(owner)s"
    with conn.cursor(row_factory=dict_row) as cur:
        overall = cur.execute(f"SELECT {_FIGURES} FROM scenes s {where}", params).fetchone()
        per_owner = cur.execute(
            f"SELECT s.owner_id, {_FIGURES} FROM scenes s {where} GROUP BY s.owner_id ORDER BY count(*) DESC, s.owner_id",
            params,
        ).fetchall()
    videos = status_counts(conn, owner_id)
    return {"overall": overall, "per_owner": per_owner, "videos": videos,
            "per_model": model_coverage(conn, owner_id=owner_id)}
