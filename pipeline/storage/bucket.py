"""The object-storage backend: versions in an S3-compatible bucket, the same guarantees as the local directory.

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
killed one leaves an unreferenced version that :meth:`S3Storage.sweep` removes.
The key layout is ``pipeline.core.locations``'s; the boto3 calls are ``pipeline.storage.s3``'s.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any
from uuid import UUID

from pipeline.core.locations import CURRENT_NAME, S3Location, is_object_url, split_object_url
from pipeline.storage import uploads
from pipeline.storage.s3 import S3Store
from pipeline.storage.sidecar import SIDECAR_NAME
from pipeline.storage.staging import STAGING_PREFIX, RunStaging, remove_entries, scan_leftovers

_CONTENT_TYPES = {".jpg": "image/jpeg", ".json": "application/json", ".png": "image/png"}


def content_type(name: str) -> str:
    return _CONTENT_TYPES.get(PurePosixPath(name).suffix, "application/octet-stream")


class S3Storage:
    """The :class:`~pipeline.storage.contract.VideoStorage` of one ``s3://bucket/prefix`` (``VIDX_STORAGE_URL``).

    ``scratch``: a local directory where runs assemble their files before the upload.
    """

    def __init__(self, location: S3Location, scratch: Path, client: Any | None = None) -> None:
        self.location = location
        self.scratch = scratch
        self.store = S3Store(location, client)

    def __repr__(self) -> str:
        return f"S3Storage({self.location})"

    def video_prefix(self, video_id: UUID) -> str:
        return self.location.key(str(video_id)) + "/"

    def version_key(self, video_id: UUID, version: str, name: str = "") -> str:
        return self.location.key(str(video_id), version, name)

    # --- writing
    def stage(self, video_id: UUID) -> S3Staging:
        return S3Staging(self, video_id)

    def write_beside(self, location: str, name: str, data: bytes) -> str:
        """One PUT, which S3 makes atomic per object (readers see the old or the new file)."""
        key = self._key_of(location).rsplit("/", 1)[0] + "/" + PurePosixPath(name).name
        self.store.put(key, data, content_type(name))
        return self.location.url(key)

    def write_pointer(self, video_id: UUID, version: str) -> None:
        """Make ``version`` the one readers of the video see (one PUT of ``current.json``)."""
        pointer = json.dumps({"version": version, "published_at": time.time()}).encode()
        self.store.put(self.location.key(str(video_id), CURRENT_NAME), pointer, "application/json")

    # --- reading
    def contains(self, location: str) -> bool:
        if not is_object_url(location) or "/../" in location or location.endswith("/.."):
            return False
        return location.startswith(str(self.location) + "/")

    def _key_of(self, location: str) -> str:
        if not self.contains(location):
            raise FileNotFoundError(f"frame outside the configured store: {location}")
        return split_object_url(location)[1]

    def read_frame(self, location: str) -> bytes:
        return self.store.get(self._key_of(location))

    def current_version(self, video_id: UUID) -> str | None:
        """The version ``current.json`` names (None: never published)."""
        try:
            document = json.loads(self.store.get(self.location.key(str(video_id), CURRENT_NAME)))
        except FileNotFoundError:
            return None
        version = document.get("version")
        return version if isinstance(version, str) else None

    def read_sidecar(self, video_id: UUID) -> dict[str, Any]:
        version = self.current_version(video_id)
        if version is None:
            raise FileNotFoundError(f"no sidecar for video {video_id} in {self.location}")
        return json.loads(self.store.get(self.version_key(video_id, version, SIDECAR_NAME)))

    def visible_keys(self, video_id: UUID) -> list[str]:
        """The keys a reader can reach through the pointer: the current version's objects."""
        version = self.current_version(video_id)
        return [] if version is None else self.store.list(self.version_key(video_id, version) + "/")

    @contextmanager
    def working_copy(self, location: str) -> Iterator[Path]:
        """The version's objects downloaded to a temporary directory under the scratch (removed after)."""
        prefix = self._key_of(location).rsplit("/", 1)[0] + "/"
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".copy-", dir=self.scratch) as tmp:
            directory = Path(tmp)
            for key in self.store.list(prefix):
                name = key[len(prefix):]
                if name and "/" not in name:
                    (directory / name).write_bytes(self.store.get(key))
            yield directory

    # --- cleaning up
    def _version_of(self, video_id: UUID, key: str) -> str | None:
        """The version segment of a key under the video's prefix (None for the pointer itself)."""
        rest = key[len(self.video_prefix(video_id)):]
        return rest.split("/", 1)[0] if "/" in rest else None

    def remove_versions(self, video_id: UUID, keep: set[str]) -> list[str]:
        """Delete every object of the video outside ``keep`` and the current version (the pointer stays)."""
        keep = keep | {v for v in [self.current_version(video_id)] if v}
        doomed = [key for key in self.store.list(self.video_prefix(video_id))
                  if (v := self._version_of(video_id, key)) is not None and v not in keep]
        self.store.delete(doomed)
        return doomed

    def leftovers(self) -> dict[UUID, float]:
        """Staging directories in the local scratch (the bucket is swept per video, under its claim)."""
        return scan_leftovers(self.scratch, (STAGING_PREFIX,))

    def sweep(self, video_id: UUID, db_version: str | None) -> list[str]:
        """Local scratch, unreferenced versions and multipart uploads; the pointer repaired to ``db_version``.

        The repair matters when a crash came between the row commit and the pointer write.
        """
        removed = remove_entries(self.scratch, video_id, (STAGING_PREFIX,))
        if db_version and self.store.exists(self.version_key(video_id, db_version, SIDECAR_NAME)):
            if self.current_version(video_id) != db_version:
                self.write_pointer(video_id, db_version)
        removed += self.remove_versions(video_id, {db_version} if db_version else set())
        self.store.abort_uploads(self.video_prefix(video_id))
        return removed

    # --- uploaded sources
    def keep_upload(self, owner_id: UUID, path: Path) -> str:
        """Uploaded to ``<prefix>/uploads/<owner>/<random>/<name>``: workers need no shared disk."""
        return uploads.upload_source(self.store, owner_id, path, path.name)

    def is_upload(self, source: str) -> bool:
        return uploads.is_upload(source, self.location)

    def fetch_upload(self, source: str, dest_dir: Path, owner_id: UUID | None) -> Path:
        return uploads.fetch_upload(self.store, source, dest_dir, owner_id)

    def abort_stale_uploads(self) -> int:
        return uploads.abort_stale_multipart(self.store)

    # --- operations
    def probe(self) -> str:
        """One cheap authenticated request (list one key under the prefix)."""
        return self.store.probe()


