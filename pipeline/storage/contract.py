"""What a storage backend implements: the one contract the indexer, the tools, the workers and the API use.

Like obstore's stores (one store per bucket or root directory, one interface
for all of them) and unlike fsspec's file system (paths and file handles),
the line is drawn at what vidx keeps: immutable **versions** of a video's
frames and sidecar, one of them **current**. A backend is opened once from
the settings (:func:`pipeline.storage.open_storage`, the only place that
looks at which kind is configured); a call site never asks which kind it got.

A *location* is what the database stores as ``frame_path`` and what a
published version is called: an absolute local path for the local
directory, an ``s3://`` URL for object storage. Only the backend that wrote
it interprets it.

Publish order, the same on every backend (readers see the old complete state
or the new complete state, ``frame_path`` always exists):
``stage()`` -> write files into ``staging.path`` + ``write_sidecar()`` ->
``publish()`` (a complete version, not yet current) -> the caller commits
the rows -> ``mark_referenced()`` -> ``make_current()`` (then older versions
go). Leaving the staging context early removes what nothing points at.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self
from uuid import UUID


class Staging(Protocol):
    """One run's private version of one video, from scratch files to the current version."""

    video_id: UUID
    version: str
    path: Path  # a local directory the run writes its frame files into

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Before ``make_current()``: remove what this run made, unless the rows point at it."""

    @property
    def version_dir(self) -> Path | str:
        """The location of this run's version (what ``IndexResult.sidecar_dir`` reports)."""
        ...

    def final_path(self, name: str) -> Path | str:
        """The location a file staged as ``name`` has once published (it stays there: the rows store it)."""
        ...

    def write_sidecar(self, document: dict[str, Any]) -> Path:
        """Stage the sidecar document (it is published with the frames, as their completeness marker)."""
        ...

    def publish(self) -> Path | str:
        """Step 1: the staged files become a complete version, not yet current."""
        ...

    def mark_referenced(self) -> None:
        """Step 2 happened: the database points at this version, so it is never discarded."""
        ...

    def make_current(self) -> Path | str:
        """Steps 3-4: readers of the video's current sidecar see this version; older versions are removed."""
        ...

    def discard(self) -> None:
        """Remove what this run made that nothing points at (best effort: :meth:`VideoStorage.sweep` retries)."""
        ...


class VideoStorage(Protocol):
    """Where frames, sidecars and uploaded sources live: a local directory, a bucket, or a new backend.

    Errors: ``FileNotFoundError`` for something missing or outside the store,
    :class:`~pipeline.core.errors.TransientError` when the storage cannot be
    reached or refuses the credentials (workers retry), :class:`BadInputError`
    for a source the store will not open.
    """

    # --- writing: one run's version of a video
    def stage(self, video_id: UUID) -> Staging:
        """A fresh private version for one run of ``video_id`` (use as a context manager)."""
        ...

    def write_beside(self, location: str, name: str, data: bytes) -> str:
        """Store ``name`` in the version holding ``location`` (atomically replacing it); its location.

        For files derived after publishing: a re-embedded sidecar, contact sheets.
        """
        ...

    # --- reading
    def contains(self, location: str) -> bool:
        """Whether ``location`` names a file inside this store (no ``..`` tricks, no other bucket or directory)."""
        ...

    def read_frame(self, location: str) -> bytes:
        """The bytes at ``location`` (a ``frame_path``); ``FileNotFoundError`` when gone or outside the store."""
        ...

    def read_sidecar(self, video_id: UUID) -> dict[str, Any]:
        """The video's current sidecar document; ``FileNotFoundError`` when it has none."""
        ...

    def current_version(self, video_id: UUID) -> str | None:
        """The version readers of the video see now (None: never published)."""
        ...

    def working_copy(self, location: str) -> AbstractContextManager[Path]:
        """A local directory holding the files of the version ``location`` lies in (for tools reading files)."""
        ...

    # --- cleaning up
    def remove_versions(self, video_id: UUID, keep: set[str]) -> list[str]:
        """Delete the video's versions other than ``keep`` and the current one; what was removed."""
        ...

    def leftovers(self) -> dict[UUID, float]:
        """Videos with entries a killed run may have left, and the newest entry's age in seconds."""
        ...

    def sweep(self, video_id: UUID, db_version: str | None) -> list[str]:
        """Remove what killed runs left for one video, keeping (and making current) ``db_version``.

        ``db_version``: the version the database rows point at. Only safe while
        no run of this video is live (callers hold its claim or checked its lease).
        """
        ...

    # --- uploaded source videos (the API's uploads; workers fetch them)
    def keep_upload(self, owner_id: UUID, path: Path) -> str:
        """Keep an uploaded, probed video for the workers; the source to queue (``path`` when it stays put)."""
        ...

    def is_upload(self, source: str) -> bool:
        """Whether ``source`` names an upload this store keeps (any owner's)."""
        ...

    def fetch_upload(self, source: str, dest_dir: Path, owner_id: UUID | None) -> Path:
        """A private local copy of one of ``owner_id``'s uploads (None: any owner's); else ``BadInputError``."""
        ...

    def abort_stale_uploads(self) -> int:
        """Give up uploads that killed API processes left half written; how many."""
        ...

    # --- operations
    def probe(self) -> str:
        """One cheap check that the store answers (``vidx health``); what it is, for the report."""
        ...

