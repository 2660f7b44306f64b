"""`massgen serve`'s application in this process, on a real loopback socket, driven by the
official `openai` SDK and raw aiohttp: teams of scripted agents (FunctionBackend) show what
reached the backend, when it was cancelled, and how each failure reaches the client. No
sleeps: every wait is an event with a deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.events import Event
from massgen.orchestrator import Orchestrator
from massgen.serve.app import Limits, Served, serve
from massgen.serve.board import Board
from massgen.serve.teams import Team
from massgen.store import open_store
from massgen.types import Completion, CompletionRequest, Usage
from tests.teamkit import failing, scripted

Script = Callable[[CompletionRequest], Any]


def team_of(name: str, *scripts: Script, strategy: str = "parallel", **options: Any) -> Team:
    """A team whose agents a0, a1... answer with ``scripts`` (one orchestrator per session,
    its memory in one in-memory store)."""
    store = open_store("memory://")
    backends = [FunctionBackend(s) for s in scripts]

    def make(session: str | None) -> Orchestrator:
        agents = [Agent(f"a{i}", b, role=f"You are a{i}.") for i, b in enumerate(backends)]
        return Orchestrator(
            agents, session=session, memory_store=store, strategy=strategy, max_retries=0, **options
        )

    return Team(name, None, make=make)


@dataclass
class Up:
    url: str
    served: Served
    api: openai.AsyncOpenAI
    stop: asyncio.Future[None]


@asynccontextmanager
async def serving(*teams: Team, **given: Any) -> AsyncIterator[Up]:
    """The teams served on a free loopback port until the block ends (then stopped)."""
    board = given.pop("board", None) or Board()
    served = Served(teams={t.name: t for t in teams}, board=board, **given)
    for t in teams:
        await t.start()
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    said: asyncio.Queue[str] = asyncio.Queue()
    running = asyncio.ensure_future(
        serve(served, "127.0.0.1", 0, stop, told=said.put_nowait, access=None)
    )
    try:
        line = await asyncio.wait_for(said.get(), 10)
        url = line.rsplit(" on ", 1)[1]
        async with client(url, *given.get("keys", ())[:1]) as api:
            yield Up(url, served, api, stop)
    finally:
        if not stop.done():
            stop.set_result(None)
        await asyncio.wait_for(running, 20)
        for t in teams:
            await t.aclose()


def client(url: str, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


class Blocked:
    """A backend that waits until released, telling when it started and was cancelled."""

    def __init__(self) -> None:
        self.started, self.cancelled, self.release = (
            asyncio.Event(),
            asyncio.Event(),
            asyncio.Event(),
        )

    async def __call__(self, request: CompletionRequest) -> str:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return "released"


async def test_messages_become_the_task_with_system_and_earlier_turns() -> None:
    seen: list[str] = []

    def answer(request: CompletionRequest) -> str:
        seen.append(request.messages[-1].content)
        return "four"

    async with serving(team_of("t", answer)) as up:
        reply = await up.api.chat.completions.create(
            model="massgen/t",
            messages=[
                {"role": "system", "content": "Answer with one word."},
                {"role": "user", "content": "What is 1+1?"},
                {"role": "assistant", "content": "two"},
                {"role": "user", "content": [{"type": "text", "text": "And 2+2?"}]},
            ],
        )
    assert reply.choices[0].message.content == "four"
    [prompt] = seen
    assert "Answer with one word." in prompt
    assert "user: What is 1+1?\nassistant: two" in prompt
    assert prompt.index("two") < prompt.index("And 2+2?")


async def test_the_sdk_reads_the_cached_and_reasoning_tokens_of_a_run() -> None:
    def answer(request: CompletionRequest) -> Completion:
        return Completion("four", "m", Usage(100, 20, cached_tokens=60, reasoning_tokens=8))

    async with serving(team_of("t", answer)) as up:
        chat = await up.api.chat.completions.create(
            model="massgen/t", messages=[{"role": "user", "content": "2+2?"}]
        )
        response = await up.api.responses.create(model="massgen/t", input="2+2?")
    assert chat.usage is not None and chat.usage.prompt_tokens == 100
    assert chat.usage.prompt_tokens_details is not None
    assert chat.usage.prompt_tokens_details.cached_tokens == 60
    assert chat.usage.completion_tokens_details is not None
    assert chat.usage.completion_tokens_details.reasoning_tokens == 8
    assert response.usage is not None and response.usage.input_tokens == 100
    assert response.usage.input_tokens_details.cached_tokens == 60
    assert response.usage.output_tokens_details.reasoning_tokens == 8


async def test_a_session_remembers_earlier_runs_instead_of_the_messages() -> None:
    seen: list[str] = []

    def answer(request: CompletionRequest) -> str:
        seen.append("\n".join(m.content for m in request.messages))
        return f"answer {len(seen)}"

    async with serving(team_of("t", answer)) as up:
        api = up.api
        for text in ("Remember the word tulip.", "Which word?"):
            await api.chat.completions.create(
                model="massgen/t",
                messages=[{"role": "user", "content": text}],
                metadata={"session": "s-1"},
            )
        await api.chat.completions.create(
            model="massgen/t", messages=[{"role": "user", "content": "Which word?"}], user="other"
        )
    assert "tulip" not in seen[0].replace("Remember the word tulip.", "")
    assert "Remember the word tulip." in seen[1] and "answer 1" in seen[1]
    assert "tulip" not in seen[2]  # another session knows nothing of it


async def test_client_disconnect_cancels_the_run() -> None:
    blocked = Blocked()
    async with serving(team_of("t", blocked)) as up, aiohttp.ClientSession() as http:
        body = {"model": "massgen/t", "messages": [{"role": "user", "content": "hi"}]}
        asking = asyncio.ensure_future(http.post(up.url + "/v1/chat/completions", json=body))
        await asyncio.wait_for(blocked.started.wait(), 10)
        assert up.served.in_flight == 1
        asking.cancel()  # the client goes away: its connection closes
        await asyncio.gather(asking, return_exceptions=True)
        await asyncio.wait_for(blocked.cancelled.wait(), 10)
        assert not blocked.release.is_set()
        async with http.get(up.url + "/healthz") as r:
            assert (await r.json())["in_flight"] == 0


async def test_a_stream_whose_client_leaves_cancels_its_run() -> None:
    blocked = Blocked()
    async with serving(team_of("t", blocked)) as up, aiohttp.ClientSession() as http:
        body = {
            "model": "massgen/t",
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        async with http.post(up.url + "/v1/chat/completions", json=body) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            assert (await r.content.readline()).startswith(b": ")
            await asyncio.wait_for(blocked.started.wait(), 10)
            r.close()
        await asyncio.wait_for(blocked.cancelled.wait(), 10)


RESPONSE_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 3,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
"""The Responses API's events for an answer of three pieces (as in
tests/recorded/openai/llm-test_responses_basic_streaming.yaml, of one)."""


async def test_a_streamed_response_is_the_answer_as_the_responses_api_streams_it() -> None:
    long = ("Paris is the capital of France. " * 5).strip()  # 159 characters: 3 pieces
    async with serving(team_of("t", scripted(long))) as up:
        api = up.api
        whole = await api.responses.create(model="massgen/t", input="Capital of France?")
        stream = await api.responses.create(
            model="massgen/t", input="Capital of France?", stream=True
        )
        events = [e async for e in stream]
        async with api.responses.stream(model="massgen/t", input="Capital of France?") as helped:
            helper_text = "".join(
                [e.delta async for e in helped if e.type == "response.output_text.delta"]
            )
            final = await helped.get_final_response()
    assert [e.type for e in events] == RESPONSE_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(d.delta for d in deltas) == whole.output_text == long
    created, completed = events[0], events[-1]
    assert created.type == "response.created" and created.response.status == "in_progress"
    assert completed.type == "response.completed" and completed.response.status == "completed"
    assert created.response.id == completed.response.id == "resp_" + deltas[0].item_id[4:]
    assert completed.response.output_text == whole.output_text
    assert completed.response.usage and completed.response.usage.total_tokens > 0
    assert (completed.response.model_extra or {})["massgen"]["winner"] == "a0"
    assert helper_text == final.output_text == whole.output_text
    assert final.usage and whole.usage
    assert final.usage.total_tokens == whole.usage.total_tokens > 0


async def test_a_streamed_response_of_a_failed_team_ends_with_the_error_then_failed() -> None:
    async with serving(team_of("t", failing(500), failing(500))) as up:
        stream = await up.api.responses.create(model="massgen/t", input="a", stream=True)
        seen = []
        with pytest.raises(openai.APIError) as caught:
            async for event in stream:
                seen.append(event.type)
        assert caught.value.code == "all_agents_failed"
        assert seen == ["response.created", "response.in_progress"]
        body = {"model": "massgen/t", "input": "a", "stream": True}
        async with (
            aiohttp.ClientSession() as http,
            http.post(up.url + "/v1/responses", json=body) as r,
        ):
            assert r.status == 200
            text = await r.text()
    # each agent's failure is a comment, between the response begun and the error
    assert text.index("in_progress") < text.index("\n: a0 failed\n") < text.index("event: error")
    frames = [f.split("\n") for f in text.strip().split("\n\n") if not f.startswith(":")]
    named = [
        (f[0].removeprefix("event: "), json.loads(f[1].removeprefix("data: "))) for f in frames
    ]
    assert [n for n, _ in named] == [d["type"] for _, d in named]
    assert [n for n, _ in named] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert [d["sequence_number"] for _, d in named] == [0, 1, 2, 3]
    error, failed = named[2][1]["error"], named[3][1]["response"]
    assert error["code"] == failed["error"]["code"] == "all_agents_failed"
    assert failed["status"] == "failed" and failed["id"] == named[0][1]["response"]["id"]


async def test_a_streamed_response_whose_client_leaves_cancels_its_run() -> None:
    blocked = Blocked()
    async with serving(team_of("t", blocked)) as up, aiohttp.ClientSession() as http:
        body = {"model": "massgen/t", "stream": True, "input": "hi"}
        async with http.post(up.url + "/v1/responses", json=body) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            assert (await r.content.readline()).startswith(b": ")
            await asyncio.wait_for(blocked.started.wait(), 10)
            assert (await r.content.readline()) == b"\n"
            assert (await r.content.readline()) == b"event: response.created\n"
            r.close()
        await asyncio.wait_for(blocked.cancelled.wait(), 10)
        assert not blocked.release.is_set()
        async with http.get(up.url + "/healthz") as health:
            assert (await health.json())["in_flight"] == 0


async def test_every_slot_taken_is_429_with_retry_after() -> None:
    blocked = Blocked()
    limits = Limits(concurrency=1, retry_after=7)
    async with serving(team_of("t", blocked), limits=limits) as up:
        api = up.api
        first = asyncio.ensure_future(
            api.chat.completions.create(
                model="massgen/t", messages=[{"role": "user", "content": "a"}]
            )
        )
        await asyncio.wait_for(blocked.started.wait(), 10)
        with pytest.raises(openai.RateLimitError) as caught:
            await api.chat.completions.create(
                model="massgen/t", messages=[{"role": "user", "content": "b"}]
            )
        assert caught.value.response.headers["Retry-After"] == "7"
        assert caught.value.code == "too_many_runs"
        blocked.release.set()
        assert (await asyncio.wait_for(first, 10)).choices[0].message.content == "released"


async def test_over_the_timeout_is_504_and_the_run_is_cancelled() -> None:
    blocked = Blocked()
    async with serving(team_of("t", blocked), limits=Limits(timeout=0.2)) as up:
        with pytest.raises(openai.InternalServerError) as caught:
            await up.api.chat.completions.create(
                model="massgen/t", messages=[{"role": "user", "content": "a"}]
            )
    assert caught.value.status_code == 504 and caught.value.code == "timeout"
    assert blocked.cancelled.is_set()


async def test_every_agent_failing_is_503_and_a_stream_ends_with_the_error() -> None:
    async with serving(team_of("t", failing(500), failing(500))) as up:
        api = up.api
        with pytest.raises(openai.InternalServerError) as caught:
            await api.chat.completions.create(
                model="massgen/t", messages=[{"role": "user", "content": "a"}]
            )
        assert caught.value.status_code == 503 and caught.value.code == "all_agents_failed"
        stream = await api.chat.completions.create(
            model="massgen/t", messages=[{"role": "user", "content": "a"}], stream=True
        )
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass


async def test_one_agent_failing_is_still_an_answer_marked_degraded() -> None:
    async with serving(team_of("t", scripted("fine"), failing(500))) as up:
        reply = await up.api.chat.completions.create(
            model="massgen/t:parallel", messages=[{"role": "user", "content": "a"}]
        )
    extra = (reply.model_extra or {})["massgen"]
    assert extra["status"] == "degraded" and list(extra["failed"]) == ["a1"]
    assert "fine" in (reply.choices[0].message.content or "")


async def test_bad_requests_are_400_with_the_param() -> None:
    async with serving(team_of("t", scripted("x"))) as up:
        api = up.api
        bad: list[dict[str, Any]] = [
            {"messages": [{"role": "assistant", "content": "hi"}]},
            {"messages": []},
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ]
            },
            {"messages": [{"role": "user", "content": "hi"}], "n": 2},
            {"messages": [{"role": "user", "content": "hi"}], "user": "no spaces allowed"},
        ]
        for extra in bad:
            with pytest.raises(openai.BadRequestError) as caught:
                await api.chat.completions.create(model="massgen/t", **extra)
            assert caught.value.param, extra
        async with (
            aiohttp.ClientSession() as http,
            http.post(up.url + "/v1/chat/completions", data=b"{not json") as r,
        ):
            assert r.status == 400
            assert (await r.json())["error"]["type"] == "invalid_request_error"


async def test_cors_is_off_unless_an_origin_is_allowed() -> None:
    origin = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    async with aiohttp.ClientSession() as http:
        async with serving(team_of("t", scripted("x"))) as up:
            async with http.options(up.url + "/v1/chat/completions", headers=origin) as r:
                assert r.status == 405 and "Access-Control-Allow-Origin" not in r.headers
            async with http.get(up.url + "/v1/models", headers=origin) as r:
                assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
        async with serving(team_of("t", scripted("x")), cors=["https://app.example"]) as up:
            async with http.options(up.url + "/v1/chat/completions", headers=origin) as r:
                assert r.status == 204
                assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
                assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
            other = {"Origin": "https://evil.example"}
            async with http.get(up.url + "/v1/models", headers=other) as r:
                assert "Access-Control-Allow-Origin" not in r.headers


async def test_keys_are_checked_everywhere_but_healthz() -> None:
    async with serving(team_of("t", scripted("x")), keys=["k-one", "k-two"]) as up:
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic k-one"}):
                async with http.get(up.url + "/v1/models", headers=headers) as r:
                    assert r.status == 401, headers
                    body = await r.json()
                    assert body["error"]["code"] == "invalid_api_key"
                    assert "k-one" not in json.dumps(body)
            async with http.get(up.url + "/healthz") as r:
                assert r.status == 200
        async with client(up.url, "wrong") as wrong:
            with pytest.raises(openai.AuthenticationError):
                await wrong.models.list()
        listed = await up.api.models.list()  # with k-one
        one = await up.api.models.retrieve("massgen/t:consensus")
        assert one.id == "massgen/t:consensus" and one.owned_by == "massgen"
        with pytest.raises(openai.NotFoundError):
            await up.api.models.retrieve("massgen/other")
        assert [m.id for m in listed.data][0] == "massgen/t"


async def test_a_browser_opens_a_keyed_dashboard_once_with_the_key_then_by_cookie() -> None:
    async with serving(team_of("t", scripted("x")), keys=["k-one"]) as up:
        jar = aiohttp.CookieJar(unsafe=True)  # cookies of 127.0.0.1 kept, as a browser does
        async with aiohttp.ClientSession(cookie_jar=jar) as browser:
            for path in ("/", "/dashboard/state", "/?key=nope"):
                async with browser.get(up.url + path) as r:
                    assert r.status == 401, path
            async with browser.get(up.url + "/?key=k-one", allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/"
                cookie = r.headers["Set-Cookie"]
                assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            for path in ("/", "/dashboard/state"):
                async with browser.get(up.url + path) as r:
                    assert r.status == 200, path
            # the cookie opens the page only: the API still wants the bearer key
            async with browser.get(up.url + "/v1/models") as r:
                assert r.status == 401
            ask = {"model": "massgen/t", "messages": [{"role": "user", "content": "hi"}]}
            async with browser.post(up.url + "/v1/chat/completions", json=ask) as r:
                assert r.status == 401


async def test_a_body_over_the_limit_is_413_in_openai_form() -> None:
    async with serving(team_of("t", scripted("x")), limits=Limits(max_body=1000)) as up:
        body = {"model": "massgen/t", "messages": [{"role": "user", "content": "x" * 2000}]}
        async with (
            aiohttp.ClientSession() as http,
            http.post(up.url + "/v1/chat/completions", json=body) as r,
        ):
            assert r.status == 413
            assert (await r.json())["error"]["type"] == "invalid_request_error"


class RecordingBoard(Board):
    """The dashboard's interface, recording what serve gives it."""

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[tuple[str, str, str]] = []
        self.closed = False

    def subscriber(self, team: str, run_model: str) -> Callable[[Event], None]:
        def heard(event: Event) -> None:
            self.heard.append((team, run_model, event.kind))

        return heard

    def routes(self) -> list[web.RouteDef]:
        async def page(request: web.Request) -> web.Response:
            return web.Response(text="the board")

        return [web.get("/", page)]

    async def aclose(self) -> None:
        self.closed = True


async def test_each_run_feeds_the_board_which_owns_the_root() -> None:
    board = RecordingBoard()
    async with serving(team_of("t", scripted("x")), board=board) as up:
        await up.api.chat.completions.create(
            model="massgen/t:parallel", messages=[{"role": "user", "content": "a"}]
        )
        async with aiohttp.ClientSession() as http, http.get(up.url + "/") as r:
            assert r.status == 200 and await r.text() == "the board"
        assert not board.closed
    kinds = [k for team, model, k in board.heard if (team, model) == ("t", "massgen/t:parallel")]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunEnded" and "AgentAnswered" in kinds
    assert board.closed


async def test_stopping_cancels_the_runs_still_going_after_the_grace() -> None:
    blocked = Blocked()
    async with serving(team_of("t", blocked), limits=Limits(grace=0.1)) as up:
        asking = asyncio.ensure_future(
            up.api.chat.completions.create(
                model="massgen/t", messages=[{"role": "user", "content": "a"}]
            )
        )
        await asyncio.wait_for(blocked.started.wait(), 10)
        up.stop.set_result(None)
        await asyncio.wait_for(blocked.cancelled.wait(), 10)
        with pytest.raises(openai.APIConnectionError):
            await asyncio.wait_for(asking, 10)
