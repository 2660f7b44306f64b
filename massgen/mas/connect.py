"""Pick the transport an agent or service uses: Redis by default (as the seed framework's
agents, so processes meet with no wiring), the in-process bus when asked for."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypeAlias

from massgen.mas.keys import DEFAULT_PREFIX
from massgen.mas.memory import MemoryHub, MemoryTransport

if TYPE_CHECKING:
    from massgen.mas.redis_transport import RedisTransport

Transport: TypeAlias = "MemoryTransport | RedisTransport"
"""What an agent needs of a bus (registry, inboxes with leases, replies, state): both kinds
pass one contract suite (tests/mas/test_contract.py), and mypy checks each call on both."""

REDIS_URL_ENV = "MASSGEN_REDIS_URL"
DEFAULT_REDIS_URL = "redis://localhost:6379"
"""The Redis used when neither ``redis_url`` nor ``$MASSGEN_REDIS_URL`` names one."""


def resolve_transport(
    redis_url: str | None = None,
    *,
    transport: Transport | None = None,
    hub: MemoryHub | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> tuple[Transport, bool]:
    """The transport and whether the caller owns it (must close it): ``transport`` as is,
    ``hub``'s in-process bus, else Redis at ``redis_url``, ``$MASSGEN_REDIS_URL`` or the
    default. Naming two of them is a ``ValueError``: which one would you mean?"""
    given = {"transport": transport is not None, "hub": hub is not None, "redis_url": redis_url}
    named = [name for name, present in given.items() if present]
    if len(named) > 1:
        raise ValueError(f"pass one of transport, hub and redis_url, not {' and '.join(named)}")
    if transport is not None:
        return transport, False
    if hub is not None:
        return MemoryTransport(hub), True
    return redis_transport(redis_url, prefix), True


def redis_transport(redis_url: str | None, prefix: str = DEFAULT_PREFIX) -> RedisTransport:
    """Redis at ``redis_url``, else ``$MASSGEN_REDIS_URL``, else the default."""
    from massgen.mas.redis_transport import RedisTransport

    url = redis_url or os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL
    return RedisTransport(url, prefix=prefix)
