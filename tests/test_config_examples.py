"""The example teams in configs/ all load and build with dummy keys; the offline ones run as
they are, the others against the provider simulator; docs/config.md covers every key."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from massgen.config import TeamConfig, field_docs, load
from massgen.config import models as m
from massgen.team import build_agents
from tests.procs import DUMMY_KEYS, run_massgen
from tests.sim.simulator import ProviderSimulator

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
EXPECTED = {"quickstart", "offline", "parallel", "sequential", "consensus", "local"}
OFFLINE_TYPES = {"replay"}
"""Backend types that answer with no key and no network."""


def _is_offline(team: TeamConfig) -> bool:
    return all(team.backend_for(a).type in OFFLINE_TYPES for a in team.agents)


OFFLINE = [p for p in CONFIGS if _is_offline(load(p, env={}))]
ONLINE = [p for p in CONFIGS if p not in OFFLINE]


def test_all_examples_are_present() -> None:
    assert {p.stem for p in CONFIGS} >= EXPECTED


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_validates_without_any_environment(path: Path) -> None:
    team = load(path, env={})
    assert team.agents and team.source == path.resolve()
    for agent in team.agents:
        assert team.backend_for(agent).type


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_builds_with_dummy_keys(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a run builds before its first request: every backend (type, model, key,
    options) and every tool, for each agent."""
    for var, value in DUMMY_KEYS.items():
        monkeypatch.setenv(var, value)
    team = load(path)
    agents = build_agents(team)
    assert [a.name for a in agents] == [a.name for a in team.agents]
    for agent, cfg in zip(agents, team.agents, strict=True):
        backend = team.backend_for(cfg)
        assert agent.model_name() == (cfg.model or backend.model or agent.backend.model)
        assert agent.model_name(), f"{cfg.name} would send no model"
        assert len(agent.tools) == len(cfg.tools)


def test_some_examples_are_offline_and_some_need_providers() -> None:
    assert {p.stem for p in OFFLINE} >= {"offline"}
    assert {p.stem for p in ONLINE} >= {"quickstart", "local"}


