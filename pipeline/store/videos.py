"""The ``videos`` table: one row per video, and every transition of its job.

The database, not the broker, is the source of truth for a job. Messages
may be duplicated or lost, so a run first *claims* the video: it takes a
**lease** in the row (holder token, expiry) that its heartbeat renews. A
lease needs no session state (unlike an advisory lock), so claims work
behind transaction-mode poolers (PgBouncer, Supabase, Neon). A run whose
worker died stops renewing; once the lease has expired the reconciler
requeues the video and the next claim takes it over (counting the attempt).

Each enqueue bumps the row's **generation**. A claim runs one generation;
every end of a run is fenced by its lease and generation: a run that lost
its lease changes nothing, and a run of an older generation leaves the row
``queued`` for the newer one instead of ``done``/``failed``.

``vidx index`` and the Celery task both go through these functions, by way of
the one run lifecycle in ``pipeline.jobs.run``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from pipeline.core.errors import BadInputError


class VideoStatus(StrEnum):
    """The states of a video row (the ``videos_status_check`` constraint)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


STATUSES = tuple(s.value for s in VideoStatus)
FINISHED = (VideoStatus.DONE, VideoStatus.FAILED)


class ClaimStatus(StrEnum):
    """Outcome of :func:`claim_video`."""

    CLAIMED = "claimed"  # this run holds the lease now
    DONE = "done"  # already finished (done or failed): a duplicate message
    BUSY = "busy"  # another run holds a live lease
    MISSING = "missing"  # no such video row (deleted, or never created)
    GAVE_UP = "gave_up"  # attempts exhausted: marked failed now


class RunEnd(StrEnum):
    """Outcome of ending a run (:func:`finish_done`, :func:`finish_failed`, :func:`finish_retrying`)."""

    FINISHED = "finished"  # the row took this run's result
    SUPERSEDED = "superseded"  # a newer generation was enqueued meanwhile: the row is queued for it
    LOST = "lost"  # the lease was no longer ours (expired and taken over): nothing changed


@dataclass(frozen=True)
class Lease:
    """The right of one run to write a video's result: who holds it, for which generation."""

    video_id: UUID
    holder: str
    generation: int


@dataclass(frozen=True)
class Claim:
    """What :func:`claim_video` decided; ``lease`` is set only when ``CLAIMED``."""

    status: ClaimStatus
    video_id: UUID
    owner_id: UUID | None = None
    source: str | None = None
    attempts: int = 0
    error: str | None = None
    lease: Lease | None = None
    lease_left_s: float | None = None  # BUSY: seconds until the other run's lease expires


_VIDEO_COLUMNS = """
    v.id, v.owner_id, v.source, v.status, v.progress, v.error, v.attempts, v.generation,
    v.lease_holder, v.lease_expires_at, v.sidecar_version,
    v.duration_s, v.fps, v.frame_count, v.width, v.height, v.codec, v.rotation,
    v.created_at, v.updated_at, v.started_at, v.finished_at,
    (SELECT count(*) FROM scenes s WHERE s.video_id = v.id) AS scene_count,
    (SELECT count(*) FROM scenes s WHERE s.video_id = v.id AND s.embedding_visual_clip IS NOT NULL)
        AS embedded_count
"""

# A lease counts as live while its expiry is in the future (NULL: no live lease).
_LIVE = "(v.lease_expires_at IS NOT NULL AND v.lease_expires_at > now())"


def _status(status: str) -> VideoStatus:
    try:
        return VideoStatus(status)
    except ValueError:
        raise BadInputError(f"unknown video status {status!r}: expected one of {', '.join(STATUSES)}") from None


# --- enqueue -----------------------------------------------------------------------


