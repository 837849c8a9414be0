"""Security (issue 10): URL sources cannot reach internal networks or hold a worker.

Real HTTP servers on loopback only. The address check itself runs on the
real classifier with literal IPs (no traffic). Tests that need a host to
count as "public" inject the resolver and the classifier, so every
connection still goes to 127.0.0.1; one test proves the default refuses
loopback before any request is sent.
"""

from __future__ import annotations

import http.server
import ipaddress
import os
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.core.config import Settings, broker_url, load_settings
from pipeline.core.errors import BadInputError, ConfigError
from pipeline.core.redaction import redact_connection_url, redact_url
from pipeline.intake.fetch import FetchPolicy, fetch_to_file
from pipeline.intake.netguard import (
    SPECIAL_PURPOSE,
    ForbiddenAddressError,
    IPAddress,
    is_public_address,
    registry_verdict,
)
from pipeline.intake.sources import check_url, open_source, sweep_abandoned_downloads
from tests.fixtures.queue import free_port

TEST_IP = ipaddress.ip_address("127.0.0.1")


@dataclass
class Server:
    base: str
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    drip: dict[str, int] = field(default_factory=dict)  # path -> bytes sent one at a time


def _serve(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    state = Server(base="", port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path
            state.requests.append((path, self.headers.get("Host", "")))
            if path in state.drip:
                self.send_response(200)
                self.end_headers()
                for _ in range(state.drip[path]):  # bounded: ends by itself after a few seconds
                    try:
                        self.wfile.write(b"x")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.05)
                return
            status, headers, body = state.routes.get(path.split("?", 1)[0], (404, {}, b"internal-secret-reason"))
            self.send_response(status, "Internal Admin Panel" if status == 404 else None)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    state.base = f"{'https' if tls else 'http'}://{host}:{state.port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def web() -> Iterator[Server]:
    yield from _serve()


def _only_test_server_is_public(ip: IPAddress) -> bool:
    """Pretend the loopback test server is a public host; every other address is judged for real."""
    return ip == TEST_IP or is_public_address(ip)


def _policy(**overrides) -> FetchPolicy:
    values = {"max_bytes": 10 * 1024 * 1024, "deadline_s": 30.0, "address_allowed": _only_test_server_is_public}
    values.update(overrides)
    return FetchPolicy(**values)


# --- the address check (real classifier, literal IPs, no traffic) ---------------------------


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.5.5.5", "10.0.0.1", "172.16.0.1", "172.31.255.254", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1",
    "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a00:1::1",
])
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["fec0::1", "fec0:1234::5", "192.0.0.8", "3fff::1", "5f00::1", "64:ff9b:1::a", "192.88.99.1"])
def test_special_purpose_addresses_python_calls_global_are_refused(address: str) -> None:
    """Python 3.11's is_global says True for each of these; the IANA registries say not globally reachable."""
    assert not is_public_address(ipaddress.ip_address(address))


