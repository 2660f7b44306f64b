"""Pick the transport an agent or service uses, importing Redis only when it is needed.

Like the seed framework's agents, ours need only a Redis URL and default to a local Redis,
so agents in separate processes meet with no wiring. The in-process bus is opt-in:
``transport=MemoryTransport()`` (agents of one event loop meet) or ``hub=MemoryHub()`` (a
private group).
"""

from __future__ import annotations

import os

from massgen.mas.keys import DEFAULT_PREFIX
from massgen.mas.memory import MemoryHub, MemoryTransport
from massgen.mas.transport import Transport

REDIS_URL_ENV = "MASSGEN_REDIS_URL"
#: The Redis used when neither ``redis_url`` nor ``$MASSGEN_REDIS_URL`` names one.
DEFAULT_REDIS_URL = "redis://localhost:6379"


def resolve_transport(
    redis_url: str | None = None,
    *,
    transport: Transport | None = None,
    hub: MemoryHub | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> tuple[Transport, bool]:
    """The transport to use and whether the caller owns it (and must close it).

    An explicit ``transport`` is used as is (the caller keeps it); ``hub`` means the
    in-process bus on that hub; otherwise Redis at ``redis_url``, else
    ``$MASSGEN_REDIS_URL``, else :data:`DEFAULT_REDIS_URL`. Naming two of ``transport``,
    ``hub`` and ``redis_url`` is a ``ValueError``: which one would you mean?
    """
    given = {"transport": transport is not None, "hub": hub is not None, "redis_url": redis_url}
    named = [name for name, present in given.items() if present]
    if len(named) > 1:
        raise ValueError(f"pass one of transport, hub and redis_url, not {' and '.join(named)}")
    if transport is not None:
        return transport, False
    if hub is not None:
        return MemoryTransport(hub), True
    url = redis_url or os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL
    from massgen.mas.redis_transport import RedisTransport

    return RedisTransport(url, prefix=prefix), True


def describe(transport: Transport) -> str:
    """Where a transport's bus is, for logs and reprs (a Redis URL without its password)."""
    where = getattr(transport, "where", None)
    return where if isinstance(where, str) else repr(transport)
