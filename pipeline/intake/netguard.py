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
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


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


# The IANA IPv4 and IPv6 Special-Purpose Address Registries (as of 2025), each block with its
# "Globally Reachable" column. The most specific block holding an address decides; an address in
# none of them is judged by ``ipaddress``'s ``is_global``, which lags the registries (in Python 3.11
# it calls fec0::/10, 192.0.0.8, 3fff::/20 and 5f00::/16 global). Blocks whose column is N/A
# (6to4, Teredo, NAT64) carry another address: ``embedded_ipv4`` judges them by that one.
SPECIAL_PURPOSE: tuple[tuple[str, bool], ...] = (
    # IPv4 (RFC 6890 and its updates)
    ("0.0.0.0/8", False), ("10.0.0.0/8", False), ("100.64.0.0/10", False), ("127.0.0.0/8", False),
    ("169.254.0.0/16", False), ("172.16.0.0/12", False),
    ("192.0.0.0/24", False), ("192.0.0.0/29", False), ("192.0.0.8/32", False), ("192.0.0.9/32", True),
    ("192.0.0.10/32", True), ("192.0.0.170/32", False), ("192.0.0.171/32", False),
    ("192.0.2.0/24", False), ("192.31.196.0/24", True), ("192.52.193.0/24", True),
    ("192.88.99.0/24", False),  # the deprecated 6to4 relay anycast (RFC 7526): nothing answers there
    ("192.168.0.0/16", False), ("192.175.48.0/24", True), ("198.18.0.0/15", False),
    ("198.51.100.0/24", False), ("203.0.113.0/24", False), ("240.0.0.0/4", False),
    ("255.255.255.255/32", False),
    ("224.0.0.0/4", False),  # multicast: never a unicast server
    # IPv6
    ("::1/128", False), ("::/128", False), ("64:ff9b:1::/48", False), ("100::/64", False),
    ("100:0:0:1::/64", False), ("2001::/23", False), ("2001:1::1/128", True), ("2001:1::2/128", True),
    ("2001:1::3/128", True), ("2001:2::/48", False), ("2001:3::/32", True), ("2001:4:112::/48", True),
    ("2001:10::/28", False), ("2001:20::/28", True), ("2001:30::/28", True), ("2001:db8::/32", False),
    ("2620:4f:8000::/48", True), ("3fff::/20", False), ("5f00::/16", False), ("fc00::/7", False),
    ("fe80::/10", False),
    ("fec0::/10", False),  # site-local, deprecated (RFC 3879) but still routed inside some networks
    ("ff00::/8", False),
)
_SPECIAL = sorted(
    ((ipaddress.ip_network(block), reachable) for block, reachable in SPECIAL_PURPOSE),
    key=lambda entry: entry[0].prefixlen, reverse=True,
)


def registry_verdict(ip: IPAddress) -> bool | None:
    """The special-purpose registries' "Globally Reachable" for ``ip`` (most specific block), or None."""
    for network, reachable in _SPECIAL:
        if network.version == ip.version and ip in network:
            return reachable
    return None


def is_public_address(ip: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private (RFC 1918), link-local, CGNAT, ULA, site-local,
    multicast, unspecified, reserved, documentation or any other special-purpose block that is not
    globally reachable, in any IPv4-in-IPv6 form."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return is_public_address(ip.ipv4_mapped)  # ::ffff:a.b.c.d is a.b.c.d on the wire
    inner = embedded_ipv4(ip)
    if inner is not None:
        return is_public_address(inner)  # 6to4, Teredo, NAT64: the IPv4 server behind it decides
    verdict = registry_verdict(ip)
    if verdict is not None:
        return verdict
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST_V6:
        return False  # outside 2000::/3 nothing is assigned for global unicast
    return ip.is_global and not (ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local)


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
