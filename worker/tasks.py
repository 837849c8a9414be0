"""Celery tasks: index one video by id; requeue jobs left stuck.

A delivery may be a duplicate (redelivery after a crash, a reconciler
requeue, a retry racing a late message), so the task first *claims* the
video in the database (``pipeline.store.jobs``): a video already finished
is skipped, one another live worker holds is left to it, and each real
attempt is counted in the row. Indexing itself replaces the video's scenes
in one transaction, so a job run twice still leaves exactly one set.

Failures: bad input fails at once with its reason; a transient error
(database or broker unreachable) and unexpected errors are retried with
exponential backoff until ``max_attempts`` real attempts were made; a child
that dies mid-job (crash, OOM, hard time limit) has its message put back by
Celery and the next claim counts that attempt too.
"""

from __future__ import annotations

import random
import time
from contextlib import suppress
from typing import Any
from uuid import UUID

import psycopg
from celery import signals
from celery.exceptions import SoftTimeLimitExceeded

from pipeline.config import Settings
from pipeline.errors import BadInputError, TransientError, one_line
from pipeline.log import get_logger
from pipeline.sources import open_source
from pipeline.store import jobs
from worker.app import QUEUE, RETRY_BACKOFF_BASE_S, RETRY_BACKOFF_MAX_S, app, worker_settings
from worker.logging import bind_owner, bind_task_context, clear_task_context

log = get_logger("vidx.worker")

INDEX_TASK = "vidx.index_video"
RECONCILE_TASK = "vidx.reconcile"
# When the database cannot even be reached to claim the job, attempts cannot
# be counted in the row; bound the retries of that phase separately.
MAX_UNCLAIMED_RETRIES = 30
PROGRESS_MIN_INTERVAL_S = 1.0


def backoff_s(retries: int) -> float:
    """Exponential backoff with jitter: 1, 2, 4, ... seconds, capped."""
    return min(RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_BASE_S * (2**retries)) * random.uniform(0.8, 1.2)


def open_job_connection(settings: Settings) -> psycopg.Connection:
    """An autocommit connection for job bookkeeping (its session holds the video's lock)."""
    from pipeline import store

    conn = store.connect(settings)  # connection failures (also during migrations) arrive as TransientError
    if not conn.autocommit:
        conn.rollback()
        conn.autocommit = True
    return conn


class _ProgressReporter:
    """Writes progress to the row at most once a second (and on stage changes)."""

    def __init__(self, conn: psycopg.Connection, video_id: UUID) -> None:
        self._conn = conn
        self._video_id = video_id
        self._last = 0.0
        self._stage: str | None = None

    def __call__(self, fraction: float, stage: str) -> None:
        now = time.monotonic()
        if stage == self._stage and now - self._last < PROGRESS_MIN_INTERVAL_S:
            return
        self._last, self._stage = now, stage
        try:
            jobs.set_progress(self._conn, self._video_id, fraction)
        except psycopg.Error as exc:  # progress is best effort; the final write decides
            log.warning("progress_not_recorded", error=one_line(exc))


