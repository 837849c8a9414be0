"""Celery tasks: index one video by id, requeue videos whose run died, re-embed one video.

Thin over ``pipeline.jobs``: a delivery may be a duplicate (a redelivery
after a crash, a reconciler requeue, a retry racing a late message), so the
index task first *claims* the video (``pipeline.jobs.claim``). A finished
video is skipped; a video another live run holds is re-published with a
delay (a re-index request waiting for the running generation is never
dropped). The claimed run (``pipeline.jobs.Run``) heartbeats, reports
progress and ends once, fenced by its lease and generation; what it asks to
retry is re-sent with Celery's ``retry``. Retry numbers: ``pipeline.jobs.retry``.

A child that dies (crash, OOM, hard time limit) stops renewing its lease;
the reconciler, which every worker runs on a timer, requeues the video once
the lease has expired, and the next claim counts that attempt.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any, NoReturn
from uuid import UUID

import psycopg
from celery.exceptions import SoftTimeLimitExceeded

from pipeline.clip.errors import ClipUnavailableError
from pipeline.core.config import Settings
from pipeline.core.errors import TransientError, one_line, register_always_propagate
from pipeline.core.log import get_logger
from pipeline.intake.sources import open_source
from pipeline.jobs import (
    Retry,
    Run,
    TimeLimit,
    claim,
    fetch_source,
    open_job_connection,
    reconcile,
    skipped,
    sweep_claimed,
)
from pipeline.jobs.retry import MAX_REEMBED_RETRIES, MAX_UNCLAIMED_RETRIES, busy_countdown, retry_countdown
from pipeline.reembed import reembed_video
from pipeline.store.videos import ClaimStatus
from worker.app import app, worker_settings
from worker.logging import bind_owner, bind_task_context
from worker.messages import INDEX_TASK, RECONCILE_TASK, REEMBED_TASK, send_index, send_reembed

# The soft time limit must end the job, never be degraded by the pipeline's broad handlers.
register_always_propagate(SoftTimeLimitExceeded)

log = get_logger("vidx.worker")


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
        _retry_unclaimed(self, exc)
    try:
        return _run_job(self, conn, vid, settings, fetch_url)
    finally:
        with suppress(Exception):
            conn.close()


def _retry_unclaimed(task: Any, exc: TransientError) -> NoReturn:
    """The database could not be reached to claim: retried with backoff (no attempt counted)."""
    countdown = retry_countdown(task.request.retries)
    log.warning("job_retry", reason=str(exc), countdown_s=round(countdown, 1), phase="claim")
    raise task.retry(countdown=countdown, exc=exc) from exc


def _run_job(
    task: Any, conn: psycopg.Connection, vid: UUID, settings: Settings, fetch_url: str | None
) -> dict[str, Any]:
    try:
        claimed = claim(conn, vid, settings, runner=f"worker:{task.request.hostname}")
    except TransientError as exc:
        _retry_unclaimed(task, exc)
    if claimed.owner_id is not None:
        bind_owner(claimed.owner_id)
    if claimed.status is ClaimStatus.BUSY:
        countdown = busy_countdown(claimed.lease_left_s)
        log.info("job_busy_republished", countdown_s=round(countdown, 1))
        raise task.retry(countdown=countdown)
    if claimed.status is not ClaimStatus.CLAIMED:
        return skipped(claimed).to_json()

    # The indexer loads OpenCV: kept off the import path of the CLI and API, which import this module to send.
    from pipeline.indexer import index_video

    run = Run(conn, claimed, settings, time_limit=TimeLimit(settings.task_soft_time_limit_s, SoftTimeLimitExceeded))
    try:
        with run:
            sweep_claimed(conn, vid, settings)  # leftovers of a killed attempt
            with open_source(fetch_source(run.source, fetch_url), settings, owner_id=run.owner_id) as path:
                result = index_video(path, video_id=vid, owner_id=run.owner_id, settings=settings,
                                     source_label=run.source, on_progress=run.progress, lease=run.lease)
    except Exception as exc:  # the soft time limit included: the run decides, by kind
        end = run.settle(exc)
        if isinstance(end, Retry):
            raise task.retry(countdown=end.countdown, exc=exc) from exc
        return end.to_json()
    return run.finished(result.outcome, scenes=len(result.scenes)).to_json()


def send_index_task(video_id: UUID, owner_id: UUID, fetch_url: str | None = None) -> str:
    """Publish one indexing task on this app (``fetch_url`` shown redacted: ``worker.messages``)."""
    return send_index(app, video_id, owner_id, fetch_url)


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
        requeued = reconcile(conn, settings, send_index_task)
    return {"requeued": len(requeued)}


# --- re-embedding (issue 14): one task per video, `vidx reembed` with a broker --------


@app.task(name=REEMBED_TASK, bind=True, max_retries=MAX_REEMBED_RETRIES)  # delivery flags: worker/app.py
def reembed_video_task(self: Any, video_id: str) -> dict[str, Any]:
    """Re-embed one video's stored frames with this worker's model (idempotent: a duplicate does nothing)."""
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
    """Publish one re-embedding task on this app."""
    return send_reembed(app, video_id)
