"""Download one http(s) URL to a file, connecting only to addresses that were checked.

urllib follows redirects itself (to any host, to ``ftp://``), resolves names
again at connect time and honours proxy variables; none of that is safe for
a tenant's URL. Here each hop is resolved once, every address is checked
(pipeline.intake.netguard), and http.client connects to that very address (TLS
still verifies the certificate for, and sends SNI/Host of, the URL's host).
Redirects are followed by hand (at most ``MAX_REDIRECTS``, each re-checked),
no proxy is ever used, and a total deadline bounds the whole download, not
just each read. Tenants get one generic reason; details go to debug logs.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from pipeline.core.errors import BadInputError
from pipeline.core.log import get_logger
from pipeline.core.redaction import redact_url
from pipeline.intake.netguard import ForbiddenAddressError, IPAddress, Resolver, resolve_checked

log = get_logger(__name__)

URL_SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
READ_TIMEOUT_S = 30.0
_CHUNK = 1 << 20
_REDIRECTS = {301, 302, 303, 307, 308}


@dataclass(frozen=True)
class FetchPolicy:
    """What one download may do."""

    max_bytes: int
    deadline_s: float
    allow_private: bool = False
    read_timeout_s: float = READ_TIMEOUT_S
    resolver: Resolver | None = None  # None: the system resolver
    address_allowed: Callable[[IPAddress], bool] | None = None  # None: netguard.is_public_address
    tls_context: ssl.SSLContext | None = None  # None: the system's CAs, hostname verified


class _Unreachable(Exception):
    """A failure whose detail is for the debug log only."""


class _PinnedMixin:
    """Connects to one checked address instead of resolving ``self.host`` again."""

    pinned_ip: str

    def _pinned_create_connection(
        self, address: tuple[str, int], timeout: float | None = None, source_address: tuple[str, int] | None = None
    ) -> socket.socket:
        return socket.create_connection((self.pinned_ip, address[1]), timeout, source_address)


class _PinnedHTTPConnection(_PinnedMixin, http.client.HTTPConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float, context: ssl.SSLContext | None) -> None:
        super().__init__(host, port, timeout=timeout)
        self.pinned_ip = ip
        self._create_connection = self._pinned_create_connection


class _PinnedHTTPSConnection(_PinnedMixin, http.client.HTTPSConnection):
    """TLS to the pinned address; SNI and certificate checks use the URL's host name (``self.host``)."""

    def __init__(self, host: str, port: int, ip: str, timeout: float, context: ssl.SSLContext | None) -> None:
        super().__init__(host, port, timeout=timeout, context=context or ssl.create_default_context())
        self.pinned_ip = ip
        self._create_connection = self._pinned_create_connection


def generic_reason(url: str) -> str:
    """What a tenant is told for any network or HTTP failure: nothing that maps the worker's network."""
    return f"{redact_url(url)}: unreachable or not downloadable"


def fetch_to_file(url: str, dest: Path, policy: FetchPolicy) -> int:
    """Stream ``url`` into ``dest``; returns the bytes written.

    Raises :class:`BadInputError` with one line fit for the tenant.
    """
    label = redact_url(url)
    deadline = time.monotonic() + policy.deadline_s
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(current)
        if parts.scheme.lower() not in URL_SCHEMES or not parts.hostname:
            raise BadInputError(f"{label}: unsupported URL (use http:// or https://)")
        try:
            response, conn = _open(current, policy, deadline)
        except ForbiddenAddressError:
            log.debug("download_refused_address", url=redact_url(current))
            raise ForbiddenAddressError(
                f"{label}: refused: not a public internet address "
                "(an operator can allow internal hosts with VIDX_ALLOW_PRIVATE_URLS=true)"
            ) from None
        except _Unreachable as exc:
            log.debug("download_failed", url=redact_url(current), detail=str(exc))
            raise BadInputError(generic_reason(url)) from None
        try:
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    log.debug("download_failed", url=redact_url(current), detail="redirect without Location")
                    raise BadInputError(generic_reason(url))
                current = urljoin(current, location)
                log.debug("download_redirect", to=redact_url(current), status=response.status)
                continue
            if response.status != 200:
                log.debug("download_failed", url=redact_url(current), detail=f"HTTP {response.status}")
                raise BadInputError(generic_reason(url))
            return _stream_body(response, conn, dest, policy, deadline, label, url)
        finally:
            conn.close()
    raise BadInputError(f"{label}: too many redirects (more than {MAX_REDIRECTS})")


