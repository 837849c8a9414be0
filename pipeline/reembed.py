"""Re-embed stored frames with the configured model, without decoding the videos again.

For a model change (new ``CLIP_MODEL_NAME``/``CLIP_PRETRAINED``/``CLIP_CHECKPOINT``)
and for backfilling videos indexed with CLIP off. The work list is every
scene whose ``embedding_model`` is not the configured ``model_identity``
(NULL included: CLIP was off, or the embedding failed), so a run is
resumable (a killed run leaves whole videos done or untouched) and
idempotent (a second run finds nothing). One video at a time, in one
transaction: search never sees a video half on one model. Frames come from
the stored files (``frame_path``; with ``VIDX_FRAMES_PER_SCENE`` > 1 at
indexing, the sidecar's ``frames`` too); labels and descriptions are
recomputed with the new vectors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pipeline import store
from pipeline.clip.identity import model_identity
from pipeline.clip.understand import understand_records
from pipeline.core.config import Settings
from pipeline.core.log import get_logger
from pipeline.core.scene_schema import frame_from_json, record_from_row, scene_json
from pipeline.core.types import SceneRecord
from pipeline.frames.multiframe import embed_records
from pipeline.storage import VideoStorage, open_storage
from pipeline.storage.sidecar import SIDECAR_NAME, sidecar_bytes
from pipeline.store.scenes import embedding_array

log = get_logger(__name__)


@dataclass(frozen=True)
class ReembedResult:
    """What re-embedding one video did; ``skipped``: it changed meanwhile (re-indexed) and was left alone."""

    video_id: UUID
    scenes: int
    embedded: int
    skipped: bool = False


def videos_to_reembed(
    conn: psycopg.Connection, identity: str, *, owner_id: UUID | None = None, video_id: UUID | None = None
) -> list[UUID]:
    """Finished videos with at least one scene not embedded by ``identity`` (optionally of one owner / video)."""
    rows = conn.execute(
        """
        SELECT DISTINCT s.video_id FROM scenes s JOIN videos v ON v.id = s.video_id
         WHERE v.status = 'done'
           AND s.embedding_model IS DISTINCT FROM %(identity)s
           AND s.frame_path IS NOT NULL
           AND (%(owner)s::uuid IS NULL OR s.owner_id = %(owner)s)
           AND (%(video)s::uuid IS NULL OR s.video_id = %(video)s)
         ORDER BY s.video_id
        """,
        {"identity": identity, "owner": owner_id, "video": video_id},
    ).fetchall()
    return [row[0] for row in rows]


def reembed_video(video_id: UUID, settings: Settings) -> ReembedResult:
    """Re-embed the video's scenes that are not on the configured model; commit them in one transaction.

    Raises :class:`~pipeline.clip.errors.ClipUnavailableError` (nothing written) when the
    model cannot be loaded, ``TransientError`` when the database is unreachable.
    A scene whose frame cannot be embedded gets NULL and its reason, as at
    indexing; the next run tries it again.
    """
    identity = model_identity(settings)
    with store.connect(settings) as conn:
        rows = _stale_scenes(conn, video_id, identity)
        if not rows:
            return ReembedResult(video_id, 0, 0)
        _require_model(settings)  # a model that cannot load must not turn good embeddings into NULLs
        # frames may live in object storage: work on a local copy of their version
        storage = open_storage(settings)
        frame_path = rows[0]["frame_path"]
        with storage.working_copy(frame_path) as frames_dir:
            records = _records(rows, _sidecar(frames_dir, video_id))
            vectors = _embed(records, frames_dir, settings)
            if not _write(conn, video_id, identity, rows, records):
                log.info("reembed_skipped_video_changed", video_id=str(video_id))
                return ReembedResult(video_id, len(rows), 0, skipped=True)
            _update_sidecar(storage, frame_path, frames_dir, video_id, records)
    embedded = sum(v is not None for v in vectors)
    log.info("video.reembedded", video_id=str(video_id), scenes=len(rows), embedded=embedded, model=identity)
    return ReembedResult(video_id, len(rows), embedded)


def _stale_scenes(conn: psycopg.Connection, video_id: UUID, identity: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT s.id, s.owner_id, s.scene_index, s.start_frame, s.end_frame, s.start_s, s.end_s, s.best_frame,
                   s.best_time_s, s.frame_path, s.frame_quality
              FROM scenes s JOIN videos v ON v.id = s.video_id
             WHERE s.video_id = %s AND v.status = 'done' AND s.embedding_model IS DISTINCT FROM %s
               AND s.frame_path IS NOT NULL
             ORDER BY s.scene_index
            """,
            (video_id, identity),
        ).fetchall()


