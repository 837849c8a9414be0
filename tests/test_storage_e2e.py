"""Issue 15 end to end: frames and sidecars in a real S3-compatible server (moto_server on loopback).

Real ffmpeg videos, the real embedded PostgreSQL, real redis-server and
``vidx worker`` processes; only the bucket replaces the local directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from pipeline.core.locations import parse_s3_url
from pipeline.storage import open_storage
from pipeline.storage.bucket import S3Storage
from pipeline.storage.s3 import S3Store
from tests import videogen
from tests.fixtures.queue import REPO_ROOT, WorkerPool, run_vidx, wait_for, worker_env
from tests.fixtures.s3 import S3Server

OWNER = uuid.UUID("15151515-1515-1515-1515-151515151515")
SMALL = (160, 90)
JPEG_MAGIC = b"\xff\xd8\xff"

pytestmark = pytest.mark.timeout(300)


def _rows(url: str, vid: uuid.UUID) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT scene_index, frame_path FROM scenes WHERE video_id = %s ORDER BY scene_index", (vid,)
        ).fetchall()


def _status(url: str, vid: uuid.UUID) -> tuple | None:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT status, error, attempts FROM videos WHERE id = %s", (vid,)).fetchone()


def _assert_readable_from_s3(settings, url: str, vid: uuid.UUID, scenes: int) -> str:
    """Every row's frame is an s3:// object of the current version; the sidecar lists the same scenes."""
    rows = _rows(url, vid)
    assert len(rows) == scenes
    storage = open_storage(settings)
    version = storage.current_version(vid)
    assert version is not None
    for _, frame_path in rows:
        assert frame_path.startswith(f"{settings.storage_url}/{vid}/{version}/"), frame_path
        assert storage.read_frame(frame_path).startswith(JPEG_MAGIC)
    sidecar = storage.read_sidecar(vid)
    assert [s["index"] for s in sidecar["scenes"]] == [r[0] for r in rows]
    assert all(s["visual_clip_metadata"]["frame_path"] == r[1] for s, r in zip(sidecar["scenes"], rows, strict=True))
    return version


def test_index_to_s3_and_read_everything_back(db_settings, s3_url, media_dir, clean_database_url) -> None:
    from pipeline.frames.sheet import contact_sheet_png
    from pipeline.indexer import index_video
    from pipeline.intake.naming import video_id_for

    video = videogen.make_cut_video(media_dir / "s3_three.mp4", [25, 25, 25], size=SMALL)
    settings = db_settings.with_overrides(storage_url=s3_url, clip_enabled=False, frame_height=64)
    vid = video_id_for(OWNER, str(video))
    result = index_video(video, video_id=vid, owner_id=OWNER, settings=settings)
    assert str(result.sidecar_dir).startswith(f"{s3_url}/{vid}/")
    first = _assert_readable_from_s3(settings, clean_database_url, vid, 3)
    # nothing stays on the worker's disk: the local directory was only scratch
    assert not any(p.is_file() for p in settings.sidecar_dir.rglob("*"))

    # vidx sheet's renderer reads the frames from the bucket
    with psycopg.connect(clean_database_url, autocommit=True) as conn:
        png = contact_sheet_png(conn, vid, owner_id=OWNER, settings=settings)
    assert png.startswith(b"\x89PNG")

    # re-indexing publishes a new version and removes the old one
    index_video(video, video_id=vid, owner_id=OWNER, settings=settings)
    second = _assert_readable_from_s3(settings, clean_database_url, vid, 3)
    assert second != first
    store = S3Store(parse_s3_url(s3_url))
    assert {k.split("/")[2] for k in store.list(f"vidx/{vid}/") if not k.endswith("current.json")} == {second}


_KILL_MID_UPLOAD = """
import os, signal, sys, uuid
from pathlib import Path
from pipeline.core.config import load_settings
from pipeline.indexer import index_video
from pipeline.storage.s3 import S3Store

real_put, puts = S3Store.put, []
def put(self, key, data, content_type="application/octet-stream"):
    real_put(self, key, data, content_type)
    puts.append(key)
    if len(puts) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-publish, like an OOM kill
S3Store.put = put
index_video(Path(sys.argv[1]), video_id=uuid.UUID(sys.argv[2]), owner_id=uuid.UUID(sys.argv[3]),
            settings=load_settings())
"""


