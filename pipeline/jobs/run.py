"""The life of one indexing run, for the queue's task and ``vidx index`` alike.

A run *claims* its video (a lease in the row, one more attempt counted:
``pipeline.store.videos``), keeps the lease alive with a heartbeat, writes
its progress, and ends exactly once, fenced by its lease and generation:
published (the indexer's ``finish_done``), failed for good (the reason
recorded, the lease released), or handed back for a retry. The adapters
(Celery, the CLI) only decide where a run starts and how a retry is sent.
"""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from uuid import UUID

import psycopg

from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError, ProcessingError, TransientError, one_line
from pipeline.core.log import get_logger
from pipeline.intake.naming import canonical_source
from pipeline.jobs.connection import open_job_connection
from pipeline.jobs.lease import Heartbeat, new_holder
from pipeline.jobs.retry import retry_countdown
from pipeline.store import videos
from pipeline.store.videos import Claim, Lease, RunEnd, VideoStatus

log = get_logger("vidx.jobs")

PROGRESS_MIN_INTERVAL_S = 1.0
# Recording a final failure never waits longer than this for the row (past it, the lease expires and the
# reconciler takes over).
FAILURE_LOCK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TimeLimit:
    """A run's soft time limit, and the exception type that says it passed (the task runner's own)."""

    seconds: float
    error: type[BaseException]


@dataclass(frozen=True)
class RunReport:
    """How a run (or a message that found nothing to run) ended: what the task returns."""

    video_id: UUID
    outcome: str  # a VideoStatus, RunEnd or ClaimStatus value
    error: str | None = None
    scenes: int | None = None

    def to_json(self) -> dict[str, Any]:
        report: dict[str, Any] = {"video_id": str(self.video_id), "outcome": self.outcome}
        if self.error is not None:
            report["error"] = self.error
        if self.scenes is not None:
            report["scenes"] = self.scenes
        return report


@dataclass(frozen=True)
class Retry:
    """The attempt failed and the row is ``queued`` again: run it once more after ``countdown`` seconds."""

    reason: str
    countdown: float


def claim(conn: psycopg.Connection, video_id: UUID, settings: Settings, *, runner: str) -> Claim:
    """Take the video's lease for its current generation (one more attempt), or say why not.

    ``runner`` names what runs the job (it starts the lease holder token).
    Raises ``TransientError`` when the database cannot be reached.
    """
    try:
        return videos.claim_video(conn, video_id, holder=new_holder(runner), lease_s=settings.lease_s,
                                  max_attempts=max(1, settings.max_attempts))
    except psycopg.OperationalError as exc:
        raise TransientError(f"database unavailable: {one_line(exc)}") from exc


def claim_here(conn: psycopg.Connection, video_id: UUID, owner_id: UUID, source: str, settings: Settings) -> Claim:
    """A run requested and started in this process (``vidx index``): a new generation, claimed at once.

    Refused (``ProcessingError``) while another run holds a live lease: a
    worker's run must not be superseded by a local one.
    """
    if videos.live_leases(conn, [video_id]):  # before bumping the generation
        raise ProcessingError(f"{source}: video {video_id} is being indexed elsewhere (lease held)")
    videos.enqueue_video(conn, video_id=video_id, owner_id=owner_id, source=source)
    claimed = claim(conn, video_id, settings, runner="cli")
    if claimed.lease is None:
        raise ProcessingError(f"{source}: video {video_id} is being indexed elsewhere ({claimed.status})")
    return claimed


def fetch_source(stored: str, fetch_url: str | None) -> str:
    """What a run fetches: the message's full URL when it is the one the row's redacted source came from."""
    if fetch_url and canonical_source(fetch_url) == stored:
        return fetch_url
    return stored


def skipped(claim: Claim) -> RunReport:
    """A message that found nothing to run (finished, missing, attempts exhausted): logged, reported."""
    level = log.error if claim.status is videos.ClaimStatus.GAVE_UP else log.info
    level("job_skipped", reason=claim.status.value, attempts=claim.attempts, error=claim.error)
    return RunReport(claim.video_id, claim.status.value)


