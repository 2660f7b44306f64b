"""Memory of agents hosted by workers: sessions, summaries and recalled items reach the
worker's prompt exactly as a local agent's, and one worker serves many sessions at once."""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

from massgen import events as ev
from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.config import loads
from massgen.distributed import Worker, distributed
from massgen.mas import MemoryHub
from massgen.memory import Exchange, Sessions
from massgen.memory.long_term import LongTermMemory
from massgen.orchestrator import Orchestrator
from massgen.store import MemoryStore
from massgen.types import CompletionRequest
from tests.mas.helpers import FAST
from tests.sim.sim_types import Text
from tests.sim.simulator import ProviderSimulator


def _team(sim: ProviderSimulator, ada: str, bob: str = "{}", strategy: str = "parallel") -> str:
    return textwrap.dedent(
        f"""
        backends:
          sim: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}",
                 api_key: sk-test}}
        agents:
          - {{name: ada, backend: sim, role: You are Ada., memory: {ada}}}
          - {{name: bob, backend: sim, role: You are Bob., memory: {bob}}}
        orchestrator: {{strategy: {strategy}, max_retries: 0}}
        """
    )


def _prompts(sim: ProviderSimulator) -> list[list[tuple[str, str]]]:
    """Every request the simulator saw, as (role, text) lists, in a stable order."""
    return sorted([[("system", r.system), *map(tuple, r.messages)] for r in sim.requests], key=repr)


class Collect:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)


async def _runs(
    team: str, tasks: list[str], store: MemoryStore, *, remote: bool, **kw: Any
) -> list[Any]:
    """Run ``tasks`` one after the other in session ``s``: every agent in this process, or
    every agent on an in-process worker (which has no store and no session)."""
    results = []
    hub = MemoryHub()
    host = Orchestrator.from_config(loads(team))
    async with Worker(host, hub=hub, settings=FAST) if remote else _nothing():
        for task in tasks:
            caller = Orchestrator.from_config(loads(team), session="s", memory_store=store, **kw)
            async with caller:
                if remote:
                    async with distributed(caller, hub=hub, settings=FAST) as placement:
                        assert set(placement.remote) == {"ada", "bob"}
                        results.append(await caller.arun(task))
                else:
                    results.append(await caller.arun(task))
    await host.aclose()
    return results


class _nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


async def test_a_session_continues_through_a_worker_as_it_does_locally(sim: ProviderSimulator):
    team = _team(sim, "{strategy: sliding_window, size: 2000}")
    sim.script(Text("The secret word is PELICAN."), match="Pick a secret word")
    tasks = ["Pick a secret word", "What was the word?"]
    await _runs(team, tasks, MemoryStore(), remote=False)
    local = _prompts(sim)
    sim.reset()
    store = MemoryStore()
    await _runs(team, tasks, store, remote=True)
    assert _prompts(sim) == local  # the worker's prompts are the local ones, to the letter
    second = [r for r in sim.requests if r.messages[-1][1] == "What was the word?"]
    assert len(second) == 2
    for req in second:  # each agent sees its own earlier turn, then the new task
        assert req.system in ("You are Ada.", "You are Bob.")
        assert [role for role, _ in req.messages] == ["user", "assistant", "user"]
        assert req.messages[0][1] == "Pick a secret word" and "PELICAN" in req.messages[1][1]
    assert len(await Sessions(store).exchanges("s", "ada")) == 2  # the run recorded both


async def test_a_summary_written_on_the_worker_is_kept_by_the_run(sim: ProviderSimulator):
    team = _team(sim, "{strategy: summary, size: 250}")
    sim.script(Text("SUMMARY-OF-EARLIER-RUNS"), match="Write the updated summary")
    # each agent's own answer text: the simulator otherwise numbers answers in the order
    # the two concurrent agents happen to reach it, and that order is not ours to fix
    sim.script(Text("Ada's answer."), match="You are Ada.")
    sim.script(Text("Bob's answer."), match="You are Bob.")
    tasks = ["What now?", "And then?"]
    local_store = MemoryStore()
    await _seed(local_store)
    local = await _runs(team, tasks, local_store, remote=False)
    local_prompts = _prompts(sim)
    sim.reset()
    store = MemoryStore()
    await _seed(store)
    events = Collect()
    remote = await _runs(team, tasks, store, remote=True, subscribers=[events])
    assert _prompts(sim) == local_prompts
    summaries = [r for r in sim.requests if "Write the updated summary" in r.prompt_text]
    assert len(summaries) == 1  # written once, on the first run, then reused
    assert await Sessions(store).summary("s", "ada") == await Sessions(local_store).summary(
        "s", "ada"
    )
    text, covered = await Sessions(store).summary("s", "ada")
    assert text == "SUMMARY-OF-EARLIER-RUNS" and covered >= 1
    # accounted like a local agent's summary: in the run's usage and as summary events
    assert [r.usage for r in remote] == [r.usage for r in local]
    assert [r.requests for r in remote] == [r.requests for r in local] == [3, 2]
    phases = [e.phase for e in events.events if isinstance(e, ev.AgentAnswered)]
    assert phases.count("summary") == 1


async def _seed(store: MemoryStore) -> None:
    for i in range(6):
        ex = Exchange(f"Question {i}: " + "lorem ipsum " * 20, f"Answer {i}.", f"r{i}")
        await Sessions(store).record("s", f"r{i}", {"ada": ex})


