"""Pick the transport an agent or service uses, importing Redis only when it is needed."""

from __future__ import annotations

import os

from massgen.mas.keys import DEFAULT_PREFIX
from massgen.mas.memory import MemoryHub, MemoryTransport
from massgen.mas.transport import Transport

REDIS_URL_ENV = "MASSGEN_REDIS_URL"


def resolve_transport(
    redis_url: str | None = None,
    *,
    transport: Transport | None = None,
    hub: MemoryHub | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> tuple[Transport, bool]:
    """The transport to use and whether the caller owns it (and must close it).

    An explicit ``transport`` wins; then ``redis_url``, then ``$MASSGEN_REDIS_URL``; else the
    in-process bus (``hub``, or the event loop's default hub).
    """
    if transport is not None:
        return transport, False
    url = redis_url or os.environ.get(REDIS_URL_ENV)
    if url:
        from massgen.mas.redis_transport import RedisTransport

        return RedisTransport(url, prefix=prefix), True
    return MemoryTransport(hub), True
