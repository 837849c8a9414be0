"""The CLI's side of issue 11: clean exit codes after abandoned inference, attempts and ids where users
look, the probe as a timed step, a failed enqueue that does not leave the row queued."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.fixtures.queue import REPO_ROOT, free_port

OWNER = "33333333-3333-3333-3333-333333333333"

# Runs `vidx index` with a forward pass that stays inside torch for seconds (a real
# torch loop, not a sleep), so every scene times out and its pass is abandoned mid-torch.
_SLOW_TORCH_INDEX = """
import sys, torch
import pipeline.clip.loader as loader, pipeline.clip.singleton as singleton
real = loader.load_clip
def slow_load(*args, **kwargs):
    model = real(*args, **kwargs)
    encode = model.image_encoder
    def slow(batch):
        x = torch.randn(256, 256)
        for _ in range(4000):
            x = torch.tanh(x @ x)
        return encode(batch)
    model.image_encoder = slow
    return model
singleton.load_clip = slow_load
from worker.cli import main
sys.argv = ["vidx", *sys.argv[1:]]
main()
"""


def _vidx(*args: str, env: dict[str, str], code: str | None = None) -> subprocess.CompletedProcess:
    prog = code if code is not None else "from worker.cli import main; main()"
    return subprocess.run([sys.executable, "-c", prog, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


def test_abandoned_inference_still_exits_with_the_commands_code(three_scene_video: Path, clip_env, tmp_path) -> None:
    env = {**os.environ, "CLIP_TIMEOUT_S": "0.05", "PYTHONPATH": str(REPO_ROOT)}
    proc = _vidx("index", str(three_scene_video), "--no-db", "--sidecar-dir", str(tmp_path / "sc"), "--json",
                 env=env, code=_SLOW_TORCH_INDEX)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "terminate called" not in proc.stderr
    [video] = json.loads(proc.stdout)
    errors = [s["visual_clip_metadata"]["error"] for s in video["scenes"]]
    assert all(e and e.startswith("Timeout after") for e in errors)


def test_index_counts_the_attempt_and_shows_ids_and_probe_time(three_scene_video: Path, db_settings) -> None:
    env = {**os.environ, "CLIP_ENABLED": "false", "PYTHONPATH": str(REPO_ROOT)}
    proc = _vidx("index", str(three_scene_video), "--owner", OWNER, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    [video] = json.loads(proc.stdout)
    assert video["timing"]["probe_ms"] > 0  # the probe is a step of the indexer, timed like the others
    sidecar = json.loads(Path(video["sidecar"]).read_text())
    assert sidecar["timing"]["probe_ms"] > 0
    with psycopg.connect(db_settings.database_url, row_factory=dict_row) as conn:
        row = conn.execute("SELECT * FROM videos WHERE id = %s", (uuid.UUID(video["video_id"]),)).fetchone()
        ids = {r["scene_index"]: r["id"] for r in conn.execute(
            "SELECT scene_index, id::text AS id FROM scenes WHERE video_id = %s", (uuid.UUID(video["video_id"]),))}
    assert (row["status"], row["attempts"], row["lease_holder"]) == ("done", 1, None)
    assert [s["scene_id"] for s in video["scenes"]] == [ids[i] for i in range(3)]

    table = _vidx("index", str(three_scene_video), "--owner", OWNER, env=env).stdout
    assert f"video {video['video_id']}" in table
    status = _vidx("status", video["video_id"], env=env).stdout
    assert f"video {video['video_id']}" in status and "attempts 1" in status


def test_failed_enqueue_marks_the_video_failed_with_the_reason(three_scene_video: Path, db_settings) -> None:
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    env = {**os.environ, "CLIP_ENABLED": "false", "PYTHONPATH": str(REPO_ROOT), "CELERY_BROKER_URL": dead_broker}
    proc = _vidx("enqueue", str(three_scene_video), "--owner", OWNER, env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("vidx: error: enqueue failed: broker unavailable")
    with psycopg.connect(db_settings.database_url) as conn:
        status, error = conn.execute("SELECT status, error FROM videos WHERE owner_id = %s", (OWNER,)).fetchone()
    assert status == "failed" and error.startswith("enqueue failed: broker unavailable")


@pytest.mark.parametrize("kind", ["soft_limit_in_inference", "soft_limit_in_load"])
def test_a_registered_time_limit_is_never_degraded_to_a_null_embedding(kind, clip_env, tmp_path) -> None:
    """The soft time limit raised inside CLIP ends the job; it is neither a NULL embedding nor a cached load failure."""
    import numpy as np
    from celery.exceptions import SoftTimeLimitExceeded
    from PIL import Image

    import pipeline.clip.singleton as singleton
    import worker.tasks  # noqa: F401 -- registers SoftTimeLimitExceeded as always propagating
    from pipeline.clip import FrameToEmbed, embed_frames, get_model

    frame = tmp_path / "f.png"
    Image.fromarray(np.full((90, 160, 3), 128, dtype=np.uint8)).save(frame)
    settings = clip_env.settings()

    def interrupted(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    model = get_model(settings, text=False)
    real_encoder, real_load = model.image_encoder, singleton.load_clip
    if kind == "soft_limit_in_inference":
        model.image_encoder = interrupted
    else:
        singleton.reset_model()
        singleton.load_clip = interrupted
    try:
        with pytest.raises(SoftTimeLimitExceeded):
            embed_frames([FrameToEmbed(frame, {})], settings)
    finally:
        model.image_encoder, singleton.load_clip = real_encoder, real_load
    [result] = embed_frames([FrameToEmbed(frame, {})], settings)  # the next video is not failed by it
    assert result.vector is not None, result.metadata
