"""Queue bookkeeping on the ``videos`` table: attempts, claiming, stale jobs.

The database, not the broker, is the source of truth for a job: a message
may be delivered twice (redelivery after a crash, a reconciler requeue), so
a worker *claims* the video before working on it. The claim holds a
session-level advisory lock for the whole job, which PostgreSQL releases by
itself when the worker's connection dies; a second delivery of the same
video therefore sees the lock taken and steps aside, and a crashed job's
video becomes claimable again at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

import psycopg

# Advisory lock keys are derived from the video id inside this namespace.
_LOCK_KEY_SQL = "hashtextextended('vidx-video:' || %s::text, 0)"


class ClaimStatus(StrEnum):
    """Outcome of :func:`claim_video`."""

    CLAIMED = "claimed"  # this worker owns the job now
    DONE = "done"  # already finished (done or failed): a duplicate message
    BUSY = "busy"  # another live worker holds the job
    MISSING = "missing"  # no such video row (deleted, or never created)
    GAVE_UP = "gave_up"  # attempts exhausted: marked failed now


@dataclass(frozen=True)
class Claim:
    """A video this worker may index now (its lock is held on the claiming connection)."""

    status: ClaimStatus
    video_id: UUID
    owner_id: UUID | None = None
    source: str | None = None
    attempts: int = 0
    error: str | None = None


def try_lock_video(conn: psycopg.Connection, video_id: UUID) -> bool:
    """Take the video's session-level advisory lock without waiting."""
    row = conn.execute(f"SELECT pg_try_advisory_lock({_LOCK_KEY_SQL})", (str(video_id),)).fetchone()
    return bool(row and row[0])


def unlock_video(conn: psycopg.Connection, video_id: UUID) -> None:
    """Release the lock taken by :func:`try_lock_video` on this connection."""
    conn.execute(f"SELECT pg_advisory_unlock({_LOCK_KEY_SQL})", (str(video_id),))


def claim_video(conn: psycopg.Connection, video_id: UUID, *, max_attempts: int) -> Claim:
    """Lock the video and count one more attempt, or say why this delivery must not run.

    ``conn`` should be in autocommit mode: the advisory lock lives as long as
    the session, and status changes must be visible to others at once.
    Anything but ``CLAIMED`` leaves the lock released.
    """
    if not try_lock_video(conn, video_id):
        return Claim(ClaimStatus.BUSY, video_id)
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT owner_id, source, status, attempts, error FROM videos WHERE id = %s FOR UPDATE",
                (video_id,),
            ).fetchone()
            if row is None:
                claim = Claim(ClaimStatus.MISSING, video_id)
            else:
                owner_id, source, status, attempts, error = row
                if status in ("done", "failed"):
                    claim = Claim(ClaimStatus.DONE, video_id, owner_id, source, attempts, error)
                elif attempts >= max_attempts:
                    reason = f"gave up after {attempts} attempts: {error or 'worker lost during the job'}"
                    conn.execute(
                        "UPDATE videos SET status = 'failed', error = %s, finished_at = now(), updated_at = now() "
                        "WHERE id = %s",
                        (reason, video_id),
                    )
                    claim = Claim(ClaimStatus.GAVE_UP, video_id, owner_id, source, attempts, reason)
                else:
                    conn.execute(
                        "UPDATE videos SET status = 'running', attempts = attempts + 1, progress = 0, "
                        "started_at = now(), finished_at = NULL, updated_at = now() WHERE id = %s",
                        (video_id,),
                    )
                    claim = Claim(ClaimStatus.CLAIMED, video_id, owner_id, source, attempts + 1, error)
    except BaseException:
        unlock_video(conn, video_id)
        raise
    if claim.status is not ClaimStatus.CLAIMED:
        unlock_video(conn, video_id)
    return claim


def set_progress(conn: psycopg.Connection, video_id: UUID, fraction: float) -> None:
    """Record progress of a running job (also its heartbeat: ``updated_at``)."""
    with conn.transaction():
        conn.execute(
            "UPDATE videos SET progress = %s, updated_at = now() WHERE id = %s AND status = 'running'",
            (min(max(float(fraction), 0.0), 1.0), video_id),
        )


def mark_failed(conn: psycopg.Connection, video_id: UUID, error: str) -> None:
    """Final failure with its one-line reason (unless the video already finished)."""
    with conn.transaction():
        conn.execute(
            "UPDATE videos SET status = 'failed', error = %s, finished_at = now(), updated_at = now() "
            "WHERE id = %s AND status <> 'done'",
            (error, video_id),
        )


def mark_retrying(conn: psycopg.Connection, video_id: UUID, error: str) -> None:
    """Back to ``queued`` with the reason of the failed attempt, awaiting its retry."""
    with conn.transaction():
        conn.execute(
            "UPDATE videos SET status = 'queued', error = %s, updated_at = now() "
            "WHERE id = %s AND status = 'running'",
            (f"retrying: {error}", video_id),
        )


def reset_for_enqueue(conn: psycopg.Connection, video_id: UUID) -> None:
    """A fresh job for this video: queued, no attempts, no error."""
    with conn.transaction():
        conn.execute(
            "UPDATE videos SET status = 'queued', attempts = 0, progress = 0, error = NULL, "
            "started_at = NULL, finished_at = NULL, updated_at = now() WHERE id = %s",
            (video_id,),
        )


def find_stale_videos(conn: psycopg.Connection, *, stale_after_s: float, limit: int = 1000) -> list[dict[str, Any]]:
    """Videos queued or running with no news for ``stale_after_s`` and no live worker on them.

    A job whose worker is alive holds its advisory lock, so it is never
    reported however slow it is.
    """
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, owner_id, status, attempts FROM videos "
            "WHERE status IN ('queued', 'running') AND updated_at < now() - make_interval(secs => %s) "
            "ORDER BY updated_at LIMIT %s",
            (float(stale_after_s), limit),
        ).fetchall()
    stale = []
    for video_id, owner_id, status, attempts in rows:
        if try_lock_video(conn, video_id):
            unlock_video(conn, video_id)
            stale.append({"video_id": video_id, "owner_id": owner_id, "status": status, "attempts": attempts})
    return stale


def touch_videos(conn: psycopg.Connection, video_ids: list[UUID]) -> None:
    """Restart the staleness clock of requeued videos so they are not requeued again at once."""
    if not video_ids:
        return
    with conn.transaction():
        conn.execute("UPDATE videos SET updated_at = now() WHERE id = ANY(%s)", (list(video_ids),))


def job_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Videos per status (for ``vidx status`` summaries and health)."""
    with conn.transaction():
        rows = conn.execute("SELECT status, count(*) FROM videos GROUP BY status").fetchall()
    return {status: int(n) for status, n in rows}
