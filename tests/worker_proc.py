"""A ``massgen worker`` with a short heartbeat TTL, for the tests that kill one.

Usage: ``python tests/worker_proc.py TEAM.yaml AGENT TTL``. Hosts ``AGENT`` of the team on
the team's Redis as ``massgen worker`` does, but heartbeating every ``TTL / 4`` seconds so
that the registry drops it ``TTL`` seconds after it dies (the team file has no key for the
bus timings: the default 15 s would make the test slow). Prints ``hosting AGENT`` once
registered and serves until killed.
"""

from __future__ import annotations

import asyncio
import sys

from massgen.config import load
from massgen.distributed.worker import DRAIN_TIMEOUT, Worker
from massgen.mas import BusSettings
from massgen.orchestrator import Orchestrator


async def main(path: str, agent: str, ttl: float) -> None:
    team = load(path)
    assert team.redis is not None
    orchestrator = Orchestrator.from_config(team)
    settings = BusSettings(
        heartbeat_interval=ttl / 4, heartbeat_ttl=ttl, drain_timeout=DRAIN_TIMEOUT
    )
    async with orchestrator:
        worker = Worker(
            orchestrator,
            [agent],
            redis_url=team.redis.url,
            prefix=team.redis.prefix,
            settings=settings,
        )
        async with worker:
            print(f"hosting {agent}", flush=True)
            await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