def test_a_killed_job_leaves_no_visible_objects(db_settings, s3_url, s3_server: S3Server, media_dir,
                                                 clean_database_url, tmp_path) -> None:
    video = videogen.make_cut_video(media_dir / "s3_kill.mp4", [25, 25, 25, 25], size=SMALL)
    vid = uuid.uuid4()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDX_", "CLIP_"))}
    env.update(s3_server.env(), PYTHONPATH=str(REPO_ROOT), DATABASE_URL=clean_database_url,
               VIDX_DATA_DIR=str(tmp_path / "data"), VIDX_STORAGE_URL=s3_url, CLIP_ENABLED="false",
               VIDX_FRAME_HEIGHT="64")
    proc = subprocess.run([sys.executable, "-c", _KILL_MID_UPLOAD, str(video), str(vid), str(OWNER)],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]

    storage = open_storage(db_settings.with_overrides(storage_url=s3_url))
    assert isinstance(storage, S3Storage)
    store = storage.store
    assert len(store.list(f"vidx/{vid}/")) == 2  # two frames of an unfinished version were uploaded...
    assert storage.visible_keys(vid) == []  # ...but nothing points at them
    with pytest.raises(FileNotFoundError):
        storage.read_sidecar(vid)
    assert _rows(clean_database_url, vid) == []
    # the next claim's sweep removes them
    assert len(storage.sweep(vid, None)) == 2
    assert store.list(f"vidx/{vid}/") == []


def _s3_worker_env(broker_url: str, database_url: str, data_dir: Path, s3_server: S3Server, s3_url: str,
                   **overrides: str) -> dict[str, str]:
    return worker_env(broker_url=broker_url, database_url=database_url, data_dir=data_dir,
                      VIDX_STORAGE_URL=s3_url, **{**s3_server.env(), **overrides})


def _enqueue(env: dict[str, str], *paths: Path) -> list[uuid.UUID]:
    out = run_vidx(env, "enqueue", "--owner", str(OWNER), "--json", *map(str, paths)).stdout
    return [uuid.UUID(row["video_id"]) for row in json.loads(out)]


def _wait_done(url: str, ids: list[uuid.UUID], timeout: float) -> None:
    def done() -> bool:
        states = [_status(url, vid) for vid in ids]
        if any(s is not None and s[0] == "failed" for s in states):
            raise AssertionError(f"a video failed: {states}")
        return all(s is not None and s[0] == "done" for s in states)

    wait_for(done, timeout=timeout, interval=0.25, what="videos to be done")


def test_two_workers_on_two_machines_share_one_bucket(broker_url, clean_database_url, db_settings, s3_url,
                                                      s3_server, media_dir, tmp_path, workers: WorkerPool) -> None:
    """Each worker has its own data directory (its own 'disk'); only the bucket and the database are shared."""
    paths = [videogen.make_cut_video(media_dir / f"s3_two_{i}.mp4", [20] * (i + 2), size=SMALL) for i in range(4)]
    for name in ("machine-a", "machine-b"):
        env = _s3_worker_env(broker_url, clean_database_url, tmp_path / name, s3_server, s3_url)
        workers.start(env, name=name)
    ids = _enqueue(env, *paths)
    _wait_done(clean_database_url, ids, timeout=180)
    settings = db_settings.with_overrides(storage_url=s3_url)
    for i, vid in enumerate(ids):
        _assert_readable_from_s3(settings, clean_database_url, vid, i + 2)
    for name in ("machine-a", "machine-b"):  # no machine keeps frames on its own disk
        assert not any(p.is_file() for p in (tmp_path / name / "sidecars").rglob("*"))