@pytest.mark.parametrize("path", OFFLINE, ids=lambda p: p.name)
def test_offline_example_runs(path: Path, tmp_path: Path) -> None:
    task = "What is the capital of France?"
    done = run_massgen("run", str(path), task, "--json", "--no-record", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["final_answer"].strip() and result["status"] == "done"
    if path.stem == "offline":
        assert "Paris" in result["final_answer"] and result["votes"]


def _on_simulator(path: Path, sim: ProviderSimulator) -> dict[str, Any]:
    """The example with every endpoint moved to the simulator: each named backend gets its
    protocol's base URL, and a provider named bare becomes a named backend of that type
    (still without a model, so the agent's `model:` must reach the request)."""
    data = yaml.safe_load(path.read_text())
    urls = {
        "anthropic": sim.anthropic_base_url,
        "google": sim.gemini_base_url,
        "gemini": sim.gemini_base_url,
    }
    backends = data.setdefault("backends", {}) or {}
    data["backends"] = backends
    for agent in data["agents"]:
        ref = agent["backend"]
        if isinstance(ref, str) and ref not in backends:
            backends[ref] = {"type": ref}
        elif isinstance(ref, dict):
            ref["base_url"] = urls.get(ref["type"], sim.openai_base_url)
    for cfg in backends.values():
        cfg["base_url"] = urls.get(cfg["type"], sim.openai_base_url)
    return data


@pytest.mark.parametrize("path", ONLINE, ids=lambda p: p.name)
def test_provider_example_runs_against_the_simulator(
    path: Path, tmp_path: Path, sim: ProviderSimulator
) -> None:
    """Each example that needs a provider, run as written but for its endpoints: every
    agent's request reaches the simulator with the agent's model."""
    team = tmp_path / path.name
    team.write_text(yaml.safe_dump(_on_simulator(path, sim)))
    loaded = load(path, env={})
    done = run_massgen(
        "run",
        str(team),
        "Name one prime number.",
        "--json",
        "--no-record",
        "-q",
        cwd=tmp_path,
        env=DUMMY_KEYS,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["final_answer"].strip()
    sent = {r.model.removeprefix("models/") for r in sim.requests}
    wanted = {loaded.backend_for(a).model for a in loaded.agents if not a.standby}
    assert wanted <= sent, (wanted, sent)


def test_quickstart_uses_three_providers() -> None:
    team = load(ROOT / "configs/quickstart.yaml", env={})
    used = {(team.backend_for(a).type, team.backend_for(a).model) for a in team.agents}
    assert used == {
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-haiku-4-5"),
        ("gemini", "gemini-2.5-flash"),
    }
    assert team.orchestrator.strategy == "consensus"


def test_parallel_and_sequential_examples() -> None:
    par = load(ROOT / "configs/parallel.yaml", env={})
    assert par.orchestrator.strategy == "parallel" and par.orchestrator.aggregator
    seq = load(ROOT / "configs/sequential.yaml", env={})
    assert seq.orchestrator.strategy == "sequential"
    assert [a.name for a in seq.agents] == ["researcher", "writer", "editor"]


def test_local_example_uses_presets_only() -> None:
    team = load(ROOT / "configs/local.yaml", env={})
    assert {team.backend_for(a).type for a in team.agents} == {"ollama", "lmstudio"}
    assert "vllm" in (ROOT / "configs/local.yaml").read_text()


# -- the offline demo, simulated with the replay backend's matching rules ---------------------


def _reply(rules: list[dict[str, str]], default: str, prompt: str) -> str:
    for rule in rules:
        if re.search(rule["match"], prompt, re.IGNORECASE | re.DOTALL):
            return rule["reply"]
    return default


def _fill_label(reply: str, blocks: list[tuple[str, str]]) -> str:
    def label(match: re.Match[str]) -> str:
        needle = match.group(1).casefold()
        return next((lab for lab, text in blocks if needle in text.casefold()), "A")

    return re.sub(r"\{label_containing:([^}]*)\}", label, reply)


def test_offline_demo_converges_in_one_review_round_with_votes() -> None:
    team = load(ROOT / "configs/offline.yaml", env={})
    assert team.orchestrator.strategy == "consensus" and len(team.agents) == 3
    task = "What is the capital of France?"
    answers: dict[str, str] = {}
    for agent in team.agents:
        backend = team.backend_for(agent)
        assert backend.type == "replay" and backend.api_key is None
        assert 0.2 <= backend.params["latency"] <= 0.5 and backend.params["stream_chunk"] > 0
        prompt = f"{agent.role}\n{task}"
        assert "<answer label=" not in prompt
        answers[agent.name] = _reply(backend.params["rules"], backend.params["default"], prompt)
    assert len(set(answers.values())) == 3, "round-1 answers must differ"
    assert sum("Paris" in a for a in answers.values()) == 2

    rng = random.Random(7)
    needed = team.orchestrator.consensus.votes_needed(len(team.agents))
    for _ in range(20):  # whatever order the labels are shuffled in
        votes: dict[str, int] = {}
        for agent in team.agents:
            backend = team.backend_for(agent)
            order = list(answers.items())
            rng.shuffle(order)
            blocks = [(chr(65 + i), text) for i, (_, text) in enumerate(order)]
            owner = {chr(65 + i): name for i, (name, _) in enumerate(order)}
            body = "\n".join(f'<answer label="{lab}">\n{t}\n</answer>' for lab, t in blocks)
            prompt = f"{agent.role}\nTask: {task}\n\n{body}\n\nVote for the best answer."
            reply = _reply(backend.params["rules"], backend.params["default"], prompt)
            vote = json.loads(_fill_label(reply, blocks))
            assert set(vote) == {"vote", "reason"}
            votes[owner[vote["vote"]]] = votes.get(owner[vote["vote"]], 0) + 1
        winner, count = max(votes.items(), key=lambda kv: kv[1])
        assert count >= needed and "Paris" in answers[winner]


# -- docs ------------------------------------------------------------------------------------

MODELS: tuple[type[BaseModel], ...] = (
    m.TeamConfig,
    m.BackendConfig,
    m.Price,
    m.RateLimitConfig,
    m.BreakerConfig,
    m.AgentConfig,
    m.MemoryConfig,
    m.OrchestratorConfig,
    m.ConsensusConfig,
    m.CacheConfig,
    m.RedisConfig,
    m.ObservabilityConfig,
)


@pytest.mark.parametrize("model", MODELS, ids=lambda c: c.__name__)
def test_every_field_is_documented(model: type[BaseModel]) -> None:
    docs = (ROOT / "docs/config.md").read_text()
    missing = [name for name in model.model_fields if f"`{name}`" not in docs]
    assert not missing, f"docs/config.md does not mention {missing}"
    assert set(field_docs(model)) == set(model.model_fields), "every field needs a docstring"


def test_loading_a_config_imports_no_sdk_or_rich() -> None:
    code = (
        "import sys, massgen.config as c; c.load(sys.argv[1]); c.json_schema(); "
        "heavy = ('rich', 'openai', 'anthropic', 'google.genai', 'httpx', 'redis'); "
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "configs/offline.yaml")],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    )
    assert out.stdout.strip() == ""
