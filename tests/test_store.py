"""Writes on a real PostgreSQL: video rows, replacing a video's scenes atomically, NULL embeddings."""

from __future__ import annotations

import math
import uuid

import psycopg
import pytest

from pipeline import store
from pipeline.core.errors import BadInputError, ProcessingError
from pipeline.core.types import FrameQuality
from tests.fixtures.database import probe_result, scene_records, unit_vectors

OWNER = uuid.UUID("11111111-1111-1111-1111-111111111111")
OTHER = uuid.UUID("22222222-2222-2222-2222-222222222222")


def _scene_rows(conn, video_id):
    return conn.execute(
        "SELECT scene_index, embedding_visual_clip IS NOT NULL, frame_path, owner_id FROM scenes "
        "WHERE video_id = %s ORDER BY scene_index",
        (video_id,),
    ).fetchall()


def test_video_lifecycle(db_conn) -> None:
    video_id = uuid.uuid4()
    store.upsert_video(db_conn, video_id=video_id, owner_id=OWNER, source="/videos/a.mp4")
    video = store.get_video(db_conn, video_id)
    assert video["status"] == "queued" and video["progress"] == 0 and video["scene_count"] == 0
    assert video["owner_id"] == OWNER and video["source"] == "/videos/a.mp4"

    assert store.set_video_status(db_conn, video_id, "running", progress=0.25)
    video = store.get_video(db_conn, video_id)
    assert video["status"] == "running" and video["progress"] == pytest.approx(0.25)
    assert video["started_at"] is not None and video["finished_at"] is None

    assert store.set_video_status(db_conn, video_id, "failed", error="Not a video: x")
    video = store.get_video(db_conn, video_id)
    assert video["status"] == "failed" and video["error"] == "Not a video: x" and video["finished_at"] is not None
    assert video["updated_at"] >= video["created_at"]

    assert not store.set_video_status(db_conn, uuid.uuid4(), "running")
    assert store.get_video(db_conn, uuid.uuid4()) is None
    with pytest.raises(BadInputError, match="unknown video status"):
        store.set_video_status(db_conn, video_id, "paused")


def test_upsert_refuses_another_owners_video(db_conn) -> None:
    video_id = uuid.uuid4()
    store.upsert_video(db_conn, video_id=video_id, owner_id=OWNER, source="a.mp4")
    with pytest.raises(BadInputError, match="another owner"):
        store.upsert_video(db_conn, video_id=video_id, owner_id=OTHER, source="a.mp4")
    assert store.get_video(db_conn, video_id)["owner_id"] == OWNER


def test_list_videos(db_conn) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    for i, video_id in enumerate(ids):
        store.upsert_video(db_conn, video_id=video_id, owner_id=OWNER if i < 2 else OTHER, source=f"{i}.mp4")
    assert [v["id"] for v in store.list_videos(db_conn, [ids[2], ids[0]])] == [ids[2], ids[0]]
    assert {v["id"] for v in store.list_videos(db_conn)} == set(ids)
    assert {v["id"] for v in store.list_videos(db_conn, owner_id=OTHER)} == {ids[2]}
    assert len(store.list_videos(db_conn, limit=1)) == 1


def test_write_then_replace_a_video(db_conn) -> None:
    video_id = uuid.uuid4()
    store.upsert_video(db_conn, video_id=video_id, owner_id=OWNER, source="a.mp4", status="running")
    first = scene_records(unit_vectors(5, seed=1), null_at=(3,))
    store.replace_scenes(db_conn, video_id=video_id, owner_id=OWNER, source="a.mp4", probe=probe_result(), scenes=first)

    video = store.get_video(db_conn, video_id)
    assert video["status"] == "done" and video["progress"] == 1.0 and video["error"] is None
    assert (video["scene_count"], video["embedded_count"]) == (5, 4)
    assert (video["fps"], video["frame_count"], video["width"], video["height"], video["codec"]) == (
        25.0, 250, 320, 180, "h264")
    rows = _scene_rows(db_conn, video_id)
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4]
    assert [r[1] for r in rows] == [True, True, True, False, True]
    assert all(r[3] == OWNER for r in rows)

    stored = db_conn.execute(
        "SELECT embedding_visual_clip, visual_clip_metadata, frame_quality FROM scenes "
        "WHERE video_id = %s AND scene_index = 0",
        (video_id,),
    ).fetchone()
    assert stored[0].to_list() == pytest.approx(first[0].embedding, abs=1e-6)
    assert stored[1]["model_name"] == "ViT-B-32" and stored[2]["quality_score"] == 0.8
    null_meta = db_conn.execute(
        "SELECT visual_clip_metadata FROM scenes WHERE video_id = %s AND scene_index = 3", (video_id,)
    ).fetchone()[0]
    assert null_meta["error"] == "Timeout after 2.0s" and null_meta["inference_time_ms"] is None

    # re-index: fewer scenes, new vectors; never duplicates, old ones gone
    second = scene_records(unit_vectors(3, seed=2))
    store.replace_scenes(db_conn, video_id=video_id, owner_id=OWNER, source="a.mp4", probe=probe_result(), scenes=second)
    store.replace_scenes(db_conn, video_id=video_id, owner_id=OWNER, source="a.mp4", probe=probe_result(), scenes=second)
    rows = _scene_rows(db_conn, video_id)
    assert [r[0] for r in rows] == [0, 1, 2]
    assert store.get_video(db_conn, video_id)["embedded_count"] == 3


