"""Python side of the search RPCs: validate, call the SQL function, return plain dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
from psycopg.rows import dict_row

from pipeline.core.errors import BadInputError
from pipeline.core.types import EMBEDDING_DIM
from pipeline.store.scenes import embedding_array

MAX_MATCH_COUNT = 1000
# The minimum similarity when a search names none (vidx search, /v1/search). CLIP cosine similarities
# live in different ranges: text-to-image ~0.2-0.35 for a good match, image-to-image ~0.6-0.95.
DEFAULT_THRESHOLD = {"text": 0.2, "image": 0.5, "scene": 0.5}
# search_similar_scenes (migration 004) says this when the scene is missing or another
# owner's (the two read alike): the one check of ownership, in the same query as the search.
_NO_SCENE_PREFIX = "no scene "


class SceneNotFound(BadInputError):
    """The example scene of a similar-scenes search is not the owner's (or does not exist)."""

_RESULT_COLUMNS = """
    r.id, r.video_id, r.scene_index, r.start_s, r.end_s, r.frame_path, r.similarity,
    v.source, s.start_frame, s.end_frame, s.best_frame, s.best_time_s, s.frame_quality, s.visual_clip_metadata,
    s.embedding_model, s.labels, s.description
"""


def _check(owner_id: UUID | None, threshold: float, limit: int) -> None:
    if owner_id is None:
        raise BadInputError("a search needs an owner: pass owner_id (vidx search --owner UUID)")
    if not -1.0 <= float(threshold) <= 1.0:
        raise BadInputError(f"threshold {threshold} is outside [-1, 1] (similarity is 1 - cosine distance)")
    if not 1 <= int(limit) <= MAX_MATCH_COUNT:
        raise BadInputError(f"limit {limit} is outside 1..{MAX_MATCH_COUNT}")


def _run(conn: psycopg.Connection, function_sql: str, params: tuple) -> list[dict[str, Any]]:
    sql = f"""
        SELECT {_RESULT_COLUMNS}
          FROM {function_sql} r
          JOIN videos v ON v.id = r.video_id
          JOIN scenes s ON s.id = r.id
         ORDER BY r.similarity DESC, r.id
    """
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql, params).fetchall()
    except (psycopg.errors.NoDataFound, psycopg.errors.NullValueNotAllowed, psycopg.errors.InvalidParameterValue) as exc:
        message = exc.diag.message_primary or str(exc)
        if isinstance(exc, psycopg.errors.NoDataFound) and message.startswith(_NO_SCENE_PREFIX):
            raise SceneNotFound(message) from None
        raise BadInputError(message) from None


def search_by_embedding(
    conn: psycopg.Connection,
    embedding: Sequence[float] | np.ndarray,
    *,
    owner_id: UUID,
    threshold: float,
    limit: int,
    model: str | None = None,
    label: str | None = None,
) -> list[dict[str, Any]]:
    """Scenes of ``owner_id`` nearest to ``embedding``, best first, similarity >= threshold.

    ``model`` (a :func:`pipeline.clip.identity.model_identity`) keeps the query to
    embeddings of the model that made it: pass it whenever the query was embedded
    here. ``label`` keeps only scenes carrying that zero-shot label.

    Each dict: id (scene), video_id, scene_index, start_s, end_s, frame_path,
    similarity, plus source (the video's), start_frame, end_frame, best_frame,
    best_time_s, frame_quality, visual_clip_metadata, embedding_model, labels and
    description (what :func:`pipeline.core.scene_schema.record_from_row` reads).
    """
    _check(owner_id, threshold, limit)
    vector = embedding_array(embedding, "query embedding")
    if vector is None:
        raise BadInputError("query embedding is missing")
    return _run(
        conn,
        f"search_scenes_by_visual_clip_embedding(%s::vector({EMBEDDING_DIM}), %s, %s, %s, %s, %s)",
        (vector, float(threshold), int(limit), owner_id, model, label),
    )


def search_similar(
    conn: psycopg.Connection,
    scene_id: UUID,
    *,
    owner_id: UUID,
    threshold: float,
    limit: int,
    label: str | None = None,
) -> list[dict[str, Any]]:
    """Scenes of ``owner_id`` most like scene ``scene_id`` (itself excluded, same model only), best first.

    :class:`SceneNotFound` when ``scene_id`` is not one of ``owner_id``'s scenes.
    """
    _check(owner_id, threshold, limit)
    return _run(
        conn,
        "search_similar_scenes(%s, %s, %s, %s, %s)",
        (scene_id, float(threshold), int(limit), owner_id, label),
    )
