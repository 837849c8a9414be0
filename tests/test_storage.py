"""The object store alone, against a real S3-compatible server on loopback (tests/fixtures/s3.py)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from pipeline.core.config import load_settings
from pipeline.core.errors import ConfigError, TransientError
from pipeline.core.locations import parse_s3_url
from pipeline.storage import open_staging, open_store, read_frame, read_sidecar
from pipeline.storage.s3 import S3Store, _cached_client
from pipeline.storage.versions import ObjectStaging, current_version, sweep_video, visible_keys
from tests.fixtures.queue import free_port


def _settings(tmp_path: Path, s3_url: str):
    return load_settings({"VIDX_DATA_DIR": str(tmp_path / "data"), "VIDX_STORAGE_URL": s3_url})


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
    store = open_store(_settings(tmp_path, s3_url))
    assert isinstance(store, S3Store)
    key = store.location.key("a", "b.bin")
    store.put(key, b"\x00payload")
    assert store.exists(key) and store.get(key) == b"\x00payload"
    assert store.list(store.location.key("a") + "/") == [key]
    store.delete([key, store.location.key("never-was")])
    assert not store.exists(key)
    with pytest.raises(FileNotFoundError):
        store.get(key)


def test_publish_then_current_then_old_version_removed(s3_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, s3_url)
    video = uuid.uuid4()
    with open_staging(settings, video) as first:
        assert isinstance(first, ObjectStaging)
        _stage(first, marker="one")
        first.publish()
        first.mark_referenced()
        first.make_current()
    store = first.store
    assert read_sidecar(settings, video)["marker"] == "one"
    assert read_frame(first.final_path("scene_0001.jpg")) == b"one-jpeg-1"

    with open_staging(settings, video) as second:
        _stage(second, frames=2, marker="two")
        second.publish()
        # published, not yet current: readers still see the old complete set
        assert read_sidecar(settings, video)["marker"] == "one"
        assert read_frame(first.final_path("scene_0002.jpg")) == b"one-jpeg-2"
        second.mark_referenced()
        second.make_current()
    assert current_version(store, video) == second.version
    assert read_sidecar(settings, video)["marker"] == "two"
    assert sorted(k.rsplit("/", 1)[1] for k in visible_keys(store, video)) == [
        "scene_0000.jpg", "scene_0001.jpg", "sidecar.json"]
    # the old version is gone; only the new one and the pointer remain
    assert all(second.version in k or k.endswith("current.json") for k in store.list(s3_url.split("/", 3)[3]))
    with pytest.raises(FileNotFoundError):
        read_frame(first.final_path("scene_0000.jpg"))
    assert not list((tmp_path / "data" / "sidecars").glob(".staging-*"))  # local scratch removed


def test_failed_run_leaves_nothing(s3_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, s3_url)
    video = uuid.uuid4()
    with pytest.raises(RuntimeError), open_staging(settings, video) as staging:
        _stage(staging)
        staging.publish()
        raise RuntimeError("the database write failed")
    store = staging.store
    assert store.list(store.location.key(str(video))) == []
    with pytest.raises(FileNotFoundError):
        read_sidecar(settings, video)


def test_referenced_version_survives_a_failure_after_the_rows_commit(s3_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, s3_url)
    video = uuid.uuid4()
    with pytest.raises(RuntimeError), open_staging(settings, video) as staging:
        _stage(staging)
        staging.publish()
        staging.mark_referenced()
        raise RuntimeError("killed before the pointer moved")
    assert read_frame(staging.final_path("scene_0000.jpg")) == b"v-jpeg-0"
    # the sweep repairs the pointer to what the database references and keeps it
    assert sweep_video(staging.store, video, staging.version) == []
    assert current_version(staging.store, video) == staging.version
    assert read_sidecar(settings, video)["marker"] == "v"
    staging.store.delete([staging.store.location.key(str(video), "current.json")])
    assert sweep_video(staging.store, video, None) != []
    assert staging.store.list(staging.store.location.key(str(video))) == []


def test_sweep_removes_abandoned_versions_and_multipart_uploads(s3_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, s3_url)
    video = uuid.uuid4()
    with open_staging(settings, video) as good:
        _stage(good, marker="good")
        good.publish()
        good.make_current()
    store = good.store
    abandoned = store.location.key(str(video), "0dead", "scene_0000.jpg")
    store.put(abandoned, b"half")  # a killed run's upload: never pointed at
    upload_key = store.location.key(str(video), "0dead", "big.bin")
    store.client.create_multipart_upload(Bucket=store.location.bucket, Key=upload_key)

    removed = sweep_video(store, video, good.version)
    assert removed == [abandoned]
    assert store.client.list_multipart_uploads(Bucket=store.location.bucket).get("Uploads", []) == []
    assert read_sidecar(settings, video)["marker"] == "good"
    assert len(visible_keys(store, video)) == 4


def test_bad_credentials_are_one_transient_line(s3_url: str, tmp_path: Path, monkeypatch) -> None:
    settings = _settings(tmp_path, s3_url)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    _cached_client.cache_clear()
    staging = open_staging(settings, uuid.uuid4())
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
        read_frame(f"{s3_url}/x/y/scene_0000.jpg")


def test_unreachable_endpoint_is_transient(s3_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    _cached_client.cache_clear()
    with pytest.raises(TransientError, match=r"unreachable: EndpointConnectionError") as info:
        read_frame(f"{s3_url}/x/y/scene_0000.jpg")
    assert "\n" not in str(info.value)


def test_missing_bucket_is_transient(s3_url: str) -> None:
    with pytest.raises(TransientError, match="bucket does not exist"):
        read_frame("s3://vidx-no-such-bucket/v/1/scene_0000.jpg")


def test_local_store_is_the_default(tmp_path: Path) -> None:
    settings = load_settings({"VIDX_DATA_DIR": str(tmp_path)})
    store = open_store(settings)
    store.put("v/scene_0000.jpg", b"jpeg")
    assert store.list("v/") == ["v/scene_0000.jpg"] and store.get("v/scene_0000.jpg") == b"jpeg"
    assert read_frame(settings.sidecar_dir / "v" / "scene_0000.jpg") == b"jpeg"
    with pytest.raises(ValueError):
        store.get("../escape")
    video = uuid.uuid4()
    with open_staging(settings, video) as staging:
        staging.write_sidecar({"schema_version": 1})
        staging.publish()
        staging.make_current()
    assert read_sidecar(settings, video) == json.loads((settings.sidecar_dir / str(video) / "sidecar.json").read_text())
