"""``--log-level debug`` tells what massgen did: each provider request (agent, model, attempt,
status, latency, tokens), each retry with its reason and wait, cache hits, tool calls, and
which worker a distributed turn went to; never a key. Off, none of it is even formatted."""

from __future__ import annotations

import asyncio
import logging
import re
import textwrap
from pathlib import Path

import pytest

from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.distributed import Worker, distributed
from massgen.mas import MemoryHub
from massgen.orchestrator import Orchestrator
from massgen.resilience import LoggedBackend
from massgen.types import CallContext, ChatMessage, CompletionRequest
from tests.procs import run_massgen
from tests.sim.sim_types import Fault, Text, ToolCalls, ToolCallSpec
from tests.sim.simulator import ProviderSimulator

KEY = "sk-canary-logs-8c1f5e2a9d7b3c4e"
REQUEST = re.compile(
    r"DEBUG massgen\.requests: request agent=(\w+) model=([\w.-]+) attempt=(\d+) "
    r"status=(\w+) latency=(\d+\.\d+)s (?:tokens=(\d+)\+(\d+)|error=(.*))"
)


def _team(tmp_path: Path, sim: ProviderSimulator) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            backends:
              sim: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}",
                     api_key: "${{LOGS_KEY}}"}}
            agents:
              - {{name: ada, backend: sim, role: You are Ada.}}
              - {{name: bob, backend: sim, role: You are Bob., tools: [calculator]}}
            orchestrator: {{strategy: parallel, max_retries: 2, retry_delay: 0.01,
                            cache: {{enabled: true, path: cache.sqlite3}}}}
            """
        )
    )
    return path


def test_a_debug_run_logs_requests_retries_tools_and_cache_hits_and_no_key(
    tmp_path: Path, sim: ProviderSimulator
) -> None:
    sim.script([Fault(429, message=f"slow down, key {KEY}"), Text("Paris.")], match="You are Ada")
    sim.script(
        [ToolCalls([ToolCallSpec("calculator", {"expression": "6*7"})]), Text("42")],
        match="You are Bob",
    )
    team = _team(tmp_path, sim)
    env = {"LOGS_KEY": KEY}
    first = run_massgen(
        "--log-level", "debug", "run", str(team), "Task?", "--no-record", cwd=tmp_path, env=env
    )
    assert first.returncode == 0, first.stderr
    requests = [m.groups() for m in REQUEST.finditer(first.stderr)]
    ada = [r for r in requests if r[0] == "ada"]
    assert [(r[2], r[3]) for r in ada] == [("1", "429"), ("2", "ok")], first.stderr
    assert ada[0][7].startswith("[openai 429] slow down, key ***")
    assert int(ada[1][5]) > 0 and int(ada[1][6]) > 0 and all(r[1] == "gpt-4o-mini" for r in ada)
    bob = [r for r in requests if r[0] == "bob"]
    assert [r[3] for r in bob] == ["ok", "ok"]  # the tool call, then the answer
    assert re.search(
        r"INFO massgen\.resilience\.retry: retry agent=ada attempt=1/2 wait=\d+\.\d+s "
        r"reason=\[openai 429\] slow down, key \*\*\*",
        first.stderr,
    )
    assert re.search(r"DEBUG massgen\.tools: tool calculator agent=bob ok duration=", first.stderr)
    assert "cache miss agent=ada" in first.stderr

    again = run_massgen(
        "--log-level", "debug", "run", str(team), "Task?", "--no-record", cwd=tmp_path, env=env
    )
    assert again.returncode == 0, again.stderr
    assert re.search(r"cache hit agent=ada key=cache:default:[0-9a-f]{12} model=", again.stderr)
    assert not REQUEST.search(again.stderr.split("cache hit agent=ada")[1].split("\n")[0])
    for out in (first, again):
        text = out.stdout + out.stderr
        for piece in (KEY, KEY[:16], KEY[-16:]):
            assert piece not in text


async def test_a_distributed_turn_names_the_worker_it_went_to(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = MemoryHub()
    host = Orchestrator([Agent("ada", FunctionBackend(lambda r: "Paris."), role="geographer")])
    run = Orchestrator([Agent("ada", FunctionBackend(lambda r: "local"), role="geographer")])
    caplog.set_level(logging.DEBUG, logger="massgen")
    async with Worker(host, hub=hub) as worker, distributed(run, hub=hub):
        result = await run.arun("Capital?", strategy="parallel")
    assert result.final_answer == "Paris."
    address = worker.hosted[0].address
    turns = [r.getMessage() for r in caplog.records if r.name == "massgen.distributed.connect"]
    assert len(turns) == 1
    assert re.match(
        rf"turn agent=ada phase=answer round=0 run=\S+ worker={re.escape(address)} "
        r"status=ok seconds=\d",
        turns[0],
    )
    # the worker's own request log names the agent it answered for
    assert any(
        r.name == "massgen.requests" and r.getMessage().startswith("request agent=ada ")
        for r in caplog.records
    )


async def test_with_debug_off_a_request_goes_straight_to_the_backend() -> None:
    inner = FunctionBackend(lambda r: "ok")
    logged = LoggedBackend(inner)
    logger = logging.getLogger("massgen.requests")
    assert not logger.isEnabledFor(logging.DEBUG)
    request = CompletionRequest(messages=(ChatMessage("user", "hi"),))
    # no wrapper frame: the very coroutine / iterator of the backend it wraps
    pending = logged.complete(request)
    assert pending.cr_code is inner.complete.__code__  # type: ignore[attr-defined]
    assert (await pending).text == "ok"
    chunks = logged.stream(request)
    assert chunks.ag_code is type(inner).stream.__code__  # type: ignore[attr-defined]
    assert [c.delta async for c in chunks if c.delta] == ["ok"]


async def test_a_cancelled_request_is_logged_as_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()

    async def hang(request: CompletionRequest) -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    logged = LoggedBackend(FunctionBackend(hang, model="m-1"))
    caplog.set_level(logging.DEBUG, logger="massgen.requests")
    request = CompletionRequest(messages=(), call=CallContext("ada"))
    task = asyncio.ensure_future(logged.complete(request))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = caplog.records
    assert re.match(r"request agent=ada model=m-1 attempt=1 status=cancelled ", record.message)
