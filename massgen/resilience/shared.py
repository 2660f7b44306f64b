"""When Redis is away, shared rate limits and circuit breakers fall back to this process.

Their Redis client already retries a lost connection with backoff (the store's and the bus's
way, see :func:`massgen.store.redis_store.redis_client`), so a restart of a few seconds
only delays a call. If Redis is still unreachable after those retries, the call is not
failed for it: the limit or circuit is kept in this process for :data:`HOLD` seconds, then
Redis is tried again. A warning says when that starts, another when Redis is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

HOLD = 10.0
"""Seconds the local state is used after Redis failed, before Redis is tried again (each
try may take the client's whole retry budget, so not on every call)."""


class LocalFallback:
    """Whether a shared state should be asked in Redis (:attr:`active` false) or kept in
    this process for now. ``what`` names the state in the warnings."""

    def __init__(
        self, what: str, *, hold: float = HOLD, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.what = what
        self.hold = hold
        self._clock = clock
        self._until = 0.0
        self._local = False

    @property
    def active(self) -> bool:
        """True while the local state stands in for Redis."""
        return self._local and self._clock() < self._until

    def lost(self, error: BaseException) -> None:
        """Redis did not answer, retries included: stand in for it for a while."""
        if not self._local:
            log.warning(
                "%s: Redis unreachable (%s); counting in this process until it is back",
                self.what,
                type(error).__name__,
            )
        self._local = True
        self._until = self._clock() + self.hold

    def back(self) -> None:
        """Redis answered."""
        if self._local:
            self._local = False
            log.warning("%s: Redis is back; shared again", self.what)


def unreachable(error: BaseException) -> bool:
    """Whether a redis-py error means Redis is not there (connection lost or refused,
    timed out, still loading its data), as opposed to Redis refusing us (credentials,
    permissions) or a bug: only the former falls back to local state."""
    from redis import exceptions as rexc

    return isinstance(error, rexc.ConnectionError | rexc.TimeoutError) and not isinstance(
        error, rexc.AuthenticationError | rexc.AuthorizationError
    )
