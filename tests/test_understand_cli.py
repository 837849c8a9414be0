"""``vidx show``, ``vidx sheet``, ``vidx reembed`` and per-model stats: real PostgreSQL, real ffmpeg, tiny real CLIP."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pipeline import store
from pipeline.clip import labels as clip_labels
from pipeline.clip import reset_model
from pipeline.clip.identity import model_identity
from pipeline.core.config import load_settings
from pipeline.core.errors import BadInputError
from pipeline.frames.sheet import BACKGROUND, TILES_PER_PAGE, contact_sheet_png, render_sheet, tile_boxes, tile_for
from pipeline.indexer import index_video
from pipeline.intake.naming import video_id_for
from pipeline.storage.sidecar import read_sidecar
from tests.fixtures.clip import TINY_MODEL_NAME, write_tiny_checkpoint
from tests.fixtures.database import probe_result, scene_records, unit_vectors
from tests.fixtures.queue import run_vidx, wait_for, worker_env
from worker.cli import cli

OWNER = uuid.UUID("15151515-1515-1515-1515-151515151515")
OTHER = uuid.UUID("16161616-1616-1616-1616-161616161616")


def vidx(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def understanding_env(clip_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "clip_cache"))
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    clip_labels.forget_text_banks()
    yield clip_env
    clip_labels.forget_text_banks()


@pytest.fixture(scope="session")
def second_checkpoint(tmp_path_factory) -> Path:
    """The tiny architecture with other weights: another model identity."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("clip_tiny_b"), TINY_MODEL_NAME, 512, seed=7)


def _index(video: Path, *, owner: uuid.UUID = OWNER, source: str | None = None):
    settings = load_settings()
    vid = video_id_for(owner, source or str(video))
    return index_video(video, video_id=vid, owner_id=owner, settings=settings, source_label=source)


def _models(conn, video_id) -> list[str | None]:
    rows = conn.execute("SELECT embedding_model FROM scenes WHERE video_id = %s ORDER BY scene_index", (video_id,))
    return [r[0] for r in rows.fetchall()]


def _one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidx: error: "), result.stderr
    return lines[0]


