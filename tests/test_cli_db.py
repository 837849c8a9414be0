"""``vidx migrate | db | search | stats`` against a real PostgreSQL (and the tiny real CLIP model)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pipeline import store
from pipeline.clip.identity import model_identity
from pipeline.store import embedded, migrations
from tests.fixtures.database import probe_result, scene_records, unit_vectors
from worker.cli import cli

OWNER = uuid.UUID("33333333-3333-3333-3333-333333333333")
OTHER = uuid.UUID("44444444-4444-4444-4444-444444444444")
REPO = Path(__file__).resolve().parents[1]


def vidx(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidx: error: "), result.stderr
    return lines[0]


def test_migrate_on_an_empty_database_then_again(empty_database_url, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    first = vidx("migrate", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["applied"] == [m.name for m in migrations.discover()]  # every file, in order
    again = vidx("migrate")
    assert again.exit_code == 0 and "schema is up to date" in again.stdout


def test_unreachable_database_is_one_line_and_exit_1(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://nobody@/nothing?host={tmp_path}&port=1")
    result = vidx("migrate")
    assert result.exit_code == 1
    assert "cannot connect to PostgreSQL" in _one_line_error(result)


def test_search_by_scene_json_and_table(db_settings) -> None:
    vectors = unit_vectors(6, seed=9)
    vectors[1] = vectors[0] * 0.9 + vectors[1] * 0.1  # a close neighbour of scene 0
    vectors[1] /= np.linalg.norm(vectors[1])
    video_id = uuid.uuid4()
    with store.connect(db_settings) as conn:
        store.replace_scenes(conn, video_id=video_id, owner_id=OWNER, source="/v/a.mp4", probe=probe_result(),
                             scenes=scene_records(vectors))
        scene0 = conn.execute("SELECT id FROM scenes WHERE video_id = %s AND scene_index = 0", (video_id,)).fetchone()[0]

    result = vidx("search", "--scene", str(scene0), "--owner", str(OWNER), "--threshold", "-1", "--limit", "3", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["index"] == 1 and rows[0]["similarity"] > 0.9
    assert rows[0]["source"] == "/v/a.mp4" and rows[0]["video_id"] == str(video_id)
    assert rows[0]["frame_path"] == "scene_0001.jpg" and rows[0]["start_s"] == 1.0 and rows[0]["end_s"] == 2.0

    table = vidx("search", "--scene", str(scene0), "--owner", str(OWNER), "--threshold", "0.9")
    assert table.exit_code == 0
    assert "/v/a.mp4" in table.stdout and "scene_0001.jpg" in table.stdout and "0:01.00-0:02.00" in table.stdout

    nothing = vidx("search", "--scene", str(scene0), "--owner", str(OTHER))
    assert nothing.exit_code == 2 and "no scene" in _one_line_error(nothing)


@pytest.mark.parametrize(
    "args",
    [
        ["search", "--owner", str(OWNER)],
        ["search", "--text", "a cat", "--scene", str(uuid.uuid4()), "--owner", str(OWNER)],
        ["search", "--text", "a cat"],
        ["search", "--text", "a cat", "--owner", "not-a-uuid"],
        ["search", "--image", "/no/such/file.jpg", "--owner", str(OWNER)],
        ["search", "--text", "a cat", "--owner", str(OWNER), "--limit", "0"],
        ["search", "--text", "  ", "--owner", str(OWNER)],
    ],
)
def test_search_usage_errors_exit_2(args) -> None:
    assert vidx(*args).exit_code == 2


def test_search_by_text_and_image_with_the_real_model(db_settings, clip_env, tmp_path) -> None:
    """Query vectors come from the same CLIP singleton that embeds frames (a tiny real model here)."""
    from pipeline import clip

    settings = clip_env.settings()
    image = tmp_path / "query.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    vectors = unit_vectors(4, seed=4)
    vectors[2] = clip.encode_text(["a red car at night"], settings)[0]
    vectors[3] = clip.encode_image(image, settings)
    with store.connect(db_settings) as conn:
        store.replace_scenes(conn, video_id=uuid.uuid4(), owner_id=OWNER, source="clip.mp4", probe=probe_result(),
                             scenes=scene_records(vectors, model=model_identity(settings)))

    by_text = vidx("search", "--text", "a red car at night", "--owner", str(OWNER), "--threshold", "-1", "--json")
    assert by_text.exit_code == 0, by_text.output
    top = json.loads(by_text.stdout)[0]
    assert top["index"] == 2 and top["similarity"] == pytest.approx(1.0, abs=1e-4)

    by_image = vidx("search", "--image", str(image), "--owner", str(OWNER), "--json")
    assert by_image.exit_code == 0, by_image.output
    top = json.loads(by_image.stdout)[0]
    assert top["index"] == 3 and top["similarity"] == pytest.approx(1.0, abs=1e-4)


def test_stats_json_and_table(db_settings) -> None:
    with store.connect(db_settings) as conn:
        store.replace_scenes(conn, video_id=uuid.uuid4(), owner_id=OWNER, source="s.mp4", probe=probe_result(),
                             scenes=scene_records(unit_vectors(4), null_at=(0,)))
    result = vidx("stats", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["overall"]["scenes"] == 4 and data["overall"]["timeout_rate"] == 0.25
    assert data["per_owner"][0]["owner_id"] == str(OWNER)
    assert data["videos"]["done"] == 1
    table = vidx("stats")
    assert table.exit_code == 0 and "25.0%" in table.stdout and str(OWNER) in table.stdout


def _run_vidx(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from worker.cli import main; main()", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def test_embedded_server_is_started_once_and_reused_across_commands() -> None:
    """No DATABASE_URL: the first command starts PostgreSQL in VIDX_DATA_DIR, later ones find it."""
    data_dir = Path(tempfile.mkdtemp(prefix="vidx-cli-"))  # not under pytest's 0700 basetemp (see fixtures)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(VIDX_DATA_DIR=str(data_dir), VIDX_LOG_LEVEL="warning")
    try:
        started = _run_vidx(env, "db", "start")
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip()
        assert url.startswith("postgresql://") and "host=" in url
        pid = (data_dir / "postgres" / "postmaster.pid").read_text().split()[0]

        stats = _run_vidx(env, "stats", "--json")  # migrates on first use, then queries
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["overall"]["scenes"] == 0
        assert _run_vidx(env, "db", "url").stdout.strip() == url
        assert (data_dir / "postgres" / "postmaster.pid").read_text().split()[0] == pid  # the same server

        assert _run_vidx(env, "db", "stop").stdout.strip() == "stopped"
        assert embedded.url(data_dir) is None
    finally:
        embedded.stop(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
