"""The per-video sidecar: ``<sidecar_dir>/<video_id>/sidecar.json`` plus best-frame JPEGs.

A video's sidecar directory is assembled in a hidden staging directory next
to it and swapped in with renames, so a reader sees either the previous
complete sidecar or the new complete one, never a mix, and a failed job
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

from pipeline.types import ProbeResult, SceneRecord

SCHEMA_VERSION = 1
SIDECAR_NAME = "sidecar.json"


def frame_filename(scene_index: int) -> str:
    """Name of a scene's best-frame JPEG inside the sidecar directory."""
    return f"scene_{scene_index:04d}.jpg"


def build_sidecar(
    *,
    video_id: UUID,
    owner_id: UUID,
    source: str,
    probe: ProbeResult,
    scenes: list[SceneRecord],
    timing_ms: dict[str, float],
) -> dict[str, Any]:
    """The sidecar document in the contract's shape (schema_version 1)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "video_id": str(video_id),
        "owner_id": str(owner_id),
        "source": source,
        "probe": probe.to_json(),
        "scenes": [
            {
                "index": s.scene_index,
                "start_frame": s.start_frame,
                "end_frame": s.end_frame,
                "start_s": round(s.start_s, 4),
                "end_s": round(s.end_s, 4),
                "best_frame": {
                    "frame": s.best_frame,
                    "time_s": round(s.best_time_s, 4),
                    "path": Path(s.frame_path).name,
                    "quality": s.frame_quality,
                },
                "embedding_visual_clip": s.embedding,
                "visual_clip_metadata": s.visual_clip_metadata,
                **_understanding(s),
            }
            for s in scenes
        ],
        "timing": {k: round(v, 1) for k, v in timing_ms.items()},
    }


def _understanding(scene: SceneRecord) -> dict[str, Any]:
    """Issue 14's optional scene keys: ``labels`` + ``description`` when computed, ``frames`` when several."""
    extra: dict[str, Any] = {}
    if scene.labels is not None:
        extra["labels"] = scene.labels
        extra["description"] = scene.description
    if scene.frames:
        extra["frames"] = scene.frames
    return extra


def write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    """Write JSON to a temp file in the same directory, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class SidecarStaging:
    """A private directory where one job assembles a video's sidecar.

    ``final_dir`` is where it will live; ``commit()`` swaps it in, ``discard()``
    removes it. Use as a context manager: leaving with an exception discards.
    """

    def __init__(self, sidecar_root: Path, video_id: UUID) -> None:
        self.final_dir = sidecar_root / str(video_id)
        self.path = sidecar_root / f".staging-{video_id}-{uuid.uuid4().hex[:8]}"
        sidecar_root.mkdir(parents=True, exist_ok=True)
        self.path.mkdir()
        self._done = False

    def __enter__(self) -> SidecarStaging:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._done:
            self.discard()

    def final_path(self, name: str) -> Path:
        """Where a file written into staging as ``name`` will be after commit."""
        return self.final_dir / name

    def write_sidecar(self, document: dict[str, Any]) -> Path:
        path = self.path / SIDECAR_NAME
        write_json_atomic(path, document)
        return path

    def commit(self) -> Path:
        """Replace any previous sidecar of this video with the staged one."""
        old = None
        if self.final_dir.exists():
            old = self.final_dir.with_name(f".old-{self.final_dir.name}-{uuid.uuid4().hex[:8]}")
            os.replace(self.final_dir, old)
        try:
            os.replace(self.path, self.final_dir)
        except OSError:
            if old is not None:
                os.replace(old, self.final_dir)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._done = True
        return self.final_dir

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._done = True


def remove_abandoned(sidecar_root: Path, video_id: UUID) -> list[Path]:
    """Delete staging/old directories a killed job (SIGKILL, OOM) left for this video.

    Only safe while no other job of this video runs: workers call it under
    their claim on the video.
    """
    removed = []
    for pattern in (f".staging-{video_id}-*", f".old-{video_id}-*"):
        for path in sidecar_root.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def read_sidecar(sidecar_root: Path, video_id: UUID) -> dict[str, Any]:
    """Load a committed sidecar (tests, tools)."""
    with open(sidecar_root / str(video_id) / SIDECAR_NAME, encoding="utf-8") as fh:
        return json.load(fh)
