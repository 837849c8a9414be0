"""pipeline.store.jobs on a real PostgreSQL: claims, attempts, locks, stale jobs."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from pipeline import store
from pipeline.config import Settings
from pipeline.store import jobs
from pipeline.store.jobs import ClaimStatus

OWNER = uuid.UUID("11111111-1111-1111-1111-111111111111")


@pytest.fixture
def video_id(db_conn: psycopg.Connection) -> uuid.UUID:
    vid = uuid.uuid4()
    store.upsert_video(db_conn, video_id=vid, owner_id=OWNER, source="/videos/a.mp4", status="queued")
    return vid


@pytest.fixture
def other_conn(db_settings: Settings):
    """A second session, as another worker would have."""
    conn = store.connect(db_settings)
    yield conn
    conn.close()


def _row(conn: psycopg.Connection, vid: uuid.UUID) -> dict:
    return store.get_video(conn, vid)


def test_claim_counts_an_attempt_and_marks_running(db_conn, video_id) -> None:
    claim = jobs.claim_video(db_conn, video_id, max_attempts=3)
    assert claim.status is ClaimStatus.CLAIMED
    assert (claim.owner_id, claim.source, claim.attempts) == (OWNER, "/videos/a.mp4", 1)
    row = _row(db_conn, video_id)
    assert (row["status"], row["attempts"], row["started_at"] is not None) == ("running", 1, True)


def test_second_claim_while_held_is_busy_and_counts_nothing(db_conn, other_conn, video_id) -> None:
    assert jobs.claim_video(db_conn, video_id, max_attempts=3).status is ClaimStatus.CLAIMED
    assert jobs.claim_video(other_conn, video_id, max_attempts=3).status is ClaimStatus.BUSY
    assert _row(db_conn, video_id)["attempts"] == 1


def test_lock_dies_with_its_connection(db_settings, other_conn, video_id) -> None:
    crashed = store.connect(db_settings)
    assert jobs.claim_video(crashed, video_id, max_attempts=3).status is ClaimStatus.CLAIMED
    crashed.close()  # the worker died: PostgreSQL drops its session and its lock
    claim = jobs.claim_video(other_conn, video_id, max_attempts=3)
    assert (claim.status, claim.attempts) == (ClaimStatus.CLAIMED, 2)


def test_finished_videos_are_skipped(db_conn, video_id) -> None:
    store.set_video_status(db_conn, video_id, "done")
    assert jobs.claim_video(db_conn, video_id, max_attempts=3).status is ClaimStatus.DONE
    store.set_video_status(db_conn, video_id, "failed", error="bad")
    assert jobs.claim_video(db_conn, video_id, max_attempts=3).status is ClaimStatus.DONE
    assert _row(db_conn, video_id)["attempts"] == 0
    assert jobs.try_lock_video(db_conn, video_id)  # a skipped claim leaves the lock free


def test_missing_video(db_conn) -> None:
    assert jobs.claim_video(db_conn, uuid.uuid4(), max_attempts=3).status is ClaimStatus.MISSING


def test_attempts_exhausted_marks_failed_with_last_error(db_conn, video_id) -> None:
    for attempt in (1, 2):
        claim = jobs.claim_video(db_conn, video_id, max_attempts=2)
        assert claim.attempts == attempt
        jobs.mark_retrying(db_conn, video_id, "database unavailable: boom")
        jobs.unlock_video(db_conn, video_id)
    claim = jobs.claim_video(db_conn, video_id, max_attempts=2)
    assert claim.status is ClaimStatus.GAVE_UP
    row = _row(db_conn, video_id)
    assert row["status"] == "failed"
    assert row["error"] == "gave up after 2 attempts: retrying: database unavailable: boom"
    assert row["finished_at"] is not None


def test_progress_and_failure(db_conn, video_id) -> None:
    jobs.claim_video(db_conn, video_id, max_attempts=3)
    jobs.set_progress(db_conn, video_id, 0.5)
    assert _row(db_conn, video_id)["progress"] == pytest.approx(0.5)
    jobs.mark_failed(db_conn, video_id, "not a video")
    row = _row(db_conn, video_id)
    assert (row["status"], row["error"]) == ("failed", "not a video")


def test_mark_failed_never_overrides_done(db_conn, video_id) -> None:
    store.set_video_status(db_conn, video_id, "done")
    jobs.mark_failed(db_conn, video_id, "late duplicate failed")
    assert _row(db_conn, video_id)["status"] == "done"


def test_reset_for_enqueue(db_conn, video_id) -> None:
    jobs.claim_video(db_conn, video_id, max_attempts=3)
    jobs.mark_failed(db_conn, video_id, "boom")
    jobs.reset_for_enqueue(db_conn, video_id)
    row = _row(db_conn, video_id)
    assert (row["status"], row["attempts"], row["error"], row["progress"]) == ("queued", 0, None, 0)


def test_stale_videos_exclude_fresh_finished_and_live(db_conn, other_conn, video_id) -> None:
    live, done, fresh = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for vid in (live, done, fresh):
        store.upsert_video(db_conn, video_id=vid, owner_id=OWNER, source=f"/v/{vid}.mp4")
    store.set_video_status(db_conn, done, "done")
    jobs.claim_video(other_conn, live, max_attempts=3)  # a live worker holds it
    with db_conn.transaction():  # age every row but ``fresh`` (the trigger would stamp now())
        db_conn.execute("ALTER TABLE videos DISABLE TRIGGER videos_touch_updated_at")
        db_conn.execute("UPDATE videos SET updated_at = now() - interval '1 hour' WHERE id <> %s", (fresh,))
        db_conn.execute("ALTER TABLE videos ENABLE TRIGGER videos_touch_updated_at")
    stale = jobs.find_stale_videos(db_conn, stale_after_s=60)
    assert [row["video_id"] for row in stale] == [video_id]
    jobs.touch_videos(db_conn, [video_id])
    assert jobs.find_stale_videos(db_conn, stale_after_s=60) == []