def enqueue_video(
    conn: psycopg.Connection, *, video_id: UUID, owner_id: UUID, source: str, fetch_url: str | None = None
) -> int:
    """Request a (re-)index: create the row or bump its generation; returns the new generation.

    ``fetch_url``: the full URL when ``source`` is its redacted form; kept (never
    displayed) until the video ends, so a requeue after a crash can still fetch it.

    The row becomes ``queued`` with no attempts and no error, except while a
    run holds a live lease: the row stays ``running`` and that run, when it
    ends, leaves the row ``queued`` for this newer generation. A video id
    held by another owner is refused.
    """
    with conn.transaction():
        row = conn.execute(
            f"""
            INSERT INTO videos AS v (id, owner_id, source, status, generation, fetch_url)
            VALUES (%(id)s, %(owner)s, %(source)s, 'queued', 1, %(fetch)s)
            ON CONFLICT (id) DO UPDATE
               SET source = EXCLUDED.source, generation = v.generation + 1, attempts = 0, error = NULL,
                   fetch_url = EXCLUDED.fetch_url,
                   status = CASE WHEN v.status = 'running' AND {_LIVE} THEN 'running' ELSE 'queued' END,
                   progress = CASE WHEN v.status = 'running' AND {_LIVE} THEN v.progress ELSE 0 END,
                   started_at = CASE WHEN v.status = 'running' AND {_LIVE} THEN v.started_at END,
                   finished_at = NULL
             WHERE v.owner_id = EXCLUDED.owner_id
            RETURNING generation
            """,
            {"id": video_id, "owner": owner_id, "source": source, "fetch": fetch_url},
        ).fetchone()
    if row is None:
        raise BadInputError(f"video {video_id} already exists for another owner")
    return int(row[0])


def upsert_video(
    conn: psycopg.Connection, *, video_id: UUID, owner_id: UUID, source: str, status: str = VideoStatus.QUEUED
) -> None:
    """Create the row, or reset an existing one to ``status`` (tools and tests; jobs use :func:`enqueue_video`).

    A video id already held by another owner is refused.
    """
    status = _status(status)
    with conn.transaction():
        row = conn.execute(
            """
            INSERT INTO videos (id, owner_id, source, status, started_at)
            VALUES (%(id)s, %(owner)s, %(source)s, %(status)s,
                    CASE WHEN %(status)s = 'running' THEN now() END)
            ON CONFLICT (id) DO UPDATE
               SET source = EXCLUDED.source, status = EXCLUDED.status, progress = 0, error = NULL,
                   started_at = EXCLUDED.started_at, finished_at = NULL
             WHERE videos.owner_id = EXCLUDED.owner_id
            RETURNING id
            """,
            {"id": video_id, "owner": owner_id, "source": source, "status": status.value},
        ).fetchone()
    if row is None:
        raise BadInputError(f"video {video_id} already exists for another owner")


def set_video_status(
    conn: psycopg.Connection,
    video_id: UUID,
    status: str,
    *,
    progress: float | None = None,
    error: str | None = None,
) -> bool:
    """Force a video to ``status`` regardless of leases (operators, tests); the error is replaced.

    ``progress`` None keeps the current value (``done`` always sets 1.0).
    ``running`` stamps started_at, ``done``/``failed`` stamp finished_at.
    Returns False when no such video exists.
    """
    status = _status(status)
    if progress is not None:
        progress = min(1.0, max(0.0, float(progress)))
    if status is VideoStatus.DONE:
        progress = 1.0
    with conn.transaction():
        cur = conn.execute(
            """
            UPDATE videos
               SET status = %(status)s,
                   progress = coalesce(%(progress)s::real, progress),
                   error = %(error)s,
                   started_at = CASE WHEN %(status)s = 'running' THEN now()
                                     WHEN %(status)s = 'queued' THEN NULL ELSE started_at END,
                   finished_at = CASE WHEN %(status)s IN ('done', 'failed') THEN now() ELSE NULL END
             WHERE id = %(id)s
            """,
            {"status": status.value, "progress": progress, "error": error, "id": video_id},
        )
        return cur.rowcount > 0


# --- claim and lease ---------------------------------------------------------------


