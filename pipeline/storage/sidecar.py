"""The per-video sidecar document: ``<sidecar_dir>/<video_id>/sidecar.json`` plus best-frame JPEGs.

What the document holds and how it is written; where versions of it are
kept and how one becomes current is the storage backends' business
(``pipeline.storage.contract``; the local layout in ``pipeline.storage.local``).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

from pipeline.core.scene_schema import SCHEMA_VERSION, scene_json
from pipeline.core.types import ProbeResult, SceneRecord

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
    """The sidecar document in the contract's shape; each scene as :func:`scene_schema.scene_json` makes it."""
    return {
        "schema_version": SCHEMA_VERSION,
        "video_id": str(video_id),
        "owner_id": str(owner_id),
        "source": source,
        "probe": probe.to_json(),
        "scenes": [scene_json(s) for s in scenes],
        "timing": {k: round(v, 1) for k, v in timing_ms.items()},
    }


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over ``path``: never half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sidecar_bytes(document: dict[str, Any]) -> bytes:
    """The document as stored (indented JSON)."""
    return json.dumps(document, indent=1).encode("utf-8")


def write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    """Write the document to ``path`` atomically (see :func:`write_file_atomic`)."""
    write_file_atomic(path, sidecar_bytes(document))


def read_sidecar(sidecar_root: Path, video_id: UUID) -> dict[str, Any]:
    """Load the current sidecar at its contract address ``<sidecar_root>/<video_id>/sidecar.json``."""
    with open(sidecar_root / str(video_id) / SIDECAR_NAME, encoding="utf-8") as fh:
        return json.load(fh)
