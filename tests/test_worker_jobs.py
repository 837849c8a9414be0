"""pipeline.store.videos on a real PostgreSQL: claims as leases, attempts, generations, the reconciler's scans."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from pipeline import store
from pipeline.core.config import Settings
from pipeline.store import videos
from pipeline.store.videos import ClaimStatus, RunEnd
from tests.fixtures.database import probe_result, scene_records, unit_vectors

OWNER = uuid.UUID("11111111-1111-1111-1111-111111111111")
LEASE_S = 30


@pytest.fixture
def video_id(db_conn: psycopg.Connection) -> uuid.UUID:
    vid = uuid.uuid4()
    videos.enqueue_video(db_conn, video_id=vid, owner_id=OWNER, source="/videos/a.mp4")
    return vid


@pytest.fixture
def other_conn(db_settings: Settings):
    """A second session, as another worker would have."""
    conn = store.connect(db_settings)
    yield conn
    conn.close()


def _row(conn: psycopg.Connection, vid: uuid.UUID) -> dict:
    return store.get_video(conn, vid)


def _claim(conn: psycopg.Connection, vid: uuid.UUID, holder: str = "w1", max_attempts: int = 3) -> videos.Claim:
    return videos.claim_video(conn, vid, holder=holder, lease_s=LEASE_S, max_attempts=max_attempts)


def _expire(conn: psycopg.Connection, vid: uuid.UUID) -> None:
    """As if the holder stopped renewing its lease a while ago (its worker died)."""
    conn.execute("UPDATE videos SET lease_expires_at = now() - interval '1 second' WHERE id = %s", (vid,))


def test_claim_takes_a_lease_and_counts_an_attempt(db_conn, video_id) -> None:
    claim = _claim(db_conn, video_id)
    assert claim.status is ClaimStatus.CLAIMED and claim.lease is not None
    assert (claim.owner_id, claim.source, claim.attempts, claim.lease.generation) == (OWNER, "/videos/a.mp4", 1, 1)
    row = _row(db_conn, video_id)
    assert (row["status"], row["attempts"], row["lease_holder"]) == ("running", 1, "w1")
    assert row["lease_expires_at"] is not None and row["started_at"] is not None


def test_a_live_lease_makes_a_second_claim_busy(db_conn, other_conn, video_id) -> None:
    _claim(db_conn, video_id)
    busy = _claim(other_conn, video_id, holder="w2")
    assert busy.status is ClaimStatus.BUSY and busy.lease is None
    assert 0 < busy.lease_left_s <= LEASE_S
    assert _row(db_conn, video_id)["attempts"] == 1


def test_an_expired_lease_is_taken_over_counting_the_attempt(db_conn, other_conn, video_id) -> None:
    first = _claim(db_conn, video_id).lease
    _expire(db_conn, video_id)
    claim = _claim(other_conn, video_id, holder="w2")
    assert (claim.status, claim.attempts) == (ClaimStatus.CLAIMED, 2)
    # The first run's lease is gone: its renewals and its result change nothing.
    assert not videos.renew_lease(db_conn, first, LEASE_S)
    assert videos.finish_failed(db_conn, first, "late") is RunEnd.LOST
    assert _row(db_conn, video_id)["status"] == "running"


def test_renewal_keeps_the_lease_live(db_conn, video_id) -> None:
    lease = _claim(db_conn, video_id).lease
    before = _row(db_conn, video_id)["lease_expires_at"]
    assert videos.renew_lease(db_conn, lease, LEASE_S * 2)
    assert _row(db_conn, video_id)["lease_expires_at"] > before


def test_finished_videos_are_skipped(db_conn, video_id) -> None:
    store.set_video_status(db_conn, video_id, "done")
    assert _claim(db_conn, video_id).status is ClaimStatus.DONE
    store.set_video_status(db_conn, video_id, "failed", error="bad")
    assert _claim(db_conn, video_id).status is ClaimStatus.DONE
    assert _row(db_conn, video_id)["attempts"] == 0


def test_missing_video(db_conn) -> None:
    assert _claim(db_conn, uuid.uuid4()).status is ClaimStatus.MISSING


def test_attempts_exhausted_marks_failed_with_last_error(db_conn, video_id) -> None:
    for attempt in (1, 2):
        claim = _claim(db_conn, video_id, max_attempts=2)
        assert claim.attempts == attempt
        assert videos.finish_retrying(db_conn, claim.lease, "database unavailable: boom") is RunEnd.FINISHED
    claim = _claim(db_conn, video_id, max_attempts=2)
    assert claim.status is ClaimStatus.GAVE_UP
    row = _row(db_conn, video_id)
    assert row["status"] == "failed"
    assert row["error"] == "gave up after 2 attempts: retrying: database unavailable: boom"
    assert row["finished_at"] is not None and row["lease_holder"] is None


def test_progress_and_failure(db_conn, video_id) -> None:
    lease = _claim(db_conn, video_id).lease
    videos.set_progress(db_conn, lease, 0.5)
    assert _row(db_conn, video_id)["progress"] == pytest.approx(0.5)
    assert videos.finish_failed(db_conn, lease, "not a video") is RunEnd.FINISHED
    row = _row(db_conn, video_id)
    assert (row["status"], row["error"], row["lease_holder"]) == ("failed", "not a video", None)


def test_enqueue_resets_a_finished_video(db_conn, video_id) -> None:
    lease = _claim(db_conn, video_id).lease
    videos.finish_failed(db_conn, lease, "boom")
    assert videos.enqueue_video(db_conn, video_id=video_id, owner_id=OWNER, source="/videos/a.mp4") == 2
    row = _row(db_conn, video_id)
    assert (row["status"], row["attempts"], row["error"], row["progress"], row["generation"]) == (
        "queued", 0, None, 0, 2)


def test_enqueue_of_another_owners_video_is_refused(db_conn, video_id) -> None:
    from pipeline.core.errors import BadInputError

    with pytest.raises(BadInputError, match="another owner"):
        videos.enqueue_video(db_conn, video_id=video_id, owner_id=uuid.uuid4(), source="/videos/a.mp4")


def test_reindex_while_running_leaves_the_row_queued_for_the_newer_generation(db_conn, video_id) -> None:
    lease = _claim(db_conn, video_id).lease
    assert videos.enqueue_video(db_conn, video_id=video_id, owner_id=OWNER, source="/videos/a.mp4") == 2
    assert _row(db_conn, video_id)["status"] == "running"  # the live run goes on
    assert _claim(db_conn, video_id, holder="w2").status is ClaimStatus.BUSY
    # The older generation finishes: its scenes are not written, the row waits for generation 2.
    end = store.replace_scenes(db_conn, video_id=video_id, owner_id=OWNER, source="/videos/a.mp4",
                               probe=probe_result(), scenes=scene_records(unit_vectors(2)), lease=lease)
    assert end is RunEnd.SUPERSEDED
    row = _row(db_conn, video_id)
    assert (row["status"], row["scene_count"], row["lease_holder"]) == ("queued", 0, None)
    newer = _claim(db_conn, video_id, holder="w2")
    assert (newer.status, newer.lease.generation) == (ClaimStatus.CLAIMED, 2)
    end = store.replace_scenes(db_conn, video_id=video_id, owner_id=OWNER, source="/videos/a.mp4",
                               probe=probe_result(), scenes=scene_records(unit_vectors(3)), lease=newer.lease,
                               sidecar_version="v2")
    assert end is RunEnd.FINISHED
    row = _row(db_conn, video_id)
    assert (row["status"], row["scene_count"], row["sidecar_version"]) == ("done", 3, "v2")


def test_a_superseded_failure_also_leaves_the_row_queued(db_conn, video_id) -> None:
    lease = _claim(db_conn, video_id).lease
    videos.enqueue_video(db_conn, video_id=video_id, owner_id=OWNER, source="/videos/a.mp4")
    assert videos.finish_failed(db_conn, lease, "timed out after 1s") is RunEnd.SUPERSEDED
    row = _row(db_conn, video_id)
    assert (row["status"], row["error"]) == ("queued", None)


def test_reconciler_requeues_expired_leases_once(db_conn, other_conn, video_id) -> None:
    live, queued = uuid.uuid4(), uuid.uuid4()
    for vid in (live, queued):
        videos.enqueue_video(db_conn, video_id=vid, owner_id=OWNER, source=f"/v/{vid}.mp4")
    _claim(db_conn, video_id)
    _claim(other_conn, live, holder="w2")
    _expire(db_conn, video_id)
    assert [r["video_id"] for r in videos.requeue_expired(db_conn)] == [video_id]
    assert videos.requeue_expired(other_conn) == []  # a second reconciler finds nothing left
    row = _row(db_conn, video_id)
    assert (row["status"], row["lease_holder"], row["error"]) == (
        "queued", None, "retrying: worker lost (lease expired)")
    assert _row(db_conn, live)["status"] == "running"


def test_stale_queued_videos_are_reported_once_per_period(db_conn, video_id) -> None:
    fresh = uuid.uuid4()
    videos.enqueue_video(db_conn, video_id=fresh, owner_id=OWNER, source="/v/fresh.mp4")
    with db_conn.transaction():  # age one row (the trigger would stamp now())
        db_conn.execute("ALTER TABLE videos DISABLE TRIGGER videos_touch_updated_at")
        db_conn.execute("UPDATE videos SET updated_at = now() - interval '1 hour' WHERE id = %s", (video_id,))
        db_conn.execute("ALTER TABLE videos ENABLE TRIGGER videos_touch_updated_at")
    stale = videos.touch_stale_queued(db_conn, stale_after_s=60)
    assert [row["video_id"] for row in stale] == [video_id]
    assert videos.touch_stale_queued(db_conn, stale_after_s=60) == []


def test_a_requeued_video_keeps_the_url_it_must_fetch_but_never_shows_it(db_conn, other_conn) -> None:
    """A presigned URL's signature survives a crashed run (the reconciler resends it), then is dropped."""
    vid = uuid.uuid4()
    signed = "https://cdn.example.com/v.mp4?X-Amz-Signature=secret123"
    videos.enqueue_video(db_conn, video_id=vid, owner_id=OWNER, source="https://cdn.example.com/v.mp4",
                         fetch_url=signed)
    _claim(db_conn, vid)
    _expire(db_conn, vid)
    [requeued] = videos.requeue_expired(other_conn)
    assert requeued["fetch_url"] == signed
    shown = _row(db_conn, vid)
    assert "fetch_url" not in shown and "secret123" not in repr(shown)  # status, API: never displayed
    lease = _claim(db_conn, vid).lease
    assert videos.finish_failed(db_conn, lease, "bad input") is RunEnd.FINISHED
    assert db_conn.execute("SELECT fetch_url FROM videos WHERE id = %s", (vid,)).fetchone()[0] is None


