"""Where a webhook may connect: public unicast addresses only, unless it was added with
`notify:add … --allow-private`. Otherwise whoever may add a webhook could make the server post
to its own loopback or private network (a blind probe of internal ports, a cloud's metadata
service at 169.254.169.254).

Checked twice: by `notify:add` on every address the URL's host resolves to then, and by every
delivery on the address it actually connects to (`connect`), since a name may resolve elsewhere
by then (DNS rebinding). `refusal` is the rule: Python's `is_global`, plus what it lets through
(multicast, site-local, reserved and documentation ranges, IPv4 addresses wrapped in IPv6 forms).
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse

from ..errors import MiddockError

PRIVATE = tuple(ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))  # RFC 1918
SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the IPv4 address in its last 32 bits (RFC 6052)
RESERVED = (  # newer than some Pythons' `is_global`
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # NAT64 for local use (RFC 8215)
    ipaddress.IPv6Network("3fff::/20"),  # documentation (RFC 9637)
)
ALLOW_HINT = "a webhook may only reach public addresses unless it is added with --allow-private"


class Refused(OSError):
    """A delivery that did not connect: every address of the URL's host is refused."""


def refusal(address: str) -> str | None:
    """What kind of non-public address `address` is (`loopback`, `private`…), or None when a
    webhook may connect to it. An IPv6 address that stands for an IPv4 one is judged by it:
    alone when it is that address (IPv4-mapped, NAT64), and as well when it is a tunnel to it
    (6to4, Teredo)."""
    ip = ipaddress.ip_address(address)
    if not isinstance(ip, ipaddress.IPv6Address):
        return kind(ip)
    translated = ip.ipv4_mapped or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None)
    inner = translated or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
    inner_kind = kind(inner) if inner is not None else None
    if inner_kind:
        return f"{inner_kind} (IPv4 {inner})"
    return None if translated else kind(ip)


def kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """The address's own kind when it is not public unicast, else None."""
    named = [
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (any(ip in net for net in PRIVATE), "private"),
        (ip in SHARED, "shared (carrier-grade NAT)"),
        (ip in UNIQUE_LOCAL, "unique local"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "site-local"),
        (not ip.is_global or ip.is_reserved or any(ip in net for net in RESERVED), "reserved"),
    ]
    return next((name for matches, name in named if matches), None)


def described(host: str, address: str, why: str) -> str:
    """`10.1.2.3 is a private address`, or `db.internal resolves to 10.1.2.3, a private address`."""
    kind_of = f"{'an' if why.startswith('unspecified') else 'a'} {why} address"
    return f"{host} is {kind_of}" if host == address else f"{host} resolves to {address}, {kind_of}"


def resolve(host: str, port: int) -> list[tuple]:
    """getaddrinfo's TCP answers for `host` (an IP literal is its own answer, with no lookup)."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def check_public(url: str) -> None:
    """`notify:add`'s check: every address the URL's host resolves to now is public; else one
    line saying which is not and how to allow it."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        found = resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise MiddockError(f"webhook host {host} could not be resolved ({reason}): check the URL") from None
    for *_, sockaddr in found:
        why = refusal(sockaddr[0])
        if why:
            raise MiddockError(f"webhook URL refused: {described(host, sockaddr[0], why)}; {ALLOW_HINT}")


def connect(host: str, port: int, timeout: float, allow_private: bool) -> socket.socket:
    """A TCP connection to the first of `host`'s addresses that a webhook may reach, checked
    right before connecting to it, so the address checked is the one connected to. Refused when
    every address is refused: nothing is sent then."""
    refused, failure = [], None
    for family, socktype, protocol, _, sockaddr in resolve(host, port):
        why = None if allow_private else refusal(sockaddr[0])
        if why:
            refused.append(described(host, sockaddr[0], why))
            continue
        sock = socket.socket(family, socktype, protocol)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as error:
            sock.close()
            failure = error
    if failure is not None:
        raise failure
    raise Refused(f"not sent: {refused[0] if refused else f'{host} has no address'}; {ALLOW_HINT}")
