"""The per-video sidecar: ``<sidecar_dir>/<video_id>/sidecar.json`` plus best-frame JPEGs.

Layout: every run publishes a complete, immutable **version directory**
``<sidecar_dir>/.v-<video_id>-<version>/`` (assembled in a hidden staging
directory, then renamed), and ``<sidecar_dir>/<video_id>`` is a relative
symlink to the current version, swapped with one atomic rename. A reader
of ``<video_id>/sidecar.json`` therefore sees the previous complete sidecar
or the new complete one, never a mix and never nothing. The database's
``frame_path`` points into the version directory, which is removed only
after the rows point elsewhere. Publish order (see pipeline/indexer.py):
version directory, database rows, link, removal of older versions.
Leftovers of killed runs are removed by :func:`sweep_video`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

from pipeline.core.scene_schema import SCHEMA_VERSION, scene_json
from pipeline.core.types import ProbeResult, SceneRecord

SIDECAR_NAME = "sidecar.json"
STAGING_PREFIX = ".staging-"
VERSION_PREFIX = ".v-"
LINK_PREFIX = ".link-"
_PREFIXES = (STAGING_PREFIX, VERSION_PREFIX, LINK_PREFIX)


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


def new_version() -> str:
    """A version name that sorts by creation time and never repeats."""
    return f"{time.time_ns():x}{uuid.uuid4().hex[:6]}"


def version_dir(sidecar_root: Path, video_id: UUID, version: str) -> Path:
    return sidecar_root / f"{VERSION_PREFIX}{video_id}-{version}"


def current_version(sidecar_root: Path, video_id: UUID) -> str | None:
    """The version ``<video_id>`` links to now (None: no sidecar, or a pre-versioning directory)."""
    try:
        target = os.readlink(sidecar_root / str(video_id))
    except OSError:
        return None
    prefix = f"{VERSION_PREFIX}{video_id}-"
    return target[len(prefix):] if target.startswith(prefix) else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_current(sidecar_root: Path, video_id: UUID, version: str) -> None:
    """Point ``<video_id>`` at ``version`` with one atomic rename of a fresh symlink.

    A pre-versioning real directory in the way is first moved aside as a
    version of its own (the only moment without a sidecar, once per video).
    """
    link = sidecar_root / str(video_id)
    tmp = sidecar_root / f"{LINK_PREFIX}{video_id}-{version}"
    tmp.unlink(missing_ok=True)
    os.symlink(version_dir(sidecar_root, video_id, version).name, tmp)
    if link.is_dir() and not link.is_symlink():
        os.replace(link, version_dir(sidecar_root, video_id, "legacy" + new_version()))
    os.replace(tmp, link)
    _fsync_dir(sidecar_root)


class SidecarStaging:
    """A private directory where one run assembles a video's sidecar, then publishes it as a version.

    ``publish()`` renames it to its version directory (complete, not yet
    current); ``make_current()`` swaps the link and removes older versions.
    Leaving the context with an exception removes what this run made,
    unless its version is referenced (:meth:`mark_referenced`: the database
    points at it).
    """

    def __init__(self, sidecar_root: Path, video_id: UUID) -> None:
        self.root = sidecar_root
        self.video_id = video_id
        self.version = new_version()
        self.version_dir = version_dir(sidecar_root, video_id, self.version)
        self.path = sidecar_root / f"{STAGING_PREFIX}{video_id}-{self.version}"
        sidecar_root.mkdir(parents=True, exist_ok=True)
        self.path.mkdir()
        self._published = False
        self._referenced = False
        self._current = False

    def __enter__(self) -> SidecarStaging:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._current:
            self.discard()

    def final_path(self, name: str) -> Path:
        """Where a file written into staging as ``name`` will be once published (it stays there)."""
        return self.version_dir / name

    def write_sidecar(self, document: dict[str, Any]) -> Path:
        path = self.path / SIDECAR_NAME
        write_json_atomic(path, document)
        return path

    def publish(self) -> Path:
        """Step 1: the staged files become a complete version directory (not yet current)."""
        _fsync_dir(self.path)
        os.replace(self.path, self.version_dir)
        _fsync_dir(self.root)
        self._published = True
        return self.version_dir

    def mark_referenced(self) -> None:
        """Step 2 happened: the database points at this version, so it must never be discarded."""
        self._referenced = True

    def make_current(self) -> Path:
        """Step 3 and 4: link ``<video_id>`` to this version, then remove older versions."""
        link_current(self.root, self.video_id, self.version)
        self._current = True
        remove_versions(self.root, self.video_id, keep={self.version})
        return self.root / str(self.video_id)

    def discard(self) -> None:
        """Remove what this run made (nothing the database or the link points at)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._published and not self._referenced and current_version(self.root, self.video_id) != self.version:
            shutil.rmtree(self.version_dir, ignore_errors=True)


def _entries(sidecar_root: Path, video_id: UUID) -> list[Path]:
    return [p for prefix in _PREFIXES for p in sidecar_root.glob(f"{prefix}{video_id}-*")]


def remove_versions(sidecar_root: Path, video_id: UUID, keep: set[str]) -> list[Path]:
    """Delete the video's version directories other than ``keep`` (and the current one)."""
    keep = keep | {v for v in [current_version(sidecar_root, video_id)] if v}
    removed = []
    for path in sidecar_root.glob(f"{VERSION_PREFIX}{video_id}-*"):
        if path.name[len(f"{VERSION_PREFIX}{video_id}-"):] not in keep:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def sweep_video(sidecar_root: Path, video_id: UUID, db_version: str | None) -> list[Path]:
    """Remove a killed run's leftovers for one video (staging, temp links, unreferenced versions).

    ``db_version`` is the version the database points at: the link is
    repaired to it when a crash came between the row commit and the link
    swap. Only safe while no run of this video is live (callers check its lease).
    """
    if sidecar_root is None or not sidecar_root.is_dir():
        return []
    if db_version and version_dir(sidecar_root, video_id, db_version).is_dir():
        if current_version(sidecar_root, video_id) != db_version:
            link_current(sidecar_root, video_id, db_version)
    removed = []
    for path in _entries(sidecar_root, video_id):
        if path.name.startswith((STAGING_PREFIX, LINK_PREFIX)):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() and not path.is_symlink() else path.unlink(
                missing_ok=True)
            removed.append(path)
    return removed + remove_versions(sidecar_root, video_id, keep={db_version} if db_version else set())


def leftover_video_ids(sidecar_root: Path) -> dict[UUID, float]:
    """Videos with staging, temp-link or version entries, and the newest entry's age in seconds."""
    found: dict[UUID, float] = {}
    if not sidecar_root.is_dir():
        return found
    now = time.time()
    for path in sidecar_root.iterdir():
        for prefix in _PREFIXES:
            if path.name.startswith(prefix):
                try:
                    video_id = UUID(path.name[len(prefix):len(prefix) + 36])
                    age = now - path.lstat().st_mtime
                except (ValueError, OSError):
                    continue
                found[video_id] = min(age, found.get(video_id, age))
    return found


def read_sidecar(sidecar_root: Path, video_id: UUID) -> dict[str, Any]:
    """Load a committed sidecar (tests, tools)."""
    with open(sidecar_root / str(video_id) / SIDECAR_NAME, encoding="utf-8") as fh:
        return json.load(fh)