@app.task(name=INDEX_TASK, bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def index_video_task(
    self: Any, video_id: str, owner_id: str | None = None, fetch_url: str | None = None
) -> dict[str, Any]:
    """Index one video whose row exists (created by ``vidx enqueue``).

    ``fetch_url``: the full URL (credentials, signature) when the row holds
    only its redacted form; used to fetch, never stored or logged.
    """
    settings = worker_settings()
    vid = UUID(str(video_id))
    try:
        conn = open_job_connection(settings)
    except TransientError as exc:
        if self.request.retries >= MAX_UNCLAIMED_RETRIES:
            log.error("job_abandoned_database_down", error=str(exc), retries=self.request.retries)
            return {"video_id": str(vid), "outcome": "abandoned"}  # the reconciler requeues it later
        countdown = backoff_s(self.request.retries)
        log.warning("job_retry", reason=str(exc), countdown_s=round(countdown, 1), phase="claim")
        raise self.retry(countdown=countdown, exc=exc) from exc
    try:
        return _run_job(self, conn, vid, settings, fetch_url)
    finally:
        with suppress(Exception):
            conn.close()  # also releases the video's advisory lock


def _run_job(
    task: Any, conn: psycopg.Connection, vid: UUID, settings: Settings, fetch_url: str | None = None
) -> dict[str, Any]:
    try:
        claim = jobs.claim_video(conn, vid, max_attempts=settings.max_attempts)
    except psycopg.OperationalError as exc:
        countdown = backoff_s(task.request.retries)
        log.warning("job_retry", reason=one_line(exc), countdown_s=round(countdown, 1), phase="claim")
        raise task.retry(countdown=countdown, exc=TransientError(f"database unavailable: {one_line(exc)}")) from exc
    if claim.owner_id is not None:
        bind_owner(claim.owner_id)
    if claim.status is not jobs.ClaimStatus.CLAIMED or claim.source is None or claim.owner_id is None:
        level = log.error if claim.status is jobs.ClaimStatus.GAVE_UP else log.info
        level("job_skipped", reason=claim.status.value, attempts=claim.attempts, error=claim.error)
        return {"video_id": str(vid), "outcome": claim.status.value}

    log.info("job_started", source=claim.source, attempt=claim.attempts, max_attempts=settings.max_attempts)
    started = time.monotonic()
    try:
        from pipeline.indexer import index_video
        from pipeline.sidecar import remove_abandoned

        if claim.attempts > 1 and settings.sidecar_dir is not None:
            for path in remove_abandoned(settings.sidecar_dir, vid):  # left by a killed attempt
                log.info("abandoned_staging_removed", path=str(path))
        if claim.attempts > 1 and settings.storage_url:
            from pipeline.storage.sweep import sweep_abandoned
            from pipeline.store.frames import any_frame_path

            for key in sweep_abandoned(settings, vid, any_frame_path(conn, vid)):  # issue 15
                log.info("abandoned_object_removed", key=key)

        with open_source(_fetch_source(claim.source, fetch_url), settings) as path:
            result = index_video(
                path,
                video_id=vid,
                owner_id=claim.owner_id,
                settings=settings,
                source_label=claim.source,
                on_progress=_ProgressReporter(conn, vid),
            )
    except BadInputError as exc:
        return _fail(conn, vid, one_line(exc), kind="bad_input")
    except SoftTimeLimitExceeded:
        return _fail(conn, vid, f"timed out after {settings.task_soft_time_limit_s}s", kind="timeout")
    except Exception as exc:
        reason = one_line(exc)
        if claim.attempts >= settings.max_attempts:
            return _fail(conn, vid, f"failed after {claim.attempts} attempts: {reason}", kind="exhausted")
        with suppress(Exception):  # the database may be the thing that is down
            jobs.mark_retrying(conn, vid, reason)
        countdown = backoff_s(task.request.retries)
        log.warning(
            "job_retry", reason=reason, transient=isinstance(exc, TransientError),
            attempt=claim.attempts, countdown_s=round(countdown, 1),
        )
        raise task.retry(countdown=countdown, exc=exc) from exc
    log.info(
        "job_done", scenes=len(result.scenes), attempt=claim.attempts,
        seconds=round(time.monotonic() - started, 2),
    )
    return {"video_id": str(vid), "outcome": "done", "scenes": len(result.scenes)}


def _fetch_source(stored: str, fetch_url: str | None) -> str:
    """What to fetch: the full URL when it is the one the row's redacted source came from."""
    from pipeline.indexer import canonical_source

    if fetch_url and canonical_source(fetch_url) == stored:
        return fetch_url
    return stored


def _fail(conn: psycopg.Connection, vid: UUID, reason: str, *, kind: str) -> dict[str, Any]:
    """Final failure: recorded in the row (if the database lets us), never retried."""
    log.error("job_failed", reason=reason, kind=kind)
    try:
        jobs.mark_failed(conn, vid, reason)
    except psycopg.Error as exc:
        log.error("failure_not_recorded", error=one_line(exc))
    return {"video_id": str(vid), "outcome": "failed", "error": reason}


@app.task(name=RECONCILE_TASK, acks_late=True)
def reconcile_task() -> dict[str, Any]:
    """Requeue videos stuck in queued/running with no live worker (lost message, crash)."""
    settings = worker_settings()
    try:
        conn = open_job_connection(settings)
    except TransientError as exc:
        log.warning("reconcile_skipped", reason=str(exc))
        return {"requeued": 0}
    with conn:
        requeued = reconcile(conn, settings)
    return {"requeued": len(requeued)}


def reconcile(conn: psycopg.Connection, settings: Settings) -> list[UUID]:
    """Send a fresh task for every stale video; duplicates are harmless (claims)."""
    stale = jobs.find_stale_videos(conn, stale_after_s=settings.stale_after_s)
    sent: list[UUID] = []
    for row in stale:
        send_index_task(row["video_id"], row["owner_id"])
        sent.append(row["video_id"])
    jobs.touch_videos(conn, sent)
    if sent:
        log.warning("reconcile_requeued", count=len(sent), video_ids=[str(v) for v in sent])
    return sent


def send_index_task(video_id: UUID, owner_id: UUID, fetch_url: str | None = None) -> str:
    """Publish one indexing task (a few quick retries if the broker blips).

    ``fetch_url`` (a URL holding credentials) rides in the message only; the
    message's displayed kwargs (events, ``celery inspect``) show it redacted.
    """
    from pipeline.redaction import redact_url

    kwargs = {"owner_id": str(owner_id)}
    shown = dict(kwargs)
    if fetch_url:
        kwargs["fetch_url"] = fetch_url
        shown["fetch_url"] = redact_url(fetch_url)
    result = index_video_task.apply_async(
        args=[str(video_id)],
        kwargs=kwargs,
        kwargsrepr=repr(shown),
        queue=QUEUE,
        retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2},
    )
    return result.id


