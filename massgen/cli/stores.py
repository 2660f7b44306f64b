"""`massgen session list|show|delete` and `massgen memory list|search|clear`, on the team's
memory store (``--store``, else its Redis, else ``.massgen/memory.sqlite3``), and `massgen
cache stats|clear` on its response cache."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from massgen.cli.common import OK, Arg, FindConfig, Json, Opt, Prefix, StoreTarget, command, group
from massgen.types import clipped

if TYPE_CHECKING:
    from massgen.errors import ConfigError
    from massgen.memory.long_term import LongTermMemory, MemoryItem
    from massgen.store.base import Store

T = TypeVar("T")
Name = Annotated[str, Arg(help="Session name.")]
OnlyAgent = Annotated[str | None, Opt("--agent", "-a", help="Only this agent's own memory.")]
sessions = group("List, show or delete sessions (--session).")
memory = group("Look at, search or clear long-term memory.")
cache = group("Look at or empty the response cache.")


def _no_session(name: str) -> ConfigError:
    from massgen.errors import ConfigError

    hint = "`massgen session list` shows the sessions kept"
    return ConfigError(f"no session named {name!r}", key="NAME", hint=hint)


def _on_store(target: str | Path, prefix: str, work: Callable[[Store], Awaitable[T]]) -> T:
    import asyncio

    from massgen.store import open_store

    async def main() -> T:
        async with open_store(target, prefix=prefix) as opened:
            return await work(opened)

    return asyncio.run(main())


def _with_store(
    config: Path | None,
    store: str | None,
    prefix: str | None,
    work: Callable[[Store], Awaitable[T]],
) -> T:
    from massgen.cli import team_store
    from massgen.orchestrator import DEFAULT_MEMORY_PATH

    found, prefix = team_store(config, Path(DEFAULT_MEMORY_PATH), store=store, prefix=prefix)
    if isinstance(found, Path) and not found.exists():
        found = "memory://"  # nothing stored yet: answer from an empty store, create no file
    return _on_store(found, prefix, work)


def _print_json(data: object) -> int:
    import json

    print(json.dumps(data, ensure_ascii=False))
    return OK


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


# -- sessions -----------------------------------------------------------------------------------
@command(sessions, "list")
def session_list(
    config: FindConfig = None,
    store: StoreTarget = None,
    prefix: Prefix = None,
    json_out: Json = False,
) -> int:
    """Every session: runs, last update, agents."""
    from massgen.memory.session import Sessions
    from massgen.serialize import to_dict

    found = _with_store(config, store, prefix, lambda s: Sessions(s).list())
    if json_out:
        return _print_json([to_dict(i) for i in found])
    if not found:
        print("no sessions")
    for info in found:
        agents = ", ".join(info.agents)
        print(f"{info.name}\t{info.runs} run(s)\tupdated {_when(info.updated)}\tagents: {agents}")
    return OK


@command(sessions, "show")
def session_show(
    name: Name,
    config: FindConfig = None,
    store: StoreTarget = None,
    prefix: Prefix = None,
    json_out: Json = False,
) -> int:
    """What each agent remembers of session NAME (exit 1 if there is none)."""
    from massgen.memory.session import Sessions, check_name
    from massgen.serialize import to_dict

    check_name(name)

    async def work(s: Store) -> dict[str, Any] | None:
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
        return {**to_dict(info), "by_agent": agents}

    data = _with_store(config, store, prefix, work)
    if data is None:
        raise _no_session(name)
    if json_out:
        return _print_json(data)
    print(f"session {name}: {data['runs']} run(s), updated {_when(data['updated'])}")
    for agent, d in data["by_agent"].items():
        print(f"\n[{agent}]")
        if d["summary"]:
            print(f"  summary of {d['summarized']} earlier turn(s): {clipped(d['summary'], 100)}")
        for t in d["turns"][d["summarized"] :]:
            print(f"  task:   {clipped(t['task'], 100)}\n  answer: {clipped(t['answer'], 100)}")
    return OK


@command(sessions, "delete")
def session_delete(
    name: Name, config: FindConfig = None, store: StoreTarget = None, prefix: Prefix = None
) -> int:
    """Forget session NAME entirely (exit 1 if there is none)."""
    from massgen.memory.session import Sessions, check_name

    check_name(name)
    if _with_store(config, store, prefix, lambda s: Sessions(s).delete(name)):
        print(f"deleted session {name}")
        return OK
    raise _no_session(name)


# -- long-term memory ---------------------------------------------------------------------------
async def _memories(s: Store, agent: str | None) -> list[tuple[str, LongTermMemory]]:
    """The memories to look at, by name: ``agent``'s, else the team's and every agent's that
    has one. An agent without one is an error naming those that have one (a typo would
    otherwise read as "nothing there")."""
    from massgen.errors import ConfigError
    from massgen.memory.long_term import AGENT_INDEX, LongTermMemory

    names = dict.fromkeys(r.decode() for r in await s.read(AGENT_INDEX))
    if agent and agent not in names:
        message = f"no agent named {agent!r} has a memory of its own"
        hint = f"agents with one: {', '.join(names) or 'none'}"
        raise ConfigError(message, key="--agent", hint=hint)
    whose = [agent] if agent else [None, *names]
    return [(who or "team", LongTermMemory(s, agent=who)) for who in whose]


@command(memory, "list")
def memory_list(
    config: FindConfig = None,
    store: StoreTarget = None,
    prefix: Prefix = None,
    agent: OnlyAgent = None,
    json_out: Json = False,
) -> int:
    """Every long-term item, the team's and each agent's."""

    async def work(s: Store) -> list[dict[str, Any]]:
        return [
            {"memory": who, **_item(item)}
            for who, kept in await _memories(s, agent)
            for item in await kept.items()
        ]

    return _print_items(_with_store(config, store, prefix, work), json_out, "no long-term memory")


@command(memory, "search")
def memory_search(
    query: Annotated[str, Arg(help="Words to look for.")],
    config: FindConfig = None,
    store: StoreTarget = None,
    prefix: Prefix = None,
    agent: OnlyAgent = None,
    k: Annotated[int, Opt("--top", "-k", min=1, help="How many items.")] = 5,
    json_out: Json = False,
) -> int:
    """The items most relevant to QUERY (BM25), best first."""

    async def work(s: Store) -> list[dict[str, Any]]:
        rows = [
            {"memory": who, "score": float(f"{score:.3g}"), **_item(item)}
            for who, kept in await _memories(s, agent)
            for score, item in await kept.search(query, k)
        ]
        return sorted(rows, key=lambda r: -r["score"])[:k]

    return _print_items(_with_store(config, store, prefix, work), json_out, "nothing found")


@command(memory, "clear")
def memory_clear(
    config: FindConfig = None,
    store: StoreTarget = None,
    prefix: Prefix = None,
    agent: OnlyAgent = None,
) -> int:
    """Forget every long-term item (or only ``--agent``'s)."""

    async def work(s: Store) -> int:
        return sum([await kept.clear() for _, kept in await _memories(s, agent)])

    n = _with_store(config, store, prefix, work)
    print(f"forgot {n} item(s)" + (f" of {agent}" if agent else ""))
    return OK


def _item(item: MemoryItem) -> dict[str, Any]:
    keys = ("id", "at", "agent", "task", "final", "own", "winner", "run_id")
    return {k: getattr(item, k) for k in keys}


def _print_items(rows: list[dict[str, Any]], json_out: bool, empty: str) -> int:
    if json_out:
        return _print_json(rows)
    if not rows:
        print(empty)
    for r in rows:
        score = f"  score {r['score']}" if "score" in r else ""
        print(f"[{r['memory']}] {_when(r['at'])}  {r['id']}{score}")
        print(f"  task:  {clipped(r['task'], 100)}\n  final: {clipped(r['final'], 100)}")
    return OK


# -- response cache ---------------------------------------------------------------------------
@command(cache, "stats")
def stats(config: FindConfig = None) -> int:
    """How many answers the cache holds, and where."""
    return _on_cache(config, clear=False)


@command(cache, "clear")
def clear(config: FindConfig = None) -> int:
    """Remove every cached answer."""
    return _on_cache(config, clear=True)


def _on_cache(config: Path | None, *, clear: bool) -> int:
    from massgen.cli import team_store
    from massgen.redact import redact_url
    from massgen.resilience.cache import DEFAULT_CACHE_PATH, KEY_PREFIX

    target, prefix = team_store(config, DEFAULT_CACHE_PATH, cache=True)
    if isinstance(target, Path) and not target.exists():
        if clear:
            print(f"cache: {target}: nothing to clear", file=sys.stderr)
        else:
            print(f"cache: {target} (empty: no file yet)")
        return 0

    entries = _on_store(
        target, prefix, lambda s: (s.delete_prefix if clear else s.count)(KEY_PREFIX)
    )
    where = str(target) if isinstance(target, Path) else redact_url(target)
    if clear:
        print(f"cache: {where}: {entries} entries removed")
    else:
        size = f", {target.stat().st_size / 1e6:.1f} MB" if isinstance(target, Path) else ""
        print(f"cache: {where}: {entries} entries{size}")
    return 0
