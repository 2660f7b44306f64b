"""The registry monitor: marks silent agents dead and reports what is stuck.

It is optional and routes no messages: agents find and talk to each other without it, and
live replicas reclaim each other's expired work on their own. What it adds is upkeep and
visibility: instances whose heartbeat expired are marked ``dead`` and dropped from discovery
(agents also skip expired ones, so discovery is right even without it); work a dead instance
held past its lease is taken from it (fencing it out), dead-lettered if it was delivered
``max_deliveries`` times already, otherwise handed back so the next live consumer of that
inbox takes it at once; dead letters and inboxes whose work waits with no live agent are
logged when their figures change.

Run it with ``python -m massgen.mas.service --redis redis://host:6379``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from massgen.errors import ConfigError, TransportError
from massgen.mas.connect import describe, resolve_transport
from massgen.mas.keys import DEFAULT_PREFIX
from massgen.mas.memory import MemoryHub
from massgen.mas.settings import BusSettings
from massgen.mas.tasks import cancel_and_wait
from massgen.mas.transport import AgentRecord, EntryId, InboxStats, Transport

log = logging.getLogger(__name__)

#: The consumer that holds work taken from dead instances until a live one reclaims it.
SERVICE_CONSUMER = "massgen-service"
_ORPHAN_BATCH = 1_000


def _ids(ids: Sequence[EntryId], shown: int = 10) -> str:
    text = ", ".join(str(i) for i in ids[:shown])
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


@dataclass(frozen=True, slots=True)
class Report:
    """What one monitoring pass found."""

    dead: list[AgentRecord] = field(default_factory=list)
    inboxes: list[InboxStats] = field(default_factory=list)
    released: dict[str, list[EntryId]] = field(default_factory=dict)
    """Per inbox: work taken from dead instances and handed back for redelivery."""
    dead_lettered: dict[str, list[EntryId]] = field(default_factory=dict)
    """Per inbox: work of dead instances that had used up its deliveries."""

    @property
    def dead_letters(self) -> dict[str, int]:
        return {s.agent_id: s.dead_letters for s in self.inboxes if s.dead_letters}


class MASService:
    """Runs :meth:`check` every ``interval`` seconds until stopped.

    Its bus is chosen as an :class:`~massgen.mas.Agent`'s: Redis at ``redis_url``, else
    ``$MASSGEN_REDIS_URL``, else ``redis://localhost:6379``; or ``transport``/``hub``."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        transport: Transport | None = None,
        hub: MemoryHub | None = None,
        prefix: str = DEFAULT_PREFIX,
        interval: float = 5.0,
        settings: BusSettings | None = None,
    ) -> None:
        self.interval = interval
        self.settings = settings or BusSettings()
        self._transport, self._owns = resolve_transport(
            redis_url, transport=transport, hub=hub, prefix=prefix
        )
        self._task: asyncio.Task[None] | None = None
        self._last_dlq: dict[str, int] = {}
        self._last_waiting: dict[str, tuple[int, int]] = {}
        self.last_report = Report()

    @property
    def where(self) -> str:
        """The bus watched: a Redis URL (password masked) or the in-process bus."""
        return describe(self._transport)

    def __repr__(self) -> str:
        return f"MASService(on={self.where!r}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        if self._owns:
            await self._transport.connect()
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name("mas:service")
        log.info("mas service started on %s (interval %gs)", self.where, self.interval)

    async def stop(self) -> None:
        if self._task is None:
            return
        await cancel_and_wait([self._task])
        self._task = None
        if self._owns:
            await self._transport.close()
        log.info("mas service stopped")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def check(self) -> Report:
        """One pass: reap expired agents, take work back from dead ones, collect inbox
        figures, log what changed."""
        t = self._transport
        dead = await t.reap(retention=self.settings.dead_retention)
        for r in dead:
            log.warning(
                "agent %s (instance %s on %s pid %d) missed its heartbeat: marked dead",
                r.id,
                r.instance_id,
                r.host,
                r.pid,
            )
        released: dict[str, list[EntryId]] = {}
        dead_lettered: dict[str, list[EntryId]] = {}
        stats = await t.inbox_stats()
        for s in stats:
            if s.pending:
                await self._reclaim_orphans(s.agent_id, released, dead_lettered)
        if released or dead_lettered:
            stats = await t.inbox_stats()
        live = {r.id for r in await t.discover()}
        for s in stats:
            if s.dead_letters != self._last_dlq.get(s.agent_id, 0):
                log.warning("inbox %s: %d dead letter(s)", s.agent_id, s.dead_letters)
                self._last_dlq[s.agent_id] = s.dead_letters
            waiting = (s.unread, s.pending) if s.agent_id not in live else (0, 0)
            if waiting != self._last_waiting.get(s.agent_id, (0, 0)):
                if waiting != (0, 0):
                    log.info(
                        "inbox %s: %d message(s) unread, %d delivered and unacknowledged, "
                        "no live agent",
                        s.agent_id,
                        s.unread,
                        s.pending,
                    )
                self._last_waiting[s.agent_id] = waiting
        self.last_report = Report(dead, stats, released, dead_lettered)
        return self.last_report

    async def _reclaim_orphans(
        self,
        agent_id: str,
        released: dict[str, list[EntryId]],
        dead_lettered: dict[str, list[EntryId]],
    ) -> None:
        s = self.settings
        while True:
            got = await self._transport.reclaim_orphans(
                agent_id,
                SERVICE_CONSUMER,
                lease=s.lease,
                max_deliveries=s.max_deliveries,
                count=_ORPHAN_BATCH,
                dlq_maxlen=s.dlq_maxlen,
            )
            holders = ", ".join(got.holders)
            if got.released:
                released.setdefault(agent_id, []).extend(got.released)
                log.warning(
                    "inbox %s: took %d message(s) from dead instance(s) %s past their lease "
                    "and handed them back for redelivery: %s",
                    agent_id,
                    len(got.released),
                    holders,
                    _ids(got.released),
                )
            if got.dead_lettered:
                dead_lettered.setdefault(agent_id, []).extend(got.dead_lettered)
                log.warning(
                    "inbox %s: dead-lettered %d message(s) of dead instance(s) %s after %d "
                    "deliveries: %s",
                    agent_id,
                    len(got.dead_lettered),
                    holders,
                    s.max_deliveries,
                    _ids(got.dead_lettered),
                )
            if len(got.released) + len(got.dead_lettered) < _ORPHAN_BATCH:
                return

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except TransportError as e:
                log.warning("mas service: check failed, retrying: %s", e)
            await asyncio.sleep(self.interval)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m massgen.mas.service``: run the monitor until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m massgen.mas.service", description=__doc__)
    parser.add_argument(
        "--redis", help="Redis URL (default: $MASSGEN_REDIS_URL, else redis://localhost:6379)"
    )
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="key prefix")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between passes")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def run() -> None:
        service = MASService(args.redis, prefix=args.prefix, interval=args.interval)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before the "started" line a supervisor reads
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await service.start()
        try:
            await stop.wait()
        finally:
            await service.stop()

    try:
        asyncio.run(run())
    except (ConfigError, TransportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
