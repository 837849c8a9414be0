"""Sidecar staging: atomic publication, replacement, nothing left on failure."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline.sidecar import SIDECAR_NAME, SidecarStaging, build_sidecar, read_sidecar, write_json_atomic
from pipeline.types import ProbeResult, SceneRecord


def _record(i: int) -> SceneRecord:
    return SceneRecord(
        scene_index=i, start_frame=i * 10, end_frame=i * 10 + 9, start_s=i * 0.4, end_s=(i + 1) * 0.4,
        best_frame=i * 10 + 5, best_time_s=i * 0.4 + 0.2, frame_path=f"/x/scene_{i:04d}.jpg",
        frame_quality={"quality_score": 0.5}, embedding=None, visual_clip_metadata={"error": "disabled"},
    )


def test_build_sidecar_shape() -> None:
    probe = ProbeResult(duration_s=0.8, fps=25.0, frame_count=20, width=64, height=36, codec="h264")
    doc = build_sidecar(
        video_id=uuid.uuid4(), owner_id=uuid.uuid4(), source="/v.mp4", probe=probe,
        scenes=[_record(0), _record(1)], timing_ms={"total_ms": 12.34},
    )
    assert doc["schema_version"] == 1
    assert set(doc["probe"]) == {"duration_s", "fps", "frame_count", "width", "height", "codec", "rotation"}
    scene = doc["scenes"][1]
    assert set(scene) == {
        "index", "start_frame", "end_frame", "start_s", "end_s", "best_frame",
        "embedding_visual_clip", "visual_clip_metadata",
    }
    assert scene["best_frame"]["path"] == "scene_0001.jpg"
    assert doc["timing"]["total_ms"] == 12.3


def test_commit_replaces_previous_sidecar(tmp_path: Path) -> None:
    vid = uuid.uuid4()
    for generation in (1, 2):
        with SidecarStaging(tmp_path, vid) as staging:
            (staging.path / f"gen{generation}.jpg").write_bytes(b"j")
            staging.write_sidecar({"generation": generation})
            staging.commit()
    assert read_sidecar(tmp_path, vid) == {"generation": 2}
    assert sorted(p.name for p in (tmp_path / str(vid)).iterdir()) == ["gen2.jpg", SIDECAR_NAME]
    assert [p.name for p in tmp_path.iterdir()] == [str(vid)]  # no staging or old dirs left


def test_failure_leaves_previous_state(tmp_path: Path) -> None:
    vid = uuid.uuid4()
    with SidecarStaging(tmp_path, vid) as staging:
        staging.write_sidecar({"generation": 1})
        staging.commit()
    with pytest.raises(RuntimeError):
        with SidecarStaging(tmp_path, vid) as staging:
            staging.write_sidecar({"generation": 2})
            raise RuntimeError("boom")
    assert read_sidecar(tmp_path, vid) == {"generation": 1}
    assert [p.name for p in tmp_path.iterdir()] == [str(vid)]


def test_write_json_atomic_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