def test_show_lists_scenes_with_ids_labels_and_descriptions(
    three_scene_video: Path, understanding_env, db_settings
) -> None:
    result = _index(three_scene_video)
    shown = vidx("show", str(result.video_id), "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["owner_id"] == str(OWNER) and data["status"] == "done"
    assert [s["index"] for s in data["scenes"]] == [0, 1, 2]
    for scene, record in zip(data["scenes"], result.scenes, strict=True):
        uuid.UUID(scene["scene_id"])
        assert scene["labels"] == record.labels and scene["description"] == record.description
        assert scene["embedding_model"] == model_identity(load_settings())
    table = vidx("show", str(result.video_id), "--owner", str(OWNER))
    assert table.exit_code == 0
    assert all(s["scene_id"] in table.stdout for s in data["scenes"])
    assert data["scenes"][0]["labels"][0]["label"] in table.stdout
    # another owner's video and a missing one read the same: not found, exit 2
    other = vidx("show", str(result.video_id), "--owner", str(OTHER))
    missing = vidx("show", str(uuid.uuid4()), "--owner", str(OTHER))
    assert other.exit_code == missing.exit_code == 2
    assert "no video" in _one_line_error(other) and "no video" in _one_line_error(missing)


def test_sheet_is_a_png_with_one_tile_per_scene(three_scene_video: Path, understanding_env, db_settings, tmp_path) -> None:
    result = _index(three_scene_video)
    out = tmp_path / "sheets" / "sheet.png"
    made = vidx("sheet", str(result.video_id), "-o", str(out), "--sidecar")
    assert made.exit_code == 0, made.output
    with Image.open(out) as image:
        image.verify()
    assert (result.sidecar_dir / "contact_sheet.png").is_file()
    with store.connect(db_settings) as conn:
        data = contact_sheet_png(conn, result.video_id, owner_id=OWNER, settings=db_settings)
        with pytest.raises(BadInputError, match="no video"):
            contact_sheet_png(conn, result.video_id, owner_id=OTHER, settings=db_settings)
        with pytest.raises(BadInputError, match="page 2"):
            contact_sheet_png(conn, result.video_id, owner_id=OWNER, settings=db_settings, page=2)
    assert data == out.read_bytes()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    boxes = tile_boxes(3)
    assert len(boxes) == 3
    for x, y, w, h in boxes:  # every tile shows its frame (not the sheet's background)
        crop = np.asarray(image.crop((x, y, x + w, y + h)))
        assert (np.abs(crop.astype(int) - np.array(BACKGROUND)).sum(axis=2) > 0).mean() > 0.9
    assert vidx("sheet", str(result.video_id), "-o", str(out), "--owner", str(OTHER)).exit_code == 2


def test_a_long_video_pages_its_sheet(db_conn, db_settings) -> None:
    count = TILES_PER_PAGE + 5
    vid = uuid.uuid4()
    store.replace_scenes(db_conn, video_id=vid, owner_id=OWNER, source="/v/long.mp4", probe=probe_result(count * 25),
                         scenes=scene_records(unit_vectors(count)))  # their frame files do not exist: grey tiles
    pages = [contact_sheet_png(db_conn, vid, owner_id=OWNER, settings=db_settings, page=p) for p in (1, 2)]
    first, second = (Image.open(io.BytesIO(p)) for p in pages)
    assert first.size[0] >= second.size[0] and first.size[1] > second.size[1]
    with pytest.raises(BadInputError):
        contact_sheet_png(db_conn, vid, owner_id=OWNER, settings=db_settings, page=3)
    rows = [{"scene_index": i, "start_s": i, "end_s": i + 1, "frame_path": None, "labels": None, "embedded": False}
            for i in range(5)]
    assert render_sheet([tile_for(r) for r in rows], title="t").mode == "RGB"


def test_reembed_moves_every_scene_to_the_new_model_once(
    three_scene_video: Path, understanding_env, db_settings, second_checkpoint: Path, monkeypatch
) -> None:
    old = _index(three_scene_video)
    old_identity = model_identity(load_settings())
    monkeypatch.setenv("CLIP_ENABLED", "false")  # a second video indexed with CLIP off: to be backfilled
    off = _index(three_scene_video, source="/elsewhere/clip-off.mp4")
    assert all(s.embedding is None and s.labels is None for s in off.scenes)

    monkeypatch.setenv("CLIP_ENABLED", "true")
    monkeypatch.setenv("CLIP_CHECKPOINT", str(second_checkpoint))
    reset_model()
    new_identity = model_identity(load_settings())
    assert new_identity != old_identity

    with store.connect(db_settings) as conn:  # before: a text query on the new model meets nothing
        query = unit_vectors(1, seed=5)[0]
        assert store.search_by_embedding(conn, query, owner_id=OWNER, threshold=-1, limit=10, model=new_identity) == []

    first = vidx("reembed", "--all", "--json")
    assert first.exit_code == 0, first.output
    outcome = json.loads(first.stdout)
    assert outcome["videos"] == 2 and outcome["scenes"] == 6 and outcome["embedded"] == 6
    with store.connect(db_settings) as conn:
        for video in (old, off):
            assert _models(conn, video.video_id) == [new_identity] * 3
            labels = conn.execute("SELECT labels FROM scenes WHERE video_id = %s", (video.video_id,)).fetchall()
            assert all(row[0] for row in labels)
        got = store.search_by_embedding(conn, query, owner_id=OWNER, threshold=-1, limit=10, model=new_identity)
        assert len(got) == 6 and {r["embedding_model"] for r in got} == {new_identity}
        db_vector = conn.execute(
            "SELECT embedding_visual_clip FROM scenes WHERE video_id = %s AND scene_index = 0", (old.video_id,)
        ).fetchone()[0]
    sidecar = read_sidecar(db_settings.sidecar_dir, old.video_id)  # the sidecar follows the rows
    assert np.allclose(sidecar["scenes"][0]["embedding_visual_clip"], db_vector.to_numpy(), atol=1e-6)
    assert sidecar["scenes"][0]["labels"]

    again = vidx("reembed", "--all", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["videos"] == 0

    stats = json.loads(vidx("stats", "--json").stdout)
    assert [(m["embedding_model"], m["scenes"]) for m in stats["per_model"]] == [(new_identity, 6)]
    assert "<- configured" in vidx("stats").stdout


def test_reembed_usage_and_scoping(db_settings, understanding_env, monkeypatch) -> None:
    assert vidx("reembed").exit_code == 2
    assert vidx("reembed", "--all", "--owner", str(OWNER)).exit_code == 2
    hidden = vidx("reembed", "--video", str(uuid.uuid4()), "--owner", str(OTHER))
    assert hidden.exit_code == 2 and "no video" in _one_line_error(hidden)
    monkeypatch.setenv("CLIP_ENABLED", "false")
    off = CliRunner().invoke(cli, ["reembed", "--all"], catch_exceptions=False)
    assert off.exit_code == 2 and "CLIP_ENABLED=false" in _one_line_error(off)


def test_reembed_runs_as_celery_tasks_with_a_broker(
    db_settings, understanding_env, second_checkpoint: Path, broker_url: str, clean_database_url: str,
    workers, tmp_path: Path,
) -> None:
    vectors = unit_vectors(3, seed=11)
    vid = uuid.uuid4()
    frames = tmp_path / "frames"
    frames.mkdir()
    records = scene_records(vectors, model="old-model/x")
    for record in records:  # real frame files for the worker to read
        path = frames / record.frame_path
        Image.new("RGB", (64, 36), (40 * record.index, 90, 160)).save(path)
        record.frame_path = str(path)
    with store.connect(db_settings) as conn:
        store.replace_scenes(conn, video_id=vid, owner_id=OWNER, source="/v/q.mp4", probe=probe_result(75),
                             scenes=records)
    model_name, _ = TINY_MODEL_NAME, None
    env = worker_env(
        broker_url=broker_url, database_url=clean_database_url, data_dir=tmp_path / "data",
        CLIP_ENABLED="true", CLIP_MODEL_NAME=model_name, CLIP_CHECKPOINT=str(second_checkpoint),
        CLIP_PRETRAINED="local-checkpoint", CLIP_DEVICE="cpu", CLIP_TIMEOUT_S="30",
        CLIP_CACHE_DIR=str(tmp_path / "clip_cache"),
    )
    identity = model_identity(load_settings().with_overrides(clip_checkpoint=second_checkpoint))
    sent = run_vidx(env, "reembed", "--owner", str(OWNER), "--json")
    assert json.loads(sent.stdout)["mode"] == "celery" and json.loads(sent.stdout)["videos"] == 1
    workers.start(env)
    with store.connect(db_settings) as conn:
        wait_for(lambda: _models(conn, vid) == [identity] * 3, timeout=120, what="the worker to re-embed the video")
        assert all(row[0] for row in conn.execute("SELECT labels FROM scenes WHERE video_id = %s", (vid,)).fetchall())
    assert json.loads(run_vidx(env, "reembed", "--owner", str(OWNER), "--json").stdout)["videos"] == 0


def test_reembed_keeps_multi_frame_scenes_pooled(
    three_scene_video: Path, understanding_env, db_settings, second_checkpoint: Path, monkeypatch
) -> None:
    monkeypatch.setenv("VIDX_FRAMES_PER_SCENE", "3")
    indexed = _index(three_scene_video)
    before = read_sidecar(db_settings.sidecar_dir, indexed.video_id)
    monkeypatch.setenv("CLIP_CHECKPOINT", str(second_checkpoint))
    reset_model()
    identity = model_identity(load_settings())
    done = vidx("reembed", "--video", str(indexed.video_id), "--owner", str(OWNER), "--json")
    assert done.exit_code == 0, done.output
    after = read_sidecar(db_settings.sidecar_dir, indexed.video_id)
    with store.connect(db_settings) as conn:
        assert _models(conn, indexed.video_id) == [identity] * 3
        stored = conn.execute("SELECT embedding_visual_clip FROM scenes WHERE video_id = %s ORDER BY scene_index",
                              (indexed.video_id,)).fetchall()
    for old_scene, scene, (vector,) in zip(before["scenes"], after["scenes"], stored, strict=True):
        assert [f["path"] for f in scene["frames"]] == [f["path"] for f in old_scene["frames"]]
        frames = np.asarray([f["embedding"] for f in scene["frames"]], dtype=np.float64)
        assert not np.allclose(frames[0], old_scene["frames"][0]["embedding"], atol=1e-3)  # really the new model
        mean = frames.mean(axis=0)
        assert np.allclose(vector.to_numpy(), mean / np.linalg.norm(mean), atol=1e-5)
