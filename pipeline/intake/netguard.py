"""Which network addresses a tenant's URL may make a worker connect to.

Workers sit inside a network (databases, Redis, cloud metadata at
169.254.169.254): a URL source must not turn them into a proxy into it. Only
globally routable unicast addresses are allowed unless the operator opts in
(``VIDX_ALLOW_PRIVATE_URLS``). Every address a host resolves to is checked,
and the caller connects to an address that was checked (never resolving
again), so a DNS answer cannot change between the check and the connect.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence

from pipeline.core.errors import BadInputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> every address it resolves to (injectable for tests)
Resolver = Callable[[str, int], Sequence[str]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class ForbiddenAddressError(BadInputError):
    """A URL's host is (or resolves to) an address tenants may not reach."""


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, NAT64, 6to4, Teredo client), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_public_address(ip: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private (RFC 1918), link-local, CGNAT, ULA,
    multicast, unspecified, reserved or documentation space, in any IPv4-in-IPv6 form."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return is_public_address(ip.ipv4_mapped)  # ::ffff:a.b.c.d is a.b.c.d on the wire
    inner = embedded_ipv4(ip)
    if inner is not None and not is_public_address(inner):
        return False
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_reserved:
        return False
    return ip.is_global


def literal_address(host: str) -> IPAddress | None:
    """The address when ``host`` is an IP literal (``[::1]`` brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (TCP)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_literal(host: str, *, allow_private: bool, label: str) -> None:
    """Refuse at once a host written as a non-public IP literal (``vidx enqueue``: nothing is resolved)."""
    ip = literal_address(host)
    if ip is not None and not allow_private and not is_public_address(ip):
        raise ForbiddenAddressError(forbidden_reason(label))


def forbidden_reason(label: str) -> str:
    return (
        f"{label}: refused: not a public internet address "
        "(an operator can allow internal hosts with VIDX_ALLOW_PRIVATE_URLS=true)"
    )


def resolve_checked(
    host: str,
    port: int,
    *,
    allow_private: bool,
    label: str,
    resolver: Resolver | None = None,
    is_allowed: Callable[[IPAddress], bool] | None = None,
) -> list[IPAddress]:
    """The addresses to connect to for ``host``: all must be public (unless allowed), else refused.

    Raises :class:`ForbiddenAddressError` for a forbidden address and
    ``OSError`` when the name does not resolve. ``resolver`` and
    ``is_allowed`` replace the system resolver and the classifier (tests).
    """
    literal = literal_address(host)
    answers = [str(literal)] if literal is not None else list((resolver or system_resolver)(host, port))
    addresses = []
    for answer in answers:
        ip = literal_address(answer)
        if ip is None:
            raise OSError(f"resolver returned a non-address: {answer!r}")
        addresses.append(ip)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    allowed = is_allowed or is_public_address
    if not allow_private and not all(allowed(ip) for ip in addresses):
        raise ForbiddenAddressError(forbidden_reason(label))
    return addresses
