"""Parallel (with and without aggregator) and sequential (order and hand-off)."""

from __future__ import annotations

import asyncio

from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.orchestrator import Orchestrator
from tests.teamkit import failing, requests_made, scripted, team


async def test_parallel_without_aggregator_returns_every_answer():
    agents, backends = team(a=scripted("one"), b=scripted("two"), c=scripted("three"))
    result = await Orchestrator(agents, strategy="parallel").arun("Count")
    assert requests_made(backends) == 3
    assert result.history == [{"a": "one", "b": "two", "c": "three"}]
    assert result.final_answer == "## a\n\none\n\n## b\n\ntwo\n\n## c\n\nthree"
    assert result.winner is None


async def test_parallel_agents_really_run_at_once():
    started = asyncio.Event()
    waiting = 0

    async def slow(request):
        nonlocal waiting
        waiting += 1
        if waiting == 3:
            started.set()
        await asyncio.wait_for(started.wait(), timeout=5)  # deadlocks unless concurrent
        return "ok"

    agents = [Agent(n, FunctionBackend(slow)) for n in "abc"]
    result = await Orchestrator(agents, strategy="parallel").arun("Go")
    assert result.history[0] == {"a": "ok", "b": "ok", "c": "ok"}


async def test_parallel_with_aggregator_synthesizes_the_others():
    def aggregate(request):
        prompt = request.messages[-1].content
        assert "one" in prompt and "two" in prompt
        return "one and two"

    agents, backends = team(a=scripted("one"), b=scripted("two"), boss=aggregate)
    result = await Orchestrator(agents, strategy="parallel", aggregator="boss").arun("Count")
    assert len(backends["boss"].calls) == 1  # it does not answer on its own
    assert result.final_answer == "one and two" and result.winner == "boss"
    assert [a.phase for a in result.answers].count("aggregate") == 1


async def test_sequential_runs_in_config_order_and_hands_off():
    def step(tag):
        def respond(request):
            return f"{tag}({request.messages[-1].content.count('<step')})"

        return respond

    agents, backends = team(researcher=step("r"), writer=step("w"), editor=step("e"))
    result = await Orchestrator(agents, strategy="sequential").arun("Write")
    assert [a.agent for a in result.answers] == ["researcher", "writer", "editor"]
    assert result.final_answer == "e(2)" and result.winner == "editor"
    writer_prompt = backends["writer"].calls[0].messages[-1].content
    assert "r(0)" in writer_prompt and "Task: Write" in writer_prompt
    assert backends["researcher"].calls[0].messages[-1].content == "Write"


async def test_sequential_skips_a_failed_step_and_is_degraded():
    agents, _ = team(a=scripted("draft"), b=failing(), c=scripted("final"))
    result = await Orchestrator(agents, strategy="sequential", max_retries=0).arun("Write")
    assert result.final_answer == "final" and result.status == "degraded"
    assert result.failed_agents.keys() == {"b"}


async def test_the_strategy_argument_overrides_the_default():
    agents, _ = team(a=scripted("x"), b=scripted("y"))
    result = await Orchestrator(agents, strategy="consensus").arun("T", strategy="sequential")
    assert result.strategy == "sequential" and result.final_answer == "y"


async def test_every_strategy_a_config_may_name_runs_and_no_other():
    import pytest

    from massgen.errors import ConfigError
    from massgen.types import STRATEGIES

    agents, _ = team(a=scripted("x"), b=scripted("y"))
    for name in STRATEGIES:  # what config, serve's model names and mcp's ask_team offer
        result = await Orchestrator(agents, max_retries=0).arun("T", strategy=name)
        assert result.strategy == name and result.status == "done" and result.final_answer
    with pytest.raises(ConfigError):
        await Orchestrator(agents).arun("T", strategy="majority")


async def test_events_come_in_order_and_end_with_run_ended():
    from massgen import events as ev

    seen: list[ev.Event] = []
    agents, _ = team(a=scripted("x"))
    await Orchestrator(agents, strategy="parallel", subscribers=[seen.append]).arun("T")
    kinds = [e.kind for e in seen]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunEnded"
    assert kinds.index("AgentStarted") < kinds.index("AgentAnswered") < kinds.index("FinalAnswer")
    assert isinstance(seen[-1], ev.RunEnded)


async def test_a_timeout_fails_the_run_with_a_clear_error():
    import pytest

    from massgen.errors import RunError

    async def never(request):
        await asyncio.Event().wait()

    agents = [Agent("a", FunctionBackend(never))]
    with pytest.raises(RunError, match="timeout"):
        await Orchestrator(agents, timeout=0.05).arun("T")