def claim_video(
    conn: psycopg.Connection, video_id: UUID, *, holder: str, lease_s: float, max_attempts: int
) -> Claim:
    """Take the video's lease for its current generation and count one more attempt, or say why not.

    A ``queued`` row, or a ``running`` one whose lease expired (its worker
    died), is claimed; a live lease is ``BUSY``; a finished row is ``DONE``.
    """
    with conn.transaction():
        row = conn.execute(
            f"""
            SELECT v.owner_id, v.source, v.status, v.attempts, v.error, v.generation,
                   {_LIVE} AS live, extract(epoch FROM v.lease_expires_at - now()) AS left_s
              FROM videos v WHERE v.id = %s FOR UPDATE
            """,
            (video_id,),
        ).fetchone()
        if row is None:
            return Claim(ClaimStatus.MISSING, video_id)
        owner_id, source, status, attempts, error, generation, live, left_s = row
        if status in FINISHED:
            return Claim(ClaimStatus.DONE, video_id, owner_id, source, attempts, error)
        if status == VideoStatus.RUNNING and live:
            return Claim(ClaimStatus.BUSY, video_id, owner_id, source, attempts, error,
                         lease_left_s=float(left_s))
        if attempts >= max_attempts:
            reason = f"gave up after {attempts} attempts: {error or 'worker lost during the job'}"
            conn.execute(
                "UPDATE videos SET status = 'failed', error = %s, finished_at = now(), "
                "lease_holder = NULL, lease_expires_at = NULL WHERE id = %s",
                (reason, video_id),
            )
            return Claim(ClaimStatus.GAVE_UP, video_id, owner_id, source, attempts, reason)
        conn.execute(
            """
            UPDATE videos SET status = 'running', attempts = attempts + 1, progress = 0,
                   lease_holder = %(holder)s, lease_expires_at = now() + make_interval(secs => %(lease)s),
                   run_generation = generation, started_at = now(), finished_at = NULL
             WHERE id = %(id)s
            """,
            {"holder": holder, "lease": float(lease_s), "id": video_id},
        )
    lease = Lease(video_id, holder, int(generation))
    return Claim(ClaimStatus.CLAIMED, video_id, owner_id, source, attempts + 1, error, lease)


def renew_lease(conn: psycopg.Connection, lease: Lease, lease_s: float) -> bool:
    """Push the lease's expiry ``lease_s`` ahead (the heartbeat); False when it is no longer ours."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE videos SET lease_expires_at = now() + make_interval(secs => %s) "
            "WHERE id = %s AND lease_holder = %s AND status = 'running'",
            (float(lease_s), lease.video_id, lease.holder),
        )
        return cur.rowcount > 0


def set_progress(conn: psycopg.Connection, lease: Lease, fraction: float) -> None:
    """Record progress of a running job (only while the lease is ours)."""
    with conn.transaction():
        conn.execute(
            "UPDATE videos SET progress = %s WHERE id = %s AND lease_holder = %s AND status = 'running'",
            (min(max(float(fraction), 0.0), 1.0), lease.video_id, lease.holder),
        )


# --- ends of a run (each fenced by lease and generation) ----------------------------


def _end_run(conn: psycopg.Connection, lease: Lease, assignments: str, params: dict[str, Any]) -> RunEnd:
    """Apply ``assignments`` if the run still holds the newest generation; queue the newer one otherwise."""
    row = conn.execute(
        f"""
        UPDATE videos v
           SET {assignments}, lease_holder = NULL, lease_expires_at = NULL
         WHERE v.id = %(id)s AND v.lease_holder = %(holder)s AND v.generation = %(generation)s
        RETURNING 1
        """,
        {**params, "id": lease.video_id, "holder": lease.holder, "generation": lease.generation},
    ).fetchone()
    if row is not None:
        return RunEnd.FINISHED
    row = conn.execute(
        """
        UPDATE videos SET status = 'queued', progress = 0, started_at = NULL,
               lease_holder = NULL, lease_expires_at = NULL
         WHERE id = %s AND lease_holder = %s
        RETURNING 1
        """,
        (lease.video_id, lease.holder),
    ).fetchone()
    return RunEnd.SUPERSEDED if row is not None else RunEnd.LOST


def finish_done(
    conn: psycopg.Connection, lease: Lease, probe_values: dict[str, Any], sidecar_version: str | None
) -> RunEnd:
    """The run's result is the video's now: ``done``, probe columns, the published sidecar version.

    Call inside the transaction that replaces the scenes, and write the
    scenes only when this returns ``FINISHED``.
    """
    return _end_run(
        conn, lease,
        "status = 'done', progress = 1.0, error = NULL, finished_at = now(), sidecar_version = %(version)s, "
        "fetch_url = NULL, "
        "duration_s = %(duration_s)s, fps = %(fps)s, frame_count = %(frame_count)s, width = %(width)s, "
        "height = %(height)s, codec = %(codec)s, rotation = %(rotation)s",
        {**probe_values, "version": sidecar_version},
    )


def finish_failed(conn: psycopg.Connection, lease: Lease, error: str, *, lock_timeout_s: float | None = None) -> RunEnd:
    """Final failure with its one-line reason; ``lock_timeout_s`` bounds the wait for the row's lock."""
    with conn.transaction():
        if lock_timeout_s is not None:
            # SET LOCAL: scoped to this transaction, so nothing leaks through a transaction-mode pooler
            conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        return _end_run(conn, lease, "status = 'failed', error = %(error)s, finished_at = now(), fetch_url = NULL",
                        {"error": error})


