"""Which Redis a command talks to: ``--redis``, else the config's ``redis:``, else the
environment. Resolved once, into one typed value, so every command agrees."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from massgen.errors import ConfigError, ServiceUnreachable
from massgen.redact import redact_url

# massgen.mas' own names (a test keeps them equal): resolving does not import the bus.
REDIS_URL_ENV = "MASSGEN_REDIS_URL"
DEFAULT_PREFIX = "massgen:"

if TYPE_CHECKING:
    from massgen.config import TeamConfig


@dataclass(frozen=True, slots=True)
class BusTarget:
    """A Redis URL (it may hold a password: print :attr:`where`), the key prefix and the
    secret that signs messages (``None``: ``$MASSGEN_SECRET``, if set)."""

    url: str
    prefix: str = DEFAULT_PREFIX
    secret: str | None = None
    origin: tuple[str | None, int | None, str] = field(default=(None, None, ""), compare=False)
    """Where the URL was given (file, line, key): errors about it point there."""

    def __repr__(self) -> str:
        return f"BusTarget({self.where!r}, prefix={self.prefix!r})"

    @property
    def where(self) -> str:
        """The URL with its password masked."""
        return redact_url(self.url)

    @classmethod
    def resolve(
        cls, flag: str | None = None, config: TeamConfig | None = None, *, prefix: str | None = None
    ) -> BusTarget | None:
        """The bus ``flag``, else ``config.redis``, else ``$MASSGEN_REDIS_URL`` names, or None."""
        redis = config.redis if config is not None else None
        url = flag or (redis.url if redis is not None else None) or os.environ.get(REDIS_URL_ENV)
        if not url:
            return None
        origin: tuple[str | None, int | None, str]
        if flag:
            origin = (None, None, "--redis")
        elif redis is not None and config is not None:
            origin = (*config.locate("redis", "url"), "redis.url")
        else:
            origin = (None, None, REDIS_URL_ENV)
        from massgen.config.redisurl import problem

        wrong = problem(url)
        if wrong is not None:  # the config's own URL was checked when it was loaded
            file, line, key = origin
            raise ConfigError(wrong[0], file=file, line=line, key=key, hint=wrong[1])
        secret = redis.secret.get_secret_value() if redis and redis.secret else None
        prefix = prefix or (redis.prefix if redis is not None else DEFAULT_PREFIX)
        return cls(url=url, prefix=prefix, secret=secret or None, origin=origin)

    def check(self) -> None:
        """Reach this Redis once, before a command does anything: a ConfigError at the URL's
        origin when Redis refuses it, ServiceUnreachable (exit 2 too) when nothing answers."""
        from massgen.mas import RedisTransport

        async def reach() -> None:
            transport = RedisTransport(self.url, prefix=self.prefix)
            try:
                await transport.connect()
            finally:
                await transport.close()

        file, line, key = self.origin
        try:
            asyncio.run(reach())
        except ConfigError as e:
            if e.file is not None or e.key is not None:
                raise
            raise ConfigError(e.message, file=file, line=line, key=key, hint=e.hint) from None
        except ServiceUnreachable as e:
            given = f"{file}:{line} " if file and line else ""
            # the bus' own hint speaks to Python code (transport=...); this is a command's
            raise ServiceUnreachable(
                f"{e.message} ({given}`{key}`)",
                hint="is redis-server running, and are host, port and TLS (rediss://) right?",
            ) from None
