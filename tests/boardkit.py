"""What the dashboard's tests share: a Board served on loopback, a team whose answers stream
in two pieces (the second once a gate opens), and a reader of server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from massgen import Orchestrator
from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.serve.board import Board
from massgen.types import CompletionRequest, StreamChunk
from tests.teamkit import is_review, scripted, vote

FIRST = {"ada": "Paris is ", "bob": "It is ", "cy": "<script>alert(1)</script> Lyon, "}
REST = {
    "ada": "the capital of France.",
    "bob": "Paris, the capital of France since 987.",
    "cy": "I believe.",
}
ANSWERS = {name: FIRST[name] + REST[name] for name in FIRST}
WINNER = "bob"  # every reviewer votes for the answer naming 987


class Gated(FunctionBackend):
    """Streams an answer's first piece at once and the rest once ``gate`` is set; a review
    reply streams whole."""

    def __init__(self, answer: str, first: str, gate: asyncio.Event) -> None:
        super().__init__(scripted(answer, lambda r: vote(r, "987")))
        self.first, self.gate = first, gate

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        done = await self.complete(request)
        if not is_review(request):
            yield StreamChunk(delta=self.first)
            await self.gate.wait()
            yield StreamChunk(delta=done.text[len(self.first) :])
        else:
            yield StreamChunk(delta=done.text)
        yield StreamChunk(completion=done)


def gated_team(gate: asyncio.Event) -> Orchestrator:
    """ada, bob and cy in a one-round consensus; their answers wait for ``gate``."""
    agents = [
        Agent(name, Gated(ANSWERS[name], FIRST[name], gate), role=f"You are {name}.")
        for name in FIRST
    ]
    # debate on the whole text, so the board shows a review round whatever the answers
    consensus = {"mode": "debate", "answer": "prose", "max_rounds": 1}
    return Orchestrator(agents, strategy="consensus", consensus=consensus)


@asynccontextmanager
async def served(board: Board) -> AsyncIterator[str]:
    """``board`` on a free loopback port, as ``massgen serve`` mounts it; yields its URL."""
    app = web.Application()
    app.add_routes(board.routes())
    app.on_shutdown.append(lambda _: board.aclose())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


class Events:
    """The frames of one ``GET /dashboard/events``: ``(event, data)``, ``("comment", text)``."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 10.0) -> tuple[str, Any]:
        event, data = "", []
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.response.content.readline()).decode()
                if not line:
                    raise EOFError("the stream ended")
                line = line.rstrip("\n")
                if line.startswith(":"):
                    return "comment", line[1:].strip()
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif not line and event:
                    return event, json.loads("\n".join(data))

    async def until(self, event: str, cond: Any = lambda data: True) -> Any:
        """Frames up to the first ``event`` whose data satisfies ``cond``: its data."""
        while True:
            kind, data = await self.next()
            if kind == event and cond(data):
                return data


@asynccontextmanager
async def events(session: aiohttp.ClientSession, url: str) -> AsyncIterator[Events]:
    async with session.get(url + "dashboard/events") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        yield Events(response)