def test_replace_creates_the_video_row_when_missing(db_conn) -> None:
    video_id = uuid.uuid4()
    store.replace_scenes(
        db_conn, video_id=video_id, owner_id=OWNER, source="b.mp4", probe=probe_result(),
        scenes=scene_records(unit_vectors(2)),
    )
    assert store.get_video(db_conn, video_id)["scene_count"] == 2


def test_replace_with_zero_scenes_clears_them(db_conn) -> None:
    video_id = uuid.uuid4()
    kwargs = dict(video_id=video_id, owner_id=OWNER, source="b.mp4", probe=probe_result())
    store.replace_scenes(db_conn, scenes=scene_records(unit_vectors(2)), **kwargs)
    store.replace_scenes(db_conn, scenes=[], **kwargs)
    assert store.get_video(db_conn, video_id)["scene_count"] == 0


def test_failed_replace_keeps_the_previous_scenes(db_conn) -> None:
    video_id = uuid.uuid4()
    kwargs = dict(video_id=video_id, owner_id=OWNER, source="c.mp4", probe=probe_result())
    store.replace_scenes(db_conn, scenes=scene_records(unit_vectors(4, seed=3)), **kwargs)
    store.set_video_status(db_conn, video_id, "running")

    broken = scene_records(unit_vectors(4, seed=4))
    broken[2].end_frame = broken[2].start_frame - 1  # violates a CHECK constraint in the middle of the COPY
    with pytest.raises(psycopg.errors.CheckViolation):
        store.replace_scenes(db_conn, scenes=broken, **kwargs)
    video = store.get_video(db_conn, video_id)
    assert video["scene_count"] == 4 and video["status"] == "running"

    wrong_size = scene_records(unit_vectors(2))
    wrong_size[1].embedding = wrong_size[1].embedding[:100]
    with pytest.raises(ProcessingError, match="100 dimensions, expected 512"):
        store.replace_scenes(db_conn, scenes=wrong_size, **kwargs)
    assert store.get_video(db_conn, video_id)["scene_count"] == 4


def test_replace_refuses_another_owners_video(db_conn) -> None:
    video_id = uuid.uuid4()
    store.replace_scenes(
        db_conn, video_id=video_id, owner_id=OWNER, source="d.mp4", probe=probe_result(),
        scenes=scene_records(unit_vectors(2)),
    )
    with pytest.raises(BadInputError, match="another owner"):
        store.replace_scenes(
            db_conn, video_id=video_id, owner_id=OTHER, source="d.mp4", probe=probe_result(),
            scenes=scene_records(unit_vectors(3)),
        )
    assert {r[3] for r in _scene_rows(db_conn, video_id)} == {OWNER}
    assert len(_scene_rows(db_conn, video_id)) == 2


def test_scene_owner_must_match_its_video(db_conn) -> None:
    """The schema itself refuses a scene row carrying another owner than its video."""
    video_id = uuid.uuid4()
    store.upsert_video(db_conn, video_id=video_id, owner_id=OWNER, source="e.mp4")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db_conn.execute(
            "INSERT INTO scenes (video_id, owner_id, scene_index, start_frame, end_frame, start_s, end_s) "
            "VALUES (%s, %s, 0, 0, 10, 0, 0.4)",
            (video_id, OTHER),
        )


