"""Building a team from its config: the agent's `model:` reaches the provider whatever kind of
backend it names, and what is missing (a model, keys) is reported before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from massgen.config import load, loads
from massgen.errors import ConfigError
from massgen.team import build_agents
from tests.procs import KEY_VARS, run_massgen
from tests.sim.sim_types import Text
from tests.sim.simulator import ProviderSimulator

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)


def _models(sim: ProviderSimulator) -> set[tuple[str, str]]:
    return {(r.protocol, r.model.removeprefix("models/")) for r in sim.requests}


def test_quickstart_runs_to_the_provider_with_each_agents_model(
    tmp_path: Path, sim: ProviderSimulator
) -> None:
    """configs/quickstart.yaml as the README runs it, its endpoints on the simulator: the
    bare `openai`/`anthropic` through their base-URL variables, and `gemini` (which has no
    such variable) as a named backend without a model, so both kinds are exercised."""
    team = tmp_path / "quickstart.yaml"
    team.write_text(
        (ROOT / "configs/quickstart.yaml").read_text()
        + f"\nbackends:\n  gemini: {{type: gemini, base_url: '{sim.gemini_base_url}'}}\n"
    )
    sim.script(Text("Paris."))
    env = {
        "OPENAI_API_KEY": "sk-dummy",
        "ANTHROPIC_API_KEY": "sk-ant-dummy",
        "GEMINI_API_KEY": "dummy",
        "OPENAI_BASE_URL": sim.openai_base_url,
        "ANTHROPIC_BASE_URL": sim.anthropic_base_url,
    }
    done = run_massgen(
        "run",
        str(team),
        "What is the capital of France?",
        "--no-record",
        "-q",
        env=env,
        unset=("GOOGLE_API_KEY",),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Paris."
    assert _models(sim) >= {
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-haiku-4-5"),
        ("gemini", "gemini-2.5-flash"),
    }


async def test_agents_sharing_a_named_backend_without_a_model_each_send_their_own(
    sim: ProviderSimulator,
) -> None:
    from massgen.orchestrator import Orchestrator

    team = loads(
        "backends:\n"
        f"  gpt: {{type: openai, api_key: k, base_url: '{sim.openai_base_url}'}}\n"
        "agents:\n"
        "  - {name: ada, backend: gpt, model: gpt-4o-mini}\n"
        "  - {name: bob, backend: gpt, model: gpt-4o}\n"
        "orchestrator: {strategy: parallel}\n"
    )
    async with Orchestrator.from_config(team) as orchestrator:
        a, b = orchestrator.agents.values()
        assert a.backend is b.backend  # still one shared client
        await orchestrator.arun("hello")
    assert _models(sim) == {("openai", "gpt-4o-mini"), ("openai", "gpt-4o")}


def test_an_inline_backend_takes_the_agents_model() -> None:
    team = loads("agents:\n  - {name: ada, backend: {type: openai, api_key: k}, model: gpt-4o}\n")
    (ada,) = build_agents(team)
    assert ada.model_name() == "gpt-4o"


@pytest.mark.parametrize(
    ("kind", "example"),
    [
        ("anthropic", "claude-"),
        ("gemini", "gemini-"),
        ("openai", "gpt-"),
        ("xai", "grok-"),
        ("ollama", "llama"),
    ],
)
def test_an_agent_without_any_model_is_told_one_of_its_provider(kind: str, example: str) -> None:
    team = loads(
        f"agents:\n  - name: ada\n    backend: {kind}\n",
        file="team.yaml",
        env={},
    )
    with pytest.raises(ConfigError) as info:
        build_agents(team)
    e = info.value
    assert (e.file, e.line, e.key) == ("team.yaml", 2, "agents[0].model")
    assert e.hint is not None and f"model: {example}" in e.hint
    other = {"claude-", "gemini-", "gpt-", "grok-", "llama"} - {example}
    assert not any(f"model: {o}" in e.hint for o in other)


def test_one_agent_without_a_model_on_a_shared_backend_is_an_error() -> None:
    team = loads(
        "backends:\n  gpt: {type: openai, api_key: k}\n"
        "agents:\n  - {name: ada, backend: gpt, model: gpt-4o}\n  - {name: bob, backend: gpt}\n",
        file="team.yaml",
    )
    with pytest.raises(ConfigError) as info:
        build_agents(team)
    assert (info.value.line, info.value.key) == (5, "agents[1].model")


def test_every_missing_key_is_reported_at_once(no_keys: None) -> None:
    team = load(ROOT / "configs/consensus.yaml")
    with pytest.raises(ConfigError) as info:
        build_agents(team)
    text = str(info.value)
    lines = text.splitlines()
    for backend, var in (
        ("backends.gpt", "OPENAI_API_KEY"),
        ("backends.claude", "ANTHROPIC_API_KEY"),
        ("backends.gemini", "GEMINI_API_KEY"),
    ):
        (line,) = [ln for ln in lines if f"`{backend}`" in ln]
        assert var in line, text
    assert "architect" in text and "operator" in text and "reviewer" in text and "founder" in text


def test_missing_keys_of_bare_providers_point_at_the_agents(no_keys: None) -> None:
    team = load(ROOT / "configs/quickstart.yaml")
    with pytest.raises(ConfigError) as info:
        build_agents(team)
    text = str(info.value)
    for line, agent, var in (
        (10, "gpt", "OPENAI_API_KEY"),
        (15, "claude", "ANTHROPIC_API_KEY"),
        (20, "gemini", "GEMINI_API_KEY"),
    ):
        assert any(f":{line}" in ln and agent in ln and var in ln for ln in text.splitlines()), text


def test_a_single_missing_key_keeps_its_one_line_form(no_keys: None) -> None:
    team = loads(
        "backends:\n  claude: {type: anthropic, model: claude-haiku-4-5}\n"
        "agents:\n  - {name: a, backend: claude}\n  - {name: b, backend: {type: replay}}\n",
        file="team.yaml",
    )
    with pytest.raises(ConfigError) as info:
        build_agents(team)
    e = info.value
    assert (e.file, e.line, e.key) == ("team.yaml", 2, "backends.claude.api_key")
    assert e.hint is not None and "ANTHROPIC_API_KEY" in e.hint


def test_a_backends_prices_apply_to_the_model_its_agents_send() -> None:
    from massgen.team import price_overrides

    team = loads(
        "backends:\n  gpt: {type: openai, api_key: k, prices: {input: 1, output: 2}}\n"
        "agents:\n  - {name: ada, backend: gpt, model: house-model}\n"
    )
    assert price_overrides(team)["house-model"] == {"input": 1.0, "output": 2.0}


@pytest.mark.parametrize(
    ("kind", "example"), [("anthropic", "claude-"), ("google", "gemini-"), ("vllm", "/")]
)
def test_the_python_api_hints_a_model_of_the_right_provider(kind: str, example: str) -> None:
    from massgen.agents.agent import Agent

    with pytest.raises(ConfigError) as info:
        Agent("ada", backend=kind).backend  # noqa: B018
    assert info.value.key == "model" and info.value.hint is not None
    assert "model: " in info.value.hint and example in info.value.hint
    assert "gpt-" not in info.value.hint


def test_a_price_entry_may_name_a_cache_read_price() -> None:
    from massgen.backends.pricing import cost
    from massgen.team import price_overrides
    from massgen.types import Usage

    team = loads(
        "prices: {house-model: {input: 2, output: 4, cache_read: 0.5}}\n"
        "backends:\n  gpt: {type: openai, api_key: k}\n"
        "agents:\n  - {name: ada, backend: gpt, model: house-model}\n"
    )
    prices = price_overrides(team)
    assert prices["house-model"] == {"input": 2.0, "output": 4.0, "cache_read": 0.5}
    assert cost("house-model", Usage(1_000_000, 0, 600_000), prices) == pytest.approx(1.1)


def test_a_price_entry_may_name_a_cache_write_price() -> None:
    """The team's table and a backend's own entry, as docs/config.md shows them."""
    from massgen.backends.pricing import cost
    from massgen.team import price_overrides
    from massgen.types import Usage

    team = loads(
        "prices: {house-model: {input: 2, output: 4, cache_write: 2.5}}\n"
        "backends:\n"
        "  gpt: {type: openai, api_key: k}\n"
        "  claude:\n    type: anthropic\n    api_key: k\n    model: claude-house\n"
        "    prices: {input: 3, output: 15, cache_read: 0.3, cache_write: 3.75}\n"
        "agents:\n"
        "  - {name: ada, backend: gpt, model: house-model}\n"
        "  - {name: bo, backend: claude}\n"
    )
    prices = price_overrides(team)
    assert prices["house-model"] == {"input": 2.0, "output": 4.0, "cache_write": 2.5}
    assert prices["claude-house"]["cache_write"] == 3.75
    # 600k fresh at 2, 400k written at 2.5
    usage = Usage(1_000_000, 0, cache_write_tokens=400_000)
    assert cost("house-model", usage, prices) == pytest.approx(2.2)
    # 3 fresh, 1111 read and 418 written tokens, 33 out: the recorded Anthropic turn's
    recorded = Usage(1532, 33, 1111, cache_write_tokens=418)
    expected = (3 * 3 + 1111 * 0.3 + 418 * 3.75 + 33 * 15) / 1e6
    assert cost("claude-house", recorded, prices) == pytest.approx(expected)


def test_a_price_entry_may_name_a_one_hour_cache_write_price() -> None:
    """Without one, the writes kept an hour pay the entry's ``cache_write`` price."""
    from massgen.backends.pricing import cost
    from massgen.team import price_overrides
    from massgen.types import Usage

    team = loads(
        "prices:\n"
        "  claude-house: {input: 3, output: 15, cache_write: 3.75, cache_write_1h: 6}\n"
        "  claude-five: {input: 3, output: 15, cache_write: 3.75}\n"
        "backends:\n  claude: {type: anthropic, api_key: k}\n"
        "agents:\n  - {name: ada, backend: claude, model: claude-house}\n"
    )
    prices = price_overrides(team)
    assert prices["claude-house"]["cache_write_1h"] == 6.0
    assert "cache_write_1h" not in prices["claude-five"]
    # 13 fresh tokens, 3913 written to the one-hour cache, 4 out: the recorded turn's
    recorded = Usage(3926, 4, 0, 0, 3913, 3913)
    assert cost("claude-house", recorded, prices) == pytest.approx(
        (13 * 3 + 3913 * 6 + 4 * 15) / 1e6
    )
    assert cost("claude-five", recorded, prices) == pytest.approx(
        (13 * 3 + 3913 * 3.75 + 4 * 15) / 1e6
    )
    with pytest.raises(ConfigError) as info:
        loads(
            "prices: {claude-house: {input: 3, output: 15, cache_write_1h: -1}}\n"
            "backends:\n  claude: {type: anthropic, api_key: k}\n"
            "agents:\n  - {name: ada, backend: claude, model: claude-house}\n"
        )
    assert info.value.key == "prices.claude-house.cache_write_1h"
