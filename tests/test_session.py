"""Sessions: `massgen run --session NAME` continued across processes, on SQLite and Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from massgen.cli import app
from massgen.config import loads
from massgen.memory import Exchange, Sessions
from massgen.orchestrator import Orchestrator
from massgen.store import MemoryStore, open_store
from tests.procs import run_massgen, start_ready
from tests.sim.sim_types import Text
from tests.sim.simulator import ProviderSimulator

REDIS_URL = os.environ.get("MASSGEN_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _config(tmp_path: Path, sim: ProviderSimulator, redis_prefix: str | None = None) -> Path:
    redis = f'redis: {{url: "{REDIS_URL}", prefix: "{redis_prefix}"}}' if redis_prefix else ""
    path = tmp_path / "team.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            backends:
              sim: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}",
                     api_key: sk-test}}
            agents:
              - {{name: ada, backend: sim, memory: {{strategy: sliding_window, size: 2000}}}}
              - {{name: bob, backend: sim}}
            orchestrator: {{strategy: parallel, max_retries: 0}}
            {redis}
            """
        )
    )
    return path


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_massgen(*args, cwd=cwd)


def _two_processes(tmp_path: Path, sim: ProviderSimulator, config: Path) -> None:
    sim.script(Text("The secret word is PELICAN."), match="Pick a secret word")
    first = _run(tmp_path, "run", str(config), "Pick a secret word", "--session", "chat", "-q")
    assert first.returncode == 0, first.stderr
    assert len(sim.requests) == 2
    assert all("PELICAN" not in r.prompt_text for r in sim.requests)
    sim.reset()
    second = _run(tmp_path, "run", str(config), "What was the word?", "--session", "chat", "-q")
    assert second.returncode == 0, second.stderr
    by_agent = sorted(sim.requests, key=lambda r: r.messages[0][1])
    assert len(by_agent) == 2
    for req in by_agent:  # each agent sees its own earlier turn, then the new task
        assert [role for role, _ in req.messages] == ["user", "assistant", "user"]
        assert req.messages[0][1] == "Pick a secret word"
        assert "PELICAN" in req.messages[1][1]
        assert req.messages[2][1] == "What was the word?"
    # a run without the session remembers nothing
    sim.reset()
    third = _run(tmp_path, "run", str(config), "What was the word?", "-q", "--no-record")
    assert third.returncode == 0, third.stderr
    assert all(len(r.messages) == 1 for r in sim.requests)


