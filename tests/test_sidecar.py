"""Sidecar versions: atomic publication, replacement, nothing left on failure or after a crash's sweep."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline.core.types import FrameQuality, ProbeResult, SceneRecord
from pipeline.storage.local import LocalStaging, LocalStorage, version_dir
from pipeline.storage.sidecar import SIDECAR_NAME, build_sidecar, read_sidecar, write_json_atomic
from tests.fixtures.media import sidecar_entries


def _record(i: int) -> SceneRecord:
    return SceneRecord(
        index=i, start_frame=i * 10, end_frame=i * 10 + 9, start_s=i * 0.4, end_s=(i + 1) * 0.4,
        best_frame=i * 10 + 5, best_time_s=i * 0.4 + 0.2, frame_path=f"/x/scene_{i:04d}.jpg",
        frame_quality=FrameQuality(0.5, 0.5, 0.5, 0.5, 0.5), embedding=None, visual_clip_metadata={"error": "disabled"},
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


def _publish(root: Path, vid: uuid.UUID, generation: int) -> LocalStaging:
    with LocalStorage(root).stage(vid) as staging:
        (staging.path / f"gen{generation}.jpg").write_bytes(b"j")
        staging.write_sidecar({"generation": generation})
        staging.publish()
        staging.make_current()
    return staging


def test_publish_replaces_previous_sidecar(tmp_path: Path) -> None:
    vid = uuid.uuid4()
    first = _publish(tmp_path, vid, 1)
    second = _publish(tmp_path, vid, 2)
    assert read_sidecar(tmp_path, vid) == {"generation": 2}
    assert sorted(p.name for p in (tmp_path / str(vid)).iterdir()) == ["gen2.jpg", SIDECAR_NAME]
    assert LocalStorage(tmp_path).current_version(vid) == second.version
    assert not first.version_dir.exists()  # the older version is removed once the new one is current
    assert sidecar_entries(tmp_path) == [str(vid)]  # no staging, temp link or old version left


def test_failure_leaves_previous_state(tmp_path: Path) -> None:
    vid = uuid.uuid4()
    _publish(tmp_path, vid, 1)
    with pytest.raises(RuntimeError):
        with LocalStorage(tmp_path).stage(vid) as staging:
            staging.write_sidecar({"generation": 2})
            staging.publish()  # published but never referenced nor current: removed on the way out
            raise RuntimeError("boom")
    assert read_sidecar(tmp_path, vid) == {"generation": 1}
    assert sidecar_entries(tmp_path) == [str(vid)]


def test_a_pre_versioning_directory_is_replaced(tmp_path: Path) -> None:
    vid = uuid.uuid4()
    (tmp_path / str(vid)).mkdir()
    (tmp_path / str(vid) / SIDECAR_NAME).write_text('{"generation": 0}')
    _publish(tmp_path, vid, 1)
    assert read_sidecar(tmp_path, vid) == {"generation": 1}
    assert sidecar_entries(tmp_path) == [str(vid)]


@pytest.mark.parametrize("crash_after", ["staged", "published", "committed", "linked"])
def test_a_crash_between_publish_steps_leaves_a_complete_state(tmp_path: Path, crash_after: str) -> None:
    """Each step of a run that dies right after it; then the next worker's sweep.

    The database is modelled by ``db_version`` (what the rows point at).
    """
    vid = uuid.uuid4()
    old = _publish(tmp_path, vid, 1)
    db_version = old.version
    storage = LocalStorage(tmp_path)
    staging = storage.stage(vid)  # no context manager: a SIGKILL runs no clean-up
    staging.write_sidecar({"generation": 2})
    if crash_after != "staged":
        staging.publish()
    if crash_after in ("committed", "linked"):
        db_version = staging.version  # the rows now point at the new version
    if crash_after == "linked":
        storage.link_current(vid, staging.version)
    # What a reader sees right after the crash: a complete old or new sidecar.
    assert read_sidecar(tmp_path, vid) in ({"generation": 1}, {"generation": 2})
    assert version_dir(tmp_path, vid, db_version).is_dir()  # the rows' frame paths exist

    storage.sweep(vid, db_version)
    expected = 2 if crash_after in ("committed", "linked") else 1
    assert read_sidecar(tmp_path, vid) == {"generation": expected}
    assert storage.current_version(vid) == db_version
    assert sidecar_entries(tmp_path) == [str(vid)]


def test_write_json_atomic_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
