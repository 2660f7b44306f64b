"""Every example of the seed README (mas-framework) runs as written with massgen.mas.

With no redis_url and no $MASSGEN_REDIS_URL the agents use the Redis at
redis://localhost:6379, as the seed's do (under a key prefix of each test's own).
"""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from massgen.mas import Agent, AgentMessage, MASService

from .helpers import until


@pytest.fixture(autouse=True)
def _seed(seed_defaults: str) -> None:
    """Default Redis, a prefix of the test's own, agents stopped after."""


async def test_start_mas_service_programmatically() -> None:
    # --- the README's code ---
    service = MASService(redis_url="redis://localhost")
    await service.start()
    # --- end ---
    a = Agent("seen_by_service")
    await a.start()
    report = await service.check()
    assert report.dead == []
    await a.stop()
    await service.stop()


async def test_start_mas_service_from_the_command_line(seed_defaults: str) -> None:
    """``python -m mas.service`` becomes ``python -m massgen.mas.service``: it runs until
    SIGTERM and exits 0."""
    import os
    import signal
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MASSGEN_REDIS_URL"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "massgen.mas.service",
        "--prefix",
        seed_defaults,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(20):
            line = (await proc.stderr.readline()).decode()  # the start line
        assert "mas service started on redis://localhost:6379" in line, line
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_quick_start(capsys: pytest.CaptureFixture[str]) -> None:
    replied = asyncio.Event()

    class Other(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            if message.payload == {"reply": "got it"}:
                replied.set()

    other = Other("other_agent", capabilities=["chat"])
    await other.start()

    # --- the README's code, verbatim ---
    class MyAgent(Agent):
        async def on_message(self, message: AgentMessage):
            print(f"Received: {message.payload}")
            # Send reply
            await self.send(message.sender_id, {"reply": "got it"})

    # Create and start agent
    agent = MyAgent("my_agent", capabilities=["chat", "nlp"])
    await agent.start()

    # Send message to another agent
    await agent.send("other_agent", {"hello": "world"})

    # Discover agents by capability
    agents = await agent.discover(capabilities=["nlp"])
    print(f"Found {len(agents)} NLP agents")
    # --- end ---

    await other.send("my_agent", {"ping": 1})
    await until(replied)
    # Stop agent
    await agent.stop()
    await other.stop()
    out = capsys.readouterr().out
    assert "Found 1 NLP agents" in out
    assert "Received: {'ping': 1}" in out


async def test_peer_to_peer_direct_send() -> None:
    got: list[dict] = []
    arrived = asyncio.Event()

    class Target(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            got.append(message.payload)
            arrived.set()

    await Target("target_agent").start()
    agent = Agent("sender")
    await agent.start()
    # --- the README's code ---
    # Direct send (publishes to Redis channel: agent.target_id)
    await agent.send("target_agent", {"data": "hello"})
    # --- end ---
    await until(arrived)
    assert got == [{"data": "hello"}]


async def test_discover_returns_agents_with_any_listed_capability() -> None:
    """The seed's registry keeps an agent having *any* of the capabilities asked for."""
    await Agent("translator", capabilities=["translation"]).start()
    await Agent("seer", capabilities=["vision"]).start()
    me = Agent("me", capabilities=["math"])
    await me.start()
    found = await me.discover(capabilities=["translation", "vision"])
    assert [a["id"] for a in found] == ["seer", "translator"]


async def test_auto_persisted_state() -> None:
    class MyAgent(Agent):
        pass

    agent = MyAgent("my_agent")
    await agent.start()
    # --- the README's code ---
    await agent.update_state({"counter": 42, "status": "active"})
    print(agent.state["counter"])
    await agent.stop()
    agent2 = MyAgent("my_agent")  # Same ID
    await agent2.start()
    print(agent2.state["counter"])  # Still 42 -- and an int, not "42"
    # --- end ---
    assert agent2.state["counter"] == 42 and type(agent2.state["counter"]) is int
    assert agent2.state["status"] == "active"
    await agent2.stop()


async def test_discovery_by_capabilities() -> None:
    agent = Agent("my_agent", capabilities=["nlp", "text", "translation"])
    await agent.start()
    nlp_agents = await agent.discover(capabilities=["nlp"])
    all_agents = await agent.discover()
    assert [a["id"] for a in nlp_agents] == ["my_agent"]
    assert nlp_agents[0]["capabilities"] == ["nlp", "text", "translation"]
    assert all_agents == nlp_agents
    await agent.stop()


async def test_lifecycle_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    cleaned = []

    class MyAgent(Agent):
        async def on_start(self):
            """Called when agent starts"""
            print("Agent starting...")
            await self.update_state({"status": "initializing"})

        async def on_stop(self):
            """Called when agent stops"""
            print("Agent stopping...")
            await self.cleanup_resources()

        async def on_message(self, message: AgentMessage):
            """Called when message received"""
            print(f"Got message: {message.payload}")

        async def cleanup_resources(self) -> None:
            cleaned.append(True)

    a = MyAgent("hooks")
    await a.start()
    assert a.state == {"status": "initializing"}
    await a.stop()
    assert cleaned == [True]
    assert capsys.readouterr().out.splitlines() == ["Agent starting...", "Agent stopping..."]


async def test_typed_state_with_pydantic() -> None:
    class MyState(BaseModel):
        counter: int = Field(default=0)
        name: str = Field(default="")
        active: bool = Field(default=True)

    agent = Agent("my_agent", state_model=MyState)
    await agent.start()
    await agent.update_state({"counter": 42})
    assert agent.state.counter == 42
    assert isinstance(agent.state, MyState)
    await agent.stop()


async def test_custom_metadata() -> None:
    class MyAgent(Agent):
        def get_metadata(self) -> dict:
            return {"version": "1.0.0", "model": "gpt-4", "region": "us-east-1"}

    a = MyAgent("meta")
    await a.start()
    [info] = await a.discover()
    assert info["metadata"] == {"version": "1.0.0", "model": "gpt-4", "region": "us-east-1"}
    await a.stop()


async def test_message_handling_patterns() -> None:
    answers: list[dict] = []
    three = asyncio.Event()

    class ChatAgent(Agent):
        async def on_message(self, message: AgentMessage):
            # Pattern matching on payload
            match message.payload.get("action"):
                case "chat":
                    await self.handle_chat(message)
                case "summarize":
                    await self.handle_summarize(message)
                case _:
                    await self.send(message.sender_id, {"error": "unknown action"})

        async def handle_chat(self, message: AgentMessage):
            response = f"You said: {message.payload['text']}"
            await self.send(message.sender_id, {"response": response})

        async def handle_summarize(self, message: AgentMessage):
            await self.send(message.sender_id, {"summary": message.payload["text"][:5]})

    class User(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            answers.append(message.payload)
            if len(answers) == 3:
                three.set()

    chat, user = ChatAgent("chat"), User("user")
    await chat.start()
    await user.start()
    await user.send("chat", {"action": "chat", "text": "hi"})
    await user.send("chat", {"action": "summarize", "text": "long text"})
    await user.send("chat", {"action": "dance"})
    await until(three)
    assert sorted(answers, key=str) == sorted(
        [{"response": "You said: hi"}, {"summary": "long "}, {"error": "unknown action"}],
        key=str,
    )
    await chat.stop()
    await user.stop()


async def test_running_multiple_agents() -> None:
    got = asyncio.Event()

    class Nlp(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            if message.payload == {"task": "analyze text"}:
                got.set()

    # Start MAS service
    service = MASService()
    await service.start()

    # Create multiple agents
    agents = [
        Nlp("agent_1", capabilities=["nlp"]),
        Agent("agent_2", capabilities=["vision"]),
        Agent("agent_3", capabilities=["math"]),
    ]

    # Start all
    for agent in agents:
        await agent.start()

    # Agents can now discover and message each other
    nlp_agents = await agents[1].discover(capabilities=["nlp"])
    await agents[1].send("agent_1", {"task": "analyze text"})

    await until(got)
    assert [a["id"] for a in nlp_agents] == ["agent_1"]
    report = await service.check()
    assert report.dead == []

    # Stop all
    for agent in agents:
        await agent.stop()

    await service.stop()


async def test_migration_after_example() -> None:
    agent = Agent("my_agent", capabilities=["nlp"])
    await agent.start()
    assert agent.status == "running"
    await agent.stop()
    assert agent.status == "stopped"


async def test_the_porting_example_of_docs_mas_md_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(__file__).parents[2] / "docs" / "mas.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    scope: dict[str, object] = {}
    exec("async def example():\n" + textwrap.indent(code, "    "), scope)
    await scope["example"]()  # type: ignore[operator]
    assert capsys.readouterr().out == "rest\n"


async def test_the_gateway_example_of_docs_mas_md_runs(
    seed_defaults: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from massgen.mas import GatewayService

    assert GatewayService.__init__.__kwdefaults__ is not None
    monkeypatch.setitem(GatewayService.__init__.__kwdefaults__, "prefix", seed_defaults)
    text = (Path(__file__).parents[2] / "docs" / "mas.md").read_text()
    section = text[text.index("## Gateway mode") :]
    [code] = re.findall(r"```\n(.*?)```", section, flags=re.S)[:1]
    got = asyncio.Event()

    class Target(Agent):
        async def on_message(self, message: AgentMessage) -> None:
            if message.payload == {"data": "secure message"}:
                got.set()

    await Target("target_agent").start()
    scope: dict[str, object] = {"Agent": Agent, "GatewayService": GatewayService}
    exec("async def example():\n" + textwrap.indent(code, "    ") + "    return gateway\n", scope)
    gateway = await scope["example"]()  # type: ignore[operator]
    await until(got)
    await gateway.stop()
