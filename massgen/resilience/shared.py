"""While Redis is away, shared rate limits and circuit breakers count in this process for
:attr:`Shared.hold` seconds, then try Redis again; a warning says when each starts."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from massgen.errors import TransportError

log = logging.getLogger(__name__)


class Shared:
    """Steps run on ``remote`` (Redis), or ``local`` while it is away; ``both`` on both."""

    def __init__(self, what: str, remote: object, local: object, *, both: Collection[str] = ()):
        self.what, self.remote, self.local, self.both = what, remote, local, both
        self.hold = 10.0  # each try may take the client's whole retry budget: not every call
        self._until, self._lost = 0.0, False

    @property
    def active(self) -> bool:
        """True while the local state stands in for Redis."""
        return self._lost and time.monotonic() < self._until

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if name.startswith("_"):
            raise AttributeError(name)
        here = getattr(self.local, name)  # a step the store does not have fails here

        async def step(*args: Any) -> Any:
            # Redis not there: ``here``; Redis refusing us (credentials...): TransportError.
            from redis import exceptions as rexc

            if name in self.both:
                await here(*args)
            if self.active:
                return await here(*args)
            try:
                out = await getattr(self.remote, name)(*args)
            except rexc.RedisError as e:
                gone = isinstance(e, rexc.ConnectionError | rexc.TimeoutError)
                if not gone or isinstance(e, rexc.AuthenticationError | rexc.AuthorizationError):
                    raise TransportError(f"{self.what} in Redis: {type(e).__name__}") from e
                if not self._lost:
                    say = "%s: Redis unreachable (%s); counting in this process until it is back"
                    log.warning(say, self.what, type(e).__name__)
                self._lost, self._until = True, time.monotonic() + self.hold
                return await here(*args)
            if self._lost:
                self._lost = False
                log.warning("%s: Redis is back; shared again", self.what)
            return out

        return step
