"""The public API: exported names, and the seed's examples as written (package name adapted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import massgen


def test_every_exported_name_resolves():
    for name in massgen.__all__:
        assert getattr(massgen, name) is not None, name
    assert set(dir(massgen)) >= set(massgen.__all__)


def test_import_massgen_is_light():
    code = (
        "import sys, massgen; "
        "heavy = [m for m in ('openai', 'anthropic', 'google.genai', 'rich', 'pydantic', 'typer') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_seed_custom_backend_and_orchestrator_examples():
    from massgen import Agent, Orchestrator
    from massgen.backends import Backend

    class CustomBackend(Backend):
        def generate(self, prompt, **kwargs):
            return f"echo: {prompt}"

    agents = [Agent(name=f"agent{i}", backend=CustomBackend(), role="helper") for i in range(3)]
    orchestrator = Orchestrator(
        agents=agents, error_strategy="continue", max_retries=3, retry_delay=2.0
    )
    result = orchestrator.run(task="Make decision", strategy="consensus")
    assert result.final_answer == "echo: Make decision"  # all agree: no review round
    for strategy in ("parallel", "sequential"):
        assert orchestrator.run(task="Analyze data", strategy=strategy).final_answer

    cached = Orchestrator(agents=agents, cache_enabled=True, cache_ttl=3600)
    assert cached.config.cache.enabled and cached.config.cache.ttl == 3600


def test_seed_memory_agent_example_is_accepted():
    from massgen import Agent

    agent = Agent(name="MemoryAgent", memory_strategy="sliding_window", memory_size=1000)
    assert (agent.memory_strategy, agent.memory_size) == ("sliding_window", 1000)


async def test_async_generate_and_await_run_inside_a_loop():
    from massgen import Agent, Backend, Orchestrator

    class AsyncBackend(Backend):
        async def generate(self, prompt, **kwargs):
            return prompt.upper() + "!" + kwargs.get("system", "")

    orchestrator = Orchestrator([Agent("a", AsyncBackend(), role="S")], strategy="parallel")
    result = await orchestrator.run("hi")  # awaitable inside a running loop
    assert result.final_answer == "HI!S"


def test_from_config_builds_the_team(tmp_path):
    from massgen import Orchestrator

    team = tmp_path / "team.yaml"
    team.write_text(
        "agents:\n"
        "  - {name: a, backend: {type: replay, default: Paris}}\n"
        "  - {name: b, backend: {type: replay, default: Paris}}\n"
        "orchestrator: {strategy: parallel, max_parallel: 1}\n"
    )
    orchestrator = Orchestrator.from_config(team)
    assert orchestrator.strategy == "parallel" and list(orchestrator.agents) == ["a", "b"]
    assert orchestrator.run("Capital?").final_answer.count("Paris") == 2


def test_keyword_options_are_validated_once_into_the_typed_section():
    from massgen import Agent, ConfigError, FunctionBackend, Orchestrator

    agents = [Agent("a", FunctionBackend(lambda r: "x"))]
    built = Orchestrator(agents, max_rounds=3, cache_enabled=True, cache_path="c.db")
    assert built.config.consensus.max_rounds == 3 and built.config.cache.path == "c.db"
    for options, key in (
        ({"error_strategy": "bogus"}, "error_strategy"),
        ({"threshold": 0}, "consensus.threshold"),
        ({"max_round": 2}, "max_round"),
        ({"presenter": "nobody"}, "presenter"),
    ):
        with pytest.raises(ConfigError) as caught:
            Orchestrator(agents, **options)
        assert caught.value.key == key


def test_a_missing_key_is_named_before_anything_is_sent(monkeypatch):
    """As the command line does: not a run that drops the agent (degraded) or fails."""
    from massgen import Agent, Orchestrator
    from massgen.errors import ConfigError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    agents = [
        Agent("analyst", backend="openai", model="gpt-4o-mini"),
        Agent("grok", backend="xai", model="grok-4"),
        Agent("echo", backend="replay"),
    ]
    with pytest.raises(ConfigError) as info:
        Orchestrator(agents=agents, error_strategy="continue")
    assert "analyst" in str(info.value) and "OPENAI_API_KEY" in str(info.value)
    assert "grok" in str(info.value) and "XAI_API_KEY" in str(info.value)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("XAI_API_KEY", "xai-test")
    Orchestrator(agents=agents)  # keys there: built on first use, as before
