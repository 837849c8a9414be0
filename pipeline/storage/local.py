"""The local-directory backend: the embedded default, one machine (or one shared filesystem).

Layout (unchanged since versioning came in): every run publishes a complete,
immutable **version directory** ``<root>/.v-<video_id>-<version>/``
(assembled in a hidden staging directory, then renamed), and
``<root>/<video_id>`` is a relative symlink to the current version, swapped
with one atomic rename. A reader of ``<video_id>/sidecar.json`` therefore sees
the previous complete sidecar or the new complete one, never a mix and never
nothing. The database's ``frame_path`` points into the version directory,
which is removed only after the rows point elsewhere. Leftovers of killed
runs are removed by :meth:`LocalStorage.sweep`. Uploaded sources stay where
the API saved them (``VIDX_DATA_DIR/uploads``): API and workers share that disk.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from pipeline.core.errors import BadInputError
from pipeline.storage.sidecar import read_sidecar, write_file_atomic
from pipeline.storage.staging import STAGING_PREFIX, RunStaging, entry_name, new_version, remove_entries, scan_leftovers

VERSION_PREFIX = ".v-"
LINK_PREFIX = ".link-"
_PREFIXES = (STAGING_PREFIX, VERSION_PREFIX, LINK_PREFIX)


def version_dir(root: Path, video_id: UUID, version: str) -> Path:
    return root / entry_name(VERSION_PREFIX, video_id, version)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    """The :class:`~pipeline.storage.contract.VideoStorage` of one local directory (``VIDX_SIDECAR_DIR``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"LocalStorage({self.root})"

    # --- writing
    def stage(self, video_id: UUID) -> LocalStaging:
        return LocalStaging(self, video_id)

    def write_beside(self, location: str, name: str, data: bytes) -> str:
        directory = self._inside(location).parent
        if not directory.is_dir():
            raise FileNotFoundError(f"no version directory here: {directory}")
        path = directory / Path(name).name
        write_file_atomic(path, data)
        return str(path)

    def link_current(self, video_id: UUID, version: str) -> None:
        """Point ``<video_id>`` at ``version`` with one atomic rename of a fresh symlink.

        A pre-versioning real directory in the way is first moved aside as a
        version of its own (the only moment without a sidecar, once per video).
        """
        link = self.root / str(video_id)
        tmp = self.root / entry_name(LINK_PREFIX, video_id, version)
        tmp.unlink(missing_ok=True)
        os.symlink(version_dir(self.root, video_id, version).name, tmp)
        if link.is_dir() and not link.is_symlink():
            os.replace(link, version_dir(self.root, video_id, "legacy" + new_version()))
        os.replace(tmp, link)
        _fsync_dir(self.root)

    # --- reading
    def _inside(self, location: str | Path) -> Path:
        if not self.contains(str(location)):
            raise FileNotFoundError(f"frame outside the configured store: {location}")
        return Path(location)

    def contains(self, location: str) -> bool:
        path = Path(location)
        return path.is_absolute() and path.resolve().is_relative_to(self.root.resolve())

    def read_frame(self, location: str) -> bytes:
        return self._inside(location).read_bytes()

    def read_sidecar(self, video_id: UUID) -> dict[str, Any]:
        return read_sidecar(self.root, video_id)

    def current_version(self, video_id: UUID) -> str | None:
        """The version ``<video_id>`` links to now (None: no sidecar, or a pre-versioning directory)."""
        try:
            target = os.readlink(self.root / str(video_id))
        except OSError:
            return None
        prefix = entry_name(VERSION_PREFIX, video_id, "")
        return target[len(prefix):] if target.startswith(prefix) else None

    @contextmanager
    def working_copy(self, location: str) -> Iterator[Path]:
        """The version directory itself: local files need no copy."""
        yield Path(location).parent

    # --- cleaning up
    def remove_versions(self, video_id: UUID, keep: set[str]) -> list[str]:
        keep = keep | {v for v in [self.current_version(video_id)] if v}
        prefix = entry_name(VERSION_PREFIX, video_id, "")
        removed = []
        for path in self.root.glob(f"{prefix}*"):
            if path.name[len(prefix):] not in keep:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
        return removed

    def leftovers(self) -> dict[UUID, float]:
        return scan_leftovers(self.root, _PREFIXES)

    def sweep(self, video_id: UUID, db_version: str | None) -> list[str]:
        """Staging directories, temp links, unreferenced versions; the link repaired to ``db_version``.

        The repair matters when a crash came between the row commit and the link swap.
        """
        if not self.root.is_dir():
            return []
        if db_version and version_dir(self.root, video_id, db_version).is_dir():
            if self.current_version(video_id) != db_version:
                self.link_current(video_id, db_version)
        removed = remove_entries(self.root, video_id, (STAGING_PREFIX, LINK_PREFIX))
        return removed + self.remove_versions(video_id, keep={db_version} if db_version else set())

    # --- uploaded sources: they stay in the data directory the API and the workers share
    def keep_upload(self, owner_id: UUID, path: Path) -> str:
        return str(path)

    def is_upload(self, source: str) -> bool:
        return False

    def fetch_upload(self, source: str, dest_dir: Path, owner_id: UUID | None) -> Path:
        raise BadInputError("an s3:// source needs VIDX_STORAGE_URL (object storage is not configured)")

    def abort_stale_uploads(self) -> int:
        return 0

    # --- operations
    def probe(self) -> str:
        """The directory exists (or can be made) and this process may write into it."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise PermissionError(f"{self.root} is not writable by this process")
        return str(self.root)


class LocalStaging(RunStaging):
    """A private directory where one run assembles a video's version, then publishes it by renaming.

    ``publish()`` renames it to its version directory (complete, not yet
    current); ``make_current()`` swaps the link and removes older versions.
    """

    def __init__(self, storage: LocalStorage, video_id: UUID) -> None:
        super().__init__(storage.root, video_id)
        self.storage = storage
        self.root = storage.root
        self.version_dir = version_dir(storage.root, video_id, self.version)

    def final_path(self, name: str) -> Path:
        """Where a file written into staging as ``name`` will be once published (it stays there)."""
        return self.version_dir / name

    def publish(self) -> Path:
        """Step 1: the staged files become a complete version directory (not yet current)."""
        _fsync_dir(self.path)
        os.replace(self.path, self.version_dir)
        _fsync_dir(self.root)
        self._published = True
        return self.version_dir

    def make_current(self) -> Path:
        """Step 3 and 4: link ``<video_id>`` to this version, then remove older versions."""
        self.storage.link_current(self.video_id, self.version)
        self._current = True
        self.storage.remove_versions(self.video_id, keep={self.version})
        return self.root / str(self.video_id)

    def discard(self) -> None:
        """Remove what this run made (nothing the database or the link points at)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._published and not self._referenced and self.storage.current_version(self.video_id) != self.version:
            shutil.rmtree(self.version_dir, ignore_errors=True)