def finish_retrying(conn: psycopg.Connection, lease: Lease, error: str) -> RunEnd:
    """Back to ``queued`` with the reason of the failed attempt, awaiting its retry."""
    with conn.transaction():
        return _end_run(conn, lease, "status = 'queued', error = %(error)s, started_at = NULL",
                        {"error": f"retrying: {error}"})


def write_done_unleased(conn: psycopg.Connection, *, video_id: UUID, owner_id: UUID, source: str,
                        probe_values: dict[str, Any], sidecar_version: str | None) -> None:
    """``done`` without a lease (tools, tests): create or overwrite the row. Call inside a transaction."""
    row = conn.execute(
        """
        INSERT INTO videos (id, owner_id, source, status, progress, error, duration_s, fps, frame_count,
                            width, height, codec, rotation, started_at, finished_at, sidecar_version)
        VALUES (%(id)s, %(owner)s, %(source)s, 'done', 1.0, NULL, %(duration_s)s, %(fps)s, %(frame_count)s,
                %(width)s, %(height)s, %(codec)s, %(rotation)s, now(), now(), %(version)s)
        ON CONFLICT (id) DO UPDATE
           SET source = EXCLUDED.source, status = 'done', progress = 1.0, error = NULL,
               duration_s = EXCLUDED.duration_s, fps = EXCLUDED.fps, frame_count = EXCLUDED.frame_count,
               width = EXCLUDED.width, height = EXCLUDED.height, codec = EXCLUDED.codec,
               rotation = EXCLUDED.rotation, finished_at = now(), sidecar_version = EXCLUDED.sidecar_version,
               lease_holder = NULL, lease_expires_at = NULL
         WHERE videos.owner_id = EXCLUDED.owner_id
        RETURNING id
        """,
        {"id": video_id, "owner": owner_id, "source": source, "version": sidecar_version, **probe_values},
    ).fetchone()
    if row is None:
        raise BadInputError(f"video {video_id} already exists for another owner")