def test_a_failure_recorded_after_an_interrupted_query_does_not_wait_on_that_querys_lock(
    db_settings: Settings, video_id
) -> None:
    """What a soft time limit can leave: the job's connection inside a transaction that holds the video's
    row lock, with a query sent and never read. The failure must still be recorded, not wait on that lock
    until the hard limit kills the child (found under load: the video was then retried, attempts 2)."""
    import threading

    from pipeline.jobs import Run, open_job_connection

    conn = open_job_connection(db_settings)
    claimed = _claim(conn, video_id)
    assert claimed.lease is not None
    conn.execute("BEGIN")
    conn.execute("UPDATE videos SET progress = 0.5 WHERE id = %s", (video_id,))  # the row lock
    conn.pgconn.send_query(b"SELECT pg_sleep(0.1)")  # in flight when the signal arrived

    outcome: list[dict] = []
    worker = threading.Thread(target=lambda: outcome.append(
        Run(conn, claimed, db_settings).fail("timed out after 1s", kind="timeout").to_json()), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "recording the failure waited on the interrupted transaction's lock"
    assert outcome == [{"video_id": str(video_id), "outcome": "failed", "error": "timed out after 1s"}]
    with store.connect(db_settings) as check:
        row = _row(check, video_id)
    assert (row["status"], row["attempts"], row["error"]) == ("failed", 1, "timed out after 1s")