def test_session_continues_across_processes_sqlite(tmp_path: Path, sim: ProviderSimulator):
    config = _config(tmp_path, sim)
    _two_processes(tmp_path, sim, config)
    assert (tmp_path / ".massgen" / "memory.sqlite3").exists()
    runner = CliRunner()
    store = str(tmp_path / ".massgen" / "memory.sqlite3")
    out = runner.invoke(app, ["session", "list", "--store", store, "--json"])
    assert out.exit_code == 0, out.output
    (info,) = json.loads(out.stdout)
    assert info["name"] == "chat" and info["runs"] == 2 and set(info["agents"]) == {"ada", "bob"}
    out = runner.invoke(app, ["session", "show", "chat", "--store", store])
    assert out.exit_code == 0 and "[ada]" in out.stdout and "PELICAN" in out.stdout
    out = runner.invoke(app, ["session", "delete", "chat", "--store", store])
    assert out.exit_code == 0 and "deleted" in out.stdout
    out = runner.invoke(app, ["session", "show", "chat", "--store", store])
    assert out.exit_code == 2 and "no session" in out.stderr and out.stdout == ""
    out = runner.invoke(app, ["session", "list", "--store", store])
    assert out.stdout.strip() == "no sessions"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    import redis

    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_session_continues_across_processes_redis(
    tmp_path: Path, sim: ProviderSimulator, redis_prefix: str
):
    config = _config(tmp_path, sim, redis_prefix)
    _two_processes(tmp_path, sim, config)
    assert not (tmp_path / ".massgen" / "memory.sqlite3").exists()  # it all went to Redis
    out = CliRunner().invoke(app, ["session", "show", "chat", "--config", str(config), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["runs"] == 2 and "PELICAN" in data["by_agent"]["ada"]["turns"][0]["answer"]
    where = ["--store", REDIS_URL, "--prefix", redis_prefix]
    out = CliRunner().invoke(app, ["session", "delete", "chat", *where])
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(app, ["session", "list", *where])
    assert out.stdout.strip() == "no sessions"


async def test_session_sees_only_earlier_runs_and_records_own_final_word(sim: ProviderSimulator):
    store = MemoryStore()
    cfg = loads(
        textwrap.dedent(
            f"""
            backends:
              sim: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}",
                     api_key: sk-test}}
            agents:
              - {{name: a, backend: sim}}
              - {{name: b, backend: sim}}
            orchestrator: {{strategy: consensus, max_retries: 0}}
            """
        )
    )
    async with Orchestrator.from_config(cfg, session="s", memory_store=store) as orch:
        result = await orch.arun("Name a colour")
        # within the run every prompt is fresh: the review prompt already has the answers
        assert all(len(r.messages) == 1 for r in sim.requests)
        exchanges = await Sessions(store).exchanges("s", "a")
        assert exchanges == [
            Exchange("Name a colour", result.latest_answers()["a"], result.run_id, exchanges[0].at)
        ]
        sim.reset()
        await orch.arun("Another one")
    first = sim.requests[0]
    assert first.messages[0] == ("user", "Name a colour")
    assert len(await Sessions(store).exchanges("s", "b")) == 2


def test_bad_session_name_is_a_usage_error(tmp_path: Path, sim: ProviderSimulator):
    config = _config(tmp_path, sim)
    out = CliRunner().invoke(app, ["run", str(config), "hi", "--session", "a b/c", "--no-record"])
    assert out.exit_code == 2 and "session name" in out.output


async def test_delete_leaves_other_sessions(tmp_path: Path):
    async with open_store(tmp_path / "m.sqlite3") as store:
        sessions = Sessions(store)
        for name in ("a", "ab"):
            await sessions.record(name, "r", {"x": Exchange("t", name)})
        assert await sessions.delete("a")
        assert not await sessions.delete("a")
        assert [i.name for i in await sessions.list()] == ["ab"]
        assert [e.answer for e in await sessions.exchanges("ab", "x")] == ["ab"]
        assert await sessions.exchanges("a", "x") == []


def test_listing_creates_no_file(tmp_path: Path):
    store = tmp_path / "none.sqlite3"
    out = CliRunner().invoke(app, ["session", "list", "--store", str(store)])
    assert out.exit_code == 0 and out.stdout.strip() == "no sessions"
    out = CliRunner().invoke(app, ["memory", "list", "--store", str(store)])
    assert out.exit_code == 0 and out.stdout.strip() == "no long-term memory"
    assert not store.exists()


def test_session_and_recall_reach_an_agent_on_a_worker_process(
    tmp_path: Path, sim: ProviderSimulator, redis_prefix: str
):
    """The run, each in its own process, owns the session and the long-term memory (in
    Redis); `ada` answers on a worker process, which has neither, and still sees both."""
    config = tmp_path / "team.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            backends:
              sim: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}",
                     api_key: sk-test}}
            agents:
              - {{name: ada, backend: sim, role: You are Ada.,
                  memory: {{strategy: sliding_window, size: 2000, long_term: true}}}}
              - {{name: bob, backend: sim, role: You are Bob.}}
            orchestrator: {{strategy: parallel, max_retries: 0}}
            redis: {{url: "{REDIS_URL}", prefix: "{redis_prefix}"}}
            """
        )
    )
    unset = ("MASSGEN_REDIS_URL", "MASSGEN_SECRET")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    worker = start_ready(  # "hosting ada" is printed once ada is registered
        [sys.executable, "-m", "massgen", "worker", str(config), "--agent", "ada"],
        ready="hosting ada",
        cwd=tmp_path,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    try:
        sim.script(Text("The secret word is PELICAN."), match="Pick a secret word")
        first = _run(tmp_path, "run", str(config), "Pick a secret word", "--session", "chat", "-q")
        assert first.returncode == 0, first.stderr
        sim.reset()
        task = "What was the secret word?"
        second = _run(tmp_path, "run", str(config), task, "--session", "chat", "-q")
        assert second.returncode == 0, second.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=20)
    assert len([ln for ln in err.splitlines() if ln.startswith("ada:") and "done in" in ln]) == 2
    ada, bob = sorted(sim.requests, key=lambda r: r.system)
    assert (ada.system, bob.system) == ("You are Ada.", "You are Bob.")
    for req in (ada, bob):  # each sees its own earlier turn, then the new task
        assert [role for role, _ in req.messages] == ["user", "assistant", "user"]
        assert req.messages[0][1] == "Pick a secret word" and "PELICAN" in req.messages[1][1]
        assert req.messages[2][1].endswith(task)
    recalled = ada.messages[2][1]  # ada also recalls the first run from long-term memory
    assert recalled.startswith("Recalled memory from earlier runs") and "PELICAN" in recalled
    assert "Recalled memory" not in bob.messages[2][1]


async def test_a_batch_in_a_session_runs_its_tasks_in_order_as_one_conversation() -> None:
    from massgen.agents.agent import Agent
    from massgen.backends.function import FunctionBackend

    seen: list[str] = []

    def model(request):  # answers with the task; records what it was shown
        seen.append("\n".join(m.content for m in request.messages))
        return "answer to " + request.messages[-1].content

    orch = Orchestrator(
        [Agent("ada", FunctionBackend(model))],
        strategy="parallel",
        session="chat",
        memory_store=MemoryStore(),
    )
    result = await orch.abatch_run([f"task {i}" for i in range(4)], concurrency=4)
    await orch.aclose()
    assert [r.final_answer for r in result if r] == [f"answer to task {i}" for i in range(4)]
    assert len(seen) == 4
    for i, prompt in enumerate(seen):  # each turn sees every earlier one, none later
        assert all(f"answer to task {j}" in prompt for j in range(i))
        assert f"task {i + 1}" not in prompt
