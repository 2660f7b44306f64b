"""Check a Redis URL once, where it is read (the config's ``redis.url``, ``--redis``,
``$MASSGEN_REDIS_URL``), so a typo is one located error instead of a traceback from deep
inside the client on first use.

What the server alone can tell (a database number it does not have, credentials) is checked
when a command first connects (:meth:`massgen.distributed.target.BusTarget.check`)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

SCHEMES = ("redis", "rediss", "unix")
HINT = "use redis://[user:password@]host[:port][/db] (rediss:// for TLS), e.g. redis://localhost:6379/0"
_CERT_REQS = ("none", "optional", "required")


def problem(url: str) -> tuple[str, str] | None:
    """What is wrong with ``url`` and a hint, or ``None`` when it is fine. The message never
    quotes the URL (it may hold a password)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a URL", HINT
    if parts.scheme not in SCHEMES:
        return "must be a `redis://`, `rediss://` or `unix://` URL", HINT
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.scheme != "unix":
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            return "the port must be a number from 1 to 65535", HINT
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            return "the database (the path after the port) must be a number, e.g. /0", HINT
    for name, value in query:
        if name == "db" and not value.isdigit():
            return "`db=` must be a database number, e.g. db=0", HINT
        if name == "ssl_cert_reqs" and value.lower() not in _CERT_REQS:
            return (
                "`ssl_cert_reqs=` must be none, optional or required",
                "e.g. rediss://host:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.pem",
            )
    if query:  # the other options' values, as the client will parse them
        from redis.asyncio.connection import parse_url

        try:
            parse_url(url)
        except ValueError as e:  # redis-py's messages name the option, never the URL
            return str(e).rstrip(".").replace("connection URL", "the URL"), HINT
    return None
