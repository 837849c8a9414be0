"""What every backend's staging shares: version names, the scratch directory, and the run's publish state.

A run writes its frames into a private local directory
(``<scratch>/.staging-<video_id>-<version>``) whatever the backend; the
backend decides what ``publish()`` and ``make_current()`` do with it.
"""

from __future__ import annotations

import shutil
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from pipeline.storage.sidecar import SIDECAR_NAME, write_json_atomic

STAGING_PREFIX = ".staging-"


def new_version() -> str:
    """A version name that sorts by creation time and never repeats (one home for both backends)."""
    return f"{time.time_ns():x}{uuid.uuid4().hex[:6]}"


def entry_name(prefix: str, video_id: UUID, version: str) -> str:
    """``<prefix><video_id>-<version>``: how a video's private entries are named in a directory."""
    return f"{prefix}{video_id}-{version}"


def scan_leftovers(root: Path, prefixes: tuple[str, ...]) -> dict[UUID, float]:
    """Videos with ``<prefix><video_id>-...`` entries under ``root``, and the newest entry's age in seconds."""
    found: dict[UUID, float] = {}
    if not root.is_dir():
        return found
    now = time.time()
    for path in root.iterdir():
        for prefix in prefixes:
            if path.name.startswith(prefix):
                try:
                    video_id = UUID(path.name[len(prefix):len(prefix) + 36])
                    age = now - path.lstat().st_mtime
                except (ValueError, OSError):
                    continue
                found[video_id] = min(age, found.get(video_id, age))
    return found


def remove_entries(root: Path, video_id: UUID, prefixes: tuple[str, ...]) -> list[str]:
    """Delete the video's ``<prefix><video_id>-*`` entries (directories, files or links) under ``root``."""
    removed = []
    for prefix in prefixes:
        for path in root.glob(f"{prefix}{video_id}-*"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(str(path))
    return removed


class RunStaging(ABC):
    """A run's scratch directory and where its version stands; leaving early discards what nothing references."""

    def __init__(self, scratch_root: Path, video_id: UUID) -> None:
        self.video_id = video_id
        self.version = new_version()
        self.path = scratch_root / entry_name(STAGING_PREFIX, video_id, self.version)
        scratch_root.mkdir(parents=True, exist_ok=True)
        self.path.mkdir()
        self._published = False
        self._referenced = False
        self._current = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._current:
            self.discard()

    def write_sidecar(self, document: dict[str, Any]) -> Path:
        path = self.path / SIDECAR_NAME
        write_json_atomic(path, document)
        return path

    def mark_referenced(self) -> None:
        """Step 2 happened: the database points at this version, so it must never be discarded."""
        self._referenced = True

    @abstractmethod
    def discard(self) -> None:
        """Remove what this run made that nothing points at."""
