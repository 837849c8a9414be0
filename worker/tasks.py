"""Celery tasks: index one video by id; requeue videos whose run died.

A delivery may be a duplicate (a redelivery after a crash, a reconciler
requeue, a retry racing a late message), so the task first *claims* the
video: a lease in its row (``pipeline.store.videos``), renewed by a
heartbeat while the job runs. A finished video is skipped; a video another
live run holds is re-published with a delay (a re-index request waiting
for the running generation is never dropped); each real attempt is
counted in the row. The run's final write is fenced by its lease and
generation, so a job run twice still leaves exactly one set of scenes and
the newest generation's result is what remains.

Failures: bad input fails at once with its reason; the soft time limit
fails the video "timed out after Ns"; a transient error (database or broker
unreachable) and unexpected errors are retried with Celery's exponential
backoff until ``max_attempts`` real attempts were made. A child that dies
(crash, OOM, hard time limit) stops renewing its lease; the reconciler,
which every worker runs on a timer, requeues the video once the lease has
expired, and the next claim counts that attempt.
"""

from __future__ import annotations

import time
from contextlib import suppress
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from celery import signals
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval

from pipeline.core.config import RETRY_BACKOFF_MAX_S, Settings
from pipeline.core.errors import BadInputError, TransientError, one_line, register_always_propagate
from pipeline.core.log import get_logger
from pipeline.intake.sources import open_source
from pipeline.jobs.lease import Heartbeat, new_holder
from pipeline.storage import open_storage
from pipeline.store import videos
from pipeline.store.videos import ClaimStatus, Lease, RunEnd, VideoStatus
from worker.app import QUEUE, app, worker_settings
from worker.logging import bind_owner, bind_task_context, clear_task_context

# The soft time limit must end the job, never be degraded by the pipeline's broad handlers.
register_always_propagate(SoftTimeLimitExceeded)

log = get_logger("vidx.worker")

INDEX_TASK = "vidx.index_video"
RECONCILE_TASK = "vidx.reconcile"
RETRY_BACKOFF_BASE_S = 1  # integers: Celery's full jitter draws with random.randrange
# When the database cannot even be reached to claim the job, attempts cannot
# be counted in the row; bound the retries of that phase separately.
MAX_UNCLAIMED_RETRIES = 30
PROGRESS_MIN_INTERVAL_S = 1.0
# A busy video's message comes back just after the other run's lease would expire.
BUSY_MIN_DELAY_S = 1.0
BUSY_MAX_DELAY_S = 60.0


def retry_countdown(retries: int) -> float:
    """Celery's exponential backoff with full jitter: up to 1, 2, 4, ... seconds, capped."""
    return float(get_exponential_backoff_interval(
        factor=RETRY_BACKOFF_BASE_S, retries=retries, maximum=int(RETRY_BACKOFF_MAX_S), full_jitter=True,
    ))


def busy_countdown(lease_left_s: float | None) -> float:
    """When to look again at a video another run holds: right after its lease would expire."""
    return min(BUSY_MAX_DELAY_S, max(BUSY_MIN_DELAY_S, (lease_left_s or 0.0) + 1.0))


def open_job_connection(settings: Settings) -> psycopg.Connection:
    """An autocommit connection for job bookkeeping."""
    from pipeline import store

    conn = store.connect(settings)  # connection failures (also during migrations) arrive as TransientError
    if not conn.autocommit:
        conn.rollback()
        conn.autocommit = True
    return conn


class _ProgressReporter:
    """Writes progress to the row at most once a second (and on stage changes); enforces the soft limit.

    Celery's SoftTimeLimitExceeded is raised asynchronously, wherever the job
    happens to be: inside a logging handler or a library's ``except
    Exception`` it can be swallowed. Every progress report (each stage, and
    often while decoding, always before anything is published) raises it
    again once the soft deadline has passed, so the limit still ends the job.
    """

    def __init__(self, conn: psycopg.Connection, lease: Lease, soft_deadline: float) -> None:
        self._conn = conn
        self._lease = lease
        self._soft_deadline = soft_deadline
        self._last = 0.0
        self._stage: str | None = None

    def __call__(self, fraction: float, stage: str) -> None:
        now = time.monotonic()
        if now >= self._soft_deadline:
            raise SoftTimeLimitExceeded()
        if stage == self._stage and now - self._last < PROGRESS_MIN_INTERVAL_S:
            return
        self._last, self._stage = now, stage
        try:
            videos.set_progress(self._conn, self._lease, fraction)
        except psycopg.Error as exc:  # progress is best effort; the final write decides
            log.warning("progress_not_recorded", error=one_line(exc))


