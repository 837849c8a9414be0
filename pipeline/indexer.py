"""One video, end to end: probe, scenes, best frames, CLIP, sidecar, database.

Everything a job produces is staged privately and published at the end (the
database in one transaction, then the sidecar directory by rename), so a job
that fails at any point leaves the previous state untouched and nothing half
written. Callers (the CLI, Celery tasks) own the video row's status.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import cv2
import numpy as np

from pipeline.clip import FrameToEmbed
from pipeline.config import Settings
from pipeline.embed_stream import OverlappedEmbedding
from pipeline.errors import ProcessingError
from pipeline.log import get_logger
from pipeline.sidecar import SidecarStaging, build_sidecar, frame_filename
from pipeline.types import DetectedScene, EmbeddingResult, ProbeResult, SceneRecord

ProgressCallback = Callable[[float, str], None]

# Share of the progress bar each stage fills (scene detection decodes the video: the bulk).
_STAGE_SPAN = {"probe": (0.0, 0.02), "scenes": (0.02, 0.85), "embed": (0.85, 0.97), "write": (0.97, 1.0)}

_VIDEO_NAMESPACE = uuid.UUID("6f1d2a4e-6c55-4d0c-9a57-2a9a3f0f7c11")

JPEG_QUALITY = 90


def canonical_source(path_or_url: str) -> str:
    """The stable label of a source: URLs as given, local paths made absolute."""
    if "://" in path_or_url:
        return path_or_url
    return str(Path(path_or_url).expanduser().resolve())


def video_id_for(owner_id: UUID, source_label: str) -> UUID:
    """Deterministic video id, so indexing the same source again replaces it."""
    return uuid.uuid5(_VIDEO_NAMESPACE, f"{owner_id}:{source_label}")


@dataclass
class IndexResult:
    """What one indexing job produced."""

    video_id: UUID
    owner_id: UUID
    source: str
    probe: ProbeResult
    scenes: list[SceneRecord]
    sidecar_dir: Path
    db_written: bool
    timing_ms: dict[str, float] = field(default_factory=dict)


class _Progress:
    """Maps per-stage fractions onto one 0..1 scale for the caller's callback."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback

    def __call__(self, stage: str, fraction: float) -> None:
        if self._callback is None:
            return
        lo, hi = _STAGE_SPAN[stage]
        self._callback(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), stage)


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    """Encode an RGB frame as JPEG (OpenCV wants BGR)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ProcessingError(f"could not encode best frame as JPEG: {path.name}")
    path.write_bytes(buf.tobytes())


def _best_frame_record(scene: DetectedScene, staging: SidecarStaging) -> SceneRecord:
    from pipeline.quality import pick_best

    span = scene.span
    if not scene.candidates:
        raise ProcessingError(f"scene {span.index} has no candidate frames")
    best, quality = pick_best(scene.candidates)
    name = frame_filename(span.index)
    write_jpeg(staging.path / name, best.image)
    return SceneRecord(
        scene_index=span.index,
        start_frame=span.start_frame,
        end_frame=span.end_frame,
        start_s=span.start_s,
        end_s=span.end_s,
        best_frame=best.frame,
        best_time_s=best.time_s,
        frame_path=str(staging.final_path(name)),
        frame_quality=quality.to_json(),
        embedding=None,
        visual_clip_metadata={},
    )


def _frame_to_embed(record: SceneRecord, staging: SidecarStaging) -> FrameToEmbed:
    """The staged best-frame JPEG of ``record``, as the CLIP stage takes it."""
    return FrameToEmbed(staging.path / Path(record.frame_path).name, record.frame_quality)


def _apply_embeddings(records: list[SceneRecord], results: list[EmbeddingResult]) -> None:
    """Fill each record's embedding and metadata (failures are NULL + reason already)."""
    for record, result in zip(records, results, strict=True):
        record.embedding = result.vector
        record.visual_clip_metadata = {**result.metadata, "frame_path": record.frame_path}


def _write_database(
    settings: Settings, video_id: UUID, owner_id: UUID, source: str, probe: ProbeResult, records: list[SceneRecord]
) -> None:
    from pipeline import store

    with store.connect(settings) as conn:  # connection trouble arrives as TransientError
        store.replace_scenes(conn, video_id=video_id, owner_id=owner_id, source=source, probe=probe, scenes=records)


def index_video(
    source: Path,
    *,
    video_id: UUID,
    owner_id: UUID,
    settings: Settings,
    source_label: str | None = None,
    write_db: bool = True,
    on_progress: ProgressCallback | None = None,
    probe_result: ProbeResult | None = None,
) -> IndexResult:
    """Index one local video file; publish its sidecar (and DB rows when ``write_db``).

    Raises ``BadInputError`` for unusable input, ``TransientError`` when the
    database is unreachable, other errors otherwise; in every case nothing
    of this run is left in the sidecar directory or the database.
    """
    from pipeline.probe import probe as probe_video
    from pipeline.scenes import detect_scenes

    label = source_label or canonical_source(str(source))
    log = get_logger("vidx.indexer").bind(video_id=str(video_id), owner_id=str(owner_id))
    progress = _Progress(on_progress)
    timing: dict[str, float] = {}
    started = time.perf_counter()

    def lap(stage: str, since: float) -> float:
        now = time.perf_counter()
        timing[f"{stage}_ms"] = (now - since) * 1000.0
        return now

    t = time.perf_counter()
    probe = probe_result or probe_video(source, settings)
    t = lap("probe", t)
    progress("probe", 1.0)
    log.info(
        "video.probed", source=label, duration_s=probe.duration_s, fps=probe.fps,
        width=probe.width, height=probe.height, codec=probe.codec,
    )

    # --- issue 13: CLIP overlaps decoding (pipeline/embed_stream.py): the model loads and closed
    # scenes are embedded while decoding goes on; only the last partial batch is left for "embed".
    with SidecarStaging(settings.sidecar_dir, video_id) as staging, OverlappedEmbedding(settings) as embedding:
        records = []
        for scene in detect_scenes(source, probe, settings, on_progress=lambda f: progress("scenes", f)):
            records.append(_best_frame_record(scene, staging))
            embedding.add(_frame_to_embed(records[-1], staging))
        t = lap("scenes", t)
        progress("scenes", 1.0)
        log.info("video.scenes", scenes=len(records))

        _apply_embeddings(records, embedding.results())
        t = lap("embed", t)
        timing["embed_busy_ms"] = embedding.busy_ms
        # --- end issue 13 hook
        progress("embed", 1.0)
        embedded = sum(r.embedding is not None for r in records)
        log.info("video.embedded", scenes=len(records), embedded=embedded)

        timing["total_ms"] = (time.perf_counter() - started) * 1000.0
        staging.write_sidecar(
            build_sidecar(
                video_id=video_id, owner_id=owner_id, source=label, probe=probe, scenes=records, timing_ms=timing
            )
        )
        if write_db:
            _write_database(settings, video_id, owner_id, label, probe, records)
        sidecar_dir = staging.commit()
        lap("write", t)
        progress("write", 1.0)

    log.info("video.indexed", scenes=len(records), embedded=embedded, total_ms=round(timing["total_ms"]))
    return IndexResult(
        video_id=video_id,
        owner_id=owner_id,
        source=label,
        probe=probe,
        scenes=records,
        sidecar_dir=sidecar_dir,
        db_written=write_db,
        timing_ms=timing,
    )
