"""``vidx enqueue``, ``vidx status``, ``vidx health`` as subprocesses (real Redis, real PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import redis

from tests.fixtures.queue import free_port, worker_env
from tests.fixtures.queue import run_vidx as vidx

OWNER = uuid.UUID("22222222-2222-2222-2222-222222222222")


@pytest.fixture
def env(broker_url: str, clean_database_url: str, tmp_path: Path) -> dict[str, str]:
    return worker_env(broker_url=broker_url, database_url=clean_database_url, data_dir=tmp_path / "data")


def _queued_messages(broker_url: str) -> int:
    client = redis.Redis.from_url(broker_url)
    try:
        return client.llen("vidx")
    finally:
        client.close()


def _video_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM videos").fetchone()[0]


def test_enqueue_creates_queued_rows_and_one_message_each(env, broker_url, clean_database_url, tmp_path) -> None:
    paths = []
    for name in ("a.mp4", "b.mp4"):
        path = tmp_path / name
        path.write_bytes(b"\0" * 100)  # content is the worker's business
        paths.append(path)
    out = vidx(env, "enqueue", "--owner", str(OWNER), "--json", *map(str, paths), "https://example.com/c.mp4").stdout
    rows = json.loads(out)
    assert [r["source"] for r in rows] == [str(paths[0]), str(paths[1]), "https://example.com/c.mp4"]
    assert _queued_messages(broker_url) == 3
    status = vidx(env, "status", "--json", *(r["video_id"] for r in rows)).stdout
    assert [(r["status"], r["attempts"], r["owner_id"]) for r in json.loads(status)] == [("queued", 0, str(OWNER))] * 3


def test_enqueue_refuses_bad_paths_before_enqueueing_anything(env, broker_url, clean_database_url, tmp_path) -> None:
    good = tmp_path / "good.mp4"
    good.write_bytes(b"\0" * 100)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    for bad, reason in ((tmp_path / "nope.mp4", "no such file"), (tmp_path, "is a directory"), (empty, "empty"),
                        ("ftp://example.com/v.mp4", "unsupported URL scheme")):
        proc = vidx(env, "enqueue", str(good), str(bad), check=False)
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and reason in proc.stderr, proc.stderr
    assert _queued_messages(broker_url) == 0
    assert _video_count(clean_database_url) == 0


def test_enqueue_with_broker_down_exits_1(env, clean_database_url, tmp_path) -> None:
    good = tmp_path / "good.mp4"
    good.write_bytes(b"\0" * 100)
    down = {**env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    proc = vidx(down, "enqueue", str(good), check=False)
    assert proc.returncode == 1
    assert "broker unavailable" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_status_of_an_unknown_video_exits_1(env, clean_database_url) -> None:
    proc = vidx(env, "status", str(uuid.uuid4()), check=False)
    assert proc.returncode == 1 and "no video" in proc.stderr


def test_health_all_ok(env) -> None:
    proc = vidx(env, "health", "--json", check=False)
    checks = {c["check"]: c for c in json.loads(proc.stdout)}
    assert proc.returncode == 0, proc.stdout
    assert all(checks[name]["ok"] for name in ("database", "broker", "model"))
    assert (checks["broker"]["status"], checks["model"]["status"]) == ("ok", "not configured")  # CLIP_ENABLED=false


def test_health_skip_model_checks_all_but_the_model(env, tmp_path) -> None:
    garbage = tmp_path / "weights.pt"
    garbage.write_bytes(b"not a checkpoint")
    broken_model = {**env, "CLIP_ENABLED": "true", "CLIP_CHECKPOINT": str(garbage)}
    proc = vidx(broken_model, "health", "--skip-model", "--json", check=False)
    assert proc.returncode == 0, proc.stdout
    assert [c["check"] for c in json.loads(proc.stdout)] == ["database", "broker", "storage"]


def test_health_loads_the_model_when_clip_is_on(env, tiny_clip_checkpoint) -> None:
    model_name, checkpoint = tiny_clip_checkpoint
    clip = {**env, "CLIP_ENABLED": "true", "CLIP_MODEL_NAME": model_name, "CLIP_CHECKPOINT": str(checkpoint),
            "CLIP_PRETRAINED": "local-checkpoint", "CLIP_DEVICE": "cpu"}
    proc = vidx(clip, "health", "--json", check=False)
    model = next(c for c in json.loads(proc.stdout) if c["check"] == "model")
    assert proc.returncode == 0 and model["ok"] and model_name in model["detail"], proc.stdout


def test_health_reports_each_failure_with_its_reason(env, tmp_path) -> None:
    garbage = tmp_path / "weights.pt"
    garbage.write_bytes(b"not a checkpoint")
    broken = {
        **env,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
        "CLIP_ENABLED": "true",
        "CLIP_CHECKPOINT": str(garbage),  # a local file: nothing is downloaded
        "VIDX_SIDECAR_DIR": str(garbage),  # a file where the storage directory should be
    }
    proc = vidx(broken, "health", check=False)
    assert proc.returncode == 1
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines())
    assert set(lines) == {"database", "broker", "storage", "model"}
    assert all(text.startswith("FAILING") and len(text) > len("FAILING  ") for text in lines.values()), lines


def test_every_command_name_resolves_to_its_click_command() -> None:
    from worker.cli import COMMANDS, cli

    for name in COMMANDS:
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None and command.name == name


def test_a_command_imports_only_its_own_module() -> None:
    """`vidx status` loads neither the indexer (OpenCV), the HTTP API nor redis: the root group loads lazily."""
    code = (
        "import sys; from worker.cli import cli; cli.get_command(None, 'status'); "
        "print(sorted(m for m in ('pipeline.indexer', 'cv2', 'worker.api', 'redis', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
