"""Queue integration: real redis-server, real ``vidx worker`` processes, real PostgreSQL.

Every wait is a poll with a deadline (``wait_for``); workers are always
stopped in teardown. CLIP is off in the workers (embedding is not what these
tests are about) and frames are analysed small, so the file stays quick.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pipeline.core.config import load_settings, recovery_bound_s
from tests import videogen
from tests.fixtures.media import sidecar_entries
from tests.fixtures.queue import REPO_ROOT, DedicatedPostgres, WorkerPool, run_vidx, wait_for, worker_env

OWNER = uuid.UUID("22222222-2222-2222-2222-222222222222")
SMALL = (160, 90)

pytestmark = pytest.mark.timeout(240)


# --- helpers -----------------------------------------------------------------


vidx = run_vidx


def enqueue(env: dict[str, str], *sources: Path | str) -> list[uuid.UUID]:
    out = vidx(env, "enqueue", "--owner", str(OWNER), "--json", *map(str, sources)).stdout
    return [uuid.UUID(row["video_id"]) for row in json.loads(out)]


def videos(url: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT v.*, (SELECT count(*) FROM scenes s WHERE s.video_id = v.id) AS scene_count, "
            "(SELECT count(DISTINCT scene_index) FROM scenes s WHERE s.video_id = v.id) AS distinct_scenes, "
            "extract(epoch FROM now() - v.updated_at) AS idle_s "
            "FROM videos v WHERE v.id = ANY(%s)",
            (ids,),
        ).fetchall()
    return {row["id"]: row for row in rows}


def wait_finished(url: str, ids: list[uuid.UUID], timeout: float) -> dict[uuid.UUID, dict[str, Any]]:
    def finished():
        rows = videos(url, ids)
        return rows if len(rows) == len(ids) and all(r["status"] in ("done", "failed") for r in rows.values()) else None

    return wait_for(finished, timeout=timeout, interval=0.25, what=f"{len(ids)} video(s) to finish")


def wait_running(url: str, vid: uuid.UUID, timeout: float = 60) -> dict[str, Any]:
    """Until the job is in its scene stage (progress recorded), i.e. mid-video."""

    def running():
        row = videos(url, [vid]).get(vid)
        if row and row["status"] in ("done", "failed"):
            raise AssertionError(f"video finished before the test could interrupt it: {row['status']}")
        return row if row and row["status"] == "running" and row["progress"] > 0.02 else None

    return wait_for(running, timeout=timeout, interval=0.05, what="the video to be mid-job")


def assert_one_set_of_scenes(env: dict[str, str], row: dict[str, Any]) -> None:
    """Exactly the scenes of one run: as many rows as the published sidecar lists, no index twice."""
    sidecar = json.loads((Path(env["VIDX_SIDECAR_DIR"]) / str(row["id"]) / "sidecar.json").read_text())
    assert row["scene_count"] == row["distinct_scenes"] == len(sidecar["scenes"]) >= 6


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def long_video(media_dir: Path) -> Path:
    """Slow enough to index (6 scenes, 36 s of 720p: ~3 s on 2 cores) that a test can interrupt it mid-job.

    The job's own length is what these tests race against (a kill or a 1 s
    soft limit must land while it runs), so it must not be a tiny video.
    """
    path = media_dir / "long_6x150_720p.mp4"
    if not path.exists():
        shots = [videogen.Shot(videogen.SOURCES[i % len(videogen.SOURCES)], 150) for i in range(6)]
        videogen.make_video(path, shots, size=(1280, 720), extra=["-preset", "ultrafast"])
    return path


@pytest.fixture
def env(broker_url: str, clean_database_url: str, tmp_path: Path) -> dict[str, str]:
    return worker_env(broker_url=broker_url, database_url=clean_database_url, data_dir=tmp_path / "data")


# --- tests -------------------------------------------------------------------------


def test_three_videos_end_done_with_their_scenes(env, clean_database_url, workers: WorkerPool, media_dir) -> None:
    layouts = {"a": [25, 25], "b": [25, 25, 25], "c": [40]}
    paths = [videogen.make_cut_video(media_dir / f"three_{k}.mp4", v, size=SMALL) for k, v in layouts.items()]
    worker = workers.start(env)
    ids = enqueue(env, *paths)
    rows = wait_finished(clean_database_url, ids, timeout=90)
    for vid, layout in zip(ids, layouts.values(), strict=True):
        row = rows[vid]
        assert (row["status"], row["error"], row["attempts"]) == ("done", None, 1)
        assert row["scene_count"] == row["distinct_scenes"] == len(layout)
        assert (Path(env["VIDX_SIDECAR_DIR"]) / str(vid) / "sidecar.json").is_file()

    status = vidx(env, "status", *map(str, ids)).stdout
    assert status.count("done") == 3 and "100.0%" in status

    # Logs: every line is a JSON record (Celery did not take over logging), and every
    # record about one of these jobs carries its task id, video id and owner.
    records = json_lines(worker.log_text())
    job_records = [r for r in records if r.get("video_id") in {str(v) for v in ids}]
    assert {"job_started", "job_done"} <= {r["event"] for r in job_records}
    for record in job_records:
        assert record["owner_id"] == str(OWNER) and record.get("task_id"), record
    for record in records:
        if str(record.get("event", "")).startswith("Task vidx.index_video["):  # Celery's own lines
            assert record.get("task_id") and record.get("video_id") and record.get("owner_id"), record


def test_sigkill_of_the_child_mid_video_still_ends_done_once(env, clean_database_url, workers, long_video) -> None:
    worker = workers.start(env)
    [vid] = enqueue(env, long_video)
    wait_running(clean_database_url, vid)
    assert worker.kill_children(), "no pool child to kill"
    row = wait_finished(clean_database_url, [vid], timeout=120)[vid]
    assert (row["status"], row["error"]) == ("done", None)
    assert row["attempts"] == 2  # the killed attempt counted, then one more
    assert_one_set_of_scenes(env, row)
    sidecars = Path(env["VIDX_SIDECAR_DIR"])
    assert sidecar_entries(sidecars) == [str(vid)]  # no staging leftovers


def test_whole_worker_killed_a_new_worker_finishes_the_job(env, clean_database_url, workers, long_video) -> None:
    """Shipped lease and reconciler defaults: the video runs again within the recovery bound, not the visibility timeout."""
    settings = load_settings(env)
    assert (settings.lease_s, settings.reconcile_interval_s) == (30, 30.0)  # the shipped defaults
    first = workers.start(env, name="first")
    [vid] = enqueue(env, long_video)
    wait_running(clean_database_url, vid)
    first.kill()  # parent and children: the message stays unacknowledged in Redis for the visibility timeout
    killed_at = time.monotonic()
    workers.start(env, name="second")  # its reconciler requeues the video once the dead run's lease expired
    bound = recovery_bound_s(settings) + 30  # + start-up of the new worker and pick-up on a loaded machine
    wait_for(lambda: (videos(clean_database_url, [vid])[vid]["attempts"] == 2), timeout=bound,
             interval=0.25, what="the video to run again")
    recovered_s = time.monotonic() - killed_at
    print(f"\nrecovery after SIGKILL of the whole worker: {recovered_s:.1f}s (bound {recovery_bound_s(settings)}s)")
    row = wait_finished(clean_database_url, [vid], timeout=120)[vid]
    assert (row["status"], row["attempts"]) == ("done", 2)
    assert_one_set_of_scenes(env, row)
    assert sidecar_entries(Path(env["VIDX_SIDECAR_DIR"])) == [str(vid)]  # no staging leftovers


def test_hard_time_limit_is_retried_not_lost(env, clean_database_url, workers, long_video) -> None:
    """A child stopped mid-job (SIGSTOP: no soft-limit handler, no heartbeat) is killed by the hard limit;
    its acknowledged message is gone, yet the lease brings the video back and it is retried."""
    env = {**env, "VIDX_TASK_SOFT_TIME_LIMIT_S": "40", "VIDX_TASK_TIME_LIMIT_S": "45",
           "VIDX_LEASE_S": "6", "VIDX_HEARTBEAT_S": "2", "VIDX_RECONCILE_INTERVAL_S": "2"}
    worker = workers.start(env)
    [vid] = enqueue(env, long_video)
    wait_running(clean_database_url, vid)
    [child] = worker.children()
    child.suspend()
    wait_for(lambda: not child.is_running() or child.status() == "zombie", timeout=60, interval=0.25,
             what="the hard time limit to kill the stopped child")
    row = wait_finished(clean_database_url, [vid], timeout=120)[vid]
    assert (row["status"], row["error"], row["attempts"]) == ("done", None, 2)
    assert_one_set_of_scenes(env, row)


def test_reenqueue_while_running_the_newer_generation_wins(env, clean_database_url, workers, long_video,
                                                           media_dir, tmp_path) -> None:
    """The file changes while its first index runs; the re-index request is not dropped and its result stays."""
    source = tmp_path / "changing.mp4"
    shutil.copy(long_video, source)
    worker = workers.start(env)
    [vid] = enqueue(env, source)
    replacement = videogen.make_cut_video(media_dir / "changed_3.mp4", [25, 25, 25], size=SMALL)
    wait_running(clean_database_url, vid)
    [child] = worker.children()
    child.suspend()  # holds the first run mid-video while the file changes and is enqueued again
    try:
        shutil.copy(replacement, tmp_path / "changing.tmp")
        (tmp_path / "changing.tmp").replace(source)  # the running job keeps reading the old file
        assert enqueue(env, source) == [vid]
    finally:
        child.resume()
    assert videos(clean_database_url, [vid])[vid]["generation"] == 2
    row = wait_finished(clean_database_url, [vid], timeout=180)[vid]
    assert (row["status"], row["error"], row["generation"]) == ("done", None, 2)
    assert row["scene_count"] == row["distinct_scenes"] == 3  # the new file's scenes, not the old six
    sidecar = json.loads((Path(env["VIDX_SIDECAR_DIR"]) / str(vid) / "sidecar.json").read_text())
    assert len(sidecar["scenes"]) == 3
    events = [r.get("event") for r in json_lines(worker.log_text())]
    assert "job_not_published" in events  # the older generation's run ended without publishing
    assert sidecar_entries(Path(env["VIDX_SIDECAR_DIR"])) == [str(vid)]


def test_database_down_during_a_job_is_retried_until_it_is_back(
    broker_url, dedicated_postgres: DedicatedPostgres, workers, long_video, tmp_path
) -> None:
    env = worker_env(broker_url=broker_url, database_url=dedicated_postgres.url, data_dir=tmp_path / "data")
    worker = workers.start(env)
    [vid] = enqueue(env, long_video)
    wait_running(dedicated_postgres.url, vid)
    dedicated_postgres.stop()
    # The attempt fails when it writes its scenes; the task is retried with backoff.
    wait_for(lambda: any(r.get("event") == "job_retry" for r in json_lines(worker.log_text())),
             timeout=120, interval=0.2, what="the job to be retried")
    dedicated_postgres.start()
    row = wait_finished(dedicated_postgres.url, [vid], timeout=120)[vid]
    assert (row["status"], row["error"]) == ("done", None)
    assert row["attempts"] == 2
    assert_one_set_of_scenes(env, row)
    retries = [r for r in json_lines(worker.log_text()) if r.get("event") == "job_retry"]
    assert retries and all(r["video_id"] == str(vid) for r in retries)


def test_bad_inputs_fail_at_once_while_the_others_finish(env, clean_database_url, workers, media_dir, tmp_path) -> None:
    good = [videogen.make_cut_video(media_dir / f"good_{i}.mp4", [25, 25], size=SMALL) for i in range(2)]
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video\n" * 100)
    truncated = tmp_path / "truncated.mp4"
    data = good[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])  # the index (moov) is lost: unreadable
    workers.start(env)
    ids = enqueue(env, good[0], not_video, good[1], truncated)
    rows = wait_finished(clean_database_url, ids, timeout=90)
    assert [rows[v]["status"] for v in ids] == ["done", "failed", "done", "failed"]
    for vid in (ids[1], ids[3]):
        row = rows[vid]
        assert row["attempts"] == 1, "bad input must not be retried"
        assert row["error"] and "\n" not in row["error"]
        assert row["scene_count"] == 0
        assert not (Path(env["VIDX_SIDECAR_DIR"]) / str(vid)).exists()
    assert "notes.mp4" in rows[ids[1]]["error"]


def test_missing_file_at_the_worker_fails_with_its_reason(env, clean_database_url, workers, media_dir, tmp_path) -> None:
    path = tmp_path / "moved.mp4"
    shutil.copy(videogen.make_cut_video(media_dir / "moved_src.mp4", [25], size=SMALL), path)
    [vid] = enqueue(env, path)  # checked at enqueue time: it exists
    path.unlink()  # ... gone before a worker gets to it
    workers.start(env)
    row = wait_finished(clean_database_url, [vid], timeout=60)[vid]
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["error"] == f"{path}: no such file"


def test_fifty_tiny_videos_across_two_workers(env, clean_database_url, workers, media_dir, tmp_path) -> None:
    tiny = videogen.make_cut_video(media_dir / "tiny.mp4", [25], size=(128, 72))
    paths = []
    for i in range(50):  # fifty distinct sources (ids derive from the path)
        path = tmp_path / f"tiny_{i:02d}.mp4"
        shutil.copy(tiny, path)
        paths.append(path)
    first, second = workers.start(env, name="one"), workers.start(env, name="two")
    ids = enqueue(env, *paths)
    assert len(set(ids)) == 50
    rows = wait_finished(clean_database_url, ids, timeout=180)
    assert all(r["status"] == "done" and r["scene_count"] == 1 for r in rows.values()), [
        (r["status"], r["error"]) for r in rows.values() if r["status"] != "done"
    ]
    assert sum(r["attempts"] for r in rows.values()) == 50
    done_by = [sum(r.get("event") == "job_done" for r in json_lines(w.log_text())) for w in (first, second)]
    assert sum(done_by) == 50 and min(done_by) > 0, done_by


def test_duplicate_message_is_skipped_and_reenqueue_replaces(env, clean_database_url, workers, media_dir) -> None:
    path = videogen.make_cut_video(media_dir / "dup.mp4", [25, 25, 25], size=SMALL)
    worker = workers.start(env)
    [vid] = enqueue(env, path)
    first = wait_finished(clean_database_url, [vid], timeout=60)[vid]
    assert (first["status"], first["attempts"]) == ("done", 1)

    # A duplicate message (as a redelivery would be) for the finished video: skipped.
    code = (
        "from worker.tasks import send_index_task; import uuid; "
        f"send_index_task(uuid.UUID('{vid}'), uuid.UUID('{OWNER}'))"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, check=True, timeout=60)
    wait_for(lambda: any(r.get("event") == "job_skipped" for r in json_lines(worker.log_text())),
             timeout=60, what="the duplicate to be skipped")
    row = videos(clean_database_url, [vid])[vid]
    assert (row["status"], row["attempts"], row["updated_at"]) == ("done", 1, first["updated_at"])

    # Enqueueing the same source again re-indexes the same video: its scenes replaced.
    assert enqueue(env, path) == [vid]
    wait_for(lambda: videos(clean_database_url, [vid])[vid]["status"] == "done", timeout=60, what="re-index")
    row = videos(clean_database_url, [vid])[vid]
    assert row["updated_at"] > first["updated_at"]
    assert (row["scene_count"], row["distinct_scenes"], row["attempts"]) == (first["scene_count"],) * 2 + (1,)


def test_soft_time_limit_fails_the_video_without_retry(env, clean_database_url, workers, long_video) -> None:
    env = {**env, "VIDX_TASK_SOFT_TIME_LIMIT_S": "1", "VIDX_TASK_TIME_LIMIT_S": "30"}
    workers.start(env)
    [vid] = enqueue(env, long_video)
    row = wait_finished(clean_database_url, [vid], timeout=60)[vid]
    assert (row["status"], row["attempts"], row["error"]) == ("failed", 1, "timed out after 1s")
    assert row["scene_count"] == 0
    assert list(Path(env["VIDX_SIDECAR_DIR"]).glob("*")) == []  # nothing partial left