def test_readers_never_see_half_a_video(db_conn, db_settings) -> None:
    video_id = uuid.uuid4()
    kwargs = dict(video_id=video_id, owner_id=OWNER, source="f.mp4", probe=probe_result())
    store.replace_scenes(db_conn, scenes=scene_records(unit_vectors(3, seed=5)), **kwargs)
    with store.connect(db_settings) as reader:
        with db_conn.transaction():  # hold the writer's transaction open across the check
            store.replace_scenes(db_conn, scenes=scene_records(unit_vectors(6, seed=6)), **kwargs)
            assert store.get_video(reader, video_id)["scene_count"] == 3
        assert store.get_video(reader, video_id)["scene_count"] == 6


def test_non_finite_json_metadata_is_stored_as_null(db_conn) -> None:
    video_id = uuid.uuid4()
    records = scene_records(unit_vectors(1))
    records[0].frame_quality = FrameQuality(quality_score=float("nan"), sharpness=float("inf"), exposure=1.0,
                                            contrast=1.0, colorfulness=1.0, extra={"ok": 1.0})
    store.replace_scenes(db_conn, video_id=video_id, owner_id=OWNER, source="g.mp4", probe=probe_result(),
                         scenes=records)
    quality = db_conn.execute("SELECT frame_quality FROM scenes WHERE video_id = %s", (video_id,)).fetchone()[0]
    assert {k: quality[k] for k in ("quality_score", "sharpness", "ok")} == {"quality_score": None, "sharpness": None, "ok": 1.0}
    assert not any(isinstance(v, float) and math.isnan(v) for v in quality.values())


def test_stats_overall_and_per_owner(db_conn) -> None:
    kwargs = dict(source="s.mp4", probe=probe_result())
    store.replace_scenes(db_conn, video_id=uuid.uuid4(), owner_id=OWNER,
                         scenes=scene_records(unit_vectors(4), null_at=(1,)), **kwargs)
    other = scene_records(unit_vectors(2), null_at=(0,), error="Image read error: truncated")
    store.replace_scenes(db_conn, video_id=uuid.uuid4(), owner_id=OTHER, scenes=other, **kwargs)
    store.upsert_video(db_conn, video_id=uuid.uuid4(), owner_id=OTHER, source="q.mp4")

    figures = store.stats(db_conn)
    overall = figures["overall"]
    assert overall["scenes"] == 6 and overall["embedded"] == 4
    assert overall["embedded_share"] == pytest.approx(4 / 6)
    assert overall["failure_rate"] == pytest.approx(2 / 6)
    assert overall["timeout_rate"] == pytest.approx(1 / 6)
    # inference times: owner 40, 42, 43 (scene 1 failed); other 41
    assert overall["mean_inference_ms"] == pytest.approx((40 + 42 + 43 + 41) / 4)
    per_owner = {row["owner_id"]: row for row in figures["per_owner"]}
    assert per_owner[OWNER]["timeout_rate"] == pytest.approx(1 / 4)
    assert per_owner[OTHER]["timeout_rate"] == 0 and per_owner[OTHER]["failure_rate"] == pytest.approx(1 / 2)
    assert figures["videos"] == {"queued": 1, "running": 0, "done": 2, "failed": 0}
    only_other = store.stats(db_conn, owner_id=OTHER)
    assert only_other["overall"]["scenes"] == 2 and len(only_other["per_owner"]) == 1


def test_stats_on_an_empty_database(db_conn) -> None:
    figures = store.stats(db_conn)
    assert figures["overall"]["scenes"] == 0 and figures["overall"]["mean_inference_ms"] is None
    assert figures["overall"]["failure_rate"] == 0 and figures["per_owner"] == []


def test_urls_for_messages_and_other_databases() -> None:
    from pipeline.store.connection import redact, with_database

    url = "postgresql://vidx:s3cret@db.example.com:6543/prod?sslmode=require"
    assert "s3cret" not in redact(url) and redact(url) == "prod@db.example.com:6543"
    assert with_database(url, "other") == "postgresql://vidx:s3cret@db.example.com:6543/other?sslmode=require"
    socket_url = "postgresql://postgres:@/vidx?host=/tmp/x/postgres"
    assert with_database(socket_url, "t1") == "postgresql://postgres:@/t1?host=/tmp/x/postgres"
    assert redact(socket_url) == "vidx@/tmp/x/postgres"
