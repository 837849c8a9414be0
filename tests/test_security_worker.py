"""Security (issue 10) through the real path: ``vidx enqueue``, a real worker, real PostgreSQL and Redis.

A loopback HTTP server plays the tenant's web host; workers and the
enqueuer opt in to internal hosts (VIDX_ALLOW_PRIVATE_URLS) because that
server is on 127.0.0.1, except where the test is that the default refuses.
"""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from pipeline.intake.naming import canonical_source, video_id_for
from tests import secmedia, videogen
from tests.fixtures.queue import run_vidx, wait_for, worker_env

VICTIM = uuid.UUID("aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa")
ATTACKER = uuid.UUID("bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb")
SIGNATURE = "X-Amz-Signature=SECRET0123456789"

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """Serves files from a directory; ``/signed/NAME`` only with a ``SECRET`` signature (a presigned URL)."""
    root = tmp_path / "www"
    root.mkdir()
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            path, _, query = self.path.partition("?")
            name = path.rsplit("/", 1)[-1]
            if path.startswith("/signed/") and "SECRET" not in query:
                self.send_error(403)
                return
            file = root / name
            if not file.is_file():
                self.send_error(404)
                return
            body = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, seen
    finally:
        server.shutdown()
        server.server_close()


def _enqueue(env: dict[str, str], owner: uuid.UUID, *sources: str) -> list[dict[str, str]]:
    return json.loads(run_vidx(env, "enqueue", "--owner", str(owner), "--json", *sources).stdout)


def _rows(url: str, sql: str, *params: object) -> list[dict]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def _wait_done(url: str, ids: list[str]) -> dict[str, dict]:
    def finished():
        rows = {str(r["id"]): r for r in _rows(url, "SELECT * FROM videos WHERE id = ANY(%s::uuid[])", ids)}
        return rows if len(rows) == len(ids) and all(r["status"] in ("done", "failed") for r in rows.values()) else None

    return wait_for(finished, timeout=120, interval=0.25, what="the videos to finish")


def test_playlist_and_presigned_url_through_a_worker(
    broker_url: str, clean_database_url: str, workers, media_dir: Path, tmp_path: Path, web
) -> None:
    base, root, seen = web
    env = worker_env(broker_url=broker_url, database_url=clean_database_url, data_dir=tmp_path / "data",
                     VIDX_ALLOW_PRIVATE_URLS="true")
    sidecars = Path(env["VIDX_SIDECAR_DIR"])
    worker = workers.start(env)

    # The victim tenant's video, indexed from the worker's disk.
    (tmp_path / "victim").mkdir()
    private = videogen.make_cut_video(tmp_path / "victim" / "private.mp4", [25, 25], size=(160, 90))
    [victim_row] = _enqueue(env, VICTIM, str(private))
    # The attacker serves a 150-byte HLS playlist named video.mp4 whose segment is that file.
    secmedia.make_hls_playlist(root / "video.mp4", private)
    # ... and a good video behind a presigned URL.
    (root / "clip.mp4").write_bytes(videogen.make_cut_video(media_dir / "presigned.mp4", [25], size=(160, 90))
                                    .read_bytes())
    signed = f"{base}/signed/clip.mp4?{SIGNATURE}&X-Amz-Expires=60"
    enqueued = _enqueue(env, ATTACKER, f"{base}/video.mp4", signed)
    rows = _wait_done(clean_database_url, [victim_row["video_id"], *(r["video_id"] for r in enqueued)])

    attack, presigned = (rows[r["video_id"]] for r in enqueued)
    assert rows[victim_row["video_id"]]["status"] == "done"
    # 1. the playlist is bad input, failed at once, with a reason naming the URL the tenant gave
    assert (attack["status"], attack["attempts"]) == ("failed", 1)
    assert attack["error"] == (
        f"{base}/video.mp4: not a supported video container (an HLS playlist); vidx reads mp4/mov, "
        "matroska/webm, avi, mpegts, flv, ogg, mpeg-ps and asf files, never playlists, manifests, "
        "scripts or image sequences"
    )
    # ... and none of the victim's frames are anywhere under the attacker
    assert _rows(clean_database_url, "SELECT id FROM scenes WHERE owner_id = %s AND video_id = %s",
                 ATTACKER, attack["id"]) == []
    assert not (sidecars / str(attack["id"])).exists()

    # 5. the presigned URL was fetched with its signature, but nothing shown or stored holds it
    assert presigned["status"] == "done", presigned["error"]
    assert presigned["source"] == f"{base}/signed/clip.mp4"
    assert any("SECRET" in p for p in seen)
    sidecar_text = (sidecars / str(presigned["id"]) / "sidecar.json").read_text()
    status_text = run_vidx(env, "status", str(presigned["id"])).stdout
    everything = [json.dumps(enqueued), sidecar_text, status_text, worker.log_text(),
                  json.dumps(_rows(clean_database_url, "SELECT * FROM videos"), default=str)]
    for text in everything:
        assert "SECRET" not in text
    # re-signing the same object is the same video, not a second one
    [again] = _enqueue(env, ATTACKER, f"{base}/signed/clip.mp4?X-Amz-Signature=SECRETanother")
    assert again["video_id"] == str(presigned["id"]) == str(video_id_for(ATTACKER, canonical_source(signed)))


def test_enqueue_refuses_private_literals_by_default(clean_database_url: str, broker_url: str, tmp_path: Path) -> None:
    env = worker_env(broker_url=broker_url, database_url=clean_database_url, data_dir=tmp_path / "data")
    proc = run_vidx(env, "enqueue", "--owner", str(ATTACKER), "http://169.254.169.254/latest/meta-data/x.mp4",
                    "http://[::1]:9/v.mp4", check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "not a public internet address" in proc.stderr
    assert _rows(clean_database_url, "SELECT id FROM videos WHERE owner_id = %s", ATTACKER) == []
