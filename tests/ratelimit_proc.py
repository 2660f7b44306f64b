"""One of the processes of ``test_ratelimit_e2e``: a rate-limited backend from a team file.

Usage: ``python tests/ratelimit_proc.py TEAM.yaml WINDOW CALLS TAG``. Builds backend
``limited`` from the file (its ``rate_limit:`` and the ``redis:`` section say the limit and
where it is counted), warms up, prints ``ready``, waits for a line on stdin (so the processes
start together), sends ``CALLS`` requests at once and prints one JSON line: the answers and
errors.

The window is given here because the team file has no key for it: a minute would make the
test take minutes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import urlsplit

import aiohttp

from massgen.config import load
from massgen.errors import MassGenError
from massgen.resilience.breaker import endpoint_key
from massgen.resilience.ratelimit import RateLimit, RateLimitedBackend, RedisLimiter
from massgen.store.redis_client import RedisLease
from massgen.team import build_backend
from massgen.types import ChatMessage, CompletionRequest


async def warm_up(base_url: str) -> None:
    """Load the HTTP stack before the measured burst, as in a process that has been running
    a while: the backend imports aiohttp on its first request (about 0.2 s), which would
    otherwise sit between a request's grant and its arrival at the provider. The simulator
    does not record its ``/_sim/`` endpoints, so this is no provider request."""
    origin = urlsplit(base_url)._replace(path="", query="", fragment="").geturl()
    async with aiohttp.ClientSession() as session, session.get(origin + "/_sim/stats") as r:
        r.raise_for_status()


async def main(path: str, window: float, calls: int, tag: str) -> dict[str, list[str]]:
    team = load(path)
    cfg = team.backends["limited"]
    assert team.redis is not None and cfg.rate_limit is not None
    # The orchestrator would apply the configured limit with its one-minute window: put the
    # same limit with a short window around the bare backend here.
    raw = build_backend(cfg, team, "limited")
    limit = RateLimit(
        rpm=cfg.rate_limit.rpm,
        tpm=cfg.rate_limit.tpm,
        max_in_flight=cfg.rate_limit.max_in_flight,
        output_tokens=cfg.rate_limit.output_tokens,
        window=window,
    )
    client = RedisLease(team.redis.url)
    limiter = RedisLimiter(client, team.redis.prefix, endpoint_key(raw), limit)
    backend = RateLimitedBackend(raw, limiter)
    assert cfg.base_url is not None
    await warm_up(cfg.base_url)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the other process is ready too

    async def one(i: int) -> str:
        request = CompletionRequest(messages=(ChatMessage("user", f"{tag} call {i}"),))
        return (await backend.complete(request)).text

    try:
        outcomes = await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)
    finally:
        await backend.aclose()
        await client.aclose()
    return {
        "answers": [o for o in outcomes if isinstance(o, str)],
        "errors": [f"{type(o).__name__}: {o}" for o in outcomes if not isinstance(o, str)],
    }


if __name__ == "__main__":
    path, window, calls, tag = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    try:
        out = asyncio.run(main(path, window, calls, tag))
    except MassGenError as e:
        out = {"answers": [], "errors": [f"{type(e).__name__}: {e}"]}
    print(json.dumps(out), flush=True)