def test_bad_credentials_are_retried_then_the_job_completes(broker_url, clean_database_url, db_settings, s3_url,
                                                             s3_server, media_dir, tmp_path,
                                                             workers: WorkerPool) -> None:
    video = videogen.make_cut_video(media_dir / "s3_creds.mp4", [25, 25], size=SMALL)
    bad = _s3_worker_env(broker_url, clean_database_url, tmp_path / "bad", s3_server, s3_url,
                         AWS_SECRET_ACCESS_KEY="wrong-secret", VIDX_MAX_ATTEMPTS="10")
    worker = workers.start(bad, name="bad-creds")
    [vid] = _enqueue(bad, video)

    def retried() -> dict | None:
        for line in worker.log_lines():
            record = json.loads(line) if line.startswith("{") else {}
            if record.get("event") == "job_retry" and record.get("transient"):
                return record
        return None

    record = wait_for(retried, timeout=90, what="a transient retry")
    assert "refused the credentials" in record["reason"] and "\n" not in record["reason"]
    assert "wrong-secret" not in worker.log_text()
    assert S3Storage(parse_s3_url(s3_url), tmp_path / "scratch").visible_keys(vid) == []
    worker.stop()

    good = _s3_worker_env(broker_url, clean_database_url, tmp_path / "good", s3_server, s3_url,
                          VIDX_MAX_ATTEMPTS="10")
    workers.start(good, name="good-creds")
    _wait_done(clean_database_url, [vid], timeout=180)
    _assert_readable_from_s3(db_settings.with_overrides(storage_url=s3_url), clean_database_url, vid, 2)


def test_reembed_and_sheet_read_frames_from_s3(three_scene_video, clip_env, db_settings, s3_url, clean_database_url,
                                               tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from pipeline.clip import reset_model
    from pipeline.core.config import load_settings
    from pipeline.indexer import index_video
    from pipeline.intake.naming import video_id_for
    from worker.cli import cli

    monkeypatch.setenv("VIDX_STORAGE_URL", s3_url)
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "clip_cache"))
    monkeypatch.setenv("CLIP_ENABLED", "false")  # indexed without embeddings: reembed must read the stored frames
    vid = video_id_for(OWNER, str(three_scene_video))
    index_video(three_scene_video, video_id=vid, owner_id=OWNER, settings=load_settings())
    version = _assert_readable_from_s3(load_settings(), clean_database_url, vid, 3)

    monkeypatch.setenv("CLIP_ENABLED", "true")
    reset_model()
    runner = CliRunner()
    made = runner.invoke(cli, ["reembed", "--all", "--local", "--json"], catch_exceptions=False)  # in process, broker or not
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["embedded"] == 3
    with psycopg.connect(clean_database_url, autocommit=True) as conn:
        vectors = conn.execute("SELECT embedding_visual_clip FROM scenes WHERE video_id = %s", (vid,)).fetchall()
    assert all(row[0] is not None for row in vectors)
    storage = open_storage(load_settings())
    sidecar = storage.read_sidecar(vid)  # the sidecar in the bucket follows the rows, same version
    assert all(scene["embedding_visual_clip"] for scene in sidecar["scenes"])
    assert storage.current_version(vid) == version

    out = tmp_path / "sheet.png"
    sheet = runner.invoke(cli, ["sheet", str(vid), "-o", str(out), "--owner", str(OWNER)], catch_exceptions=False)
    assert sheet.exit_code == 0, sheet.output
    assert out.read_bytes().startswith(b"\x89PNG")
    # --sidecar stores the sheet beside the frames, in the bucket's current version
    beside = runner.invoke(cli, ["sheet", str(vid), "--sidecar", "--owner", str(OWNER)], catch_exceptions=False)
    assert beside.exit_code == 0, beside.output
    assert beside.stdout.strip() == f"{s3_url}/{vid}/{version}/contact_sheet.png"
    assert storage.read_frame(beside.stdout.strip()).startswith(b"\x89PNG")


