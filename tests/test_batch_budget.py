"""R25: a batch budget under concurrency. Requests reserve their estimated cost before they
are sent; spend stays within the budget and every request paid for ends in a kept result.
Real ``massgen batch`` processes against the provider simulator (gpt-4o-mini prices)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from massgen.agents.agent import Agent
from massgen.agents.turn import Turn
from massgen.backends.function import FunctionBackend
from massgen.backends.pricing import price_of
from massgen.budget import DEFAULT_OUTPUT_TOKENS, Budget
from massgen.errors import BudgetExceeded, ConfigError
from massgen.orchestrator import Orchestrator
from massgen.types import Completion, Usage
from tests.procs import run_massgen
from tests.sim.simulator import ProviderSimulator

PRICE = price_of("gpt-4o-mini")
assert PRICE is not None


def sim_team(folder: Path, sim: ProviderSimulator, backend_extra: str = "") -> None:
    (folder / "team.yaml").write_text(
        "backends:\n"
        f'  sim: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}", '
        f"api_key: x{backend_extra}}}\n"
        "agents:\n  - {name: ada, backend: sim}\n  - {name: bo, backend: sim}\n"
        "orchestrator:\n  strategy: parallel\n  max_retries: 0\n"
    )
    (folder / "tasks.txt").write_text(
        "".join(f"Question {i}: what is {i} plus {i}?\n" for i in range(40))
    )


def spent_at(sim: ProviderSimulator) -> float:
    """USD the simulator's provider would bill for what it answered."""
    stats = sim.stats
    return (stats.prompt_tokens * PRICE.input + stats.completion_tokens * PRICE.output) / 1e6


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_budget_under_concurrency_is_not_overspent_and_paid_work_is_kept(
    tmp_path: Path, sim: ProviderSimulator
) -> None:
    sim.latency = 0.01
    sim_team(tmp_path, sim, ", max_tokens: 20")
    budget = 0.0003
    done = run_massgen(
        "batch", "tasks.txt", "-c", "team.yaml", "-o", "out.jsonl", "-j", "4", "-q",
        "--max-cost", str(budget), cwd=tmp_path, unset=("MASSGEN_CONFIG",),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "budget" in done.stderr and "Traceback" not in done.stderr
    assert spent_at(sim) <= budget
    kept = rows(tmp_path / "out.jsonl")
    assert 0 < len(kept) < 40  # the budget did stop it, after real work
    assert {r["status"] for r in kept} == {"done"}
    # every request the provider answered belongs to a task whose result is kept
    assert len(sim.requests) == 2 * len(kept)
    asked = {r.last_user_text for r in sim.requests}
    assert asked <= {r["task"] for r in kept}

    resumed = run_massgen(
        "batch", "tasks.txt", "-c", "team.yaml", "-o", "out.jsonl", "-j", "4", "-q",
        cwd=tmp_path, unset=("MASSGEN_CONFIG",),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert len(sim.requests) == 2 * 40  # the rest ran once, the kept ones not again


def test_a_budget_that_cannot_cover_one_task_sends_nothing_and_says_why(
    tmp_path: Path, sim: ProviderSimulator
) -> None:
    sim_team(tmp_path, sim)  # no max_tokens: each request is assumed to answer at length
    out = run_massgen(
        "batch", "tasks.txt", "-c", "team.yaml", "-o", "out.jsonl", "-q",
        "--max-cost", "0.0003", cwd=tmp_path, unset=("MASSGEN_CONFIG",),
    )  # fmt: skip
    assert out.returncode == 1
    assert "cannot cover one task" in out.stderr and "max_tokens" in out.stderr
    assert len(sim.requests) == 0


REPLAY = """\
agents:
  - {name: a, backend: {type: replay, default: "answer: {task}"}}
orchestrator: {strategy: parallel}
"""


def test_a_free_run_under_a_budget_of_0_is_fine(tmp_path: Path) -> None:
    (tmp_path / "team.yaml").write_text(REPLAY)
    (tmp_path / "tasks.txt").write_text("One?\nTwo?\n")
    out = run_massgen(
        "batch", "tasks.txt", "-c", "team.yaml", "-o", "out.jsonl", "-q", "--max-cost", "0",
        cwd=tmp_path, unset=("MASSGEN_CONFIG",),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert [r["status"] for r in rows(tmp_path / "out.jsonl")] == ["done", "done"]


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "-0.01"])
def test_a_negative_or_non_finite_max_cost_is_refused_and_nothing_is_written(
    tmp_path: Path, value: str
) -> None:
    (tmp_path / "team.yaml").write_text(REPLAY)
    (tmp_path / "tasks.txt").write_text("One?\n")
    out = run_massgen(
        "batch", "tasks.txt", "-c", "team.yaml", "-o", "out.jsonl", f"--max-cost={value}",
        cwd=tmp_path, unset=("MASSGEN_CONFIG",),
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "--max-cost" in out.stderr and "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.txt", "team.yaml"]


# -- the budget itself ----------------------------------------------------------------------


def test_reservations_refuse_what_the_budget_cannot_cover_and_give_back_the_rest() -> None:
    budget = Budget(1.0)
    held = budget.reserve(0.6)
    with pytest.raises(BudgetExceeded, match="cannot cover"):
        budget.reserve(0.5)  # 0.6 held + 0.5 > 1.0
    budget.release(held)
    budget.add(0.2)  # it cost less than estimated
    assert budget.reserve(0.8) == 0.8  # exactly fits
    with pytest.raises(BudgetExceeded):
        budget.reserve(0.01)
    assert Budget(0.0).reserve(0.0) == 0.0  # a free request under a budget of 0
    with pytest.raises(ConfigError):
        Budget(math.nan)
    with pytest.raises(ConfigError):
        Budget(-1.0)


def test_a_task_allowance_draws_on_its_share_first_and_gives_back_the_rest() -> None:
    batch = Budget(1.0)
    task = batch.allowance(0.4)
    assert batch.reserved == pytest.approx(0.4)
    held = task.reserve(0.3)  # within its share: nothing more held in the batch
    assert batch.reserved == pytest.approx(0.4)
    task.release(held)
    task.add(0.25)
    assert batch.spent == pytest.approx(0.25) and batch.reserved == pytest.approx(0.15)
    more = task.reserve(0.5)  # 0.15 of its share left: 0.35 more from the batch
    assert batch.reserved == pytest.approx(0.5)  # 0.15 + 0.35
    task.release(more)
    task.add(0.5)
    task.close()
    assert batch.spent == pytest.approx(0.75) and batch.reserved == pytest.approx(0.0)


def test_the_turn_estimate_uses_the_token_estimator_and_the_price_table() -> None:
    agent = Agent("a", FunctionBackend(lambda r: "x", model="gpt-4o-mini"), "Be brief.")
    orchestrator = Orchestrator([agent])
    handle = orchestrator.handles["a"]
    budget = Budget(1.0)
    turn = Turn("answer", "What is 2+2?")
    tokens_in = agent.memory.estimator.messages(
        agent.build_messages(turn)[:1] + agent.build_messages(turn)[-1:]
    )
    expected = (tokens_in * PRICE.input + DEFAULT_OUTPUT_TOKENS * PRICE.output) / 1e6
    assert budget.estimate_turn(handle, turn) == pytest.approx(expected)
    capped = Turn("answer", "What is 2+2?", max_tokens=10)
    assert budget.estimate_turn(handle, capped) == pytest.approx(
        (tokens_in * PRICE.input + 10 * PRICE.output) / 1e6
    )
    budget.settle(0.0, Completion(text="4", model="gpt-4o-mini", usage=Usage(5, 3)))
    assert budget.estimate_turn(handle, turn) == pytest.approx(
        (tokens_in * PRICE.input + 3 * PRICE.output) / 1e6
    )  # the longest answer seen replaces the default guess


async def test_in_flight_tasks_are_not_cut_half_way_when_the_budget_runs_out() -> None:
    """Two agents per task, four tasks at once, a budget for about five tasks: every task
    that starts has both answers; none is written as failed with money spent on it."""
    calls: list[str] = []

    def respond(request):
        calls.append(request.messages[-1].content)
        return Completion(text="ok", model="gpt-4o-mini", usage=Usage(20, 10))

    agents = [Agent(n, FunctionBackend(respond, model="gpt-4o-mini"), max_tokens=10) for n in "ab"]
    orchestrator = Orchestrator(agents, strategy="parallel", max_retries=0)
    handle = orchestrator.handles["a"]
    per_task = 2 * Budget(1.0).estimate_turn(handle, Turn("answer", "task 0"))
    orchestrator.max_cost = 5.5 * per_task
    result = await orchestrator.abatch_run([f"task {i}" for i in range(20)], concurrency=4)
    summary = result.summary
    assert summary.stopped == "budget" and summary.failed == 0
    assert 0 < summary.done < 20 and len(calls) == 2 * summary.done
    assert summary.cost <= orchestrator.max_cost
