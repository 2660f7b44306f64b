"""A distributed turn is one trace across two processes: the run's turn span travels with the
turn (W3C traceparent), and the worker process exports its own span of the turn under it,
with the provider requests and the tool call it ran. Real Redis, a real worker process, the
provider simulator, an OTLP/HTTP receiver on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from massgen.config import load
from massgen.distributed import distributed
from massgen.orchestrator import Orchestrator
from tests.mas.helpers import SHARED_REDIS, clean_prefix
from tests.otlp import Receiver, Span, children, named
from tests.procs import start_ready
from tests.sim.sim_types import Text, ToolCalls, ToolCallSpec
from tests.sim.simulator import ProviderSimulator

PROC = Path(__file__).with_name("worker_proc.py")
TASK = "What is 6 times 7?"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    p = f"test:trace:{uuid.uuid4().hex[:10]}:"
    yield p
    await clean_prefix(SHARED_REDIS, p)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def team(tmp_path: Path, sim: ProviderSimulator, prefix: str, receiver: Receiver) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(
        f"""\
redis: {{url: '{SHARED_REDIS}', prefix: '{prefix}'}}
observability: {json.dumps({"otlp": receiver.url})}
agents:
  - name: bob
    role: You are Bob.
    tools: [calculator]
    backend: {{type: openai, model: gpt-4o-mini, base_url: '{sim.openai_base_url}', api_key: x}}
orchestrator: {{strategy: parallel, max_retries: 0}}
"""
    )
    return path


@pytest.fixture
def worker(team: Path) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASSGEN_", "OTEL_"))}
    env["OTEL_BSP_SCHEDULE_DELAY"] = "50"  # the SDK's own variable: spans leave within 50 ms
    proc = start_ready(
        [sys.executable, str(PROC), str(team), "bob", "2"], ready="hosting bob", env=env
    )
    yield proc
    proc.kill()
    proc.communicate(timeout=10)


def both_sides(spans: list[Span]) -> bool:
    return any(s.name == "invoke_workflow parallel" for s in spans) and any(
        s.kind == 2 and s.name == "invoke_agent bob"
        for s in spans  # SERVER: the worker's
    )


async def test_a_turn_on_a_worker_is_in_the_runs_trace(
    sim: ProviderSimulator,
    team: Path,
    worker: subprocess.Popen[str],
    receiver: Receiver,
    prefix: str,
) -> None:
    call = ToolCallSpec("calculator", {"expression": "6*7"}, id="call_1")
    sim.script([ToolCalls([call]), Text("It is 42.")], match="You are Bob.")
    orchestrator = Orchestrator.from_config(load(team))
    async with orchestrator, distributed(orchestrator, SHARED_REDIS, prefix=prefix) as placement:
        assert dict(placement.remote) == {"bob": 1}
        result = await orchestrator.arun(TASK)
    assert result.final_answer == "It is 42."
    spans = receiver.wait(lambda s: both_sides(s) and len(named(s, "chat gpt-4o-mini")) == 2)
    here, there = os.getpid(), worker.pid
    [root] = named(spans, "invoke_workflow parallel")
    [turn] = [s for s in named(spans, "invoke_agent bob") if s.kind != 2]
    [remote] = [s for s in named(spans, "invoke_agent bob") if s.kind == 2]
    assert (root.resource["process.pid"], turn.resource["process.pid"]) == (here, here)
    assert remote.resource["process.pid"] == there
    assert turn.parent_id in {root.span_id, *(s.span_id for s in children(spans, root))}
    assert remote.trace_id == turn.trace_id == root.trace_id  # one trace, two processes
    assert remote.parent_id == turn.span_id
    assert remote["massgen.worker"] and remote["gen_ai.agent.name"] == "bob"
    assert turn.start <= remote.start <= remote.end <= turn.end
    chats = named(spans, "chat gpt-4o-mini")
    assert {c.parent_id for c in chats} == {remote.span_id}  # asked by the worker
    assert {c.resource["process.pid"] for c in chats} == {there}
    [tool] = named(spans, "execute_tool calculator")  # once: the run did not trace it again
    assert (tool.parent_id, tool.resource["process.pid"]) == (remote.span_id, there)
    assert tool["gen_ai.tool.call.id"] == "call_1"


async def test_a_worker_without_traces_leaves_the_tool_calls_to_the_run(
    receiver: Receiver, prefix: str
) -> None:
    from massgen.config import ObservabilityConfig
    from massgen.distributed import Worker
    from tests.mas.helpers import FAST
    from tests.test_distributed import tool_team

    caller = tool_team()
    traced = Orchestrator(
        list(caller.agents.values()),
        caller.config,
        observability=ObservabilityConfig(otlp=receiver.url),
    )
    host = Worker(tool_team(), redis_url=SHARED_REDIS, prefix=prefix, settings=FAST)
    on_bus = distributed(traced, SHARED_REDIS, prefix=prefix, settings=FAST)
    async with traced, host, on_bus as placement:
        assert dict(placement.remote) == {"ada": 1}
        assert (await traced.arun("6 times 7?")).final_answer == "It is 42."
    spans = receiver.wait(lambda s: any(x.name == "invoke_workflow parallel" for x in s))
    [turn] = named(spans, "invoke_agent ada")
    [tool] = named(spans, "execute_tool calculator")  # reported by the worker, traced here
    assert tool.parent_id == turn.span_id
    assert not [s for s in spans if s.name.startswith("chat ")]  # the worker's: unseen here


async def test_a_teammate_asked_on_a_worker_traces_its_request_under_its_ask_turn(
    sim: ProviderSimulator, receiver: Receiver, prefix: str
) -> None:
    """Ada (here) asks Bea (on a worker) while Bea answers the task too: the worker's span of
    the ``ask`` turn holds the request that answered it; her own turn holds her own."""
    from massgen.config import loads
    from massgen.distributed import Worker
    from tests.mas.helpers import FAST
    from tests.test_tracing import asking

    text = asking(sim) + f"observability: {json.dumps({'otlp': receiver.url})}\n"
    run, host = Orchestrator.from_config(loads(text)), Orchestrator.from_config(loads(text))
    worker = Worker(host, ["bea"], redis_url=SHARED_REDIS, prefix=prefix, settings=FAST)
    on_bus = distributed(run, SHARED_REDIS, prefix=prefix, settings=FAST)
    async with run, worker, on_bus as placement:
        assert dict(placement.remote) == {"bea": 1}
        await run.arun(TASK)

    def served(spans: list[Span]) -> list[Span]:  # the worker's spans of Bea's turns
        return [s for s in named(spans, "invoke_agent bea") if s.kind == 2]

    spans = receiver.wait(lambda s: len(served(s)) == 2)
    [asked] = [s for s in served(spans) if s["massgen.phase"] == "ask"]
    [own] = [s for s in served(spans) if s["massgen.phase"] == "answer"]
    [chat] = list(children(spans, asked))
    assert chat.name == "chat gpt-4o-mini" and chat.trace_id == asked.trace_id
    assert [c.name for c in children(spans, own)] == ["chat gpt-4o-mini"]
