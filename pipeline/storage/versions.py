"""Versioned publish into object storage: the same guarantees as the local sidecar directory.

S3 has no rename, so completeness comes from order and a pointer instead:
1. a run stages its JPEGs and sidecar in a private local scratch directory;
2. ``publish()`` uploads them under a fresh ``<video>/<version>/`` prefix,
   ``sidecar.json`` last (a version without it is incomplete, never pointed at);
3. the caller commits the database rows, whose ``frame_path`` URLs point
   into that version;
4. ``make_current()`` writes ``<video>/current.json`` naming the version,
   then deletes every older version.
A reader following the database or the pointer sees the old complete set
or the new complete set. A run that fails deletes what it uploaded; a
killed one leaves an unreferenced version that :func:`sweep_video` removes.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from pipeline.core.locations import CURRENT_NAME
from pipeline.storage.s3 import S3Store
from pipeline.storage.sidecar import new_version  # one home for version names, local and object alike

SIDECAR_NAME = "sidecar.json"
STAGING_PREFIX = ".staging-"
_CONTENT_TYPES = {".jpg": "image/jpeg", ".json": "application/json"}


def video_prefix(store: S3Store, video_id: UUID) -> str:
    return store.location.key(str(video_id)) + "/"


def current_version(store: S3Store, video_id: UUID) -> str | None:
    """The version ``current.json`` names (None: never published)."""
    try:
        document = json.loads(store.get(store.location.key(str(video_id), CURRENT_NAME)))
    except FileNotFoundError:
        return None
    version = document.get("version")
    return version if isinstance(version, str) else None


def version_of(store: S3Store, video_id: UUID, key: str) -> str | None:
    """The version segment of a key under the video's prefix (None for the pointer itself)."""
    rest = key[len(video_prefix(store, video_id)):]
    return rest.split("/", 1)[0] if "/" in rest else None


def visible_keys(store: S3Store, video_id: UUID) -> list[str]:
    """The keys a reader can reach through the pointer: the current version's objects."""
    version = current_version(store, video_id)
    if version is None:
        return []
    return store.list(store.location.key(str(video_id), version) + "/")


def read_current_sidecar(store: S3Store, video_id: UUID) -> dict[str, Any]:
    """The current sidecar document; ``FileNotFoundError`` when the video has none."""
    version = current_version(store, video_id)
    if version is None:
        raise FileNotFoundError(f"no sidecar for video {video_id} in {store.location}")
    return json.loads(store.get(store.location.key(str(video_id), version, SIDECAR_NAME)))


def remove_versions(store: S3Store, video_id: UUID, keep: set[str]) -> list[str]:
    """Delete every object of the video outside the ``keep`` versions (the pointer stays)."""
    doomed = [
        key for key in store.list(video_prefix(store, video_id))
        if (v := version_of(store, video_id, key)) is not None and v not in keep
    ]
    store.delete(doomed)
    return doomed


def _write_pointer(store: S3Store, video_id: UUID, version: str) -> None:
    pointer = json.dumps({"version": version, "published_at": time.time()}).encode()
    store.put(store.location.key(str(video_id), CURRENT_NAME), pointer, "application/json")


def sweep_video(store: S3Store, video_id: UUID, db_version: str | None) -> list[str]:
    """Remove what killed runs left for this video: unreferenced versions and multipart uploads.

    ``db_version`` is the version the database rows point at: the pointer is
    repaired to it when a crash came between the row commit and the pointer
    write, and it is kept with the current one. Only safe while no run of
    this video is publishing: workers call it under their claim on the video.
    """
    keep = {v for v in [db_version] if v}
    if db_version and store.exists(store.location.key(str(video_id), db_version, SIDECAR_NAME)):
        if current_version(store, video_id) != db_version:
            _write_pointer(store, video_id, db_version)
    current = current_version(store, video_id)
    removed = remove_versions(store, video_id, keep | {v for v in [current] if v})
    store.abort_uploads(video_prefix(store, video_id))
    return removed


class ObjectStaging:
    """One run's version of a video in object storage; the interface of the local ``SidecarStaging``.

    Use as a context manager: leaving before ``make_current()`` removes the
    local scratch and the uploaded version, unless the database points at it
    (:meth:`mark_referenced`).
    """

    def __init__(self, store: S3Store, scratch_root: Path, video_id: UUID) -> None:
        self.store = store
        self.video_id = video_id
        self.version = new_version()
        self.path = scratch_root / f"{STAGING_PREFIX}{video_id}-{self.version}"
        scratch_root.mkdir(parents=True, exist_ok=True)
        self.path.mkdir()
        self._uploaded: list[str] = []
        self._published = False
        self._referenced = False
        self._current = False

    def __enter__(self) -> ObjectStaging:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._current:
            self.discard()

    def _key(self, name: str) -> str:
        return self.store.location.key(str(self.video_id), self.version, name)

    def final_path(self, name: str) -> str:
        """The URL a file staged as ``name`` has once published (it stays there)."""
        return self.store.location.url(self._key(name))

    @property
    def version_dir(self) -> str:
        """The ``s3://`` URL of this run's version (the local staging's ``version_dir``)."""
        return self.store.location.url(self.store.location.key(str(self.video_id), self.version))

    def write_sidecar(self, document: dict[str, Any]) -> Path:
        path = self.path / SIDECAR_NAME
        path.write_text(json.dumps(document, indent=1), encoding="utf-8")
        return path

    def publish(self) -> str:
        """Step 1: upload the staged files as a complete version (``sidecar.json`` last); not yet current."""
        files = sorted(p for p in self.path.iterdir() if p.is_file())
        files.sort(key=lambda p: p.name == SIDECAR_NAME)  # the completeness marker goes last
        for path in files:
            key = self._key(path.name)
            self._uploaded.append(key)
            self.store.put(key, path.read_bytes(), _CONTENT_TYPES.get(path.suffix, "application/octet-stream"))
        self._published = True
        return self.version_dir

    def mark_referenced(self) -> None:
        """Step 2 happened: the database points at this version, so it must never be discarded."""
        self._referenced = True

    def make_current(self) -> str:
        """Steps 3-4: point ``current.json`` at this version, then delete older versions and the scratch."""
        if not self._published:
            self.publish()
        _write_pointer(self.store, self.video_id, self.version)
        self._current = True
        shutil.rmtree(self.path, ignore_errors=True)
        remove_versions(self.store, self.video_id, keep={self.version})
        return self.version_dir

    def discard(self) -> None:
        """Remove what this run made that nothing points at (best effort: the sweep catches the rest)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._uploaded and not self._referenced:
            try:
                self.store.delete(self._uploaded)
            except Exception:  # noqa: BLE001 - the storage may be what failed; sweep_video retries later
                pass
            self._uploaded = []