@app.task(name=INDEX_TASK, bind=True, max_retries=None)
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
            return {"video_id": str(vid), "outcome": "abandoned"}  # the reconciler republishes it later
        countdown = retry_countdown(self.request.retries)
        log.warning("job_retry", reason=str(exc), countdown_s=round(countdown, 1), phase="claim")
        raise self.retry(countdown=countdown, exc=exc) from exc
    try:
        return _run_job(self, conn, vid, settings, fetch_url)
    finally:
        with suppress(Exception):
            conn.close()


def _claim(task: Any, conn: psycopg.Connection, vid: UUID, settings: Settings) -> videos.Claim:
    try:
        return videos.claim_video(conn, vid, holder=new_holder(f"worker:{task.request.hostname}"),
                                  lease_s=settings.lease_s, max_attempts=settings.max_attempts)
    except psycopg.OperationalError as exc:
        countdown = retry_countdown(task.request.retries)
        log.warning("job_retry", reason=one_line(exc), countdown_s=round(countdown, 1), phase="claim")
        raise task.retry(countdown=countdown, exc=TransientError(f"database unavailable: {one_line(exc)}")) from exc


def _run_job(
    task: Any, conn: psycopg.Connection, vid: UUID, settings: Settings, fetch_url: str | None = None
) -> dict[str, Any]:
    claim = _claim(task, conn, vid, settings)
    if claim.owner_id is not None:
        bind_owner(claim.owner_id)
    if claim.status is ClaimStatus.BUSY:
        countdown = busy_countdown(claim.lease_left_s)
        log.info("job_busy_republished", countdown_s=round(countdown, 1))
        raise task.retry(countdown=countdown)
    if claim.status is not ClaimStatus.CLAIMED or claim.lease is None or claim.source is None or claim.owner_id is None:
        level = log.error if claim.status is ClaimStatus.GAVE_UP else log.info
        level("job_skipped", reason=claim.status.value, attempts=claim.attempts, error=claim.error)
        return {"video_id": str(vid), "outcome": claim.status.value}

    lease = claim.lease
    log.info("job_started", source=claim.source, attempt=claim.attempts, max_attempts=settings.max_attempts,
             generation=lease.generation)
    started = time.monotonic()
    try:
        with Heartbeat(lease, settings):
            sweep_claimed(conn, vid, settings)  # leftovers of a killed attempt
            with open_source(_fetch_source(claim.source, fetch_url), settings, owner_id=claim.owner_id) as path:
                from pipeline.indexer import index_video

                result = index_video(
                    path,
                    video_id=vid,
                    owner_id=claim.owner_id,
                    settings=settings,
                    source_label=claim.source,
                    on_progress=_ProgressReporter(conn, lease, started + settings.task_soft_time_limit_s),
                    lease=lease,
                )
    except BadInputError as exc:
        return _fail(conn, lease, one_line(exc), kind="bad_input")
    except SoftTimeLimitExceeded:
        return _fail(conn, lease, f"timed out after {settings.task_soft_time_limit_s}s", kind="timeout")
    except Exception as exc:
        reason = one_line(exc)
        if claim.attempts >= settings.max_attempts:
            return _fail(conn, lease, f"failed after {claim.attempts} attempts: {reason}", kind="exhausted")
        with suppress(Exception):  # the database may be the thing that is down
            videos.finish_retrying(conn, lease, reason)
        countdown = retry_countdown(claim.attempts - 1)
        log.warning(
            "job_retry", reason=reason, transient=isinstance(exc, TransientError),
            attempt=claim.attempts, countdown_s=round(countdown, 1),
        )
        raise task.retry(countdown=countdown, exc=exc) from exc
    seconds = round(time.monotonic() - started, 2)
    if result.outcome is not RunEnd.FINISHED:
        log.warning("job_not_published", outcome=result.outcome.value, attempt=claim.attempts, seconds=seconds)
        return {"video_id": str(vid), "outcome": result.outcome.value}
    log.info("job_done", scenes=len(result.scenes), attempt=claim.attempts, seconds=seconds)
    return {"video_id": str(vid), "outcome": VideoStatus.DONE.value, "scenes": len(result.scenes)}


