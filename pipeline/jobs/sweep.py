"""Removing what killed runs left behind: under a new claim, and at every worker's start.

A video's leftovers (staging directories, unreferenced versions, objects no
row or pointer references) go only when no run holds a live lease on it;
storage is reached through its contract (:class:`pipeline.storage.VideoStorage`).
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import psycopg

from pipeline.core.config import Settings
from pipeline.core.errors import TransientError, one_line
from pipeline.core.log import get_logger
from pipeline.intake.sources import sweep_abandoned_downloads
from pipeline.storage import open_storage
from pipeline.store import videos

log = get_logger("vidx.jobs")


def sweep_claimed(conn: psycopg.Connection, vid: UUID, settings: Settings) -> None:
    """Remove a killed run's leftovers for a video this run now holds (whatever the storage)."""
    version = videos.sidecar_versions(conn, [vid]).get(vid)
    for path in open_storage(settings).sweep(vid, version):
        log.info("leftover_removed", path=path)


def sweep_leftovers(conn: psycopg.Connection, settings: Settings) -> list[str | Path]:
    """At worker start: remove what killed runs left in the sidecar directory and in downloads.

    With object storage, also abort source uploads that a killed API process left half done
    (a video's own leftover objects are swept under its claim: :func:`sweep_claimed`).

    A video's leftovers go only when no run holds a live lease on it;
    leftovers of a video with no row at all (``vidx index --no-db``) only once
    older than the hard time limit, which no live run outlasts; download
    directories once their process is gone (pipeline.intake.sources).
    """
    storage = open_storage(settings)
    removed: list[str | Path] = []
    found = storage.leftovers()
    if found:
        ids = list(found)
        live = videos.live_leases(conn, ids)
        known = videos.sidecar_versions(conn, ids)
        for vid, age_s in found.items():
            if vid in live or (vid not in known and age_s < settings.task_time_limit_s):
                continue
            removed += storage.sweep(vid, known.get(vid))
    removed += sweep_abandoned_downloads()
    _abort_stale_source_uploads(settings)
    if removed:
        log.info("leftovers_swept", count=len(removed), paths=[str(p) for p in removed[:20]])
    return removed


def _abort_stale_source_uploads(settings: Settings) -> None:
    """Object storage: multipart uploads of sources that a killed API process left (never blocks the sweep)."""
    try:
        aborted = open_storage(settings).abort_stale_uploads()
    except TransientError as exc:
        log.warning("stale_uploads_not_checked", reason=one_line(exc))
        return
    if aborted:
        log.info("stale_uploads_aborted", count=aborted)