async def test_long_term_memory_is_recalled_on_the_worker(sim: ProviderSimulator):
    team = _team(sim, "{long_term: true}", "{long_term: true}", strategy="consensus")
    sim.script(Text("Use PostgreSQL 16 for the ledger."), match="database for the ledger")
    store = MemoryStore()
    hub = MemoryHub()
    host = Orchestrator.from_config(loads(team))
    async with Worker(host, hub=hub, settings=FAST):
        for task in ("Which database for the ledger service?", "Which database do we use?"):
            sim.reset()
            caller = Orchestrator.from_config(loads(team), memory_store=store)
            async with caller, distributed(caller, hub=hub, settings=FAST) as placement:
                assert set(placement.remote) == {"ada", "bob"}
                await caller.arun(task)
    await host.aclose()
    answers = [r for r in sim.requests if r.messages[-1][1].endswith("Which database do we use?")]
    assert len(answers) == 2
    for req in answers:
        text = req.messages[-1][1]
        assert text.startswith("Recalled memory from earlier runs")
        assert "PostgreSQL 16" in text and "<memory>" in text
    assert len(await LongTermMemory(store, agent="ada").items()) == 2


async def test_one_worker_serves_many_sessions_at_once_without_mixing_them():
    both = asyncio.Event()
    seen: list[CompletionRequest] = []

    async def answer(request: CompletionRequest) -> str:
        seen.append(request)
        if len(seen) == 2:
            both.set()
        async with asyncio.timeout(10):
            await both.wait()  # both sessions' turns are in the worker at the same time
        return "ok " + request.messages[-1].content

    def team(backend: FunctionBackend) -> Orchestrator:
        return Orchestrator([Agent("ada", backend, role="r")], strategy="parallel")

    hub = MemoryHub()
    never = FunctionBackend(lambda r: (_ for _ in ()).throw(AssertionError("caller's backend")))
    stores = {}
    for name in ("red", "blue"):
        stores[name] = MemoryStore()
        await Sessions(stores[name]).record(name, "r0", {"ada": Exchange(f"{name} task", name)})
    async with Worker(team(FunctionBackend(answer)), hub=hub, settings=FAST, concurrency=4):

        async def run(name: str) -> str:
            caller = Orchestrator(
                [Agent("ada", never, role="r")],
                strategy="parallel",
                session=name,
                memory_store=stores[name],
            )
            async with distributed(caller, hub=hub, settings=FAST):
                return (await caller.arun(f"{name} again")).final_answer

        finals = await asyncio.gather(run("red"), run("blue"))
    assert finals == ["ok red again", "ok blue again"]
    by_session = {r.messages[-1].content: [m.content for m in r.messages] for r in seen}
    assert by_session == {
        "red again": ["r", "red task", "red", "red again"],
        "blue again": ["r", "blue task", "blue", "blue again"],
    }


async def test_the_caller_needs_no_provider_for_a_remote_summary():
    calls: list[CompletionRequest] = []

    def worker_model(request: CompletionRequest) -> str:
        calls.append(request)
        return "SUMMARY" if "Write the updated summary" in request.messages[-1].content else "hi"

    def agent(backend: FunctionBackend, **kw: Any) -> Agent:
        return Agent("ada", backend, role="r", memory_strategy="summary", memory_size=60, **kw)

    never = FunctionBackend(lambda r: (_ for _ in ()).throw(AssertionError("caller's backend")))
    store = MemoryStore()
    for i in range(4):
        await Sessions(store).record("s", f"r{i}", {"ada": Exchange(f"task {i} " * 5, f"a{i}")})
    hub = MemoryHub()
    host = Orchestrator([agent(FunctionBackend(worker_model))], strategy="parallel")
    caller = Orchestrator([agent(never)], strategy="parallel", session="s", memory_store=store)
    async with Worker(host, hub=hub, settings=FAST), distributed(caller, hub=hub, settings=FAST):
        result = await caller.arun("next")
    assert result.final_answer == "hi" and len(never.calls) == 0
    text, covered = await Sessions(store).summary("s", "ada")
    assert text == "SUMMARY" and covered >= 1
    assert "SUMMARY" in calls[-1].messages[0].content  # the answer saw the new summary
    assert result.usage == calls_usage(calls)


def calls_usage(calls: list[CompletionRequest]) -> Any:
    from massgen.tokens import estimate_request, estimate_text
    from massgen.types import Usage

    total = Usage()
    for request in calls:
        text = "SUMMARY" if "Write the updated summary" in request.messages[-1].content else "hi"
        total = total + Usage(estimate_request(request), estimate_text(text))
    return total


async def test_a_summary_written_before_the_answer_failed_is_still_kept(sim: ProviderSimulator):
    from tests.sim.sim_types import Fault

    team = _team(sim, "{strategy: summary, size: 250}")
    sim.script(Text("SUMMARY-OF-EARLIER-RUNS"), match="Write the updated summary")
    sim.script(Fault(400, message="refused"), match="You are Ada")  # then ada's answer fails
    store = MemoryStore()
    await _seed(store)
    hub = MemoryHub()
    host = Orchestrator.from_config(loads(team))
    async with Worker(host, hub=hub, settings=FAST):
        caller = Orchestrator.from_config(loads(team), session="s", memory_store=store)
        async with caller, distributed(caller, hub=hub, settings=FAST):
            result = await caller.arun("What now?")
    assert result.status == "degraded" and list(result.failed_agents) == ["ada"]
    await host.aclose()
    assert any("Write the updated summary" in r.prompt_text for r in sim.requests)
    text, covered = await Sessions(store).summary("s", "ada")
    assert text == "SUMMARY-OF-EARLIER-RUNS" and covered >= 1
