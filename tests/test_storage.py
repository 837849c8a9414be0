"""The object store alone, against a real S3-compatible server on loopback (tests/fixtures/s3.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from pipeline.core.config import load_settings
from pipeline.core.errors import BadInputError, ConfigError, TransientError
from pipeline.core.locations import parse_s3_url
from pipeline.storage import VideoStorage, open_storage
from pipeline.storage.bucket import S3Staging, S3Storage
from pipeline.storage.local import LocalStorage
from pipeline.storage.s3 import _cached_client
from tests.fixtures.queue import free_port


def _settings(tmp_path: Path, s3_url: str):
    return load_settings({"VIDX_DATA_DIR": str(tmp_path / "data"), "VIDX_STORAGE_URL": s3_url})


def _bucket(tmp_path: Path, s3_url: str) -> S3Storage:
    storage = open_storage(_settings(tmp_path, s3_url))
    assert isinstance(storage, S3Storage)
    return storage


def _stage(staging, frames: int = 3, marker: str = "v") -> None:
    for i in range(frames):
        (staging.path / f"scene_{i:04d}.jpg").write_bytes(f"{marker}-jpeg-{i}".encode())
    staging.write_sidecar({"schema_version": 1, "marker": marker})


def test_settings_accept_s3_urls_and_name_mistakes() -> None:
    settings = load_settings({"VIDX_STORAGE_URL": "s3://my-bucket/some/prefix/"})
    assert settings.storage_url == "s3://my-bucket/some/prefix"
    assert parse_s3_url(settings.storage_url).prefix == "some/prefix"
    for bad in ("http://bucket/x", "s3://UPPER/x", "s3://key:secret@bucket/x", "s3://"):
        with pytest.raises(ConfigError, match="VIDX_STORAGE_URL"):
            load_settings({"VIDX_STORAGE_URL": bad})
    # the contract's spelling: VIDX_SIDECAR_DIR=s3://... is the same as VIDX_STORAGE_URL (local staging at the default)
    aliased = load_settings({"VIDX_SIDECAR_DIR": "s3://bucket/x", "VIDX_DATA_DIR": "/srv/vidx"})
    assert aliased.storage_url == "s3://bucket/x" and aliased.sidecar_dir == Path("/srv/vidx/sidecars")
    with pytest.raises(ConfigError, match="VIDX_SIDECAR_DIR.*VIDX_STORAGE_URL"):
        load_settings({"VIDX_SIDECAR_DIR": "s3://bucket/x", "VIDX_STORAGE_URL": "s3://other/y"})
    with pytest.raises(ConfigError, match="VIDX_SIDECAR_DIR"):
        load_settings({"VIDX_SIDECAR_DIR": "http://bucket/x"})


def test_put_get_exists_list_delete(s3_url: str, tmp_path: Path) -> None:
    store = _bucket(tmp_path, s3_url).store
    key = store.location.key("a", "b.bin")
    store.put(key, b"\x00payload")
    assert store.exists(key) and store.get(key) == b"\x00payload"
    assert store.list(store.location.key("a") + "/") == [key]
    store.delete([key, store.location.key("never-was")])
    assert not store.exists(key)
    with pytest.raises(FileNotFoundError):
        store.get(key)


def test_publish_then_current_then_old_version_removed(s3_url: str, tmp_path: Path) -> None:
    storage = _bucket(tmp_path, s3_url)
    video = uuid.uuid4()
    with storage.stage(video) as first:
        assert isinstance(first, S3Staging)
        _stage(first, marker="one")
        first.publish()
        first.mark_referenced()
        first.make_current()
    store = storage.store
    assert storage.read_sidecar(video)["marker"] == "one"
    assert storage.read_frame(first.final_path("scene_0001.jpg")) == b"one-jpeg-1"

    with storage.stage(video) as second:
        _stage(second, frames=2, marker="two")
        second.publish()
        # published, not yet current: readers still see the old complete set
        assert storage.read_sidecar(video)["marker"] == "one"
        assert storage.read_frame(first.final_path("scene_0002.jpg")) == b"one-jpeg-2"
        second.mark_referenced()
        second.make_current()
    assert storage.current_version(video) == second.version
    assert storage.read_sidecar(video)["marker"] == "two"
    assert sorted(k.rsplit("/", 1)[1] for k in storage.visible_keys(video)) == [
        "scene_0000.jpg", "scene_0001.jpg", "sidecar.json"]
    # the old version is gone; only the new one and the pointer remain
    assert all(second.version in k or k.endswith("current.json") for k in store.list(s3_url.split("/", 3)[3]))
    with pytest.raises(FileNotFoundError):
        storage.read_frame(first.final_path("scene_0000.jpg"))
    assert not list((tmp_path / "data" / "sidecars").glob(".staging-*"))  # local scratch removed


def test_failed_run_leaves_nothing(s3_url: str, tmp_path: Path) -> None:
    storage = _bucket(tmp_path, s3_url)
    video = uuid.uuid4()
    with pytest.raises(RuntimeError), storage.stage(video) as staging:
        _stage(staging)
        staging.publish()
        raise RuntimeError("the database write failed")
    store = storage.store
    assert store.list(store.location.key(str(video))) == []
    with pytest.raises(FileNotFoundError):
        storage.read_sidecar(video)


def test_referenced_version_survives_a_failure_after_the_rows_commit(s3_url: str, tmp_path: Path) -> None:
    storage = _bucket(tmp_path, s3_url)
    video = uuid.uuid4()
    with pytest.raises(RuntimeError), storage.stage(video) as staging:
        _stage(staging)
        staging.publish()
        staging.mark_referenced()
        raise RuntimeError("killed before the pointer moved")
    assert storage.read_frame(staging.final_path("scene_0000.jpg")) == b"v-jpeg-0"
    # the sweep repairs the pointer to what the database references and keeps it
    assert storage.sweep(video, staging.version) == []
    assert storage.current_version(video) == staging.version
    assert storage.read_sidecar(video)["marker"] == "v"
    storage.store.delete([storage.store.location.key(str(video), "current.json")])
    assert storage.sweep(video, None) != []
    assert storage.store.list(storage.store.location.key(str(video))) == []


def test_sweep_removes_abandoned_versions_and_multipart_uploads(s3_url: str, tmp_path: Path) -> None:
    storage = _bucket(tmp_path, s3_url)
    video = uuid.uuid4()
    with storage.stage(video) as good:
        _stage(good, marker="good")
        good.publish()
        good.make_current()
    store = storage.store
    abandoned = store.location.key(str(video), "0dead", "scene_0000.jpg")
    store.put(abandoned, b"half")  # a killed run's upload: never pointed at
    upload_key = store.location.key(str(video), "0dead", "big.bin")
    store.client.create_multipart_upload(Bucket=store.location.bucket, Key=upload_key)

    removed = storage.sweep(video, good.version)
    assert removed == [abandoned]
    assert store.client.list_multipart_uploads(Bucket=store.location.bucket).get("Uploads", []) == []
    assert storage.read_sidecar(video)["marker"] == "good"
    assert len(storage.visible_keys(video)) == 4


def test_bad_credentials_are_one_transient_line(s3_url: str, tmp_path: Path, monkeypatch) -> None:
    storage = _bucket(tmp_path, s3_url)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    _cached_client.cache_clear()
    staging = storage.stage(uuid.uuid4())
    _stage(staging)
    with pytest.raises(TransientError) as info:
        staging.publish()
    message = str(info.value)
    assert "refused the credentials" in message and "\n" not in message
    assert "not-the-secret" not in message
    staging.discard()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY")
    _cached_client.cache_clear()
    with pytest.raises(TransientError, match="refused the credentials"):
        _bucket(tmp_path, s3_url).read_frame(f"{s3_url}/x/y/scene_0000.jpg")


def test_unreachable_endpoint_is_transient(s3_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    _cached_client.cache_clear()
    with pytest.raises(TransientError, match=r"unreachable: EndpointConnectionError") as info:
        _bucket(tmp_path, s3_url).read_frame(f"{s3_url}/x/y/scene_0000.jpg")
    assert "\n" not in str(info.value)


def test_missing_bucket_is_transient(s3_url: str, tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="bucket does not exist"):
        _bucket(tmp_path, "s3://vidx-no-such-bucket").read_frame("s3://vidx-no-such-bucket/v/1/scene_0000.jpg")


def test_open_storage_picks_the_backend_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings({"VIDX_DATA_DIR": str(tmp_path)})
    local = open_storage(settings)
    assert isinstance(local, LocalStorage) and local.probe() == str(settings.sidecar_dir)
    bucket = open_storage(settings.with_overrides(storage_url="s3://some-bucket/p"))
    assert isinstance(bucket, S3Storage) and bucket.scratch == settings.sidecar_dir  # nothing contacted yet


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> VideoStorage:
    """Each backend, opened the one way callers open it."""
    if request.param == "local":
        return open_storage(load_settings({"VIDX_DATA_DIR": str(tmp_path / "data")}))
    return _bucket(tmp_path, request.getfixturevalue("s3_url"))


def test_every_backend_keeps_the_contract(storage: VideoStorage) -> None:
    """The same calls and the same answers, whatever the backend: what call sites rely on."""
    video = uuid.uuid4()
    with pytest.raises(FileNotFoundError):
        storage.read_sidecar(video)
    assert storage.current_version(video) is None
    with storage.stage(video) as first:
        _stage(first, marker="one")
        first.publish()
        first.mark_referenced()
        first.make_current()
    frame = str(first.final_path("scene_0001.jpg"))
    assert storage.contains(frame) and storage.read_frame(frame) == b"one-jpeg-1"
    assert storage.current_version(video) == first.version and storage.read_sidecar(video)["marker"] == "one"

    # a second run, published but not current: readers still see the first; then the first is gone
    with storage.stage(video) as second:
        _stage(second, frames=1, marker="two")
        second.publish()
        assert storage.read_sidecar(video)["marker"] == "one" and storage.read_frame(frame) == b"one-jpeg-1"
        second.mark_referenced()
        second.make_current()
    assert storage.read_sidecar(video)["marker"] == "two"
    with pytest.raises(FileNotFoundError):
        storage.read_frame(frame)

    # files derived later join the version; tools get a local copy of it
    new_frame = str(second.final_path("scene_0000.jpg"))
    sheet = storage.write_beside(new_frame, "contact_sheet.png", b"png")
    assert storage.read_frame(sheet) == b"png"
    with storage.working_copy(new_frame) as directory:
        assert sorted(p.name for p in directory.iterdir()) == ["contact_sheet.png", "scene_0000.jpg", "sidecar.json"]

    # nothing outside the store is read, however the location is spelled
    outside = [frame.replace(str(video), f"{video}/../../.."), "/etc/passwd", "s3://another-bucket/x/scene_0000.jpg"]
    for location in outside:
        assert not storage.contains(location)
        with pytest.raises(FileNotFoundError):
            storage.read_frame(location)


def test_every_backend_sweeps_what_a_killed_run_left(storage: VideoStorage) -> None:
    video = uuid.uuid4()
    with storage.stage(video) as good:
        _stage(good, marker="good")
        good.publish()
        good.make_current()
    killed = storage.stage(video)  # no context manager: a SIGKILL runs no clean-up
    _stage(killed, marker="killed")
    killed.publish()
    assert video in storage.leftovers()  # how a starting worker finds it
    assert storage.sweep(video, good.version) != []
    assert storage.current_version(video) == good.version and storage.read_sidecar(video)["marker"] == "good"
    assert storage.read_frame(str(good.final_path("scene_0000.jpg"))) == b"good-jpeg-0"
    assert storage.sweep(video, good.version) == []  # nothing left to remove


def test_local_storage_keeps_uploads_in_place(tmp_path: Path) -> None:
    storage = open_storage(load_settings({"VIDX_DATA_DIR": str(tmp_path)}))
    upload = tmp_path / "uploads" / "clip.mp4"
    assert storage.keep_upload(uuid.uuid4(), upload) == str(upload)
    assert not storage.is_upload(str(upload)) and storage.abort_stale_uploads() == 0
    with pytest.raises(BadInputError, match="VIDX_STORAGE_URL"):
        storage.fetch_upload("s3://bucket/uploads/a/b/c.mp4", tmp_path, None)
