"""Distributed mode as a library: the codec, workers on real Redis, runs that reach them.

Every run here compares against the same team run in one process: the bus may change where
a turn runs, never what comes out of it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from massgen import errors as E
from massgen.agents.agent import Agent
from massgen.agents.handle import LocalHandle
from massgen.backends.function import FunctionBackend
from massgen.config import loads
from massgen.distributed import (
    BusTarget,
    RemoteHandle,
    Worker,
    completion_from_dict,
    decode,
    distributed,
    error_from_dict,
    error_to_dict,
    turn_timeout,
)
from massgen.mas import DEFAULT_PREFIX, REDIS_URL_ENV, RemoteError
from massgen.orchestrator import Orchestrator
from massgen.resilience import RetryPolicy
from massgen.result import RunResult
from massgen.serialize import to_dict
from massgen.types import Completion, CompletionRequest, ToolCall, ToolSpec, Turn, Usage
from tests.mas.helpers import FAST, SHARED_REDIS, clean_prefix, crash
from tests.teamkit import GEO_CONSENSUS

TASK = "What is the capital of France?"

TEAM = GEO_CONSENSUS


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    p = f"test:dist:{uuid.uuid4().hex[:10]}:"
    yield p
    await clean_prefix(SHARED_REDIS, p)


def team() -> Orchestrator:
    return Orchestrator.from_config(loads(TEAM))


def outcome(r: RunResult) -> dict[str, Any]:
    """What a run decided, without timings."""
    return {
        "final": r.final_answer,
        "winner": r.winner,
        "status": r.status,
        "votes": [(v.voter, v.round, v.for_agent) for v in r.votes],
        "answers": sorted((a.agent, a.phase, a.round, a.text, a.answered_by) for a in r.answers),
        "usage": r.usage,
    }


def worker(orch: Orchestrator, prefix: str, *names: str, **kw: Any) -> Worker:
    kw.setdefault("settings", FAST)
    return Worker(orch, list(names) or None, redis_url=SHARED_REDIS, prefix=prefix, **kw)


def on_bus(orch: Orchestrator, prefix: str, **kw: Any) -> Any:
    return distributed(orch, SHARED_REDIS, prefix=prefix, settings=FAST, **kw)


def processed(w: Worker) -> dict[str, int]:
    return {a.id: a.processed for a in w.hosted}


# -- codec --------------------------------------------------------------------------------


def test_turn_and_completion_round_trip() -> None:
    turn = Turn(
        "review",
        'Vote: <answer label="A">x</answer>',
        round=2,
        tools=(ToolSpec("vote", "cast a vote", {"type": "object", "properties": {}}),),
        tool_choice="vote",
        max_tokens=64,
    )
    assert decode(Turn, to_dict(turn), "turn") == turn
    completion = Completion(
        text="",
        model="m-1",
        usage=Usage(12, 3),
        finish_reason="tool_calls",
        tool_calls=(ToolCall("c1", "vote", {"label": "A", "reason": "best"}),),
        latency=0.25,
        cached=True,
    )
    assert completion_from_dict(to_dict(completion)) == completion


def test_malformed_payloads_are_transport_errors() -> None:
    with pytest.raises(E.TransportError, match="malformed turn"):
        decode(Turn, {"phase": "answer"}, "turn")
    with pytest.raises(E.TransportError, match="malformed completion"):
        completion_from_dict({"text": "x", "model": "m", "usage": {"input_tokens": "many"}})
    assert isinstance(error_from_dict("nonsense", "ada"), E.TransportError)


class OddRateLimit(E.RateLimited):
    """A subclass the codec does not know: it travels as its nearest known ancestor."""


@pytest.mark.parametrize(
    "error",
    [
        E.RateLimited("slow down", provider="openai", status=429, retry_after=2.5),
        E.RateLimited("overloaded", provider="anthropic", status=529),
        E.ProviderError("server exploded", provider="x", status=500),
        E.AuthenticationError("bad key", provider="openai", status=401),
        E.BadRequestError("no such model", provider="openai", status=404),
        E.ProviderTimeout("took too long", provider="google"),
        E.ProviderConnectionError("reset", provider="openai"),
        E.ToolError("calculator broke"),
        E.RunError("no answer"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_keep_their_class_and_fields(error: Exception) -> None:
    back = error_from_dict(error_to_dict(error), "ada")
    assert type(back) is type(error)
    assert str(back) == str(error)
    for field in ("provider", "status", "retry_after", "retryable"):
        assert getattr(back, field, None) == getattr(error, field, None)


def test_error_details_survive() -> None:
    sticky = E.ProviderError("gone for good", provider="p", status=503)
    sticky.retryable = False  # an instance may override its class
    back = error_from_dict(error_to_dict(sticky), "ada")
    assert isinstance(back, E.ProviderError) and back.retryable is False

    config = E.ConfigError("no key", file="t.yaml", line=3, key="api_key", hint="set it")
    back = error_from_dict(error_to_dict(config), "ada")
    assert isinstance(back, E.ConfigError)
    assert (back.file, back.line, back.key, back.hint) == ("t.yaml", 3, "api_key", "set it")

    odd = error_from_dict(error_to_dict(OddRateLimit("odd", status=429, retry_after=1.0)), "a")
    assert type(odd) is E.RateLimited and odd.retry_after == 1.0

    failed = error_from_dict(error_to_dict(E.AgentFailed("bob", ValueError("x"))), "ada")
    assert type(failed) is E.RunError and str(failed) == "agent 'bob' failed: x"
    stopped = error_from_dict(error_to_dict(E.Interrupted("interrupted")), "ada")
    assert type(stopped) is E.RunError  # a worker stopping is not the user stopping the run

    class RateLimited(Exception):  # same name, not ours
        pass

    alien = error_from_dict(error_to_dict(RateLimited("no")), "ada")
    assert isinstance(alien, RemoteError) and "RateLimited: no" in str(alien)

    bug = error_from_dict(error_to_dict(ZeroDivisionError("division by zero")), "ada")
    assert isinstance(bug, RemoteError) and "ZeroDivisionError: division by zero" in str(bug)


def test_turn_timeout_covers_the_worst_retry_budget() -> None:
    policy = RetryPolicy(max_retries=2, base_delay=1.0, max_delay=30.0, retry_after_cap=120.0)
    # 3 attempts x 20 s, two pauses of at most the Retry-After cap, the lease, a margin
    assert turn_timeout(20.0, policy, lease=30.0) == 3 * 20 + 2 * 120 + 30 + 5
    assert turn_timeout(None, None, lease=30.0) == 60 + 30 + 5


def test_bus_target_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    from massgen.distributed import target

    assert (target.REDIS_URL_ENV, target.DEFAULT_PREFIX) == (REDIS_URL_ENV, DEFAULT_PREFIX)
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    assert BusTarget.resolve(None, loads(TEAM)) is None
    cfg = loads(TEAM + "redis: {url: 'redis://:pw@h:1/0', prefix: 't:', secret: s3}\n")
    bus = BusTarget.resolve(None, cfg)
    assert bus is not None and (bus.prefix, bus.secret) == ("t:", "s3")
    assert "pw" not in repr(bus) and "pw" not in bus.where and "pw" not in repr(cfg)
    assert BusTarget.resolve("redis://other:2", cfg).url == "redis://other:2"  # type: ignore[union-attr]
    monkeypatch.setenv(REDIS_URL_ENV, "redis://env:3")
    assert BusTarget.resolve(None, loads(TEAM)).url == "redis://env:3"  # type: ignore[union-attr]


# -- workers and runs -------------------------------------------------------------------------


async def test_a_run_through_workers_equals_a_local_run(prefix: str) -> None:
    local = await team().arun(TASK)

    caller = team()
    async with worker(team(), prefix) as w, on_bus(caller, prefix) as placement:
        assert dict(placement.remote) == {"ada": 1, "bob": 1, "cy": 1}
        assert placement.local == ()
        remote = await caller.arun(TASK)
        records = await w.transport.discover(["llm"])

    assert outcome(remote) == outcome(local)
    assert sum(processed(w).values()) == len(remote.answers) == 6  # every turn ran there
    assert {r.id: r.metadata["processed"] for r in records} == {"ada": 2, "bob": 2, "cy": 2}
    assert {r.metadata["in_flight"] for r in records} == {0}
    assert all(isinstance(h, LocalHandle) for h in caller.handles.values())  # restored


async def test_only_hosted_agents_go_remote(prefix: str) -> None:
    caller = team()
    async with worker(team(), prefix, "ada") as w, on_bus(caller, prefix) as placement:
        assert dict(placement.remote) == {"ada": 1}
        assert placement.local == ("bob", "cy")
        assert "local: bob, cy" in placement.describe()
        result = await caller.arun(TASK)
    assert outcome(result) == outcome(await team().arun(TASK))
    # ada's two turns ran on the worker, the other four here
    assert processed(w) == {"ada": sum(a.agent == "ada" for a in result.answers)} == {"ada": 2}
    assert len(result.answers) == 6


async def test_nobody_hosting_means_everything_runs_locally(prefix: str) -> None:
    caller = team()
    async with on_bus(caller, prefix) as placement:
        assert placement.remote == {} and placement.local == ("ada", "bob", "cy")
        result = await caller.arun(TASK)
    assert outcome(result) == outcome(await team().arun(TASK))


async def test_a_worker_hosting_another_role_is_not_used(prefix: str) -> None:
    other = Orchestrator([Agent("ada", FunctionBackend(lambda r: "x"), role="Someone else")])
    caller = team()
    async with worker(other, prefix), on_bus(caller, prefix) as placement:
        assert placement.remote == {} and placement.mismatched == ("ada",)
        assert "role differs" in placement.describe()


def slow_team(gate: asyncio.Event | None, text: str, started: asyncio.Event) -> Orchestrator:
    async def answer(request: CompletionRequest) -> str:
        started.set()
        if gate is not None:
            await gate.wait()
        else:
            await asyncio.sleep(0)
        return text

    return Orchestrator([Agent("ada", FunctionBackend(answer), role="You are Ada.")])


async def test_replicas_share_an_agents_work(prefix: str) -> None:
    gate, first, second = asyncio.Event(), asyncio.Event(), asyncio.Event()
    one = worker(slow_team(gate, "one", first), prefix, concurrency=1)
    two = worker(slow_team(gate, "two", second), prefix, concurrency=1)
    caller = team()
    async with one, two, on_bus(caller, prefix) as placement:
        assert placement.remote == {"ada": 2}
        handle = caller.handles["ada"]
        asks = [asyncio.ensure_future(handle.ask(Turn("answer", f"q{i}"))) for i in range(4)]
        # each replica holds at most one turn (concurrency 1), so both must be busy
        async with asyncio.timeout(10):
            await asyncio.gather(first.wait(), second.wait())
        assert one.hosted[0].in_flight == two.hosted[0].in_flight == 1
        gate.set()
        texts = sorted(c.text for c in await asyncio.gather(*asks))
    assert set(texts) == {"one", "two"} and len(texts) == 4
    assert one.hosted[0].processed + two.hosted[0].processed == 4


async def test_a_dead_workers_turn_goes_to_another_replica(prefix: str) -> None:
    held = asyncio.Event()
    stuck = worker(slow_team(asyncio.Event(), "never", held), prefix)  # its gate never opens
    caller = team()
    await stuck.start()
    try:
        async with on_bus(caller, prefix):
            ask = asyncio.ensure_future(caller.handles["ada"].ask(Turn("answer", "q")))
            async with asyncio.timeout(10):
                await held.wait()  # the stuck worker holds the turn
            await crash(stuck.hosted[0])  # ...and dies: no reply, no ack, no goodbye
            spare = worker(slow_team(None, "rescued", asyncio.Event()), prefix)
            async with spare:
                completion = await asyncio.wait_for(ask, 10)
        assert completion.text == "rescued"
        assert spare.hosted[0].processed == 1
    finally:
        await stuck.transport.close()


def failing_backend(*errors: Exception) -> FunctionBackend:
    """Raises ``errors`` in turn, then answers "recovered"."""
    queue = list(errors)

    def respond(request: CompletionRequest) -> str:
        if queue:
            raise queue.pop(0)
        return "recovered"

    return FunctionBackend(respond)


async def ask_remote(prefix: str, backend: FunctionBackend, **options: Any) -> Completion:
    host = Orchestrator([Agent("ada", backend, role="r")], retry_delay=0.001, **options)
    caller = Orchestrator([Agent("ada", FunctionBackend(lambda r: "local"), role="r")])
    async with worker(host, prefix) as w, on_bus(caller, prefix) as placement:
        assert placement.remote == {"ada": 1}
        try:
            return await caller.handles["ada"].ask(Turn("answer", "q"))
        finally:
            assert w.hosted[0].in_flight == 0


@pytest.mark.parametrize(
    "error",
    [
        E.RateLimited("slow down", provider="sim", status=429, retry_after=0.001),
        E.AuthenticationError("bad key", provider="sim", status=401),
        E.ProviderTimeout("too slow", provider="sim"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_failing_backend_raises_the_same_error_on_the_caller(
    prefix: str, error: E.ProviderError
) -> None:
    with pytest.raises(type(error)) as info:
        await ask_remote(prefix, failing_backend(error, error), max_retries=0)
    assert type(info.value) is type(error)
    assert (info.value.status, info.value.retry_after) == (error.status, error.retry_after)
    assert info.value.retryable == error.retryable


async def test_the_worker_retries_with_the_orchestrators_budget(prefix: str) -> None:
    flaky = E.ProviderError("blip", provider="sim", status=500)
    backend = failing_backend(flaky, flaky)
    completion = await ask_remote(prefix, backend, max_retries=2)
    assert completion.text == "recovered" and len(backend.calls) == 3
    with pytest.raises(E.ProviderError, match="blip"):
        await ask_remote(prefix, failing_backend(flaky, flaky), max_retries=1)


async def test_a_bug_in_a_backend_comes_back_as_a_remote_error(prefix: str) -> None:
    def broken(request: CompletionRequest) -> str:
        raise ZeroDivisionError("division by zero")

    with pytest.raises(RemoteError, match="ZeroDivisionError: division by zero"):
        await ask_remote(prefix, FunctionBackend(broken))


def fallback_team(make: Callable[[str], FunctionBackend]) -> Orchestrator:
    return Orchestrator(
        [
            Agent("ada", make("ada"), role="You are Ada.", fallback="zed"),
            Agent("bob", make("bob"), role="You are Bob."),
            Agent("zed", make("zed"), role="You are Zed.", standby=True),
        ],
        strategy="parallel",
        max_retries=0,
    )


def broken_ada(name: str) -> FunctionBackend:
    if name == "ada":
        return failing_backend(*[E.ProviderError("down", provider="sim", status=503)] * 5)
    return FunctionBackend(lambda r: f"{name} says hi")


async def test_fallback_works_across_the_bus(prefix: str) -> None:
    local = await fallback_team(broken_ada).arun(TASK)
    caller = fallback_team(lambda name: FunctionBackend(lambda r: "never used"))
    async with worker(fallback_team(broken_ada), prefix) as w, on_bus(caller, prefix):
        remote = await caller.arun(TASK)
    assert outcome(remote) == outcome(local)
    ada = next(a for a in remote.answers if a.agent == "ada")
    assert (ada.answered_by, ada.text) == ("zed", "zed says hi")
    counts = {a.id: (a.processed, a.failed) for a in w.hosted}
    assert counts == {"ada": (0, 1), "bob": (1, 0), "zed": (1, 0)}


async def test_signed_messages_when_a_secret_is_shared(prefix: str) -> None:
    caller = team()
    async with (
        worker(team(), prefix, "bob", secret="s3cret"),
        on_bus(caller, prefix, secret="s3cret") as placement,
    ):
        assert placement.remote == {"bob": 1}
        assert (await caller.arun(TASK)).winner == "bob"


def test_hosting_an_unknown_agent_suggests_a_name() -> None:
    with pytest.raises(E.ConfigError, match="no agent named 'adaa'") as info:
        Worker(team(), ["adaa"], redis_url=SHARED_REDIS)
    assert info.value.hint == "did you mean `ada`?"
    with pytest.raises(E.ConfigError, match="the team has: ada, bob, cy"):
        Worker(team(), ["zzzzzz"], redis_url=SHARED_REDIS)


def test_a_worker_lets_running_turns_finish_on_stop() -> None:
    """The bus cancels handlers at once on stop; a worker keeps its 10 s for LLM turns."""
    from massgen.distributed.worker import DRAIN_TIMEOUT

    w = Worker(team(), ["ada"], redis_url=SHARED_REDIS)
    assert DRAIN_TIMEOUT == 10.0
    assert [a.settings.drain_timeout for a in w.hosted] == [DRAIN_TIMEOUT]


def test_a_remote_handle_needs_no_backend() -> None:
    agent = Agent("ada", "openai", model="gpt-4o-mini")
    handle = RemoteHandle(agent, client=None, timeout=1.0, supports_tools=True)  # type: ignore[arg-type]
    assert handle.supports_tools and agent.built_backend() is None


async def test_stale_and_malformed_turns_are_answered_without_a_provider_call(
    prefix: str,
) -> None:
    from massgen.mas import Agent as BusAgent

    backend = FunctionBackend(lambda r: "paid")
    host = Orchestrator([Agent("ada", backend, role="r")])
    client = BusAgent("asker", redis_url=SHARED_REDIS, prefix=prefix, settings=FAST)
    async with worker(host, prefix) as w, client:
        turn = to_dict(Turn("answer", "q"))
        late = (await client.request("ada", {"turn": turn, "deadline": time.time() - 1})).payload
        bad = (await client.request("ada", {"turn": {"phase": 1}})).payload
        ok = (await client.request("ada", {"turn": turn, "deadline": time.time() + 60})).payload
    expired = error_from_dict(late["error"], "ada")
    assert isinstance(expired, E.TransportError) and "expired" in str(expired)
    assert "malformed turn" in str(error_from_dict(bad["error"], "ada"))
    assert completion_from_dict(ok["completion"]).text == "paid"
    assert len(backend.calls) == 1
    assert (w.hosted[0].processed, w.hosted[0].failed) == (1, 2)


def test_workers_advertise_the_turn_timeout_of_their_retry_budget() -> None:
    host = Orchestrator([Agent("ada", FunctionBackend(lambda r: "x"))], max_retries=2)
    w = Worker(host, redis_url=SHARED_REDIS, settings=FAST)
    policy = RetryPolicy(max_retries=2, base_delay=host.config.retry_delay)
    meta = w.hosted[0].get_metadata()
    assert meta["turn_timeout"] == turn_timeout(None, policy, FAST.lease)
    assert (meta["backend"], meta["tools"], meta["processed"]) == ("function", False, 0)


def tool_team() -> Orchestrator:
    """One agent with a calculator; its model calls it once, then answers."""

    def model(request: CompletionRequest) -> Completion:
        if request.messages[-1].role == "tool":
            return Completion(text="It is 42.", model="m", usage=Usage(20, 3))
        call = ToolCall("call_0", "calculator", {"expression": "6*7"})
        return Completion(
            text="", model="m", usage=Usage(10, 2), tool_calls=(call,), finish_reason="tool_calls"
        )

    agent = Agent("ada", FunctionBackend(model, tools=True), "Be exact.", tools=["calculator"])
    return Orchestrator([agent], strategy="parallel")


async def test_a_workers_tool_calls_reach_the_callers_events(prefix: str) -> None:
    def tool_events(events: list[Any]) -> list[tuple[Any, ...]]:
        return [
            (e.kind, e.agent, e.tool, e.call_id, getattr(e, "ok", None), getattr(e, "output", ""))
            for e in events
            if e.kind in ("ToolCalled", "ToolResult")
        ]

    local_events: list[Any] = []
    local = tool_team()
    local.subscribers.append(local_events.append)
    await local.arun("6 times 7?")

    seen: list[Any] = []
    caller = tool_team()
    caller.subscribers.append(seen.append)
    async with worker(tool_team(), prefix) as w, on_bus(caller, prefix) as placement:
        assert dict(placement.remote) == {"ada": 1}
        result = await caller.arun("6 times 7?")
    assert processed(w) == {"ada": 1}
    assert result.final_answer == "It is 42."
    assert tool_events(seen) == tool_events(local_events)
    assert [e[0] for e in tool_events(seen)] == ["ToolCalled", "ToolResult"]
    assert tool_events(seen)[1][4] is True and "42" in tool_events(seen)[1][5]


def test_tool_events_round_trip_and_anything_else_is_refused() -> None:
    from massgen import events as ev
    from massgen.distributed.worker import tool_events_from_list, tool_events_to_list

    called = ev.ToolCalled(agent="ada", tool="calculator", call_id="c1", args='{"x": 1}', at=1.0)
    done = ev.ToolResult(agent="ada", tool="calculator", call_id="c1", ok=True, duration=0.1)
    other = ev.VoteCast(agent="ada", round=1, for_agent="bob", reason="")
    wire = tool_events_to_list([called, other, done])
    assert tool_events_from_list(wire) == [called, done]  # only tool events travel
    for bad in ("x", [{"type": "RunStarted", "run_id": "r"}], [{"type": "ToolResult"}]):
        with pytest.raises(E.TransportError):
            tool_events_from_list(bad)