def fail_unclaimed(conn: psycopg.Connection, video_id: UUID, error: str) -> bool:
    """Fail a ``queued`` video no run holds (its message could not be sent); False if it moved on."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE videos SET status = 'failed', error = %s, finished_at = now() "
            "WHERE id = %s AND status = 'queued'",
            (error, video_id),
        )
        return cur.rowcount > 0


# --- reconciler --------------------------------------------------------------------


def requeue_expired(conn: psycopg.Connection, *, limit: int = 1000) -> list[dict[str, Any]]:
    """Running videos whose lease expired (their worker died): back to ``queued``, returned for a new message.

    Rows are taken with SKIP LOCKED, so reconcilers running at once on
    several workers requeue each video once.
    """
    with conn.transaction():
        rows = conn.execute(
            """
            UPDATE videos v
               SET status = 'queued', lease_holder = NULL, lease_expires_at = NULL, started_at = NULL,
                   error = 'retrying: worker lost (lease expired)'
             WHERE v.id IN (SELECT id FROM videos
                             WHERE status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < now())
                             ORDER BY lease_expires_at NULLS FIRST LIMIT %s FOR UPDATE SKIP LOCKED)
            RETURNING v.id, v.owner_id, v.attempts, v.fetch_url
            """,
            (limit,),
        ).fetchall()
    return [_requeued(row) for row in rows]


def touch_stale_queued(conn: psycopg.Connection, *, stale_after_s: float, limit: int = 1000) -> list[dict[str, Any]]:
    """Queued videos with no news for ``stale_after_s`` (a lost message): clock restarted, returned for a new one."""
    with conn.transaction():
        rows = conn.execute(
            """
            UPDATE videos v SET updated_at = now()
             WHERE v.id IN (SELECT id FROM videos
                             WHERE status = 'queued' AND updated_at < now() - make_interval(secs => %s)
                             ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED)
            RETURNING v.id, v.owner_id, v.attempts, v.fetch_url
            """,
            (float(stale_after_s), limit),
        ).fetchall()
    return [_requeued(row) for row in rows]


def _requeued(row: tuple[Any, ...]) -> dict[str, Any]:
    """A requeued video as the reconciler sends it again (``fetch_url`` rides in the message only)."""
    vid, owner, attempts, fetch_url = row
    return {"video_id": vid, "owner_id": owner, "attempts": attempts, "fetch_url": fetch_url}


def live_leases(conn: psycopg.Connection, video_ids: Sequence[UUID]) -> set[UUID]:
    """Those of ``video_ids`` a run holds a live lease on now."""
    rows = conn.execute(
        f"SELECT v.id FROM videos v WHERE v.id = ANY(%s) AND v.status = 'running' AND {_LIVE}",
        (list(video_ids),),
    ).fetchall()
    return {row[0] for row in rows}


def sidecar_versions(conn: psycopg.Connection, video_ids: Sequence[UUID]) -> dict[UUID, str | None]:
    """The published sidecar version each of ``video_ids`` points at (present rows only)."""
    rows = conn.execute(
        "SELECT id, sidecar_version FROM videos WHERE id = ANY(%s)", (list(video_ids),)
    ).fetchall()
    return {vid: version for vid, version in rows}


# --- reading -----------------------------------------------------------------------


def get_video(conn: psycopg.Connection, video_id: UUID) -> dict[str, Any] | None:
    """The video's row plus ``scene_count`` and ``embedded_count``, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_VIDEO_COLUMNS} FROM videos v WHERE v.id = %s", (video_id,)).fetchone()


def list_videos(
    conn: psycopg.Connection,
    video_ids: Sequence[UUID] | None = None,
    limit: int = 50,
    *,
    owner_id: UUID | None = None,
) -> list[dict[str, Any]]:
    """Videos by id (in the order given), or the most recent ``limit`` ones (optionally of one owner)."""
    with conn.cursor(row_factory=dict_row) as cur:
        if video_ids is not None:
            ids = list(video_ids)
            rows = cur.execute(
                f"SELECT {_VIDEO_COLUMNS} FROM videos v WHERE v.id = ANY(%s)", (ids,)
            ).fetchall()
            order = {vid: i for i, vid in enumerate(ids)}
            return sorted(rows, key=lambda r: order.get(r["id"], len(order)))
        return cur.execute(
            f"""
            SELECT {_VIDEO_COLUMNS} FROM videos v
             WHERE %(owner)s::uuid IS NULL OR v.owner_id = %(owner)s
             ORDER BY v.created_at DESC, v.id
             LIMIT %(limit)s
            """,
            {"owner": owner_id, "limit": limit},
        ).fetchall()


def status_counts(conn: psycopg.Connection, owner_id: UUID | None = None) -> dict[str, int]:
    """Videos per status, every status present (``vidx stats``)."""
    rows = conn.execute(
        "SELECT status, count(*) FROM videos WHERE %(owner)s::uuid IS NULL OR owner_id = %(owner)s GROUP BY status",
        {"owner": owner_id},
    ).fetchall()
    counts = {status: 0 for status in STATUSES}
    counts.update({status: int(n) for status, n in rows})
    return counts