# --- log context: every line a task emits carries its ids --------------------


@signals.task_prerun.connect
def _bind_log_context(task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None, **_: Any):
    kwargs = kwargs or {}
    args = args or ()
    if task is not None and task.name == INDEX_TASK:
        video_id = kwargs.get("video_id") or (args[0] if args else None)
        bind_task_context(task_id=task_id, video_id=video_id, owner_id=kwargs.get("owner_id"))
    else:
        bind_task_context(task_id=task_id)


@signals.task_postrun.connect
def _clear_log_context(**_: Any) -> None:
    clear_task_context()


# --- re-embedding (issue 14): one task per video, `vidx reembed` with a broker --------

REEMBED_TASK = "vidx.reembed_video"
MAX_REEMBED_RETRIES = 5


@app.task(name=REEMBED_TASK, bind=True, max_retries=MAX_REEMBED_RETRIES, acks_late=True, reject_on_worker_lost=True)
def reembed_video_task(self: Any, video_id: str) -> dict[str, Any]:
    """Re-embed one video's stored frames with this worker's model (idempotent: a duplicate does nothing)."""
    from pipeline.clip.errors import ClipUnavailableError
    from pipeline.reembed import reembed_video

    settings = worker_settings()
    vid = UUID(str(video_id))
    bind_task_context(task_id=self.request.id, video_id=str(vid))
    try:
        result = reembed_video(vid, settings)
    except (TransientError, ClipUnavailableError, psycopg.OperationalError) as exc:
        if self.request.retries >= MAX_REEMBED_RETRIES:
            log.error("reembed_failed", reason=one_line(exc))
            return {"video_id": str(vid), "outcome": "failed", "error": one_line(exc)}
        countdown = backoff_s(self.request.retries)
        log.warning("reembed_retry", reason=one_line(exc), countdown_s=round(countdown, 1))
        raise self.retry(countdown=countdown, exc=exc) from exc
    outcome = "skipped" if result.skipped else "done"
    return {"video_id": str(vid), "outcome": outcome, "scenes": result.scenes, "embedded": result.embedded}


def send_reembed_task(video_id: UUID) -> str:
    """Publish one re-embedding task."""
    result = reembed_video_task.apply_async(
        args=[str(video_id)], queue=QUEUE, retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2},
    )
    return result.id
