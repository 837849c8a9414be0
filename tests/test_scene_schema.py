"""One scene schema: the sidecar, ``vidx index/show/search --json`` and the API against docs/scene.schema.json.

Every surface is checked on real output (real decode, real tiny-CLIP embeddings,
real PostgreSQL), and the keys they share must be equal, value for value: the
same names and the same rounding everywhere.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator, FormatChecker

from pipeline.core import scene_schema
from pipeline.core.types import FrameQuality, ProbeResult, SceneFrame, SceneRecord
from pipeline.storage.sidecar import build_sidecar, read_sidecar
from tests.fixtures.api import ApiWorld
from worker.cli import cli

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "scene.schema.json"
# What the sidecar and every other surface both carry (vectors and CLIP metadata are the sidecar's).
SHARED = ("index", "start_frame", "end_frame", "start_s", "end_s", "best_frame", "labels", "description")


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def check(validator: Draft202012Validator, scenes: list[dict[str, Any]]) -> None:
    assert scenes
    for scene in scenes:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(scene)]
        assert not errors, errors


def shared(scene: dict[str, Any]) -> dict[str, Any]:
    return {key: scene.get(key) for key in SHARED}


@pytest.fixture
def clip_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "clip_cache"))


def test_sidecar_api_show_and_search_give_one_scene(clip_cache, api_world: ApiWorld, validator) -> None:
    client, a = api_world.client, api_world.a
    sidecar = read_sidecar(api_world.settings.sidecar_dir, a.video_id)["scenes"]
    check(validator, sidecar)
    assert all(len(s["embedding_visual_clip"]) == 512 and s["labels"] for s in sidecar)

    api = client.get(f"/v1/videos/{a.video_id}/scenes", headers=a.headers).json()["scenes"]
    check(validator, api)
    assert [shared(s) for s in api] == [shared(s) for s in sidecar]
    assert client.get(f"/v1/scenes/{a.scene_ids[1]}", headers=a.headers).json() == api[1]
    found = client.post("/v1/search/text", headers=a.headers, json={"text": "a pattern", "threshold": -1}).json()
    check(validator, found["results"])
    by_index = {s["index"]: shared(s) for s in sidecar}
    assert all(shared(r) == by_index[r["index"]] for r in found["results"])

    runner = CliRunner()
    shown = runner.invoke(cli, ["show", str(a.video_id), "--json"], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    show = json.loads(shown.stdout)["scenes"]
    check(validator, show)
    assert [shared(s) for s in show] == [shared(s) for s in sidecar]
    assert [s["visual_clip_metadata"] for s in show] == [s["visual_clip_metadata"] for s in sidecar]

    searched = runner.invoke(cli, ["search", "--scene", str(a.scene_ids[0]), "--owner", str(a.owner_id),
                                   "--threshold", "-1", "--json"], catch_exceptions=False)
    assert searched.exit_code == 0, searched.output
    results = json.loads(searched.stdout)
    check(validator, results)
    assert all(shared(r) == by_index[r["index"]] for r in results)


def test_index_json_scenes_are_the_sidecars(three_scene_video: Path, tmp_path: Path, validator) -> None:
    env = {**os.environ, "CLIP_ENABLED": "false"}
    proc = subprocess.run(
        [sys.executable, "-c", "from worker.cli import main; main()", "index", str(three_scene_video), "--no-db",
         "--sidecar-dir", str(tmp_path / "sc"), "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    [video] = json.loads(proc.stdout)
    sidecar = json.loads(Path(video["sidecar"]).read_text(encoding="utf-8"))["scenes"]
    check(validator, sidecar)
    check(validator, video["scenes"])
    assert [shared(s) for s in video["scenes"]] == [shared(s) for s in sidecar]
    assert all(s["embedding_visual_clip"] is None and "labels" not in s for s in sidecar)  # CLIP off
    assert all(not s["embedded"] and "embedding_visual_clip" not in s for s in video["scenes"])


def _quality(score: float) -> FrameQuality:
    return FrameQuality(quality_score=score, sharpness=0.123456, exposure=1.0, contrast=0.5, colorfulness=0.25,
                        extra={"laplacian_var": 123.456789})


def test_several_frames_labels_and_rounding_in_one_place(validator) -> None:
    frames = [SceneFrame(frame=12, time_s=0.480001, path="scene_0000.jpg", quality=_quality(0.9), embedding=[0.1] * 512),
              SceneFrame(frame=14, time_s=0.56, path="scene_0000_f1.jpg", quality=_quality(0.7))]
    record = SceneRecord(
        index=0, start_frame=0, end_frame=24, start_s=0.0, end_s=1.000049, best_frame=12, best_time_s=0.480001,
        frame_path="/data/sidecars/.v-x/scene_0000.jpg", frame_quality=_quality(0.912345678), embedding=[0.1] * 512,
        visual_clip_metadata={"model_name": "ViT-B-32", "error": None}, labels=[{"label": "car", "score": 0.41}],
        description="a car", frames=frames,
    )
    probe = ProbeResult(duration_s=1.0, fps=25.0, frame_count=25, width=64, height=36, codec="h264")
    [scene] = build_sidecar(video_id=uuid.uuid4(), owner_id=uuid.uuid4(), source="v.mp4", probe=probe,
                            scenes=[record], timing_ms={})["scenes"]
    check(validator, [scene, scene_schema.scene_json(record, vectors=False, clip_metadata=False)])
    assert scene["end_s"] == 1.0 and scene["best_frame"]["time_s"] == 0.48
    assert scene["best_frame"]["path"] == "scene_0000.jpg"
    assert scene["best_frame"]["quality"]["quality_score"] == 0.9123
    assert scene["best_frame"]["quality"]["laplacian_var"] == 123.4568
    assert [f["path"] for f in scene["frames"]] == ["scene_0000.jpg", "scene_0000_f1.jpg"]
    assert scene["frames"][1]["embedding"] is None
    assert "embedding" not in scene_schema.scene_json(record, vectors=False)["frames"][0]
    # a sidecar's frames read back are the same frames
    assert [scene_schema.frame_json(scene_schema.frame_from_json(f)) for f in scene["frames"]] == scene["frames"]


def test_a_row_without_numbers_or_best_frame_still_fits(validator) -> None:
    row = {"scene_index": 3, "start_frame": 75, "end_frame": 99, "start_s": 3.0, "end_s": 4.0, "best_frame": None,
           "best_time_s": None, "frame_path": None, "frame_quality": {"quality_score": float("nan"), "ok": 1}}
    scene = scene_schema.scene_json(scene_schema.record_from_row(row), vectors=False)
    check(validator, [scene])
    assert scene["best_frame"] is None and "labels" not in scene
    quality = scene_schema.quality_from_json(row["frame_quality"])
    assert math.isnan(quality.quality_score) and scene_schema.quality_json(quality)["quality_score"] is None
