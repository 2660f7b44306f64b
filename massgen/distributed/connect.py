"""Put a run on the bus: agents a live worker hosts are reached remotely, the rest (and any
whose workers all die) run here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from massgen.agents.handle import LocalHandle
from massgen.distributed.remote import DEFAULT_HEARTBEAT_TTL, LiveFeeds, RemoteHandle, label
from massgen.distributed.worker import LLM, role_digest, turn_timeout
from massgen.errors import ConfigError
from massgen.mas import DEFAULT_PREFIX, BusSettings, MemoryHub, Transport
from massgen.mas import Agent as BusAgent

if TYPE_CHECKING:
    from massgen.mas import AgentRecord
    from massgen.orchestrator import Orchestrator

# Every run's client is a replica of this bus id: no per-run inbox is left behind, and
# replies still go to the run's own instance.
CLIENT_ID = "massgen-run"
Registry = Mapping[str, dict[str, Any]]  # a live agent's name -> its registry record


@dataclass(frozen=True, slots=True)
class Placement:
    """Where each agent of the run runs; ``remote``: agent name to live replicas."""

    where: str
    remote: Mapping[str, int] = field(default_factory=dict)
    local: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()  # hosted under the same name with another role: local

    def describe(self) -> str:
        """One line for stderr, e.g. ``ada (2 workers), bob on redis://h:6379/0; local: cy``."""
        remote = ", ".join(
            f"{n} ({r} workers)" if r > 1 else n for n, r in sorted(self.remote.items())
        )
        parts = [f"{remote or 'no agent'} on workers at {self.where}"]
        if self.local:
            parts.append("local: " + ", ".join(self.local))
        if self.mismatched:
            others = ", ".join(repr(n) for n in self.mismatched)
            parts.append(
                f"a worker hosts another {others} (role differs; use one redis prefix per team)"
            )
        return "; ".join(parts)


@asynccontextmanager
async def distributed(
    orchestrator: Orchestrator,
    redis_url: str | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    secret: str | None = None,
    settings: BusSettings | None = None,
    transport: Transport | None = None,
    hub: MemoryHub | None = None,
) -> AsyncIterator[Placement]:
    """Within the block, ``orchestrator`` sends each hosted agent's turns to its workers (bus:
    ``redis_url``, else ``$MASSGEN_REDIS_URL``, a ``transport`` or a ``hub``). ConfigError
    before anything is sent when Redis refuses, or every worker of an agent signs otherwise."""
    run = f"run-{uuid.uuid4().hex[:12]}"
    client = BusAgent(
        CLIENT_ID,
        ["client"],
        redis_url,
        transport=transport,
        hub=hub,
        prefix=prefix,
        secret=secret,
        replica=True,
        concurrency=1,
        settings=settings,
        metadata={"run": run},
        check_secret=False,  # the workers this run uses are checked below, by name
    )
    await client.start()
    saved = dict(orchestrator.handles)
    feeds = LiveFeeds(client.transport, secret=secret, settings=settings)
    try:
        live = {a["id"]: a for a in await client.discover([LLM])}
        mismatched = {r.instance_id: r for r in await client.secret_mismatches()}
        placement = _place(orchestrator, live, client, run, feeds)
        _check_secrets(placement, live, mismatched, signed=client.signs)
        yield placement
    finally:
        orchestrator.handles.clear()
        orchestrator.handles.update(saved)
        try:
            await feeds.stop()
        finally:
            await client.stop()


def _place(
    orchestrator: Orchestrator, live: Registry, client: BusAgent, run: str, feeds: LiveFeeds
) -> Placement:
    remote: dict[str, int] = {}
    local: list[str] = []
    mismatched: list[str] = []
    handles = orchestrator.handles
    where = str(getattr(client.transport, "where", "the in-process bus"))
    fallback = turn_timeout(None, None, client.settings.lease)  # with the run's own lease
    for name, agent in orchestrator.agents.items():
        found = live.get(name)
        meta = found["metadata"] if found is not None else {}
        if found is None or meta.get("role_digest") not in (None, role_digest(agent.role)):
            local.append(name)
            if found is not None:  # hosted under this name with another role
                mismatched.append(name)
            continue
        here = handles.get(name)
        handles[name] = RemoteHandle(
            agent,
            client,
            timeout=_positive(meta.get("turn_timeout"), fallback),
            supports_tools=bool(meta.get("tools", False)),
            run=run,
            live=feeds,
            local=here if isinstance(here, LocalHandle) else None,
            heartbeat_ttl=_positive(meta.get("heartbeat_ttl"), DEFAULT_HEARTBEAT_TTL),
            workers=[label(i) for i in found.get("instances", [])],
        )
        remote[name] = int(found.get("replicas", 1))
    return Placement(where, remote, tuple(local), tuple(mismatched))


def _positive(value: Any, default: float) -> float:
    """``value`` if a worker advertised a usable number, else ``default``."""
    return float(value) if isinstance(value, int | float) and value > 0 else default


def _check_secrets(
    placement: Placement, live: Registry, mismatched: Mapping[str, AgentRecord], *, signed: bool
) -> None:
    """Refuse the run when every worker of a remote agent signs otherwise than the run (they
    would refuse its turns, or it their answers); a partial mismatch is left to the bus."""
    bad: dict[tuple[str, str], list[str]] = {}  # (workers, how) -> agents
    for name in sorted(placement.remote):
        instances = live[name].get("instances", [])
        if not instances or not all(i["instance_id"] in mismatched for i in instances):
            continue
        workers = ", ".join(sorted({label(i) for i in instances}))
        if not signed:
            how = "sign with a secret and this run has none"
        elif not any(mismatched[i["instance_id"]].proof for i in instances):
            how = "have no secret and this run has one"
        else:
            how = "sign with another secret than this run"
        bad.setdefault((workers, how), []).append(name)
    if bad:
        said = "; ".join(
            f"the workers of {', '.join(names)} ({workers}) {how}"
            for (workers, how), names in bad.items()
        )
        raise ConfigError(
            said + ": check that redis.secret / MASSGEN_SECRET is the same for the run and "
            "its workers (`massgen agents list` shows who differs)"
        )
