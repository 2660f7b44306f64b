"""A hard stop on network connections beyond loopback, so no test can reach a real provider.

:func:`install` patches the places every Python network client goes through to open a
connection: ``socket.socket.connect``/``connect_ex`` (which asyncio, anyio, httpx and redis-py
all end in), plus ``socket.create_connection`` and asyncio's ``loop.create_connection`` so a
public host name is refused before any DNS lookup. A refused connection raises
:class:`NetworkBlocked`, which is deliberately *not* an ``OSError``: retry loops and
"connection failed" handlers must not swallow it. Unix sockets are always allowed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

_MARK = "__massgen_netguard__"
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class NetworkBlocked(RuntimeError):
    """A test tried to connect somewhere other than this machine."""


def is_local(host: object) -> bool:
    """True for loopback (and unspecified) addresses and ``localhost``; False for the rest,
    including every other host name (we refuse rather than resolve)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


class NetGuard:
    """An installed guard; :meth:`uninstall` puts the original functions back."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.allow = frozenset(h.lower() for h in allow)
        self.blocked: list[str] = []
        """Every refused ``host:port``, for a test to report."""
        self._saved: list[tuple[Any, str, Any, bool]] = []

    def check(self, host: object, port: object) -> None:
        """Raise :class:`NetworkBlocked` unless ``host`` is local or allowed."""
        if is_local(host) or (isinstance(host, str) and host.lower() in self.allow):
            return
        target = f"{host}:{port}"
        self.blocked.append(target)
        raise NetworkBlocked(f"netguard: refused a connection to {target}; tests stay on loopback")

    def check_address(self, family: int, address: object) -> None:
        if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            self.check(address[0], address[1] if len(address) > 1 else "?")

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        own = name in vars(owner)
        self._saved.append((owner, name, vars(owner).get(name), own))
        setattr(replacement, _MARK, self)
        setattr(owner, name, replacement)

    def install(self) -> NetGuard:
        guard = self
        connect = socket.socket.connect
        connect_ex = socket.socket.connect_ex
        create_connection = socket.create_connection
        loop_create_connection = asyncio.BaseEventLoop.create_connection

        def guarded_connect(sock: socket.socket, address: Any) -> None:
            guard.check_address(sock.family, address)
            return connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
            guard.check_address(sock.family, address)
            return connect_ex(sock, address)

        def guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
            guard.check(address[0], address[1])
            return create_connection(address, *args, **kwargs)

        async def guarded_loop_create_connection(
            loop: asyncio.BaseEventLoop,
            protocol_factory: Any,
            host: Any = None,
            port: Any = None,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            if host is not None:
                guard.check(host, port)
            return await loop_create_connection(loop, protocol_factory, host, port, *args, **kwargs)

        self._patch(socket.socket, "connect", guarded_connect)
        self._patch(socket.socket, "connect_ex", guarded_connect_ex)
        self._patch(socket, "create_connection", guarded_create_connection)
        self._patch(asyncio.BaseEventLoop, "create_connection", guarded_loop_create_connection)
        return self

    def uninstall(self) -> None:
        for owner, name, original, own in reversed(self._saved):
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
        self._saved.clear()


def installed() -> NetGuard | None:
    """The guard currently in place, if any."""
    guard = getattr(socket.socket.connect, _MARK, None)
    return guard if isinstance(guard, NetGuard) else None


def install(allow: Iterable[str] = ()) -> NetGuard:
    """Refuse every connection that is not to loopback (or a host in ``allow``).

    Installing twice returns the guard already in place. Call ``.uninstall()`` to undo.
    """
    return installed() or NetGuard(allow).install()
