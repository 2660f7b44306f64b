"""Is this URL safe to fetch from here? Scheme, host form, allowlist, resolved addresses.

Hostile text may have picked the URL for the model; the classic targets are the host itself
(``127.0.0.1`` and disguises ``2130706433``, ``0x7f.1``, ``127.1``, ``[::ffff:127.0.0.1]``),
the private network and cloud metadata (``169.254.169.254``). Rules, in order: http(s) only;
a host neither a DNS name nor a canonical IP literal is refused (numeric forms the OS would
read as an address are never resolved); the allowlist (``example.com``, ``*.example.com``);
*every* resolved address public (IPv4-mapped, 6to4, Teredo and NAT64 unwrapped first). The
caller connects to the checked address itself, keeping the name for ``Host`` and SNI.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from massgen.errors import ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")


@dataclass(frozen=True, slots=True)
class Target:
    """A checked destination: connect to ``address``, say ``host`` in Host and SNI."""

    scheme: str
    host: str
    port: int
    address: str


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the OS resolver gives for ``host``."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ToolError(f"cannot resolve {host!r}: {e.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def is_public(ip: IPAddress) -> bool:
    inner = unwrap(ip)
    for candidate in {ip, inner}:
        if (
            candidate.is_private
            or candidate.is_loopback
            or candidate.is_link_local
            or candidate.is_multicast
            or candidate.is_reserved
            or candidate.is_unspecified
            or not candidate.is_global
        ):
            return False
    return True


def literal_ip(host: str) -> IPAddress | None:
    """``host`` as an IP if it is a canonical literal; refuse disguised numeric forms."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare.split("%")[0])
    except ValueError:
        pass
    labels = bare.rstrip(".").split(".")
    if any(_NUMERIC_LABEL.fullmatch(label) for label in labels[-1:]):
        # 2130706433, 0x7f.1, 127.1, 0177.0.0.1: the OS would read these as addresses.
        raise ToolError(f"refused host {host!r}: numeric host forms other than a dotted quad")
    return None


def check_name(host: str) -> str:
    host = host.lower().rstrip(".")
    if not host or len(host) > 253 or not all(_LABEL.fullmatch(x) for x in host.split(".")):
        raise ToolError(f"refused host {host!r}: not a valid host name")
    return host


def allowed(host: str, allow: Sequence[str]) -> bool:
    patterns = (raw.lower().rstrip(".") for raw in allow)
    return any(host.endswith(p[1:]) if p.startswith("*.") else host == p for p in patterns)


async def check_url(
    scheme: str,
    host: str,
    port: int | None,
    *,
    allow_hosts: Sequence[str] | None = None,
    resolver: Resolver = system_resolver,
) -> Target:
    """Check a destination and pick the address to connect to; :class:`ToolError` if not."""
    if scheme not in ("http", "https"):
        raise ToolError(f"refused scheme {scheme!r}: only http and https")
    port = port or (443 if scheme == "https" else 80)
    ip = literal_ip(host)
    name = str(ip) if ip is not None else check_name(host)
    if allow_hosts is not None and not allowed(name, allow_hosts):
        raise ToolError(f"refused host {name!r}: not in the allowed hosts")
    if ip is not None:
        addresses = [ip]
    else:
        addresses = []
        for raw in await resolver(name, port):
            try:
                addresses.append(ipaddress.ip_address(raw.split("%")[0]))
            except ValueError:
                raise ToolError(f"refused host {name!r}: resolved to a non-address") from None
        if not addresses:
            raise ToolError(f"cannot resolve {name!r}")
    for address in addresses:
        if not is_public(address):
            raise ToolError(f"refused host {name!r}: it resolves to a non-public address")
    return Target(scheme, name, port, str(addresses[0]))
