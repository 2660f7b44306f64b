"""Long-term memory: stored after each run, recalled by relevance in later runs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from massgen.cli import app
from massgen.config import loads
from massgen.memory.long_term import LongTermMemory, MemoryItem
from massgen.orchestrator import Orchestrator
from massgen.store import MemoryStore, open_store
from massgen.types import Turn
from tests.sim.sim_types import Text
from tests.sim.simulator import ProviderSimulator


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _team(sim: ProviderSimulator, memory: str = "{long_term: true}") -> str:
    return textwrap.dedent(
        f"""
        backends:
          sim: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}",
                 api_key: sk-test}}
        agents:
          - {{name: ada, backend: sim, memory: {memory}}}
          - {{name: bob, backend: sim, memory: {memory}}}
        orchestrator: {{strategy: consensus, max_retries: 0}}
        """
    )


async def test_a_decision_of_run_one_is_recalled_in_run_two(sim: ProviderSimulator):
    store = MemoryStore()
    sim.script(Text("Use PostgreSQL 16 for the ledger."), match="database for the ledger")
    cfg = loads(_team(sim))
    async with Orchestrator.from_config(cfg, memory_store=store) as orch:
        first = await orch.arun("Which database for the ledger service?")
    assert "PostgreSQL 16" in first.final_answer
    assert all("Recalled memory" not in r.prompt_text for r in sim.requests)
    item = (await LongTermMemory(store, agent="ada").items())[0]
    assert item.task.startswith("Which database") and item.winner == first.winner
    sim.reset()
    sim.script(Text("Noted."))
    async with Orchestrator.from_config(loads(_team(sim)), memory_store=store) as orch:
        await orch.arun("Set up the ledger service: which database do we use?")
    answers = sim.requests[:2]  # the answer round; reviews embed peers' answers instead
    for req in answers:
        text = req.messages[-1][1]
        assert text.startswith("Recalled memory from earlier runs")
        assert "PostgreSQL 16" in text and "<memory>" in text
        assert text.rstrip().endswith("which database do we use?")


async def test_unrelated_memories_are_not_recalled(sim: ProviderSimulator):
    store = MemoryStore()
    memory = LongTermMemory(store, agent="ada")
    await memory.remember(MemoryItem("Best pizza topping?", "Basil.", run_id="r1", at=1.0))
    assert await memory.recall_for("ada", Turn("answer", "Which database engine?")) == []
    assert await memory.recall_for("ada", Turn("review", "pizza topping again")) == []
    assert await memory.recall_for("ada", Turn("answer", "pizza topping again"))


async def test_recall_is_top_k_within_a_token_budget():
    store = MemoryStore()
    memory = LongTermMemory(store, agent="a", recall=2, recall_budget=80)
    for i in range(5):
        await memory.remember(
            MemoryItem(f"rust compiler question {i}", "x" * 40 * i, run_id=f"r{i}")
        )
    got = await memory.recall_for("a", Turn("answer", "rust compiler"))
    assert len(got) == 2 and all("rust compiler question" in t for t in got)  # two fit
    assert sum(len(t) for t in got) // 4 + 4 * len(got) <= 80


async def test_bm25_prefers_rarer_shared_words(tmp_path: Path):
    docs = ["the cat sat on the mat", "the dog ate the cat food", "quantum chromodynamics"]
    for store in (MemoryStore(), open_store(tmp_path / "m.sqlite3")):
        async with store:
            memory = LongTermMemory(store, agent="a")
            for i, doc in enumerate(docs):
                await memory.remember(MemoryItem(doc, "ok", run_id=str(i), at=float(i)))
            ranked = await memory.search("quantum cat")
            assert [i.task for _, i in ranked][0] == "quantum chromodynamics"
            assert {i.task for _, i in ranked} == set(docs)
            assert ranked[0][0] > ranked[1][0] > 0
            assert await memory.search("nothing shared") == []
            assert await memory.search("the what") == []  # stop words are no shared word


async def test_retention_by_count_and_age():
    clock = Clock()
    store = MemoryStore()
    memory = LongTermMemory(store, agent="a", max_items=3, max_age_days=1, clock=clock)
    for i in range(5):
        await memory.remember(MemoryItem(f"task {i}", "f", run_id=f"r{i}", at=clock()))
        clock.now += 3600
    assert [i.task for i in await memory.items()] == ["task 2", "task 3", "task 4"]
    clock.now += 86400 - 2 * 3600  # task 2 is now older than a day
    assert [i.task for i in await memory.items()] == ["task 3", "task 4"]
    assert await memory.apply_retention() == 1
    assert await store.length(memory.log) == 2
    # age retention drops from the front only: an item appended meanwhile stays
    clock.now += 86400  # everything so far is expired
    await store.append(memory.log, MemoryItem("late", "f", run_id="r9", at=clock()).to_json())
    assert await memory.apply_retention() == 2
    assert [i.task for i in await memory.items()] == ["late"]


async def test_embedding_hook_ranks_by_cosine():
    def embed(texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0] if "apple" in t or "fruit" in t else [0.0, 1.0] for t in texts]

    memory = LongTermMemory(MemoryStore(), agent="a", embed=embed)
    await memory.remember(MemoryItem("apple pie recipe", "bake it", run_id="1"))
    await memory.remember(MemoryItem("car repair", "new tyres", run_id="2"))
    (best, item), *_ = await memory.search("fruit dessert")  # no shared word: BM25 would miss
    assert item.task == "apple pie recipe" and best > 0.99


async def test_team_scope_shares_one_memory(sim: ProviderSimulator):
    store = MemoryStore()
    cfg = loads(_team(sim, "{long_term: true, long_term_scope: team}"))
    async with Orchestrator.from_config(cfg, memory_store=store) as orch:
        await orch.arun("Pick a mascot")
    team = await LongTermMemory(store).items()
    assert {i.agent for i in team} == {"ada", "bob"}
    assert await LongTermMemory(store, agent="ada").items() == []


def test_memory_cli_list_search_clear(tmp_path: Path):
    import asyncio

    path = tmp_path / "m.sqlite3"

    async def fill() -> None:
        async with open_store(path) as store:
            ada = LongTermMemory(store, agent="ada")
            await ada.remember(
                MemoryItem("Deploy target?", "Kubernetes", agent="ada", run_id="1", at=5.0)
            )
            # SQLite FTS5's BM25 gives a word found in half of a memory's items or more a
            # near-zero weight (which the CLI's rounding shows as 0.0): a few other items
            for i, drink in enumerate(["Espresso", "Tea", "Water"]):
                await ada.remember(MemoryItem("Drink?", drink, agent="ada", run_id=str(i + 2)))
            await LongTermMemory(store, agent="bob").remember(
                MemoryItem("Lunch?", "Noodles", agent="bob", run_id="1", at=5.0)
            )

    asyncio.run(fill())
    runner = CliRunner()
    out = runner.invoke(app, ["memory", "list", "--store", str(path), "--json"])
    assert out.exit_code == 0, out.output
    assert {r["memory"] for r in json.loads(out.stdout)} == {"ada", "bob"}
    out = runner.invoke(app, ["memory", "search", "deploy", "--store", str(path), "--json"])
    (hit,) = json.loads(out.stdout)
    assert hit["final"] == "Kubernetes" and hit["score"] > 0
    out = runner.invoke(app, ["memory", "clear", "--agent", "bob", "--store", str(path)])
    assert out.exit_code == 0 and "forgot 1" in out.stdout
    out = runner.invoke(app, ["memory", "list", "--store", str(path)])
    assert "Deploy target?" in out.stdout and "Lunch?" not in out.stdout


async def test_recall_follows_retention_and_clear_on_a_sqlite_file(tmp_path: Path):
    clock = Clock()
    async with open_store(tmp_path / "m.sqlite3") as store:
        memory = LongTermMemory(store, agent="a", max_items=2, clock=clock)
        for i in range(3):
            await memory.remember(MemoryItem(f"ledger question {i}", "f", run_id=str(i), at=i))
            assert len(await memory.search("ledger")) == min(i + 1, 2)
        assert {i.task for _, i in await memory.search("ledger")} == {
            "ledger question 1",
            "ledger question 2",
        }
        await memory.clear()
        assert await memory.search("ledger") == []


async def test_expired_items_are_skipped_however_well_they_match():
    clock = Clock()
    store = MemoryStore()
    memory = LongTermMemory(store, agent="a", recall=1, max_age_days=1, clock=clock)
    for i in range(30):  # outrank the live item, then expire (retention runs on the next write)
        await store.append(
            memory.log,
            MemoryItem("ledger ledger ledger", "ledger", run_id=f"old{i}", at=clock()).to_json(),
        )
    clock.now += 2 * 86400
    await store.append(
        memory.log, MemoryItem("ledger service", "ok", run_id="new", at=clock()).to_json()
    )
    (best, item), *rest = await memory.search("ledger")
    assert item.run_id == "new" and rest == []
    got = await memory.recall_for("a", Turn("answer", "ledger"))
    assert len(got) == 1 and "ledger service" in got[0]
