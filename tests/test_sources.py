"""pipeline.intake.sources: local paths checked, URLs downloaded (capped) and cleaned up."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.core.config import Settings
from pipeline.core.errors import BadInputError
from pipeline.intake.sources import check_local_file, check_url, is_url, open_source
from tests.fixtures.queue import free_port


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the test directory; ``/stream/N`` sends N bytes without a Content-Length."""

    def do_GET(self) -> None:
        if self.path.startswith("/stream/"):
            size = int(self.path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()
            chunk = b"\0" * 65536
            sent = 0
            while sent < size:
                part = chunk[: size - sent]
                self.wfile.write(part)
                sent += len(part)
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **kw: _Handler(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def internal_ok(settings: Settings) -> Settings:
    """The test server is on loopback: these tests opt in to internal hosts (the default refuses them)."""
    return settings.with_overrides(allow_private_urls=True)


def test_is_url() -> None:
    assert is_url("http://example.com/a.mp4")
    assert is_url("HTTPS://example.com/a.mp4")
    assert not is_url("/tmp/a.mp4")
    assert not is_url("relative/a.mp4")
    assert not is_url("ftp://example.com/a.mp4")


def test_local_file_is_used_in_place(tmp_path: Path, settings: Settings) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 10)
    with open_source(str(video), settings) as path:
        assert path == video
    assert video.exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty"),
    ],
    ids=["missing", "directory", "empty"],
)
def test_bad_local_paths_are_refused(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path / "input.mp4")
    with pytest.raises(BadInputError, match=message) as info:
        check_local_file(path)
    assert "\n" not in str(info.value)


def test_url_is_downloaded_and_removed(http_root, internal_ok: Settings) -> None:
    base, root = http_root
    (root / "clip.mp4").write_bytes(b"v" * 200_000)
    with open_source(f"{base}/clip.mp4", internal_ok) as path:
        assert path.suffix == ".mp4"
        assert path.read_bytes() == b"v" * 200_000
        downloaded = path
    assert not downloaded.exists()
    assert not downloaded.parent.exists()


def test_download_is_removed_when_the_job_fails(http_root, internal_ok: Settings) -> None:
    base, root = http_root
    (root / "clip.mp4").write_bytes(b"v" * 1000)
    with pytest.raises(RuntimeError):
        with open_source(f"{base}/clip.mp4", internal_ok) as path:
            downloaded = path
            raise RuntimeError("indexing failed")
    assert not downloaded.parent.exists()


def test_declared_size_over_cap_is_refused(http_root, internal_ok: Settings) -> None:
    base, root = http_root
    (root / "big.mp4").write_bytes(b"v" * (1024 * 1024 + 1))
    capped = internal_ok.with_overrides(download_max_mb=1)
    with pytest.raises(BadInputError, match="over the download cap"):
        with open_source(f"{base}/big.mp4", capped):
            pytest.fail("must not get here")


def test_undeclared_size_over_cap_is_cut_off(http_root, internal_ok: Settings) -> None:
    base, _ = http_root
    capped = internal_ok.with_overrides(download_max_mb=1)
    with pytest.raises(BadInputError, match="over the cap"):
        with open_source(f"{base}/stream/{3 * 1024 * 1024}", capped):
            pytest.fail("must not get here")
    with open_source(f"{base}/stream/{512 * 1024}", capped) as path:
        assert path.stat().st_size == 512 * 1024


def test_http_error_is_bad_input(http_root, internal_ok: Settings) -> None:
    base, _ = http_root
    # Security (issue 10): tenants get one generic reason, never the status or an internal reason phrase.
    with pytest.raises(BadInputError, match="unreachable or not downloadable") as info:
        with open_source(f"{base}/missing.mp4", internal_ok):
            pass
    assert "404" not in str(info.value)


def test_unreachable_url_is_bad_input(internal_ok: Settings) -> None:
    url = f"http://127.0.0.1:{free_port()}/video.mp4"  # nobody listens there
    with pytest.raises(BadInputError, match="unreachable") as info:
        with open_source(url, internal_ok):
            pass
    assert str(info.value).startswith(url)


@pytest.mark.parametrize("url", [
    "https://example.com/v\x00.mp4", "https://example.com/a b.mp4", "https://example.com/v.mp4\r\nX-Injected: 1",
    "https://example.com/\tv.mp4", "https://example.com/v\x7f.mp4",
])
def test_a_url_with_spaces_or_control_characters_is_refused_before_anything_is_stored(url: str) -> None:
    with pytest.raises(BadInputError, match="spaces or control characters"):
        check_url(url, Settings())
