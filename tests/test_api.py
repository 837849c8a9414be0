"""The HTTP API on the real app and the real database: auth, tenancy on every endpoint, hostile input."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.api import ApiWorld
from tests.fixtures.queue import forget_broker_pools
from worker.api import create_app
from worker.api.ratelimit import RateLimiter

JPEG_MAGIC = b"\xff\xd8"


def assert_error(response, status: int) -> dict:
    """One JSON error with the expected status, never a traceback."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"], body
    assert "Traceback" not in response.text
    return body


def owned_paths(video_id, scene_id) -> list[tuple[str, str]]:
    """Every endpoint that reads a video or a scene by id."""
    return [
        ("GET", f"/v1/videos/{video_id}"),
        ("GET", f"/v1/videos/{video_id}/scenes"),
        ("GET", f"/v1/videos/{video_id}/sheet.png"),
        ("GET", f"/v1/scenes/{scene_id}"),
        ("GET", f"/v1/scenes/{scene_id}/frame.jpg"),
        ("GET", f"/v1/scenes/{scene_id}/similar"),
    ]


def all_keyed_requests(world: ApiWorld) -> list[tuple[str, str, dict]]:
    a = world.a
    reads = [(m, p, {}) for m, p in owned_paths(a.video_id, a.scene_ids[0])]
    return [
        *reads,
        ("GET", "/v1/videos", {}),
        ("POST", "/v1/videos", {"json": {"url": "https://example.com/v.mp4"}}),
        ("POST", "/v1/videos/upload", {"content": b"x"}),
        ("POST", "/v1/search/text", {"json": {"text": "a cat"}}),
        ("POST", "/v1/search/image", {"content": b"x"}),
    ]


def test_every_endpoint_refuses_a_missing_bad_or_malformed_key(api_world: ApiWorld) -> None:
    client = api_world.client
    client.app.state.vidx.auth_failures = RateLimiter(10**6, 10**6)  # this test fails auth on purpose, often
    for method, path, kwargs in all_keyed_requests(api_world):
        for headers in ({}, {"Authorization": "Bearer vidx_not-a-real-key"}, {"Authorization": f"Basic {api_world.a.key}"},
                        {"Authorization": "Bearer " + "x" * 5000}):
            response = client.request(method, path, headers=headers, **kwargs)
            body = assert_error(response, 401)
            assert response.headers["www-authenticate"] == "Bearer", (method, path)
            assert api_world.a.key not in response.text
            assert body["error"] == "unauthorized"


def test_a_flood_of_bad_keys_is_slowed_down(api_world: ApiWorld) -> None:
    statuses = [api_world.client.get("/v1/videos", headers={"Authorization": f"Bearer vidx_guess{i}"}).status_code
                for i in range(15)]
    assert statuses[0] == 401 and statuses[-1] == 429
    assert api_world.client.get("/v1/videos", headers=api_world.a.headers).status_code == 200  # real keys still work


def test_rate_limiter_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    assert limiter.allow("k") == 0 and limiter.allow("k") == 0
    assert limiter.allow("k") == pytest.approx(1.0)
    now[0] += 1.0
    assert limiter.allow("k") == 0 and limiter.allow("other") == 0


def test_valid_keys_are_remembered_only_briefly() -> None:
    from pipeline.store.api_keys import KeyOwner
    from worker.api.keycache import KeyCache

    now = [0.0]
    cache = KeyCache(ttl_s=2.0, clock=lambda: now[0])
    owner = KeyOwner(uuid.uuid4(), uuid.uuid4(), revoked=False)
    cache.put("vidx_k", owner)
    assert cache.get("vidx_k") == owner and cache.get("vidx_other") is None
    now[0] = 2.0
    assert cache.get("vidx_k") is None


def test_a_revoked_key_is_forbidden_everywhere(api_world: ApiWorld, db_conn) -> None:
    from pipeline.store.api_keys import revoke_api_key

    assert api_world.client.get("/v1/videos", headers=api_world.a.headers).status_code == 200
    assert revoke_api_key(db_conn, api_world.a.key_id)
    api_world.client.app.state.vidx.keys.clear()  # as KEY_CACHE_TTL_S after the revocation
    for method, path, kwargs in all_keyed_requests(api_world):
        response = api_world.client.request(method, path, headers=api_world.a.headers, **kwargs)
        assert assert_error(response, 403)["detail"] == "this API key was revoked", (method, path)


