"""``vidx index`` as users run it: a real subprocess, real files, real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from pipeline.intake.naming import canonical_source, video_id_for
from tests import badmedia
from tests.fixtures.media import sidecar_entries

VIDX = [sys.executable, "-c", "from worker.cli import main; main()"]
OWNER = "22222222-2222-2222-2222-222222222222"


def run_vidx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "CLIP_ENABLED": "false", **(env or {})}
    return subprocess.run([*VIDX, *args], capture_output=True, text=True, env=full_env, timeout=300)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("bad")
    kinds = [k for k in badmedia.BAD_INPUTS if not (k == "unreadable" and os.geteuid() == 0)]
    return {kind: badmedia.make_bad_input(kind, directory) for kind in kinds}


def test_json_output_no_db(three_scene_video: Path, tmp_path: Path) -> None:
    sidecars = tmp_path / "sc"
    proc = run_vidx("index", str(three_scene_video), "--no-db", "--sidecar-dir", str(sidecars), "--json")
    assert proc.returncode == 0, proc.stderr
    [video] = json.loads(proc.stdout)
    assert [(s["start_frame"], s["end_frame"]) for s in video["scenes"]] == [(0, 49), (50, 99), (100, 149)]
    assert video["db_written"] is False
    assert Path(video["sidecar"]).is_file()
    assert all(Path(s["frame_path"]).is_file() for s in video["scenes"])


def test_table_output(three_scene_video: Path, tmp_path: Path) -> None:
    proc = run_vidx("index", str(three_scene_video), "--no-db", "--sidecar-dir", str(tmp_path / "sc"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(three_scene_video.resolve())
    assert "3 scenes" in lines[1]
    assert "quality" in lines[2]
    assert len(lines) == 6


def test_every_bad_input_is_one_clear_error(
    bad_inputs: dict[str, Path], three_scene_video: Path, tmp_path: Path
) -> None:
    """All bad kinds plus one good video in one command: one stderr line each, the good one indexed."""
    sidecars = tmp_path / "sc"
    paths = [str(p) for p in bad_inputs.values()]
    proc = run_vidx("index", *paths, str(three_scene_video), "--no-db", "--sidecar-dir", str(sidecars), "--json")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("vidx: error:")]
    assert len(errors) == len(bad_inputs), proc.stderr
    for kind, path in bad_inputs.items():
        [line] = [e for e in errors if path.name in e]
        assert len(line) < 400, f"{kind}: {line}"
    outputs = json.loads(proc.stdout)
    assert [o.get("kind") for o in outputs[:-1]] == ["bad_input"] * len(bad_inputs)
    good = outputs[-1]
    assert len(good["scenes"]) == 3
    # Only the good video's sidecar exists: nothing partial from the bad ones.
    assert sidecar_entries(sidecars) == [good["video_id"]]


def test_bad_input_leaves_nothing_in_database(bad_inputs: dict[str, Path], db_settings, three_scene_video) -> None:
    corrupt = bad_inputs["corrupt"]
    truncated = bad_inputs["truncated"]
    proc = run_vidx("index", str(truncated), str(corrupt), str(three_scene_video), "--owner", OWNER)
    assert proc.returncode == 2, proc.stderr
    owner = uuid.UUID(OWNER)
    with psycopg.connect(db_settings.database_url) as conn:
        found = conn.execute(
            "SELECT v.source, v.status, v.error, (SELECT count(*) FROM scenes s WHERE s.video_id = v.id) "
            "FROM videos v WHERE owner_id = %s",
            (owner,),
        ).fetchall()
    rows = {source: (status, error, scenes) for source, status, error, scenes in found}
    # Refused at probe time: no row at all.
    assert canonical_source(str(truncated)) not in rows
    # Refused while decoding: the row says failed and why, and holds no scenes.
    status, error, scenes = rows[canonical_source(str(corrupt))]
    assert status == "failed" and scenes == 0
    assert "corrupt" in error.lower() or "decod" in error.lower()
    assert rows[canonical_source(str(three_scene_video))] == ("done", None, 3)
    assert not (db_settings.sidecar_dir / str(video_id_for(owner, canonical_source(str(corrupt))))).exists()


def test_invalid_configuration_names_the_variable(three_scene_video: Path) -> None:
    proc = run_vidx("index", str(three_scene_video), "--no-db", env={"CLIP_TIMEOUT_S": "soon"})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "CLIP_TIMEOUT_S" in proc.stderr


def test_usage_errors_exit_2(three_scene_video: Path) -> None:
    proc = run_vidx("index", str(three_scene_video), "--owner", "not-a-uuid", "--no-db")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert run_vidx("index").returncode == 2
