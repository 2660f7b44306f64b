"""The optional registry monitor (``python -m massgen.mas.service --redis URL``): it marks
silent agents dead, takes work held past its lease from dead instances (dead-lettered once
its deliveries are used up, else handed back for redelivery) and logs dead letters and work
waiting with no live agent. Agents find each other and reclaim work without it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from massgen.errors import ConfigError, TransportError
from massgen.mas.memory import MemoryHub
from massgen.mas.transport import (
    DEFAULT_PREFIX,
    AgentRecord,
    BusSettings,
    EntryId,
    InboxStats,
    Lifecycle,
    Transport,
    cancel_and_wait,
    resolve_transport,
)

log = logging.getLogger(__name__)

SERVICE_CONSUMER = "massgen-service"
_ORPHAN_BATCH = 1_000


def _ids(ids: Sequence[EntryId], shown: int = 10) -> str:
    text = ", ".join(str(i) for i in ids[:shown])
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


@dataclass(frozen=True, slots=True)
class Report:
    """What one pass found; ``released``/``dead_lettered``: work of dead instances, by inbox."""

    dead: list[AgentRecord] = field(default_factory=list)
    inboxes: list[InboxStats] = field(default_factory=list)
    released: dict[str, list[EntryId]] = field(default_factory=dict)
    dead_lettered: dict[str, list[EntryId]] = field(default_factory=dict)


class MASService(Lifecycle):
    """Runs :meth:`check` every ``interval`` seconds; its bus is chosen as an agent's."""

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
        return self._transport.where

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
        self._task = asyncio.create_task(self._run(), name="mas:service")
        log.info("mas service started on %s (interval %gs)", self.where, self.interval)

    async def stop(self) -> None:
        if self._task is None:
            return
        await cancel_and_wait([self._task])
        self._task = None
        if self._owns:
            await self._transport.close()
        log.info("mas service stopped")

    async def check(self) -> Report:
        """One pass: reap, take work back from dead instances, log what changed."""
        t = self._transport
        report = Report(await t.reap(retention=self.settings.dead_retention))
        for r in report.dead:
            log.warning(
                f"agent {r.id} (instance {r.instance_id} on {r.host} pid {r.pid}) missed its "
                "heartbeat: marked dead"
            )
        stats = await t.inbox_stats()
        for s in stats:
            if s.pending:
                await self._reclaim_orphans(s.agent_id, report)
        if report.released or report.dead_lettered:
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
                        f"inbox {s.agent_id}: {s.unread} message(s) unread, {s.pending} "
                        "delivered and unacknowledged, no live agent"
                    )
                self._last_waiting[s.agent_id] = waiting
        report.inboxes.extend(stats)
        self.last_report = report
        return report

    async def _reclaim_orphans(self, agent_id: str, report: Report) -> None:
        s = self.settings
        while True:
            got = await self._transport.reclaim_orphans(
                agent_id, SERVICE_CONSUMER, s, _ORPHAN_BATCH
            )
            holders = ", ".join(got.holders)
            if got.released:
                report.released.setdefault(agent_id, []).extend(got.released)
                log.warning(
                    f"inbox {agent_id}: took {len(got.released)} message(s) from dead "
                    f"instance(s) {holders} past their lease and handed them back for "
                    f"redelivery: {_ids(got.released)}"
                )
            if got.dead_lettered:
                report.dead_lettered.setdefault(agent_id, []).extend(got.dead_lettered)
                log.warning(
                    f"inbox {agent_id}: dead-lettered {len(got.dead_lettered)} message(s) of "
                    f"dead instance(s) {holders} after {s.max_deliveries} deliveries: "
                    + _ids(got.dead_lettered)
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
        stop = asyncio.Event()
        # before start(): a signal sent once the start line is logged must stop us cleanly
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with MASService(args.redis, prefix=args.prefix, interval=args.interval):
            await stop.wait()

    try:
        asyncio.run(run())
    except (ConfigError, TransportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2  # a bad, refused or silent Redis alike, as every massgen command
    return 0


if __name__ == "__main__":
    sys.exit(main())
