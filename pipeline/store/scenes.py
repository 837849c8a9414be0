"""Writing a video's scenes: one transaction that replaces them all, bulk-loaded with COPY."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from pipeline.core.errors import BadInputError, ProcessingError
from pipeline.core.scene_schema import quality_json
from pipeline.core.types import EMBEDDING_DIM, ProbeResult, SceneRecord
from pipeline.store import videos
from pipeline.store.videos import Lease, RunEnd

# Column and binary COPY type of each value _rows() yields, in order. Binary COPY
# sends a vector as 2 KB of float32 instead of ~6 KB of text parsed server-side.
_COPY_COLUMNS = (
    ("video_id", "uuid"),
    ("owner_id", "uuid"),
    ("scene_index", "int4"),
    ("start_frame", "int4"),
    ("end_frame", "int4"),
    ("start_s", "float8"),
    ("end_s", "float8"),
    ("best_frame", "int4"),
    ("best_time_s", "float8"),
    ("frame_path", "text"),
    ("frame_quality", "jsonb"),
    ("embedding_visual_clip", "vector"),
    ("visual_clip_metadata", "jsonb"),
    ("embedding_model", "text"),
    ("labels", "jsonb"),
    ("description", "text"),
)
_COPY_SQL = "COPY scenes ({}) FROM STDIN (FORMAT BINARY)".format(", ".join(name for name, _ in _COPY_COLUMNS))


def _json_safe(value: Any) -> Any:
    """JSON PostgreSQL accepts: NaN/Infinity (which jsonb refuses) become null, numpy scalars plain."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def embedding_array(embedding: Sequence[float] | np.ndarray | None, what: str = "embedding") -> np.ndarray | None:
    """A float32 vector of the right size, or None; anything else is an error."""
    if embedding is None:
        return None
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if vector.shape != (EMBEDDING_DIM,):
        raise BadInputError(f"{what} has {vector.size} dimensions, expected {EMBEDDING_DIM}")
    if not np.all(np.isfinite(vector)):
        raise BadInputError(f"{what} contains NaN or infinite values")
    return vector


def _rows(video_id: UUID, owner_id: UUID, scenes: Sequence[SceneRecord]):
    seen: set[int] = set()
    for scene in scenes:
        if scene.index in seen:
            raise ProcessingError(f"scene index {scene.index} appears twice for video {video_id}")
        seen.add(scene.index)
        try:
            vector = embedding_array(scene.embedding, f"scene {scene.index}'s embedding")
        except BadInputError as exc:
            raise ProcessingError(str(exc)) from None
        yield (  # plain Python types: binary COPY is strict (no numpy scalars, no Path)
            video_id,
            owner_id,
            int(scene.index),
            int(scene.start_frame),
            int(scene.end_frame),
            float(scene.start_s),
            float(scene.end_s),
            None if scene.best_frame is None else int(scene.best_frame),
            None if scene.best_time_s is None else float(scene.best_time_s),
            None if scene.frame_path is None else str(scene.frame_path),
            Jsonb(_json_safe(quality_json(scene.frame_quality))),
            vector,
            Jsonb(_json_safe(scene.visual_clip_metadata)),
            scene.embedding_model if vector is not None else None,
            None if scene.labels is None else Jsonb(_json_safe(scene.labels)),
            scene.description,
        )


def replace_scenes(
    conn: psycopg.Connection,
    *,
    video_id: UUID,
    owner_id: UUID,
    source: str,
    probe: ProbeResult,
    scenes: list[SceneRecord],
    lease: Lease | None = None,
    sidecar_version: str | None = None,
) -> RunEnd:
    """Make ``scenes`` the video's scenes and mark it ``done``, atomically.

    One transaction: the row's ``done`` transition (``pipeline.store.videos``),
    then delete its old scenes and COPY the new ones in. Readers see the old
    scenes or the new ones, never a mix; re-indexing never duplicates. With a
    ``lease`` the write is fenced: a run that lost its lease or was superseded
    by a newer generation writes no scenes (the outcome says which). Without
    one (tools, tests) the row is created or overwritten. A video id held by
    another owner is refused.
    """
    rows = list(_rows(video_id, owner_id, scenes))  # validate before touching the database
    probe_values = {
        "duration_s": probe.duration_s,
        "fps": probe.fps,
        "frame_count": probe.frame_count,
        "width": probe.width,
        "height": probe.height,
        "codec": probe.codec,
        "rotation": probe.rotation,
    }
    with conn.transaction():
        if lease is None:
            videos.write_done_unleased(conn, video_id=video_id, owner_id=owner_id, source=source,
                                       probe_values=probe_values, sidecar_version=sidecar_version)
            outcome = RunEnd.FINISHED
        else:
            outcome = videos.finish_done(conn, lease, probe_values, sidecar_version)
        if outcome is not RunEnd.FINISHED:
            return outcome
        conn.execute("DELETE FROM scenes WHERE video_id = %s", (video_id,))
        if rows:
            with conn.cursor() as cur:
                with cur.copy(_COPY_SQL) as copy:
                    copy.set_types([kind for _, kind in _COPY_COLUMNS])
                    for values in rows:
                        copy.write_row(values)
    return outcome


def scene_ids(conn: psycopg.Connection, video_id: UUID) -> dict[int, UUID]:
    """Scene index -> scene id of a video's stored scenes (ids are made by the database)."""
    rows = conn.execute("SELECT scene_index, id FROM scenes WHERE video_id = %s", (video_id,)).fetchall()
    return {int(index): scene_id for index, scene_id in rows}