class Run:
    """One claimed run of a video: heartbeat while open, progress, and one fenced end.

    ``time_limit``: the soft limit, enforced at each progress report (see
    :meth:`progress`). ``retries``: whether a failed attempt may be run again
    (the queue) or always ends the run (``vidx index``, which runs once).
    """

    def __init__(self, conn: psycopg.Connection, claimed: Claim, settings: Settings, *,
                 time_limit: TimeLimit | None = None, retries: bool = True) -> None:
        if claimed.lease is None or claimed.owner_id is None or claimed.source is None:
            raise ValueError(f"a run needs a claimed video, not {claimed.status.value}")
        self.lease: Lease = claimed.lease
        self.video_id = claimed.video_id
        self.owner_id: UUID = claimed.owner_id
        self.source: str = claimed.source
        self.attempts = claimed.attempts
        self._conn = conn
        self._settings = settings
        self._time_limit = time_limit
        self._retries = retries
        self._started = time.monotonic()
        self._heartbeat = Heartbeat(claimed.lease, settings)
        self._beating = False
        self._last_progress = 0.0
        self._stage: str | None = None

    def __enter__(self) -> Run:
        log.info("job_started", source=self.source, attempt=self.attempts, max_attempts=self._settings.max_attempts,
                 generation=self.lease.generation)
        self._heartbeat.__enter__()
        self._beating = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop_heartbeat()

    def _stop_heartbeat(self) -> None:
        if self._beating:
            self._beating = False
            self._heartbeat.__exit__(None, None, None)

    def progress(self, fraction: float, stage: str) -> None:
        """Record progress at most once a second (and on stage changes); enforce the soft time limit.

        A runner's soft limit may arrive asynchronously, wherever the job
        happens to be: inside a logging handler or a library's ``except
        Exception`` it can be swallowed. Every progress report (each stage,
        and often while decoding, always before anything is published)
        raises it again once the deadline has passed, so the limit still
        ends the job.
        """
        now = time.monotonic()
        if self._time_limit is not None and now >= self._started + self._time_limit.seconds:
            raise self._time_limit.error()
        if stage == self._stage and now - self._last_progress < PROGRESS_MIN_INTERVAL_S:
            return
        self._last_progress, self._stage = now, stage
        try:
            videos.set_progress(self._conn, self.lease, fraction)
        except psycopg.Error as exc:  # progress is best effort; the final write decides
            log.warning("progress_not_recorded", error=one_line(exc))

    def finished(self, outcome: RunEnd, *, scenes: int) -> RunReport:
        """The indexer's publish ended the run: ``FINISHED`` (done), or nothing kept (superseded, lost)."""
        self._stop_heartbeat()
        seconds = round(time.monotonic() - self._started, 2)
        if outcome is not RunEnd.FINISHED:
            log.warning("job_not_published", outcome=outcome.value, attempt=self.attempts, seconds=seconds)
            return RunReport(self.video_id, outcome.value)
        log.info("job_done", scenes=scenes, attempt=self.attempts, seconds=seconds)
        return RunReport(self.video_id, VideoStatus.DONE.value, scenes=scenes)

    def settle(self, exc: BaseException) -> RunReport | Retry:
        """What an error means for this run: a final failure (recorded now) or a retry (row ``queued`` again).

        Bad input and the soft time limit are final at once; anything else is
        retried until ``max_attempts`` attempts were made (never without retries).
        """
        self._stop_heartbeat()
        if isinstance(exc, BadInputError):
            return self.fail(one_line(exc), kind="bad_input")
        if self._time_limit is not None and isinstance(exc, self._time_limit.error):
            return self.fail(f"timed out after {self._time_limit.seconds}s", kind="timeout")
        reason = one_line(exc)
        if not self._retries:
            return self.fail(reason, kind="failed")
        if self.attempts >= self._settings.max_attempts:
            return self.fail(f"failed after {self.attempts} attempts: {reason}", kind="exhausted")
        with suppress(Exception):  # the database may be the thing that is down
            videos.finish_retrying(self._conn, self.lease, reason)
        countdown = retry_countdown(self.attempts - 1)
        log.warning("job_retry", reason=reason, transient=isinstance(exc, TransientError), attempt=self.attempts,
                    countdown_s=round(countdown, 1))
        return Retry(reason, countdown)

    def fail(self, reason: str, *, kind: str) -> RunReport:
        """Final failure: recorded in the row (if the database lets us and the run still holds it), never retried."""
        self._stop_heartbeat()
        end = None
        try:
            end = videos.finish_failed(self._conn, self.lease, reason)
        except psycopg.Error as exc:
            # A soft limit arriving as a signal can interrupt a query mid-flight ("another command is
            # already in progress"), leaving the connection unusable, and its open transaction may hold the
            # video's row lock: close it first (the server then rolls it back), else the fresh connection's
            # write waits on that lock until the hard limit kills the child and the video is retried.
            with suppress(Exception):
                self._conn.close()
            try:
                with open_job_connection(self._settings) as fresh:
                    end = videos.finish_failed(fresh, self.lease, reason, lock_timeout_s=FAILURE_LOCK_TIMEOUT_S)
            except (psycopg.Error, TransientError) as again:
                log.error("failure_not_recorded", error=one_line(again), first_error=one_line(exc))
        log.error("job_failed", reason=reason, kind=kind, recorded=end.value if end else None)
        return RunReport(self.video_id, VideoStatus.FAILED.value, error=reason)
