"""When Redis is away, shared rate limits and circuit breakers count in this process.

Their Redis client retries a lost connection with backoff (see
:func:`massgen.store.redis_store.redis_client`), so a restart of a few seconds only delays a
call. Past that, the call is not failed for it: the state is kept in this process for
:data:`HOLD` seconds, then Redis is tried again. A warning says when each starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from massgen.errors import TransportError

log = logging.getLogger(__name__)
S = TypeVar("S")
T = TypeVar("T")

HOLD = 10.0
"""Seconds the local state is used after Redis failed (each try may take the client's whole
retry budget, so not on every call)."""


class Shared(Generic[S]):
    """A store whose steps run on ``remote`` (in Redis), or on ``local`` while Redis is
    unreachable; the steps named in ``both`` (giving back what the local store may hold)
    run on both. ``what`` names the state in warnings and errors."""

    def __init__(self, what: str, remote: object, local: S, *, both: frozenset[str] = frozenset()):
        self.what = what
        self.remote = remote
        self.local = local
        self.both = both
        self.hold = HOLD
        self._until = 0.0
        self._lost = False

    @property
    def active(self) -> bool:
        """True while the local state stands in for Redis."""
        return self._lost and time.monotonic() < self._until

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)
        here = getattr(self.local, name)  # a step the store does not have fails here

        async def step(*args: Any) -> Any:
            if name in self.both:
                await here(*args)
            return await self.run(lambda: getattr(self.remote, name)(*args), lambda: here(*args))

        return step

    async def run(self, remote: Callable[[], Awaitable[T]], here: Callable[[], Awaitable[T]]) -> T:
        """``remote()``; ``here()`` when Redis is not there (connection lost or refused,
        timed out, loading). Redis refusing us (credentials, permissions) is a
        :class:`TransportError`, not a reason to count locally."""
        from redis import exceptions as rexc

        if self.active:
            return await here()
        try:
            out = await remote()
        except rexc.RedisError as e:
            gone = isinstance(e, rexc.ConnectionError | rexc.TimeoutError)
            if not gone or isinstance(e, rexc.AuthenticationError | rexc.AuthorizationError):
                raise TransportError(f"{self.what} in Redis: {type(e).__name__}") from e
            if not self._lost:
                log.warning(
                    "%s: Redis unreachable (%s); counting in this process until it is back",
                    self.what,
                    type(e).__name__,
                )
            self._lost, self._until = True, time.monotonic() + self.hold
            return await here()
        if self._lost:
            self._lost = False
            log.warning("%s: Redis is back; shared again", self.what)
        return out
