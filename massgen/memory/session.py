"""Sessions: a named conversation that continues across runs, kept in a store under
``session:{name}:`` (turns per agent, summary per agent, meta) and the ``sessions`` log."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from massgen.errors import ConfigError
from massgen.serialize import from_json, to_json
from massgen.store.base import Store

INDEX_LOG = "sessions"


def check_name(name: str) -> str:
    """A session name: letters, digits and ``-_.@`` (it becomes part of store keys)."""
    if not name or len(name) > 200 or not all(c.isalnum() or c in "-_.@" for c in name):
        hint = "use letters, digits and - _ . @ (at most 200 characters)"
        raise ConfigError(f"bad session name {name!r}", key="--session", hint=hint)
    return name


@dataclass(frozen=True, slots=True)
class Exchange:
    """One run of a session as one agent remembers it: the task and its own answer."""

    task: str
    answer: str
    run_id: str = ""
    at: float = 0.0


@dataclass(slots=True)
class SessionInfo:
    name: str
    created: float = 0.0
    updated: float = 0.0
    runs: int = 0
    agents: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Sessions:
    """The sessions kept in one store."""

    store: Store

    async def exchanges(self, name: str, agent: str) -> list[Exchange]:
        return [from_json(Exchange, r) for r in await self.store.read(_turns(name, agent))]

    async def summary(self, name: str, agent: str) -> tuple[str, int]:
        """``agent``'s running summary and how many oldest exchanges it replaces."""
        raw = await self.store.get(f"session:{name}:summary:{agent}")
        if raw is None:
            return "", 0
        d = json.loads(raw)
        return str(d["text"]), int(d["covered"])

    async def set_summary(self, name: str, agent: str, text: str, covered: int) -> None:
        data = json.dumps({"text": text, "covered": covered}, ensure_ascii=False).encode()
        await self.store.set(f"session:{name}:summary:{agent}", data)

    async def record(self, name: str, run_id: str, entries: dict[str, Exchange]) -> None:
        """Append one run's exchanges (by agent) and update the session's metadata."""
        info = await self.info(name)
        now = time.time()
        if info is None:
            info = SessionInfo(name, created=now)
            await self.store.append(INDEX_LOG, name.encode())
        for agent, exchange in entries.items():
            await self.store.append(_turns(name, agent), to_json(exchange))
            if agent not in info.agents:
                info.agents.append(agent)
        info.updated, info.runs = now, info.runs + 1
        await self.store.set(f"session:{name}:meta", to_json(info))

    async def info(self, name: str) -> SessionInfo | None:
        raw = await self.store.get(f"session:{name}:meta")
        return None if raw is None else from_json(SessionInfo, raw)

    async def list(self) -> list[SessionInfo]:
        names = dict.fromkeys(r.decode() for r in await self.store.read(INDEX_LOG))
        found = [await self.info(n) for n in names]
        return [i for i in found if i is not None]

    async def delete(self, name: str) -> bool:
        """Forget session ``name`` entirely; ``False`` if there was no such session."""
        info = await self.info(name)
        if info is None:
            return False
        for agent in info.agents:
            await self.store.trim(_turns(name, agent), 0)
        await self.store.delete_prefix(f"session:{name}:")
        names = [r for r in await self.store.read(INDEX_LOG) if r.decode() != name]
        await self.store.trim(INDEX_LOG, 0)
        for raw in names:
            await self.store.append(INDEX_LOG, raw)
        return True


def _turns(name: str, agent: str) -> str:
    return f"session:{name}:turns:{agent}"
