"""Commands that share round trips, through redis-py's public API only."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc

from massgen.errors import TransportError
from massgen.mas import scripts
from massgen.mas.transport import FIELD


class Pipeliner:
    """Commands issued while a pipeline is in flight go out together in the next one: the
    first caller writes at once (no extra loop turn), later ones share a round trip. Stream
    appends of one flush become one ``XADD``, or one script call doing them all (a reply per
    message would cost the client more than Lua costs the server)."""

    def __init__(self, client: Callable[[], aioredis.Redis], held: Callable[..., Any]) -> None:
        self._client = client
        self._held = held
        self._queue: list[tuple[Sequence[Sequence[Any]], asyncio.Future[list[Any]]]] = []
        self._adds: list[tuple[list[Any], list[Any], asyncio.Future[list[Any]]]] = []
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._shas: dict[str, str] = {}

    async def _lead(self) -> None:
        """Flush at once what an idle pipeliner was given; a task takes what comes meanwhile.
        (Inline in callers' paths only when idle: a coroutine per command costs ~1 us.)"""
        self._busy = True
        try:
            await self._flush()
        finally:
            if self._queue or self._adds:
                self._task = asyncio.ensure_future(self._drain())
            else:
                self._busy = False

    async def run(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The replies of ``commands``, error replies as exception objects. A command
        ``("LUA", source, keys, args)`` runs a Lua script (loaded again if forgotten)."""
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((commands, fut))
        if not self._busy:
            await self._lead()
        return await fut

    async def call(self, *args: Any) -> Any:
        [reply] = await self.run([args])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def script(self, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return await self.call("LUA", source, keys, args)

    async def add(self, keys: list[Any], blobs: list[Any]) -> None:
        """``XADD key * m blob`` for each pair."""
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._adds.append((keys, blobs, fut))
        if not self._busy:
            await self._lead()
        [reply] = await fut
        if isinstance(reply, Exception):
            raise reply

    async def _drain(self) -> None:
        try:
            while True:
                if not (self._queue or self._adds):
                    await asyncio.sleep(0)  # callers the last flush resumed may send at once
                    if not (self._queue or self._adds):
                        return
                await self._flush()
        finally:
            self._busy = False

    def _command(self, c: Sequence[Any]) -> Sequence[Any]:
        if c[0] != "LUA":
            return c
        source, keys, args = c[1], c[2], c[3]
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest()
        return ("EVALSHA", sha, len(keys), *keys, *args)

    async def _execute(self, commands: list[Sequence[Any]]) -> list[Any]:
        if len(commands) == 1:  # the latency path: one held connection, no pipeline object
            return list(await self._held("", 0.0, [self._command(commands[0])]))
        pipe = self._client().pipeline(transaction=False)
        for c in commands:
            pipe.execute_command(*self._command(c))
        return list(await pipe.execute(raise_on_error=False))

    async def _flush(self) -> None:
        batch, self._queue = self._queue, []
        adds, self._adds = self._adds, []
        commands = [c for cs, _ in batch for c in cs]
        if adds:
            keys = [k for ks, _, _ in adds for k in ks]
            blobs = [b for _, bs, _ in adds for b in bs]
            if len(keys) == 1:
                commands.append(("XADD", keys[0], "*", FIELD, blobs[0]))
            else:  # two arguments for them all: redis-py encodes each argument in Python
                index: dict[Any, int] = {}
                spec = [
                    f"{index.setdefault(k, len(index) + 1)}:{len(b)}"
                    for k, b in zip(keys, blobs, strict=True)
                ]
                commands.append(
                    ("LUA", scripts.ADD, list(index), [" ".join(spec), b"".join(blobs)])
                )
        futures = [fut for _, fut in batch] + [fut for _, _, fut in adds]
        try:
            replies = await self._execute(commands)
            lost = [i for i, r in enumerate(replies) if isinstance(r, rexc.NoScriptError)]
            if lost:  # a restarted Redis forgot the scripts: load them, run those again
                for source in {commands[i][1] for i in lost}:
                    await self._client().script_load(source)
                for i, r in zip(
                    lost, await self._execute([commands[i] for i in lost]), strict=True
                ):
                    replies[i] = r
        except BaseException as e:
            err = e if isinstance(e, Exception) else TransportError(f"interrupted: {e!r}")
            for fut in futures:
                if not fut.done():
                    fut.set_exception(err)
                    fut.exception()  # the caller sees it; nobody else must log it
            if not isinstance(e, Exception):
                raise
            return
        i = 0
        for cs, fut in batch:
            if not fut.done():
                fut.set_result(replies[i : i + len(cs)])
            i += len(cs)
        for _, _, fut in adds:
            if not fut.done():
                fut.set_result(replies[i:])

    async def aclose(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
