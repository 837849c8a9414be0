"""Rows → JSON for clients: only what a tenant should see (no server paths, no credentials)."""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePath
from typing import Any
from urllib.parse import urlsplit

from pipeline.core import scene_schema
from pipeline.core.config import Settings
from pipeline.core.redaction import redact_url
from pipeline.storage import open_storage
from pipeline.storage.uploads import upload_name


def display_source(source: str, settings: Settings) -> str:
    """A source fit to show: URLs without user-info or query, uploads and local files by name only."""
    if open_storage(settings).is_upload(source):  # in the bucket: never show its name or prefix
        return f"upload:{upload_name(source)}"
    if "://" in source:
        return redact_url(source)
    name = PurePath(source).name
    uploads = str(settings.data_dir / "uploads")
    return f"upload:{name}" if source.startswith(uploads + "/") else name


def video_name(source: str) -> str:
    """A short name for a video: the last part of its path or URL path."""
    path = urlsplit(source).path if "://" in source else source
    return PurePath(path).name or source


def timecode(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes, secs = divmod(max(0.0, float(seconds)), 60)
    return f"{int(minutes)}:{secs:05.2f}"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def video_json(row: dict[str, Any], settings: Settings) -> dict[str, Any]:
    return {
        "video_id": str(row["id"]),
        "name": video_name(row["source"]),
        "source": display_source(row["source"], settings),
        "status": row["status"],
        "progress": None if row.get("progress") is None else round(float(row["progress"]), 4),
        "error": row.get("error"),
        "attempts": row.get("attempts"),
        "duration_s": row.get("duration_s"),
        "fps": row.get("fps"),
        "width": row.get("width"),
        "height": row.get("height"),
        "scene_count": row.get("scene_count"),
        "embedded_count": row.get("embedded_count"),
        "created_at": _time(row.get("created_at")),
        "updated_at": _time(row.get("updated_at")),
        "finished_at": _time(row.get("finished_at")),
        "sheet_url": f"/v1/videos/{row['id']}/sheet.png",
    }


def scene_json(row: dict[str, Any]) -> dict[str, Any]:
    """A scene row as the sidecar's scene object (no vector, no ``visual_clip_metadata``: it holds server
    paths) plus what the API adds: ids, the video's name, a timecode, links; ``similarity`` for search results."""
    record = scene_schema.record_from_row(row)
    out = {
        "scene_id": str(row["id"]),
        "video_id": str(row["video_id"]),
        "video_name": video_name(row["source"]),
        **scene_schema.scene_json(record, vectors=False, clip_metadata=False),
        "timecode": timecode(record.best_time_s if record.best_time_s is not None else record.start_s),
        "embedding_model": row.get("embedding_model"),
        "frame_url": f"/v1/scenes/{row['id']}/frame.jpg",
        "similar_url": f"/v1/scenes/{row['id']}/similar",
    }
    if "similarity" in row:
        out["similarity"] = scene_schema.score(row["similarity"])
    return out