def _open(
    url: str, policy: FetchPolicy, deadline: float
) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    """Resolve, check, connect to a checked address, send the request, read the status line."""
    parts = urlsplit(url)
    https = parts.scheme.lower() == "https"
    try:
        port = parts.port or (443 if https else 80)
    except ValueError as exc:
        raise _Unreachable(f"bad port: {exc}") from None
    host = parts.hostname or ""
    try:
        addresses = resolve_checked(
            host, port, allow_private=policy.allow_private, label=redact_url(url), resolver=policy.resolver,
            is_allowed=policy.address_allowed,
        )
    except OSError as exc:
        raise _Unreachable(f"resolve {host}: {exc}") from None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    errors = []
    for ip in addresses:
        conn = _connection(https, host, port, ip, _remaining(deadline, policy.read_timeout_s), policy.tls_context)
        watchdog = _Watchdog(conn, deadline)
        try:
            conn.request("GET", target, headers={"User-Agent": "vidx", "Accept-Encoding": "identity"})
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if watchdog.fired:
                raise BadInputError(_deadline_reason(url, policy)) from None
            errors.append(f"{ip}: {type(exc).__name__}: {exc}")
            continue
        finally:
            watchdog.cancel()
        return response, conn
    raise _Unreachable("; ".join(errors))


def _connection(
    https: bool, host: str, port: int, ip: IPAddress, timeout: float, context: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    cls = _PinnedHTTPSConnection if https else _PinnedHTTPConnection
    return cls(host, port, str(ip), timeout, context)


def _stream_body(
    response: http.client.HTTPResponse,
    conn: http.client.HTTPConnection,
    dest: Path,
    policy: FetchPolicy,
    deadline: float,
    label: str,
    url: str,
) -> int:
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise BadInputError(f"{label}: {int(declared)} bytes is over the download cap of {policy.max_bytes} bytes")
    written = 0
    watchdog = _Watchdog(conn, deadline)
    try:
        with dest.open("wb") as out:
            while True:
                if conn.sock is not None:
                    conn.sock.settimeout(_remaining(deadline, policy.read_timeout_s))
                chunk = response.read1(_CHUNK)  # whatever arrived: a slow drip still sees the deadline
                if not chunk:
                    break
                written += len(chunk)
                if written > policy.max_bytes:
                    raise BadInputError(f"{label}: download is over the cap of {policy.max_bytes} bytes")
                out.write(chunk)
                if time.monotonic() > deadline:
                    raise BadInputError(_deadline_reason(url, policy))
    except (OSError, http.client.HTTPException) as exc:
        if watchdog.fired or time.monotonic() > deadline:
            raise BadInputError(_deadline_reason(url, policy)) from None
        log.debug("download_failed", url=label, detail=f"{type(exc).__name__}: {exc}")
        raise BadInputError(generic_reason(url)) from None
    finally:
        watchdog.cancel()
    return written


def _deadline_reason(url: str, policy: FetchPolicy) -> str:
    return (
        f"{redact_url(url)}: download took longer than the {policy.deadline_s:.0f}s limit "
        "(VIDX_DOWNLOAD_DEADLINE_S)"
    )


def _remaining(deadline: float, cap: float) -> float:
    return max(0.01, min(cap, deadline - time.monotonic()))


class _Watchdog:
    """Shuts the connection's socket at the deadline, whatever call is blocked on it (a header drip too)."""

    def __init__(self, conn: http.client.HTTPConnection, deadline: float) -> None:
        self.fired = False
        self._conn = conn
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()
