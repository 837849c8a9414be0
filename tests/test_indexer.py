"""End to end through ``index_video``: real ffmpeg, real open_clip (tiny checkpoint), real PostgreSQL."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import psycopg
import pytest

from pipeline import store
from pipeline.clip import reset_model
from pipeline.core.errors import TransientError
from pipeline.indexer import index_video
from pipeline.intake.naming import video_id_for
from pipeline.storage.sidecar import read_sidecar
from tests.fixtures.media import sidecar_entries

OWNER = uuid.UUID("11111111-1111-1111-1111-111111111111")
METADATA_KEYS = {
    "model_name", "pretrained", "embed_dim", "normalized", "device", "frame_path",
    "frame_quality", "inference_time_ms", "created_at", "error",
}


def _index(video: Path, settings, write_db: bool = False):
    vid = video_id_for(OWNER, str(video))
    return index_video(video, video_id=vid, owner_id=OWNER, settings=settings, write_db=write_db)


def test_sidecar_with_embeddings(three_scene_video: Path, clip_env, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VIDX_SIDECAR_DIR", str(tmp_path / "sc"))
    settings = clip_env.settings()
    result = _index(three_scene_video, settings)

    doc = read_sidecar(settings.sidecar_dir, result.video_id)
    assert doc["schema_version"] == 1 and doc["owner_id"] == str(OWNER)
    assert doc["probe"]["frame_count"] == 150 and doc["probe"]["codec"] == "h264"
    spans = [(s["start_frame"], s["end_frame"]) for s in doc["scenes"]]
    assert spans == [(0, 49), (50, 99), (100, 149)]
    assert doc["scenes"][0]["start_s"] == 0.0
    assert math.isclose(doc["scenes"][-1]["end_s"], 6.0, abs_tol=0.05)
    for scene in doc["scenes"]:
        best = scene["best_frame"]
        assert scene["start_frame"] <= best["frame"] <= scene["end_frame"]
        assert (result.sidecar_dir / best["path"]).stat().st_size > 1000
        assert 0.0 <= best["quality"]["quality_score"] <= 1.0
        vector = scene["embedding_visual_clip"]
        assert len(vector) == 512
        assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, abs_tol=1e-3)
        meta = scene["visual_clip_metadata"]
        assert set(meta) == METADATA_KEYS
        assert meta["error"] is None and meta["inference_time_ms"] is not None
        assert Path(meta["frame_path"]).samefile(result.sidecar_dir / best["path"])  # in the published version
        assert Path(meta["frame_path"]).exists()
    # Only the committed directory is left: no staging leftovers.
    assert sidecar_entries(settings.sidecar_dir) == [str(result.video_id)]


def test_clip_disabled_still_indexes(three_scene_video: Path, settings, monkeypatch) -> None:
    monkeypatch.setenv("CLIP_ENABLED", "false")
    from pipeline.core.config import load_settings

    result = _index(three_scene_video, load_settings())
    doc = read_sidecar(result.sidecar_dir.parent, result.video_id)
    assert len(doc["scenes"]) == 3
    for scene in doc["scenes"]:
        assert scene["embedding_visual_clip"] is None
        assert "CLIP_ENABLED" in scene["visual_clip_metadata"]["error"]
        assert scene["visual_clip_metadata"]["inference_time_ms"] is None


def test_model_load_failure_nulls_every_embedding(three_scene_video: Path, clip_env, tmp_path: Path) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    reset_model()
    settings = clip_env.settings(clip_checkpoint=bad, sidecar_dir=tmp_path / "sc")
    result = _index(three_scene_video, settings)
    doc = read_sidecar(settings.sidecar_dir, result.video_id)
    assert len(doc["scenes"]) == 3
    for scene in doc["scenes"]:
        assert scene["embedding_visual_clip"] is None
        assert scene["visual_clip_metadata"]["error"].startswith("Model load failed")
    reset_model()


def test_database_rows_are_replaced_on_reindex(three_scene_video: Path, db_settings, monkeypatch) -> None:
    monkeypatch.setenv("CLIP_ENABLED", "false")
    settings = db_settings.with_overrides(clip_enabled=False)
    vid = video_id_for(OWNER, str(three_scene_video))
    with store.connect(settings) as conn:
        store.upsert_video(conn, video_id=vid, owner_id=OWNER, source=str(three_scene_video), status="running")
    for _ in range(2):
        _index(three_scene_video, settings, write_db=True)
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "SELECT scene_index, start_frame, end_frame, frame_path, visual_clip_metadata->>'error' "
            "FROM scenes WHERE video_id = %s ORDER BY scene_index",
            (vid,),
        ).fetchall()
        status = conn.execute("SELECT status, progress FROM videos WHERE id = %s", (vid,)).fetchone()
    assert [(r[0], r[1], r[2]) for r in rows] == [(0, 0, 49), (1, 50, 99), (2, 100, 149)]
    assert all(Path(r[3]).exists() for r in rows)
    assert all("CLIP_ENABLED" in r[4] for r in rows)
    assert status[0] == "done"


def test_unreachable_database_leaves_no_sidecar(three_scene_video: Path, settings, tmp_path: Path) -> None:
    dead = settings.with_overrides(
        database_url="postgresql://vidx@127.0.0.1:9/vidx?connect_timeout=2", clip_enabled=False
    )
    with pytest.raises(TransientError):
        _index(three_scene_video, dead, write_db=True)
    assert not dead.sidecar_dir.exists() or list(dead.sidecar_dir.iterdir()) == []


def test_json_sidecar_is_valid_json_with_nulls(three_scene_video: Path, settings) -> None:
    result = _index(three_scene_video, settings.with_overrides(clip_enabled=False))
    text = (result.sidecar_dir / "sidecar.json").read_text()
    assert "NaN" not in text
    json.loads(text)