class S3Staging(RunStaging):
    """One run's version of a video in the bucket, assembled in the local scratch, then uploaded."""

    def __init__(self, storage: S3Storage, video_id: UUID) -> None:
        super().__init__(storage.scratch, video_id)
        self.storage = storage
        self.store = storage.store
        self._uploaded: list[str] = []

    def _key(self, name: str) -> str:
        return self.storage.version_key(self.video_id, self.version, name)

    def final_path(self, name: str) -> str:
        """The URL a file staged as ``name`` has once published (it stays there)."""
        return self.store.location.url(self._key(name))

    @property
    def version_dir(self) -> str:
        """The ``s3://`` URL of this run's version."""
        return self.store.location.url(self.storage.version_key(self.video_id, self.version))

    def publish(self) -> str:
        """Step 1: upload the staged files as a complete version (``sidecar.json`` last); not yet current."""
        files = sorted(p for p in self.path.iterdir() if p.is_file())
        files.sort(key=lambda p: p.name == SIDECAR_NAME)  # the completeness marker goes last
        for path in files:
            key = self._key(path.name)
            self._uploaded.append(key)
            self.store.put(key, path.read_bytes(), content_type(path.name))
        self._published = True
        return self.version_dir

    def make_current(self) -> str:
        """Steps 3-4: point ``current.json`` at this version, then delete older versions and the scratch."""
        if not self._published:
            self.publish()
        self.storage.write_pointer(self.video_id, self.version)
        self._current = True
        shutil.rmtree(self.path, ignore_errors=True)
        self.storage.remove_versions(self.video_id, keep={self.version})
        return self.version_dir

    def discard(self) -> None:
        """Remove what this run made that nothing points at (best effort: the sweep catches the rest)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._uploaded and not self._referenced:
            try:
                self.store.delete(self._uploaded)
            except Exception:  # noqa: BLE001 - the storage may be what failed; S3Storage.sweep retries later
                pass
            self._uploaded = []
