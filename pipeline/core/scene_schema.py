"""One scene, one shape: the JSON object of a scene in the sidecar, ``vidx ... --json`` and the HTTP API.

The names are the sidecar contract's (``index``, ``start_frame``, ``end_frame``,
``start_s``, ``end_s``, ``best_frame{frame, time_s, path, quality}``,
``embedding_visual_clip``, ``visual_clip_metadata``, ``labels``, ``description``,
``frames``) and every number is rounded here, once. A surface that knows more
(a scene id from the database, a search similarity) adds keys beside these,
never renamed copies of them. ``docs/scene.schema.json`` describes the object;
``tests/test_scene_schema.py`` checks every surface against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from pipeline.core.types import FrameQuality, SceneFrame, SceneRecord

# The sidecar's schema_version: it changes only when a name here changes (and readers keep the old one).
SCHEMA_VERSION = 1
TIME_DIGITS = 4  # seconds: 0.1 ms, finer than any frame interval
SCORE_DIGITS = 4  # quality components, similarities, label scores

_QUALITY_FIELDS = ("quality_score", "sharpness", "exposure", "contrast", "colorfulness")


def seconds(value: float) -> float:
    """A time in seconds as every surface shows it."""
    return round(float(value), TIME_DIGITS)


def score(value: float | None) -> float | None:
    """A score as every surface shows it; NaN and infinities (not JSON) become None."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), SCORE_DIGITS)


def quality_json(quality: FrameQuality) -> dict[str, Any]:
    """``best_frame.quality``: the named components, ``rejected``, then the extra measurements, flat."""
    data: dict[str, Any] = {name: score(getattr(quality, name)) for name in _QUALITY_FIELDS}
    data["rejected"] = quality.rejected
    data.update({name: score(value) for name, value in quality.extra.items()})
    return data


def quality_from_json(data: Mapping[str, Any] | None) -> FrameQuality:
    """A ``FrameQuality`` back from its JSON (a sidecar or a ``frame_quality`` row); absent numbers read as NaN."""
    data = data or {}

    def number(value: Any) -> float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan

    rejected = data.get("rejected")
    return FrameQuality(
        **{name: number(data.get(name)) for name in _QUALITY_FIELDS},
        rejected=rejected if isinstance(rejected, str) else None,
        extra={k: number(v) for k, v in data.items() if k not in _QUALITY_FIELDS and k != "rejected"},
    )


def frame_json(frame: SceneFrame, *, vectors: bool = True) -> dict[str, Any]:
    """One entry of a scene's ``frames``; ``vectors=False`` leaves its embedding out."""
    data: dict[str, Any] = {"frame": frame.frame, "time_s": seconds(frame.time_s), "path": frame.path,
                            "quality": quality_json(frame.quality)}
    if vectors:
        data["embedding"] = frame.embedding
    return data


def frame_from_json(data: Mapping[str, Any]) -> SceneFrame:
    """A ``frames`` entry of a sidecar back as a ``SceneFrame`` (its embedding too, when it has one)."""
    return SceneFrame(frame=int(data["frame"]), time_s=float(data["time_s"]), path=str(data["path"]),
                      quality=quality_from_json(data.get("quality")), embedding=data.get("embedding"))


def scene_json(record: SceneRecord, *, vectors: bool = True, clip_metadata: bool = True) -> dict[str, Any]:
    """The scene object. ``vectors=False``: no embeddings (``--json``, API); ``clip_metadata=False``:
    no ``visual_clip_metadata`` (the API: it holds server paths). ``labels`` and ``description``
    appear once computed, ``frames`` only when the scene embedded several."""
    data: dict[str, Any] = {
        "index": record.index,
        "start_frame": record.start_frame,
        "end_frame": record.end_frame,
        "start_s": seconds(record.start_s),
        "end_s": seconds(record.end_s),
        "best_frame": _best_frame(record),
    }
    if vectors:
        data["embedding_visual_clip"] = record.embedding
    if clip_metadata:
        data["visual_clip_metadata"] = record.visual_clip_metadata
    if record.labels is not None:
        data["labels"] = record.labels
        data["description"] = record.description
    if record.frames:
        data["frames"] = [frame_json(f, vectors=vectors) for f in record.frames]
    return data


def _best_frame(record: SceneRecord) -> dict[str, Any] | None:
    if record.best_frame is None or record.best_time_s is None or not record.frame_path:
        return None  # only a database row written by hand lacks one
    return {"frame": record.best_frame, "time_s": seconds(record.best_time_s),
            "path": PurePath(record.frame_path).name, "quality": quality_json(record.frame_quality)}


def record_from_row(row: Mapping[str, Any], frames: list[SceneFrame] | None = None) -> SceneRecord:
    """A ``SceneRecord`` from a ``scenes`` row (without its vector), so rows serialise like the sidecar.

    ``visual_clip_metadata``, ``embedding_model``, ``labels`` and ``description`` are
    taken when the query selected them; ``frames`` live only in the sidecar.
    """
    return SceneRecord(
        index=row["scene_index"],
        start_frame=row["start_frame"],
        end_frame=row["end_frame"],
        start_s=row["start_s"],
        end_s=row["end_s"],
        best_frame=row["best_frame"],
        best_time_s=row["best_time_s"],
        frame_path=row["frame_path"],
        frame_quality=quality_from_json(row.get("frame_quality")),
        embedding=None,
        visual_clip_metadata=row.get("visual_clip_metadata") or {},
        embedding_model=row.get("embedding_model"),
        labels=row.get("labels"),
        description=row.get("description"),
        frames=frames,
    )
