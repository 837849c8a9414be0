"""One video, end to end: probe, scenes, best frames, CLIP, sidecar, database.

Everything a run produces is staged privately and published at the end, in
this order: (1) the sidecar and frames as a new, complete version directory;
(2) the database rows pointing at it, in one transaction fenced by the run's
lease and generation; (3) the ``<video_id>`` link swapped to the new version;
(4) older versions removed. A crash between any two steps leaves the old
complete state or the new complete one (``frame_path`` always exists), and
what a killed run left is swept by the next claim or worker start
(``VideoStorage.sweep``). Callers (the CLI, Celery tasks) claim the
video row (``pipeline.store.videos``); this module only ends the run as done.
The steps are the storage contract's (``pipeline.storage.contract``): on a local
directory a renamed version directory and a swapped link, in object storage
(``VIDX_STORAGE_URL``) an uploaded version prefix and a rewritten ``current.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import cv2
import numpy as np

from pipeline import store
from pipeline.clip.identity import model_identity
from pipeline.clip.stream import OverlappedEmbedding
from pipeline.clip.understand import understand_records
from pipeline.core.config import Settings
from pipeline.core.errors import ProcessingError
from pipeline.core.log import get_logger
from pipeline.core.types import DetectedScene, EmbeddingResult, ProbeResult, SceneRecord
from pipeline.frames.multiframe import frames_to_embed, scene_results, write_scene_frames
from pipeline.frames.quality import rank_candidates
from pipeline.intake.naming import canonical_source
from pipeline.media.probe import probe as probe_video
from pipeline.shots.scenes import detect_scenes
from pipeline.storage import Staging, open_storage
from pipeline.storage.sidecar import build_sidecar, frame_filename
from pipeline.store.videos import Lease, RunEnd

ProgressCallback = Callable[[float, str], None]

# Share of the progress bar each stage fills (scene detection decodes the video: the bulk).
_STAGE_SPAN = {"probe": (0.0, 0.02), "scenes": (0.02, 0.85), "embed": (0.85, 0.97), "write": (0.97, 1.0)}

JPEG_QUALITY = 90


@dataclass
class IndexResult:
    """What one indexing job produced."""
    video_id: UUID
    owner_id: UUID
    source: str
    probe: ProbeResult
    scenes: list[SceneRecord]
    sidecar_dir: Path | str  # a local directory, or the s3:// URL of the published version
    db_written: bool
    timing_ms: dict[str, float] = field(default_factory=dict)
    outcome: RunEnd = RunEnd.FINISHED  # SUPERSEDED / LOST: nothing of this run was kept
    sidecar_version: str | None = None


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


def _best_frame_record(
    scene: DetectedScene, staging: Staging, settings: Settings
) -> SceneRecord:

    span = scene.span
    if not scene.candidates:
        raise ProcessingError(f"scene {span.index} has no candidate frames")
    ranked = rank_candidates(scene.candidates)
    best, quality = ranked[0]
    name = frame_filename(span.index)
    write_jpeg(staging.path / name, best.image)
    # issue 14: VIDX_FRAMES_PER_SCENE > 1 also writes the next-ranked frames and lists them
    frames = write_scene_frames(ranked, span.index, name, staging.path, settings.frames_per_scene, write_jpeg)
    return SceneRecord(
        frames=frames,
        index=span.index,
        start_frame=span.start_frame,
        end_frame=span.end_frame,
        start_s=span.start_s,
        end_s=span.end_s,
        best_frame=best.frame,
        best_time_s=best.time_s,
        frame_path=str(staging.final_path(name)),
        frame_quality=quality,
        embedding=None,
        visual_clip_metadata={},
    )


def _apply_embeddings(records: list[SceneRecord], frame_results: list[EmbeddingResult], settings: Settings) -> None:
    """Fill each record's embedding, model identity and metadata (failures are NULL + reason already).

    ``frame_results`` holds one result per embedded frame (issue 14: a scene may embed
    several, pooled here); labels and description follow from the vector.
    """
    results = scene_results(records, frame_results, settings)
    identity = model_identity(settings) if any(r.vector is not None for r in results) else None
    for record, result in zip(records, results, strict=True):
        record.embedding = result.vector
        record.embedding_model = identity if result.vector is not None else None
        record.visual_clip_metadata = {**result.metadata, "frame_path": record.frame_path}
    understand_records(records, settings)  # issue 14: zero-shot labels and description (None without a vector)


def _write_database(
    settings: Settings, video_id: UUID, owner_id: UUID, source: str, probe: ProbeResult, records: list[SceneRecord],
    lease: Lease | None, version: str,
) -> RunEnd:

    with store.connect(settings) as conn:  # connection trouble arrives as TransientError
        return store.replace_scenes(conn, video_id=video_id, owner_id=owner_id, source=source, probe=probe,
                                    scenes=records, lease=lease, sidecar_version=version)


def index_video(
    source: Path,
    *,
    video_id: UUID,
    owner_id: UUID,
    settings: Settings,
    source_label: str | None = None,
    write_db: bool = True,
    on_progress: ProgressCallback | None = None,
    lease: Lease | None = None,
    claim_after_probe: Callable[[ProbeResult], Lease | None] | None = None,
) -> IndexResult:
    """Index one local video file; publish its sidecar (and DB rows when ``write_db``).

    ``lease``: the claim this run holds (its database write is fenced by it).
    ``claim_after_probe``: called once the probe accepted the file, returns
    the lease (``vidx index`` creates the row only for input that probes).
    Raises ``BadInputError`` for unusable input, ``TransientError`` when the
    database is unreachable, other errors otherwise; in every case nothing
    of this run is left in the sidecar directory or the database. A run
    that lost its lease or was superseded returns with ``outcome`` saying so.
    """
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
    probe = probe_video(source, settings)
    t = lap("probe", t)
    progress("probe", 1.0)
    log.info(
        "video.probed", source=label, duration_s=probe.duration_s, fps=probe.fps,
        width=probe.width, height=probe.height, codec=probe.codec,
    )
    if claim_after_probe is not None:
        lease = claim_after_probe(probe) or lease

    outcome = RunEnd.FINISHED
    # --- issue 13: CLIP overlaps decoding (pipeline/clip/stream.py): the model loads and closed
    # scenes are embedded while decoding goes on; only the last partial batch is left for "embed".
    with open_storage(settings).stage(video_id) as staging, OverlappedEmbedding(settings) as embedding:
        records = []
        for scene in detect_scenes(source, probe, settings, on_progress=lambda f: progress("scenes", f)):
            records.append(_best_frame_record(scene, staging, settings))
            for frame in frames_to_embed(records[-1], staging.path):
                embedding.add(frame)
        t = lap("scenes", t)
        progress("scenes", 1.0)
        log.info("video.scenes", scenes=len(records))

        _apply_embeddings(records, embedding.results(), settings)
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
        staging.publish()  # 1. a complete new version, not yet current
        if write_db:
            outcome = _write_database(settings, video_id, owner_id, label, probe, records, lease, staging.version)
            if outcome is RunEnd.FINISHED:
                staging.mark_referenced()  # 2. the rows point at it
        sidecar_dir = staging.version_dir
        if outcome is RunEnd.FINISHED:
            sidecar_dir = staging.make_current()  # 3. link swapped, 4. older versions removed
        lap("write", t)
        progress("write", 1.0)

    if outcome is RunEnd.FINISHED:
        log.info("video.indexed", scenes=len(records), embedded=embedded, total_ms=round(timing["total_ms"]))
    else:
        log.warning("video.not_published", outcome=outcome.value)
    return IndexResult(
        video_id=video_id,
        owner_id=owner_id,
        source=label,
        probe=probe,
        scenes=records,
        sidecar_dir=sidecar_dir,
        db_written=write_db and outcome is RunEnd.FINISHED,
        timing_ms=timing,
        outcome=outcome,
        sidecar_version=staging.version,
    )