def _fetch_source(stored: str, fetch_url: str | None) -> str:
    """What to fetch: the full URL when it is the one the row's redacted source came from."""
    from pipeline.intake.naming import canonical_source

    if fetch_url and canonical_source(fetch_url) == stored:
        return fetch_url
    return stored


# Recording a final failure never waits longer than this for the row (past it, the lease expires and the
# reconciler takes over).
FAILURE_LOCK_TIMEOUT_S = 10.0


def _fail(conn: psycopg.Connection, lease: Lease, reason: str, *, kind: str) -> dict[str, Any]:
    """Final failure: recorded in the row (if the database lets us and the run still holds it), never retried."""
    end = None
    try:
        end = videos.finish_failed(conn, lease, reason)
    except psycopg.Error as exc:
        # The soft limit arrives as a signal and can interrupt a query mid-flight ("another command is
        # already in progress"), leaving ``conn`` unusable, and its open transaction may hold the video's
        # row lock: close it first (the server then rolls it back), else the fresh connection's write
        # waits on that lock until the hard limit kills the child and the video is retried.
        with suppress(Exception):
            conn.close()
        try:
            with open_job_connection(worker_settings()) as fresh, fresh.transaction():
                # SET LOCAL: scoped to this transaction, so nothing leaks through a transaction-mode pooler
                fresh.execute(f"SET LOCAL lock_timeout = '{int(FAILURE_LOCK_TIMEOUT_S * 1000)}ms'")
                end = videos.finish_failed(fresh, lease, reason)
        except (psycopg.Error, TransientError) as again:
            log.error("failure_not_recorded", error=one_line(again), first_error=one_line(exc))
    log.error("job_failed", reason=reason, kind=kind, recorded=end.value if end else None)
    return {"video_id": str(lease.video_id), "outcome": VideoStatus.FAILED.value, "error": reason}


def sweep_claimed(conn: psycopg.Connection, vid: UUID, settings: Settings) -> None:
    """Remove a killed run's leftovers for a video this run now holds (whatever the storage)."""
    version = videos.sidecar_versions(conn, [vid]).get(vid)
    for path in open_storage(settings).sweep(vid, version):
        log.info("leftover_removed", path=path)


# --- reconciler -----------------------------------------------------------------


@app.task(name=RECONCILE_TASK)
def reconcile_task() -> dict[str, Any]:
    """Requeue videos whose lease expired or whose message was lost (also run on a timer by every worker)."""
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
    """Send a fresh task for every video whose run died or whose message was lost; duplicates are harmless."""
    sent: list[UUID] = []
    for reason, rows in (
        ("lease_expired", videos.requeue_expired(conn)),
        ("queued_stale", videos.touch_stale_queued(conn, stale_after_s=settings.stale_after_s)),
    ):
        for row in rows:
            send_index_task(row["video_id"], row["owner_id"], fetch_url=row.get("fetch_url"))
            sent.append(row["video_id"])
        if rows:
            log.warning("reconcile_requeued", reason=reason, count=len(rows),
                        video_ids=[str(r["video_id"]) for r in rows])
    return sent


def sweep_leftovers(conn: psycopg.Connection, settings: Settings) -> list[str | Path]:
    """At worker start: remove what killed runs left in the sidecar directory and in downloads.

    With object storage, also abort source uploads that a killed API process left half done
    (a video's own leftover objects are swept under its claim: :func:`sweep_claimed`).

    A video's leftovers go only when no run holds a live lease on it;
    leftovers of a video with no row at all (``vidx index --no-db``) only once
    older than the hard time limit, which no live run outlasts; download
    directories once their process is gone (pipeline.intake.sources).
    """
    from pipeline.intake.sources import sweep_abandoned_downloads

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


def send_index_task(video_id: UUID, owner_id: UUID, fetch_url: str | None = None) -> str:
    """Publish one indexing task (a few quick retries if the broker blips).

    ``fetch_url`` (a URL holding credentials) rides in the message only; the
    message's displayed kwargs (events, ``celery inspect``) show it redacted.
    """
    from pipeline.core.redaction import redact_url

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


@app.task(name=REEMBED_TASK, bind=True, max_retries=MAX_REEMBED_RETRIES)  # delivery flags: worker/app.py
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
        countdown = retry_countdown(self.request.retries)
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