def test_api_serves_frames_from_s3(db_conn, clip_env, three_scene_video, s3_url, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from pipeline.core.config import load_settings
    from tests.fixtures.api import OWNER_A, OWNER_B, make_tenant
    from worker.api import create_app

    monkeypatch.setenv("VIDX_STORAGE_URL", s3_url)
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:9/0")
    settings = load_settings()
    a = make_tenant(db_conn, OWNER_A, three_scene_video, settings)
    b = make_tenant(db_conn, OWNER_B, three_scene_video, settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        path = f"/v1/scenes/{a.scene_ids[1]}/frame.jpg"
        frame = client.get(path, headers=a.headers)
        assert frame.status_code == 200 and frame.content.startswith(JPEG_MAGIC)
        again = client.get(path, headers={**a.headers, "If-None-Match": frame.headers["etag"]})
        assert again.status_code == 304
        assert client.get(path, headers=b.headers).status_code == 404  # another owner's scene
        # the bucket refusing the credentials is a 503 with one line, not a missing frame
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
        from pipeline.storage.s3 import _cached_client

        _cached_client.cache_clear()
        refused = client.get(path, headers=a.headers)
        assert refused.status_code == 503, refused.text
        assert "wrong-secret" not in refused.text


def test_health_checks_the_bucket(broker_url, clean_database_url, s3_url, s3_server, tmp_path) -> None:
    env = _s3_worker_env(broker_url, clean_database_url, tmp_path / "h", s3_server, s3_url)
    proc = run_vidx(env, "health", "--skip-model", "--json", check=False)
    checks = {c["check"]: c for c in json.loads(proc.stdout)}
    assert proc.returncode == 0 and checks["storage"]["ok"], proc.stdout
    assert s3_url in checks["storage"]["detail"]
    bad = {**env, "AWS_SECRET_ACCESS_KEY": "wrong-secret"}
    proc = run_vidx(bad, "health", "--skip-model", check=False)
    storage_line = next(line for line in proc.stdout.splitlines() if line.startswith("storage"))
    assert proc.returncode == 1 and "FAILING" in storage_line and "refused the credentials" in storage_line
    assert "wrong-secret" not in proc.stdout + proc.stderr


def test_an_api_upload_goes_to_the_bucket_and_a_worker_elsewhere_indexes_it(
    broker_url, clean_database_url, db_conn, s3_url, s3_server, media_dir, tmp_path, workers: WorkerPool, monkeypatch
) -> None:
    """The API (its own disk) and the worker (another disk) share only the bucket, the database and the broker."""
    from fastapi.testclient import TestClient

    from pipeline.core.config import load_settings
    from pipeline.storage.uploads import uploads_url
    from pipeline.store.api_keys import create_api_key
    from tests.fixtures.queue import forget_broker_pools
    from worker.api import create_app
    from worker.app import app as celery_app

    video = videogen.make_cut_video(media_dir / "s3_upload.mp4", [20, 20, 20], size=SMALL)
    api_disk, worker_disk = tmp_path / "api-machine", tmp_path / "worker-machine"
    for name, value in {"CELERY_BROKER_URL": broker_url, "VIDX_STORAGE_URL": s3_url, "VIDX_DATA_DIR": str(api_disk),
                        "VIDX_SIDECAR_DIR": str(api_disk / "sidecars"), "CLIP_ENABLED": "false"}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    _, key = create_api_key(db_conn, owner_id=OWNER, name="upload-test")
    workers.start(_s3_worker_env(broker_url, clean_database_url, worker_disk, s3_server, s3_url), name="elsewhere")
    forget_broker_pools(celery_app)
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            response = client.post("/v1/videos/upload?filename=Holiday%20Clip.mp4", content=video.read_bytes(),
                                   headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 202, response.text
            shown = response.json()
            assert shown["source"] == "upload:Holiday_Clip.mp4"  # never the bucket or its prefix
            vid = uuid.UUID(shown["video_id"])
            _wait_done(clean_database_url, [vid], timeout=180)
    finally:
        forget_broker_pools(celery_app)
    # the source is an object under this owner's uploads, the frames are published objects
    store = S3Store(parse_s3_url(s3_url))
    uploaded = store.list(parse_s3_url(uploads_url(parse_s3_url(s3_url), OWNER)).prefix)
    assert [k.rsplit("/", 1)[1] for k in uploaded] == ["Holiday_Clip.mp4"]
    _assert_readable_from_s3(settings, clean_database_url, vid, 3)
    for disk in (api_disk, worker_disk):  # neither machine kept the video or a frame
        assert not [p for p in disk.rglob("*") if p.is_file() and p.suffix in {".mp4", ".jpg", ".json"}]


def test_a_worker_opens_only_the_owners_own_uploads(db_settings, s3_url, media_dir, tmp_path) -> None:
    """A row naming another owner's upload, a published object, another bucket or a ``..`` path is refused unread."""
    from pipeline.core.errors import BadInputError
    from pipeline.intake.sources import open_source
    from pipeline.storage.uploads import upload_source

    settings = db_settings.with_overrides(storage_url=s3_url)
    video = videogen.make_cut_video(media_dir / "s3_own.mp4", [20], size=SMALL)
    store = S3Store(parse_s3_url(s3_url))
    mine = upload_source(store, OWNER, video, "mine.mp4")
    other_owner = uuid.UUID("16161616-1616-1616-1616-161616161616")
    theirs = upload_source(store, other_owner, video, "theirs.mp4")
    store.put(f"vidx/{uuid.uuid4()}/v1/0000.jpg", b"\xff\xd8\xff frame")

    with open_source(mine, settings, owner_id=OWNER) as path:
        assert path.read_bytes() == video.read_bytes() and path.parent.name.startswith("vidx-download-")
    assert not path.exists()  # the working copy is gone with the job
    bucket = parse_s3_url(s3_url).bucket
    hostile = [
        theirs,
        f"{s3_url}/{uuid.uuid4()}/v1/0000.jpg",
        mine.replace(f"s3://{bucket}/", "s3://another-bucket/"),
        f"{s3_url}/uploads/{OWNER}/../{other_owner}/x/theirs.mp4",
        f"{s3_url}/uploads/{OWNER}/mine.mp4",
        f"{s3_url}/uploads/{OWNER}/",
    ]
    for source in hostile:
        with pytest.raises(BadInputError, match="not an uploaded video of this owner") as caught:
            with open_source(source, settings, owner_id=OWNER):
                pass
        assert "\n" not in str(caught.value) and "AWS" not in str(caught.value)
    with pytest.raises(BadInputError, match="not configured"):  # no bucket configured: refused, not guessed
        with open_source(mine, db_settings, owner_id=OWNER):
            pass
    store.delete([parse_s3_url(mine).prefix])
    with pytest.raises(BadInputError, match="upload:mine.mp4: the uploaded video is gone"):
        with open_source(mine, settings, owner_id=OWNER):
            pass


def test_an_unreachable_bucket_refuses_the_upload_with_503_and_keeps_nothing(
    api_world, s3_url, monkeypatch
) -> None:
    from pipeline.storage.s3 import _cached_client

    settings = api_world.settings.with_overrides(storage_url=s3_url, celery_broker_url="redis://127.0.0.1:9/0")
    monkeypatch.setattr("worker.api.routes.videos.ping_broker", lambda _settings: None)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    _cached_client.cache_clear()
    from fastapi.testclient import TestClient

    from worker.api import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.post("/v1/videos/upload?filename=v.mp4", content=api_world.video.read_bytes(),
                               headers=api_world.a.headers)
    assert response.status_code == 503, response.text
    assert "unreachable" in response.json()["detail"] and "\n" not in response.json()["detail"]
    uploads = settings.data_dir / "uploads"
    assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))
    _cached_client.cache_clear()


def test_half_done_source_uploads_are_aborted_only_once_stale(db_settings, s3_url) -> None:
    """A killed API process leaves a multipart upload (billed, never visible); a live one is left alone."""
    from pipeline.storage.uploads import abort_stale_multipart

    storage = open_storage(db_settings.with_overrides(storage_url=s3_url))
    store = S3Store(parse_s3_url(s3_url))
    store.client.create_multipart_upload(Bucket=store.location.bucket, Key=f"vidx/uploads/{OWNER}/abc/v.mp4")

    def pending() -> int:
        return len(store.client.list_multipart_uploads(Bucket=store.location.bucket).get("Uploads", ()))

    # moto dates every multipart upload 2010-11-10, so "recent" is expressed by the cut-off instead:
    # with a cut-off at 1970 the upload is younger than it and survives, with the default it is stale.
    assert abort_stale_multipart(store, older_than_s=time.time()) == 0 and pending() == 1
    assert storage.abort_stale_uploads() == 1 and pending() == 0
