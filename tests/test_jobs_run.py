"""pipeline.jobs on a real PostgreSQL: the one run lifecycle's ends, the soft limit, local claims, the reconciler."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from pipeline import store
from pipeline.core.config import RETRY_BACKOFF_MAX_S, Settings
from pipeline.core.errors import BadInputError, ProcessingError, TransientError
from pipeline.jobs import Retry, Run, TimeLimit, claim, claim_here, reconcile
from pipeline.store import videos

OWNER = uuid.UUID("44444444-4444-4444-4444-444444444444")


class _LimitPassed(Exception):
    """Stands in for a task runner's soft time limit."""


@pytest.fixture
def video_id(db_conn: psycopg.Connection) -> uuid.UUID:
    vid = uuid.uuid4()
    videos.enqueue_video(db_conn, video_id=vid, owner_id=OWNER, source="/videos/run.mp4")
    return vid


def _run(conn: psycopg.Connection, vid: uuid.UUID, settings: Settings, **options) -> Run:
    return Run(conn, claim(conn, vid, settings, runner="test"), settings, **options)


def _row(conn: psycopg.Connection, vid: uuid.UUID) -> dict:
    return store.get_video(conn, vid)


def test_bad_input_fails_at_once_and_releases_the_lease(db_conn, db_settings, video_id) -> None:
    end = _run(db_conn, video_id, db_settings).settle(BadInputError("x.mp4: not a video\nmore"))
    assert end.to_json() == {"video_id": str(video_id), "outcome": "failed", "error": "x.mp4: not a video"}
    row = _row(db_conn, video_id)
    assert (row["status"], row["attempts"], row["lease_holder"]) == ("failed", 1, None)


def test_other_errors_are_retried_until_the_last_attempt(db_conn, db_settings, video_id) -> None:
    settings = db_settings.with_overrides(max_attempts=2)
    first = _run(db_conn, video_id, settings).settle(TransientError("database unavailable"))
    assert isinstance(first, Retry) and 0 <= first.countdown <= RETRY_BACKOFF_MAX_S
    row = _row(db_conn, video_id)
    assert (row["status"], row["error"], row["lease_holder"]) == ("queued", "retrying: database unavailable", None)
    last = _run(db_conn, video_id, settings).settle(ValueError("boom"))
    assert not isinstance(last, Retry) and last.error == "failed after 2 attempts: ValueError: boom"
    assert (_row(db_conn, video_id)["status"], _row(db_conn, video_id)["attempts"]) == ("failed", 2)


def test_a_run_without_retries_fails_with_the_one_line_reason(db_conn, db_settings, video_id) -> None:
    end = _run(db_conn, video_id, db_settings, retries=False).settle(ValueError("boom\ntraceback"))
    assert not isinstance(end, Retry) and end.error == "ValueError: boom"
    assert _row(db_conn, video_id)["error"] == "ValueError: boom"


def test_progress_past_the_soft_limit_raises_it_and_the_run_times_out(db_conn, db_settings, video_id) -> None:
    run = _run(db_conn, video_id, db_settings, time_limit=TimeLimit(0, _LimitPassed))
    with run, pytest.raises(_LimitPassed) as raised:
        run.progress(0.5, "scenes")
    end = run.settle(raised.value)
    assert not isinstance(end, Retry) and end.error == "timed out after 0s"
    assert _row(db_conn, video_id)["status"] == "failed"


def test_progress_is_written_on_each_stage_while_the_run_holds_the_lease(db_conn, db_settings, video_id) -> None:
    run = _run(db_conn, video_id, db_settings)
    with run:
        run.progress(0.3, "scenes")
        assert _row(db_conn, video_id)["progress"] == pytest.approx(0.3)
        run.progress(0.9, "embed")  # a new stage is written at once
        assert _row(db_conn, video_id)["progress"] == pytest.approx(0.9)


def test_a_local_run_bumps_the_generation_and_never_supersedes_a_live_one(db_conn, db_settings, video_id) -> None:
    claimed = claim_here(db_conn, video_id, OWNER, "/videos/run.mp4", db_settings)
    assert claimed.lease is not None and claimed.lease.generation == 2
    with pytest.raises(ProcessingError, match="being indexed elsewhere"):
        claim_here(db_conn, video_id, OWNER, "/videos/run.mp4", db_settings)
    assert _row(db_conn, video_id)["generation"] == 2


def test_the_reconciler_sends_through_the_callable_it_is_given(db_conn, db_settings, video_id) -> None:
    claim(db_conn, video_id, db_settings, runner="dead")
    db_conn.execute("UPDATE videos SET lease_expires_at = now() - interval '1 second' WHERE id = %s", (video_id,))
    sent: list[tuple] = []
    assert reconcile(db_conn, db_settings, lambda *message: sent.append(message)) == [video_id]
    assert sent == [(video_id, OWNER, None)]
    assert _row(db_conn, video_id)["status"] == "queued"
