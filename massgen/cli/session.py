"""`massgen session list|show|delete` and `massgen memory list|search|clear`, on the team's
memory store: ``--store``, else its Redis, else ``.massgen/memory.sqlite3``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from massgen.cli.exits import OK
from massgen.errors import ConfigError

if TYPE_CHECKING:
    from massgen.memory.long_term import MemoryItem
    from massgen.store.base import Store

T = TypeVar("T")


Where = tuple[Path | None, str | None, str | None]
"""The command's ``--config``, ``--store`` and ``--prefix``."""


def _no_session(name: str) -> ConfigError:
    return ConfigError(
        f"no session named {name!r}",
        key="NAME",
        hint="`massgen session list` shows the sessions kept",
    )


def _with_store(place: Where, work: Callable[[Store], Awaitable[T]]) -> T:
    from massgen.cli import team_store
    from massgen.orchestrator import DEFAULT_MEMORY_PATH
    from massgen.store import open_store

    config, store, prefix = place
    found, prefix = team_store(config, Path(DEFAULT_MEMORY_PATH), store=store, prefix=prefix)
    if isinstance(found, Path) and not found.exists():
        found = "memory://"  # nothing stored yet: answer from an empty store, create no file

    async def main() -> T:
        async with open_store(found, prefix=prefix) as opened:
            return await work(opened)

    return asyncio.run(main())


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def _clip(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# -- sessions -----------------------------------------------------------------------------------
def session_list(config: Path | None, store: str | None, prefix: str | None, json_out: bool) -> int:
    where = (config, store, prefix)
    from massgen.memory.session import Sessions

    found = _with_store(where, lambda s: Sessions(s).list())
    if json_out:
        print(json.dumps([i.to_dict() for i in found]))
        return OK
    if not found:
        print("no sessions")
    for info in found:
        print(
            f"{info.name}\t{info.runs} run(s)\tupdated {_when(info.updated)}"
            f"\tagents: {', '.join(info.agents)}"
        )
    return OK


def session_show(
    name: str, config: Path | None, store: str | None, prefix: str | None, json_out: bool
) -> int:
    where = (config, store, prefix)
    from massgen.memory.session import Sessions, check_name

    check_name(name)

    async def work(s: Store) -> dict[str, object] | None:
        sessions = Sessions(s)
        info = await sessions.info(name)
        if info is None:
            return None
        agents = {}
        for agent in info.agents:
            summary, covered = await sessions.summary(name, agent)
            turns = await sessions.exchanges(name, agent)
            agents[agent] = {
                "summary": summary,
                "summarized": covered,
                "turns": [{"task": t.task, "answer": t.answer, "run_id": t.run_id} for t in turns],
            }
        return {**info.to_dict(), "by_agent": agents}

    data = _with_store(where, work)
    if data is None:
        raise _no_session(name)
    if json_out:
        print(json.dumps(data, ensure_ascii=False))
        return OK
    print(f"session {name}: {data['runs']} run(s), updated {_when(float(data['updated']))}")  # type: ignore[arg-type]
    by_agent = data["by_agent"]
    assert isinstance(by_agent, dict)
    for agent, d in by_agent.items():
        print(f"\n[{agent}]")
        if d["summary"]:
            print(f"  summary of {d['summarized']} earlier turn(s): {_clip(d['summary'])}")
        for t in d["turns"][d["summarized"] :]:
            print(f"  task:   {_clip(t['task'])}\n  answer: {_clip(t['answer'])}")
    return OK


def session_delete(name: str, config: Path | None, store: str | None, prefix: str | None) -> int:
    where = (config, store, prefix)
    from massgen.memory.session import Sessions, check_name

    check_name(name)
    if _with_store(where, lambda s: Sessions(s).delete(name)):
        print(f"deleted session {name}")
        return OK
    raise _no_session(name)


# -- long-term memory ---------------------------------------------------------------------------
async def _logs(s: Store, agent: str | None) -> list[str | None]:
    """The memories to look at: ``agent``'s, else the team's and every agent's that has one.

    An agent with no memory of its own is a mistake worth saying (a typo would otherwise
    read as "nothing there"), with the names that have one."""
    from massgen.memory.long_term import AGENT_INDEX

    names = dict.fromkeys(r.decode() for r in await s.read(AGENT_INDEX))
    if agent:
        if agent not in names:
            known = ", ".join(names) or "none"
            raise ConfigError(
                f"no agent named {agent!r} has a memory of its own",
                key="--agent",
                hint=f"agents with one: {known}",
            )
        return [agent]
    return [None, *names]


def memory_list(
    config: Path | None, store: str | None, prefix: str | None, agent: str | None, json_out: bool
) -> int:
    where = (config, store, prefix)
    from massgen.memory.long_term import LongTermMemory

    async def work(s: Store) -> list[dict[str, object]]:
        rows = []
        for who in await _logs(s, agent):
            for item in await LongTermMemory(s, agent=who).items():
                rows.append({"memory": who or "team", **_item(item)})
        return rows

    rows = _with_store(where, work)
    _print_items(rows, json_out, "no long-term memory")
    return OK


def memory_search(
    query: str,
    config: Path | None,
    store: str | None,
    prefix: str | None,
    agent: str | None,
    k: int,
    json_out: bool,
) -> int:
    where = (config, store, prefix)
    from massgen.memory.long_term import LongTermMemory

    async def work(s: Store) -> list[dict[str, object]]:
        rows = []
        for who in await _logs(s, agent):
            for score, item in await LongTermMemory(s, agent=who).search(query, k):
                rows.append(
                    {"memory": who or "team", "score": float(f"{score:.3g}"), **_item(item)}
                )
        rows.sort(key=lambda r: -float(r["score"]))  # type: ignore[arg-type]
        return rows[:k]

    rows = _with_store(where, work)
    _print_items(rows, json_out, "nothing found")
    return OK


def memory_clear(
    config: Path | None, store: str | None, prefix: str | None, agent: str | None
) -> int:
    where = (config, store, prefix)
    from massgen.memory.long_term import LongTermMemory

    async def work(s: Store) -> int:
        return sum([await LongTermMemory(s, agent=who).clear() for who in await _logs(s, agent)])

    n = _with_store(where, work)
    print(f"forgot {n} item(s)" + (f" of {agent}" if agent else ""))
    return OK


def _item(item: MemoryItem) -> dict[str, object]:
    keys = ("id", "at", "agent", "task", "final", "own", "winner", "run_id")
    return {k: getattr(item, k) for k in keys}


def _print_items(rows: list[dict[str, object]], json_out: bool, empty: str) -> None:
    if json_out:
        print(json.dumps(rows, ensure_ascii=False))
        return
    if not rows:
        print(empty)
    for r in rows:
        score = f"  score {r['score']}" if "score" in r else ""
        print(f"[{r['memory']}] {_when(float(r['at']))}  {r['id']}{score}")  # type: ignore[arg-type]
        print(f"  task:  {_clip(str(r['task']))}\n  final: {_clip(str(r['final']))}")