def _inside(block: str) -> list[str]:
    """The first, a middle and the last address of ``block`` (the block's own address for a /32 or /128)."""
    network = ipaddress.ip_network(block)
    return sorted({str(network[0]), str(network[network.num_addresses // 2]), str(network[-1])})


@pytest.mark.parametrize(("block", "reachable"), SPECIAL_PURPOSE, ids=[b for b, _ in SPECIAL_PURPOSE])
def test_every_special_purpose_block_follows_the_registry(block: str, reachable: bool) -> None:
    """Each registry block's addresses get its "Globally Reachable" verdict, unless a more specific block says otherwise."""
    for text in _inside(block):
        ip = ipaddress.ip_address(text)
        if registry_verdict(ip) != reachable:
            continue  # a nested block (e.g. 192.0.0.9/32 inside 192.0.0.0/24) decides for this one
        assert is_public_address(ip) is reachable, text


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/", "http://10.1.2.3/v.mp4", "http://[::1]:8080/v.mp4",
    "https://[::ffff:127.0.0.1]/v.mp4", "http://0.0.0.0/v.mp4",
])
def test_private_literals_are_refused_before_any_traffic(url: str, settings: Settings) -> None:
    with pytest.raises(ForbiddenAddressError, match="not a public internet address"):
        check_url(url, settings)
    with pytest.raises(ForbiddenAddressError):
        with open_source(url, settings):
            pytest.fail("must not get here")


@pytest.mark.parametrize("url", ["ftp://example.com/v.mp4", "file:///etc/passwd", "gopher://x/1"])
def test_only_http_and_https(url: str, settings: Settings) -> None:
    with pytest.raises(BadInputError, match="unsupported URL scheme"):
        with open_source(url, settings):
            pytest.fail("must not get here")


# --- the default refuses loopback; the setting opts in -------------------------------------------


def test_default_refuses_loopback_and_sends_nothing(web: Server, settings: Settings) -> None:
    web.routes["/v.mp4"] = (200, {}, b"v" * 100)
    for url in (f"{web.base}/v.mp4", f"http://localhost:{web.port}/v.mp4"):
        with pytest.raises(ForbiddenAddressError, match="VIDX_ALLOW_PRIVATE_URLS"):
            with open_source(url, settings):
                pytest.fail("must not get here")
    assert web.requests == []
    opted_in = settings.with_overrides(allow_private_urls=True)
    with open_source(f"{web.base}/v.mp4", opted_in) as path:
        assert path.read_bytes() == b"v" * 100


def test_setting_is_read_from_the_environment() -> None:
    assert load_settings({}).allow_private_urls is False
    assert load_settings({"VIDX_ALLOW_PRIVATE_URLS": "true"}).allow_private_urls is True
    with pytest.raises(ConfigError, match="VIDX_ALLOW_PRIVATE_URLS"):
        load_settings({"VIDX_ALLOW_PRIVATE_URLS": "maybe"})
    with pytest.raises(ConfigError, match="VIDX_DOWNLOAD_DEADLINE_S"):
        load_settings({"VIDX_DOWNLOAD_DEADLINE_S": "0"})


# --- redirects are followed by hand, each hop checked ----------------------------------------


def test_redirect_to_loopback_metadata_or_ftp_is_refused(web: Server, tmp_path: Path) -> None:
    other = free_port()
    targets = {
        "/to-loopback": f"http://127.0.0.2:{other}/admin",
        "/to-metadata": "http://169.254.169.254/latest/meta-data/",
        "/to-ftp": "ftp://127.0.0.1/secret",
        "/to-file": "file:///etc/passwd",
    }
    for path, location in targets.items():
        web.routes[path] = (302, {"Location": location}, b"")
    for path in targets:
        with pytest.raises(BadInputError) as info:
            fetch_to_file(f"{web.base}{path}", tmp_path / "out", _policy())
        assert "\n" not in str(info.value)
    assert [p for p, _ in web.requests] == list(targets)  # only the first hop ever reached a server


def test_redirects_are_bounded(web: Server, tmp_path: Path) -> None:
    web.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(BadInputError, match="too many redirects"):
        fetch_to_file(f"{web.base}/loop", tmp_path / "out", _policy())
    assert len(web.requests) == 6  # the first request and 5 redirects


def test_allowed_redirect_is_followed(web: Server, tmp_path: Path) -> None:
    web.routes["/old"] = (301, {"Location": "/new.mp4"}, b"")
    web.routes["/new.mp4"] = (200, {}, b"video")
    assert fetch_to_file(f"{web.base}/old", tmp_path / "out", _policy()) == 5
    assert (tmp_path / "out").read_bytes() == b"video"


# --- connect to the address that was checked -------------------------------------------------


def test_connects_to_the_checked_address_without_resolving_again(web: Server, tmp_path: Path) -> None:
    """A rebinding resolver answers a public address first, then a private one: only the first answer is used."""
    answers = iter([["127.0.0.1"], ["10.0.0.1"], ["10.0.0.1"]])
    calls = []

    def rebinding_resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    web.routes["/v.mp4"] = (200, {}, b"ok")
    fetch_to_file(f"http://video.test:{web.port}/v.mp4", tmp_path / "out", _policy(resolver=rebinding_resolver))
    assert calls == ["video.test"]
    assert web.requests == [("/v.mp4", f"video.test:{web.port}")]  # the Host header names the URL's host


def test_a_host_resolving_to_any_private_address_is_refused(web: Server, tmp_path: Path) -> None:
    policy = _policy(resolver=lambda host, port: ["127.0.0.1", "10.0.0.1"])
    with pytest.raises(ForbiddenAddressError):
        fetch_to_file(f"http://video.test:{web.port}/v.mp4", tmp_path / "out", policy)
    assert web.requests == []


# --- tenants see a generic reason ---------------------------------------------------------------


def test_failures_give_one_generic_reason(web: Server, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v.mp4"
    reasons = set()
    for url, resolver in ((f"{web.base}/missing.mp4", None), (closed, None),
                          (f"http://nowhere.test:{web.port}/v.mp4", _no_such_host)):
        with pytest.raises(BadInputError) as info:
            fetch_to_file(url, tmp_path / "out", _policy(resolver=resolver))
        message = str(info.value)
        assert message.startswith(redact_url(url))
        reasons.add(message[len(redact_url(url)):])
    assert reasons == {": unreachable or not downloadable"}


def _no_such_host(host: str, port: int) -> list[str]:
    raise OSError("Name or service not known")


# --- a total deadline, not just a per-read timeout ------------------------------------------------


def test_slow_drip_hits_the_total_deadline(web: Server, tmp_path: Path) -> None:
    web.drip["/slow.mp4"] = 200  # one byte every 50 ms: 10 s in all, every read well within its timeout
    with pytest.raises(BadInputError, match="longer than the 1s limit.*VIDX_DOWNLOAD_DEADLINE_S"):
        fetch_to_file(f"{web.base}/slow.mp4", tmp_path / "out", _policy(deadline_s=1.0))


def test_abandoned_download_dirs_are_swept(tmp_path: Path) -> None:
    dead = tmp_path / "vidx-download-999999999-abc"  # no such pid
    mine = tmp_path / f"vidx-download-{os.getpid()}-def"
    unrelated = tmp_path / "something-else"
    for d in (dead, mine, unrelated):
        d.mkdir()
        (d / "source.mp4").write_bytes(b"x")
    assert sweep_abandoned_downloads(tmp_path) == [dead]
    assert not dead.exists() and mine.exists() and unrelated.exists()


# --- secrets never shown ------------------------------------------------------------------------------


def test_redaction_keeps_scheme_host_and_path_only() -> None:
    url = "https://user:pw@Bucket.example.com:8443/a/b.mp4?X-Amz-Signature=abc&token=t#frag"
    assert redact_url(url) == "https://bucket.example.com:8443/a/b.mp4"
    assert redact_url("https://bucket.example.com/b.mp4?X-Amz-Signature=other") == \
        redact_url("https://bucket.example.com/b.mp4?X-Amz-Signature=abc")
    assert redact_url("/local/path.mp4") == "/local/path.mp4"
    assert redact_url("http://[::1]:80/x?y") == "http://[::1]:80/x"


def test_connection_urls_never_print_their_password() -> None:
    assert redact_connection_url("redis://:s3cret@redis.internal:6379/0") == "redis://:***@redis.internal:6379/0"
    assert "s3cret" not in redact_connection_url("postgresql://app:s3cret@db:5432/vidx")
    for name, value in (("CELERY_BROKER_URL", "reddis://:s3cret@host:6379/0"),
                        ("DATABASE_URL", "postgress://app:s3cret@db/vidx")):
        with pytest.raises(ConfigError) as info:
            load_settings({name: value})
        assert name in str(info.value) and "s3cret" not in str(info.value)


def test_broker_password_setting() -> None:
    settings = load_settings({"CELERY_BROKER_URL": "redis://redis.internal:6379/2", "VIDX_BROKER_PASSWORD": "p@ss/w"})
    assert broker_url(settings) == "redis://:p%40ss%2Fw@redis.internal:6379/2"
    assert "p@ss" not in repr(settings)
    assert broker_url(load_settings({})) == "redis://localhost:6379/0"


# --- 7. the embedded database's socket directory must be private ------------------------------------


def test_embedded_postgres_refuses_a_data_dir_others_can_enter(tmp_path: Path) -> None:
    from pipeline.store import embedded

    pgdata = tmp_path / "data" / "postgres"
    pgdata.mkdir(parents=True)
    pgdata.chmod(0o755)
    with pytest.raises(ConfigError, match=r"VIDX_DATA_DIR=.*private \(mode 0700.*found 0o755"):
        embedded.start(tmp_path / "data")
    assert not (pgdata / "PG_VERSION").exists()  # refused before initdb or any server start
    link = tmp_path / "linked" / "postgres"
    link.parent.mkdir()
    link.symlink_to(pgdata)
    pgdata.chmod(0o700)
    with pytest.raises(ConfigError, match="VIDX_DATA_DIR"):
        embedded.check_private(link)
    embedded.check_private(pgdata)  # private: accepted


# --- https: pinned address, SNI and certificate for the URL's host ---------------------------------


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_https_to_the_pinned_address_sends_sni_and_verifies_the_url_host(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "video.test")
    sni_seen: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.sni_callback = lambda sock, name, ctx: sni_seen.append(name)
    gen = _serve(tls=server_ctx)
    web = next(gen)
    try:
        web.routes["/v.mp4"] = (200, {}, b"tls video")
        client_ctx = ssl.create_default_context(cafile=str(cert))
        policy = _policy(resolver=lambda host, port: ["127.0.0.1"], tls_context=client_ctx)
        url = f"https://video.test:{web.port}/v.mp4?sig=1"
        assert fetch_to_file(url, tmp_path / "out", policy) == 9
        assert sni_seen == ["video.test"]
        assert web.requests == [("/v.mp4?sig=1", f"video.test:{web.port}")]
        # the same server reached under another name fails verification: the certificate is checked for the URL's host
        other = _policy(resolver=lambda host, port: ["127.0.0.1"], tls_context=client_ctx)
        with pytest.raises(BadInputError, match="unreachable or not downloadable"):
            fetch_to_file(f"https://other.test:{web.port}/v.mp4", tmp_path / "out2", other)
    finally:
        gen.close()
