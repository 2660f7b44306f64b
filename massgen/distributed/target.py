"""Which Redis a command talks to: ``--redis``, else the config's ``redis:``, else the
environment. Resolved once, into one typed value, so every command agrees."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

# The bus runtime's own names, repeated so that resolving (usually to "no Redis") does not
# import it; a test keeps them equal to massgen.mas.REDIS_URL_ENV and DEFAULT_PREFIX.
REDIS_URL_ENV = "MASSGEN_REDIS_URL"
DEFAULT_PREFIX = "massgen:"

if TYPE_CHECKING:
    from massgen.config import TeamConfig


@dataclass(frozen=True, slots=True)
class BusTarget:
    """A Redis URL (it may hold a password: print :attr:`where` instead), the key prefix
    and the shared secret that signs messages (``None``: ``$MASSGEN_SECRET``, if set)."""

    url: str
    prefix: str = DEFAULT_PREFIX
    secret: str | None = None

    def __repr__(self) -> str:
        return f"BusTarget({self.where!r}, prefix={self.prefix!r})"

    @property
    def where(self) -> str:
        """The URL with its password masked."""
        from massgen.redact import redact_url

        return redact_url(self.url)

    @classmethod
    def resolve(
        cls,
        flag: str | None = None,
        config: TeamConfig | None = None,
        *,
        prefix: str | None = None,
    ) -> BusTarget | None:
        """The bus to use, or ``None`` when nothing names one (everything stays local).

        The URL comes from ``flag``, else ``config.redis.url``, else ``$MASSGEN_REDIS_URL``;
        the prefix from ``prefix``, else the config, else ``massgen:``.
        """
        redis = config.redis if config is not None else None
        url = flag or (redis.url if redis is not None else None) or os.environ.get(REDIS_URL_ENV)
        if not url:
            return None
        secret = redis.secret.get_secret_value() if redis and redis.secret else None
        return cls(
            url=url,
            prefix=prefix or (redis.prefix if redis is not None else DEFAULT_PREFIX),
            secret=secret or None,
        )