def test_another_owners_ids_read_exactly_like_missing_ones(api_world: ApiWorld) -> None:
    client, a, b = api_world.client, api_world.a, api_world.b
    theirs = owned_paths(b.video_id, b.scene_ids[0])
    missing = owned_paths(uuid.uuid4(), uuid.uuid4())
    for (method, their_path), (_, missing_path) in zip(theirs, missing, strict=True):
        their = client.request(method, their_path, headers=a.headers)
        none = client.request(method, missing_path, headers=a.headers)
        assert_error(their, 404)
        assert their.json() == none.json(), their_path
    # B's own key reaches them (so the 404s above are about ownership, not broken ids).
    assert client.get(f"/v1/videos/{b.video_id}", headers=b.headers).status_code == 200
    assert client.get(f"/v1/scenes/{b.scene_ids[0]}/frame.jpg", headers=b.headers).status_code == 200


def test_searches_and_listings_never_return_another_owners_rows(api_world: ApiWorld) -> None:
    client, a, b = api_world.client, api_world.a, api_world.b
    listed = client.get("/v1/videos", headers=a.headers).json()["videos"]
    assert [v["video_id"] for v in listed] == [str(a.video_id)]
    text = client.post("/v1/search/text", headers=a.headers, json={"text": "colour bars", "threshold": -1, "limit": 100})
    similar = client.get(f"/v1/scenes/{a.scene_ids[0]}/similar?threshold=-1&limit=100", headers=a.headers)
    frame = client.get(f"/v1/scenes/{b.scene_ids[0]}/frame.jpg", headers=b.headers).content
    image = client.post("/v1/search/image?threshold=-1&limit=100", headers=a.headers, content=frame)
    for response in (text, similar, image):
        assert response.status_code == 200, response.text
        found = {r["scene_id"] for r in response.json()["results"]}
        assert found and found <= {str(s) for s in a.scene_ids}
        assert not found & {str(s) for s in b.scene_ids}


def test_ids_that_are_not_ids_are_not_found_never_files(api_world: ApiWorld) -> None:
    client, a = api_world.client, api_world.a
    for path in (
        "/v1/scenes/..%2F..%2F..%2Fetc%2Fpasswd/frame.jpg",
        "/v1/scenes/%2Fetc%2Fpasswd/frame.jpg",
        "/v1/videos/..%2Fsidecars/scenes",
        "/v1/videos/not-a-uuid",
        "/v1/scenes/../../etc/passwd",
    ):
        response = client.get(path, headers=a.headers)
        assert_error(response, 404)
        assert "root:" not in response.text


def test_text_search_returns_the_owners_scenes_with_thumbnails(api_world: ApiWorld) -> None:
    client, a = api_world.client, api_world.a
    response = client.post("/v1/search/text", headers=a.headers, json={"text": "a test pattern", "threshold": -1, "limit": 2})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 2
    first = results[0]
    assert first["video_name"] == api_world.video.name
    assert first["timecode"] and -1 <= first["similarity"] <= 1
    assert first["frame_url"] == f"/v1/scenes/{first['scene_id']}/frame.jpg"
    assert "frame_path" not in first and str(api_world.settings.sidecar_dir) not in response.text
    labelled = client.post("/v1/search/text", headers=a.headers, json={"text": "x", "threshold": -1, "label": "no-such-label"})
    assert labelled.json()["results"] == []