def _require_model(settings: Settings) -> None:
    from pipeline.clip import get_model  # torch: only when there is something to re-embed

    get_model(settings, text=False)


def _sidecar(frames_dir: Path, video_id: UUID) -> dict[str, Any] | None:
    try:
        with open(frames_dir / SIDECAR_NAME, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and document.get("video_id") == str(video_id) else None


def _records(rows: list[dict[str, Any]], sidecar: dict[str, Any] | None) -> list[SceneRecord]:
    """SceneRecords of the stored scenes; frames listed in the sidecar (multi-frame indexing) come along."""
    listed = {s.get("index"): s.get("frames") for s in (sidecar or {}).get("scenes", []) if isinstance(s, dict)}
    records = []
    for row in rows:
        frames = listed.get(row["scene_index"])
        if frames and isinstance(frames, list):
            frames = [replace(frame_from_json(f), embedding=None) for f in frames
                      if isinstance(f, dict) and {"frame", "time_s", "path"} <= f.keys()]
        records.append(record_from_row(row, frames=frames or None))
    return records


def _embed(records: list[SceneRecord], frames_dir: Path, settings: Settings) -> list[list[float] | None]:
    identity = model_identity(settings)
    for record, result in zip(records, embed_records(records, frames_dir, settings), strict=True):
        record.embedding = result.vector
        record.embedding_model = identity if result.vector is not None else None
        record.visual_clip_metadata = {**result.metadata, "frame_path": record.frame_path}
    understand_records(records, settings)
    return [r.embedding for r in records]


def _write(
    conn: psycopg.Connection, video_id: UUID, identity: str, rows: list[dict[str, Any]], records: list[SceneRecord]
) -> bool:
    """All of the video's updates in one transaction; False (nothing written) if its scenes changed meanwhile."""
    ids = [row["id"] for row in rows]
    with conn.transaction():
        # the video row lock orders this against a concurrent re-index (replace_scenes updates that row)
        conn.execute("SELECT 1 FROM videos WHERE id = %s FOR UPDATE", (video_id,))
        still = conn.execute(
            "SELECT id FROM scenes WHERE id = ANY(%s) AND embedding_model IS DISTINCT FROM %s FOR UPDATE",
            (ids, identity),
        ).fetchall()
        if len(still) != len(ids):
            return False
        with conn.cursor() as cur:
            cur.executemany(
                """
                UPDATE scenes SET embedding_visual_clip = %s, embedding_model = %s, visual_clip_metadata = %s,
                                  labels = %s, description = %s
                 WHERE id = %s
                """,
                [
                    (embedding_array(r.embedding), r.embedding_model, Jsonb(r.visual_clip_metadata),
                     None if r.labels is None else Jsonb(r.labels), r.description, row["id"])
                    for row, r in zip(rows, records, strict=True)
                ],
            )
    return True


def _update_sidecar(
    storage: VideoStorage, frame_path: str, frames_dir: Path, video_id: UUID, records: list[SceneRecord]
) -> None:
    """Bring the sidecar in line with the new rows (best effort: the database is what search reads)."""
    document = _sidecar(frames_dir, video_id)
    if document is None:
        return
    by_index = {r.index: r for r in records}
    scenes = document.get("scenes", [])
    for position, scene in enumerate(scenes):
        record = by_index.get(scene.get("index"))
        if record is not None:
            scenes[position] = scene_json(record)
    try:
        storage.write_beside(frame_path, SIDECAR_NAME, sidecar_bytes(document))
    except OSError as exc:
        log.warning("reembed_sidecar_not_updated", video_id=str(video_id), error=str(exc)[:200])