def test_a_frame_is_a_jpeg_with_caching_headers(api_world: ApiWorld) -> None:
    client, a = api_world.client, api_world.a
    path = f"/v1/scenes/{a.scene_ids[1]}/frame.jpg"
    response = client.get(path, headers=a.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg" and response.content.startswith(JPEG_MAGIC)
    assert "max-age" in response.headers["cache-control"] and "private" in response.headers["cache-control"]
    etag = response.headers["etag"]
    again = client.get(path, headers={**a.headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


def test_image_search_finds_the_scene_the_image_came_from(api_world: ApiWorld) -> None:
    client, a = api_world.client, api_world.a
    frame = client.get(f"/v1/scenes/{a.scene_ids[2]}/frame.jpg", headers=a.headers).content
    response = client.post("/v1/search/image?threshold=-1&limit=3", headers=a.headers, content=frame)
    assert response.status_code == 200, response.text
    best = response.json()["results"][0]
    assert best["scene_id"] == str(a.scene_ids[2]) and best["similarity"] > 0.99


def test_similar_scenes_exclude_the_scene_itself(api_world: ApiWorld) -> None:
    client, a = api_world.client, api_world.a
    response = client.get(f"/v1/scenes/{a.scene_ids[0]}/similar?threshold=-1&limit=10", headers=a.headers)
    ids = [r["scene_id"] for r in response.json()["results"]]
    assert str(a.scene_ids[0]) not in ids and len(ids) == len(a.scene_ids) - 1


def test_video_status_and_scenes(api_world: ApiWorld) -> None:
    client, a = api_world.client, api_world.a
    video = client.get(f"/v1/videos/{a.video_id}", headers=a.headers).json()
    assert video["status"] == "done" and video["progress"] == 1.0 and video["scene_count"] == 3
    assert video["source"] == api_world.video.name  # a local path is shown by name only
    scenes = client.get(f"/v1/videos/{a.video_id}/scenes", headers=a.headers).json()["scenes"]
    assert [s["index"] for s in scenes] == [0, 1, 2]


def test_bad_query_images_are_refused_clearly(api_world: ApiWorld, tmp_path: Path) -> None:
    client, a = api_world.client, api_world.a
    frame = client.get(f"/v1/scenes/{a.scene_ids[0]}/frame.jpg", headers=a.headers).content
    cases = {
        b"this is plain text, not an image": 422,
        frame[: len(frame) // 2]: 422,  # truncated JPEG
        b"": 422,
        b"GIF89a" + b"\x00" * 20: 422,
    }
    for body, status in cases.items():
        assert_error(client.post("/v1/search/image", headers=a.headers, content=body), status)
    assert not any((api_world.settings.data_dir / "tmp").iterdir())  # every refused upload was removed


def test_oversized_uploads_are_refused_while_streaming(api_world: ApiWorld) -> None:
    settings = api_world.settings.with_overrides(api_image_max_mb=1, api_upload_max_mb=1)
    two_mb = b"\x00" * (2 * 1024 * 1024)

    def chunks():
        for _ in range(32):
            yield b"\x00" * (64 * 1024)

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        headers = api_world.a.headers
        assert_error(client.post("/v1/search/image", headers=headers, content=two_mb), 413)
        assert_error(client.post("/v1/search/image", headers=headers, content=chunks()), 413)  # no Content-Length
    assert not any((settings.data_dir / "tmp").iterdir())


def test_invalid_parameters_are_json_422(api_world: ApiWorld) -> None:
    client, a = api_world.client, api_world.a
    for response in (
        client.post("/v1/search/text", headers=a.headers, json={"text": ""}),
        client.post("/v1/search/text", headers=a.headers, json={"text": "   "}),
        client.post("/v1/search/text", headers=a.headers, json={"text": "x", "threshold": 2}),
        client.post("/v1/search/text", headers=a.headers, json={"text": "x", "limit": 0}),
        client.post("/v1/search/text", headers={**a.headers, "Content-Type": "application/json"}, content=b"{not json"),
        client.get(f"/v1/scenes/{a.scene_ids[0]}/similar?limit=100000", headers=a.headers),
        client.post("/v1/videos", headers=a.headers, json={"url": "x" * 5000}),
    ):
        assert_error(response, 422)


def test_json_bodies_are_capped_before_parsing(api_world: ApiWorld) -> None:
    client, a = api_world.client, api_world.a
    huge = b'{"text": "' + b"a" * (1 << 20) + b'"}'

    def chunked():
        yield huge[: len(huge) // 2]
        yield huge[len(huge) // 2 :]

    for make_body in (lambda: huge, chunked):  # declared length, and chunked with none
        for path in ("/v1/search/text", "/v1/videos"):
            response = client.post(path, headers={**a.headers, "Content-Type": "application/json"}, content=make_body())
            assert_error(response, 413)
    # Without a key too: nothing is parsed first.
    assert_error(client.post("/v1/search/text", headers={"Content-Type": "application/json"}, content=huge), 413)


def test_unknown_routes_and_methods_are_json(api_world: ApiWorld) -> None:
    assert_error(api_world.client.get("/v1/nothing-here"), 404)
    assert_error(api_world.client.delete("/v1/videos"), 405)


def test_rate_limit_per_key(api_world: ApiWorld) -> None:
    settings = api_world.settings.with_overrides(api_rate_burst=3, api_rate_per_minute=1)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for _ in range(3):
            assert client.get("/v1/videos", headers=api_world.a.headers).status_code == 200
        limited = client.get("/v1/videos", headers=api_world.a.headers)
        assert_error(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        assert client.get("/v1/videos", headers=api_world.b.headers).status_code == 200  # B has its own bucket


def test_enqueue_without_a_broker_is_503_and_keeps_nothing(api_world: ApiWorld) -> None:
    client, a = api_world.client, api_world.a
    body = assert_error(client.post("/v1/videos", headers=a.headers, json={"url": "https://example.com/clip.mp4"}), 503)
    assert "broker" in body["detail"]
    assert_error(client.post("/v1/videos/upload?filename=x.mp4", headers=a.headers, content=api_world.video.read_bytes()), 503)
    uploads = api_world.settings.data_dir / "uploads"
    assert not uploads.exists() or not any(uploads.rglob("*.mp4"))


@pytest.fixture
def queued_world(api_world: ApiWorld, broker_url: str, monkeypatch: pytest.MonkeyPatch):
    """api_world with a real Redis broker (no worker: tasks stay in the queue).

    Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    """
    from worker.app import app as celery_app

    monkeypatch.setenv("CELERY_BROKER_URL", broker_url)
    forget_broker_pools(celery_app)
    api_world.settings = api_world.settings.with_overrides(celery_broker_url=broker_url)
    yield api_world
    forget_broker_pools(celery_app)


def _queued_messages(broker_url: str) -> int:
    import redis

    from worker.app import QUEUE

    client = redis.Redis.from_url(broker_url)
    try:
        return int(client.llen(QUEUE))
    finally:
        client.close()


def test_enqueue_by_url_and_upload(queued_world: ApiWorld, broker_url: str) -> None:
    a = queued_world.a
    with TestClient(create_app(queued_world.settings), raise_server_exceptions=False) as client:
        by_url = client.post("/v1/videos", headers=a.headers, json={"url": "https://user:pw@example.com/v.mp4?token=s3cret"})
        assert by_url.status_code == 202, by_url.text
        assert by_url.json()["status"] == "queued"
        assert by_url.json()["source"] == "https://example.com/v.mp4"  # no credentials shown back
        upload = client.post("/v1/videos/upload?filename=../../etc/My%20Clip.mp4", headers=a.headers,
                             content=queued_world.video.read_bytes())
        assert upload.status_code == 202, upload.text
        video = upload.json()
        assert video["status"] == "queued" and video["source"] == "upload:My_Clip.mp4"
        assert _queued_messages(broker_url) == 2
        stored = list((queued_world.settings.data_dir / "uploads" / str(a.owner_id)).rglob("*.mp4"))
        assert [p.name for p in stored] == ["My_Clip.mp4"]
        # The owner sees it; the other tenant does not.
        assert client.get(f"/v1/videos/{video['video_id']}", headers=a.headers).status_code == 200
        assert_error(client.get(f"/v1/videos/{video['video_id']}", headers=queued_world.b.headers), 404)


def test_bad_sources_are_refused_before_anything_is_queued(queued_world: ApiWorld, broker_url: str, tmp_path: Path) -> None:
    from tests.badmedia import make_truncated

    a = queued_world.a
    truncated = make_truncated(tmp_path / "cut.mp4").read_bytes()
    settings = queued_world.settings.with_overrides(api_upload_max_mb=1)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for url in ("file:///etc/passwd", "ftp://example.com/v.mp4", "/etc/passwd", "gopher://x"):
            assert_error(client.post("/v1/videos", headers=a.headers, json={"url": url}), 422)
        assert_error(client.post("/v1/videos/upload", headers=a.headers, content=b"not a video at all" * 100), 422)
        assert_error(client.post("/v1/videos/upload", headers=a.headers, content=truncated), 422)
        assert_error(client.post("/v1/videos/upload", headers=a.headers, content=b""), 422)
        assert_error(client.post("/v1/videos/upload", headers=a.headers, content=io.BytesIO(b"\0" * (2 << 20)).read()), 413)
        listed = client.get("/v1/videos", headers=a.headers).json()["videos"]
    assert [v["video_id"] for v in listed] == [str(a.video_id)]  # nothing new
    assert _queued_messages(broker_url) == 0
    assert not list((settings.data_dir / "uploads").rglob("*.*"))


def test_contact_sheet_of_the_owners_video(api_world: ApiWorld) -> None:
    pytest.importorskip("pipeline.frames.sheet")
    response = api_world.client.get(f"/v1/videos/{api_world.a.video_id}/sheet.png", headers=api_world.a.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png" and response.content.startswith(b"\x89PNG")


def test_health_live_metrics_and_docs(api_world: ApiWorld) -> None:
    client = api_world.client
    assert client.get("/v1/live").json() == {"status": "ok"}
    health = client.get("/v1/health")
    assert health.status_code == 503  # no broker in this test
    body = health.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["ok"] and body["checks"]["model"]["ok"]
    assert not body["checks"]["broker"]["ok"] and "127.0.0.1" not in health.text
    client.post("/v1/search/text", headers=api_world.a.headers, json={"text": "x", "threshold": -1})
    metrics = client.get("/metrics").text
    for name in ("vidx_http_requests_total", "vidx_http_request_duration_seconds_bucket", "vidx_search_duration_seconds_count",
                 "vidx_embedding_coverage_ratio", "vidx_embedding_failure_ratio", "vidx_embedding_timeout_ratio"):
        assert name in metrics, name
    assert 'route="/v1/search/text"' in metrics
    assert client.get("/docs").status_code == 200
    assert "/v1/search/image" in client.get("/openapi.json").json()["paths"]


def test_health_is_ok_when_everything_is_up(queued_world: ApiWorld) -> None:
    with TestClient(create_app(queued_world.settings)) as client:
        response = client.get("/v1/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_the_page_is_served_with_a_strict_policy(api_world: ApiWorld) -> None:
    response = api_world.client.get("/")
    assert response.status_code == 200 and "<title>vidx" in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert api_world.client.get("/static/app.js").status_code == 200


def test_logs_never_carry_the_key(api_world: ApiWorld, capsys: pytest.CaptureFixture[str],
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    client, a = api_world.client, api_world.a
    client.get("/v1/videos", headers=a.headers)
    client.get("/v1/videos", headers={"Authorization": a.headers["Authorization"] + "x"})  # a near miss, 401
    client.post("/v1/search/text", headers=a.headers, json={"text": "x", "threshold": -1})
    out = capsys.readouterr()
    logged = out.err + out.out + caplog.text
    assert "http_request" in logged and str(a.key_id) in logged
    assert a.key not in logged


def test_a_nul_byte_in_text_that_reaches_the_database_is_a_clear_client_error(api_world: ApiWorld) -> None:
    """PostgreSQL text cannot hold NUL: a label filter or URL with one is a bad request (422), never a 500.

    (A text query's NUL is harmless: the text goes to the CLIP tokenizer, never to the database.)
    """
    client, a = api_world.client, api_world.a
    scene = a.scene_ids[0]
    attempts = [
        client.post("/v1/search/text", headers=a.headers, json={"text": "x", "threshold": -1, "label": "dog\x00"}),
        client.get(f"/v1/scenes/{scene}/similar", headers=a.headers, params={"label": "a\x00b"}),
        client.post("/v1/videos", headers=a.headers, json={"url": "https://example.com/v\x00.mp4"}),
        client.post("/v1/videos", headers=a.headers, json={"url": "https://example.com/a b\r\nX-Injected: 1"}),
    ]
    for response in attempts:
        assert response.status_code == 422, (response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json")
