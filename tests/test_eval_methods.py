"""Each eval method run on real teams: replay agents with known answers, and agents on the
provider simulator (every request counted there), through Orchestrator.evaluate."""

from __future__ import annotations

import itertools
from pathlib import Path

from massgen import Orchestrator
from massgen.eval import EvalReport, assess
from massgen.eval.runner import EvalRun
from massgen.questions import parse_row
from tests.sim.sim_types import Text
from tests.sim.simulator import ProviderSimulator

REPLAY_TEAM = """\
agents:
  - name: ada
    backend: {type: replay, rules: [{match: 'Synthesize', reply: 'Answer: 4'},
              {match: '2\\+2', reply: 'Answer: 4'}, {match: 'capital', reply: 'Answer: Paris'}]}
  - name: bob
    backend: {type: replay, rules: [{match: '2\\+2', reply: 'Answer: 5'},
              {match: 'capital', reply: 'Answer: Paris'}]}
  - name: cy
    backend: {type: replay, rules: [{match: 'grading', reply: '{"correct": {verdict}}'},
              {match: '2\\+2', reply: '4, surely'}, {match: 'capital', reply: 'Answer: Lyon'}]}
orchestrator:
  strategy: consensus
"""
QUESTIONS = [
    {"id": "sum", "question": "What is 2+2?", "answer": 4},
    {"id": "city", "question": "The capital of France?", "answer": "Paris"},
]


def team(tmp_path: Path, text: str = REPLAY_TEAM, **fmt: str) -> Orchestrator:
    path = tmp_path / "team.yaml"
    path.write_text(text.replace("{verdict}", fmt.get("verdict", "true")))
    return Orchestrator.from_config(path)


def test_single_agents_vote_and_moa_on_replay_agents(tmp_path):
    report = team(tmp_path).evaluate(QUESTIONS, methods="single,vote,moa")
    assert isinstance(report, EvalReport)
    got = {m.method: m.correct for m in report.methods}
    # sum: ada 4, bob 5, cy 4 -> vote 4; city: Paris, Paris, Lyon -> vote Paris
    assert got == {"single:ada": 2, "single:bob": 1, "single:cy": 1, "vote": 2, "moa": 1}
    assert report["vote"].requests == 3 and report["moa"].requests == 3
    assert report["vote"].agreement == 0.6667  # 2 of 3 agree on each question
    assert report.best_single == "single:ada"


async def test_rows_carry_the_extracted_answer_gold_and_agreement(tmp_path):
    orchestrator = team(tmp_path)
    items = [parse_row(q) for q in QUESTIONS]
    plan = EvalRun(orchestrator, items, [m for m in _methods(orchestrator, "vote,single:bob")])
    found = {r["id"]: r for r in await plan.run()}
    vote = found["sum|vote"]
    assert (vote["correct"], vote["extracted"], vote["gold"], vote["agreement"]) == (
        True,
        "4",
        4,
        0.6667,
    )
    assert vote["distribution"] == {"4": 2, "5": 1}
    assert vote["answers"] == {"ada": "Answer: 4", "bob": "Answer: 5", "cy": "4, surely"}
    assert (found["sum|single:bob"]["correct"], found["sum|single:bob"]["extracted"]) == (
        False,
        "5",
    )
    await orchestrator.aclose()


def _methods(orchestrator: Orchestrator, spec: str):
    from massgen.eval import parse_methods

    return parse_methods(spec, orchestrator.seats())


def test_the_judge_grades_open_answers_and_an_unreadable_verdict_is_wrong(tmp_path):
    rows = [
        {"id": "j", "question": "Name the capital of France", "answer": "Paris", "grader": "judge"}
    ]
    yes = team(tmp_path).evaluate(rows, methods="single:ada", judge="cy")
    assert yes["single:ada"].correct == 1
    no = team(tmp_path, verdict="maybe").evaluate(rows, methods="single:ada", judge="cy")
    assert no["single:ada"].correct == 0


SIM_TEAM = """\
backends:
  sim: {{type: openai, model: gpt-4o-mini, base_url: "{url}", api_key: x}}
agents:
  - {{name: ada, backend: sim}}
  - {{name: bob, backend: sim}}
  - {{name: cy, backend: sim}}
orchestrator:
  strategy: consensus
  max_retries: 0
  cache: {{enabled: true, path: {cache}}}
"""


def sim_team(tmp_path: Path, sim: ProviderSimulator) -> Orchestrator:
    path = tmp_path / "team.yaml"
    cache = tmp_path / "cache.sqlite3"
    path.write_text(SIM_TEAM.format(url=sim.openai_base_url, cache=cache))
    return Orchestrator.from_config(path)


async def test_self_consistency_draws_are_all_sent_and_independent_even_with_a_cache(
    tmp_path, sim: ProviderSimulator
):
    answers = itertools.cycle(["Answer: 4", "Answer: 4", "Answer: 5", "Answer: 3", "Answer: 4"])
    sim.responder = lambda request: Text(next(answers))
    orchestrator = sim_team(tmp_path, sim)
    try:
        report = await orchestrator.aevaluate(
            [QUESTIONS[0]], methods="self-consistency:bob", samples=5
        )
        again = await orchestrator.aevaluate(
            [QUESTIONS[0]], methods="self-consistency:bob", samples=5
        )
    finally:
        await orchestrator.aclose()
    # 5 requests each time (none from the cache), each its own draw: 4, 4, 5, 3, 4 -> 4
    assert len(sim.requests) == 10
    assert report["self-consistency:bob"].requests == 5
    assert report["self-consistency:bob"].correct == again["self-consistency:bob"].correct == 1
    assert report["self-consistency:bob"].cost > 0  # priced as sent, not as a free cache hit


async def test_equal_compute_gives_every_sampling_method_the_consensus_budget(
    tmp_path, sim: ProviderSimulator
):
    sim.responder = lambda request: Text("Answer: 4")
    orchestrator = sim_team(tmp_path, sim)
    try:
        report = await assess(
            orchestrator,
            [QUESTIONS[0]],
            "single:ada,self-consistency,vote,moa",
            equal_compute=True,
        )
    finally:
        await orchestrator.aclose()
    # 3 agents, consensus max_rounds 2: at most 3 x (1 + 2) = 9 requests per question
    got = {m.method: m.requests for m in report.methods}
    assert got == {"single:ada": 9, "self-consistency": 9, "vote": 9, "moa": 3}


async def test_vote_accuracy_matches_theory_over_many_simulated_questions(
    tmp_path, sim: ProviderSimulator
):
    """Three independent agents right with p = 0.7, each wrong in its own way: the vote is
    right when two or three are, or when only the first is (a three-way tie goes to the
    earliest seat): 0.784 + 0.7 * 0.3 * 0.3 = 0.847."""
    import random
    import re

    from massgen.evalstats import wilson

    wrong = {"ada": 1, "bob": 2, "cy": 3}

    def reply(request):
        who = re.search(r"You are (\w+)", request.prompt_text)
        n = int(re.search(r"Question (\d+)", request.prompt_text).group(1))
        name = who.group(1) if who else "ada"
        right = random.Random(f"15:{n}:{name}").random() < 0.7  # the same in any order
        return Text(f"Answer: {n if right else n + wrong[name]}")

    sim.responder = reply
    path = tmp_path / "team.yaml"
    text = SIM_TEAM.format(url=sim.openai_base_url, cache=tmp_path / "c.sqlite3")
    for name in wrong:
        text = text.replace(
            f"{{name: {name}, backend: sim}}",
            f"{{name: {name}, backend: sim, role: You are {name}.}}",
        )
    path.write_text(text)
    questions = [
        {"id": str(n), "question": f"Question {n}: pick it.", "answer": n}
        for n in range(1000, 1400)
    ]
    orchestrator = Orchestrator.from_config(path)
    try:
        report = await orchestrator.aevaluate(questions, methods="single:ada,vote", concurrency=16)
    finally:
        await orchestrator.aclose()
    for method, expected in (("single:ada", 0.7), ("vote", 0.847)):
        score = report[method]
        low, high = wilson(score.correct, score.n, z=3.29)  # 99.9 %: a rare false alarm
        assert score.n == 400 and low <= expected <= high, (method, score.accuracy)
    assert len(sim.requests) == 400 * 4
    asked = {re.search(r"You are (\w+)", r.prompt_text).group(1) for r in sim.requests}  # type: ignore[union-attr]
    assert asked == set(wrong)


async def test_a_budget_that_runs_out_between_samples_stops_without_counting_the_question(
    tmp_path, sim: ProviderSimulator
):
    sim.responder = lambda request: Text("Answer: 4")
    path = tmp_path / "team.yaml"
    path.write_text(
        SIM_TEAM.format(url=sim.openai_base_url, cache=tmp_path / "c.sqlite3").replace(
            "api_key: x}", "api_key: x, max_tokens: 20}"
        )
        + "prices: {gpt-4o-mini: {input: 1000, output: 1000}}\n"
    )
    orchestrator = Orchestrator.from_config(path)
    out = tmp_path / "results.jsonl"
    try:  # the batch admits the question (3 requests' worth); the 5 samples need more
        report = await orchestrator.aevaluate(
            [QUESTIONS[0]], methods="self-consistency", samples=5, max_cost=0.2, out=out
        )
    finally:
        await orchestrator.aclose()
    import json

    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["status"], row["stopped"], row["correct"]) == ("failed", "budget", False)
    assert 0 < row["cost"] <= 0.2
    assert (report.questions, report.incomplete) == (0, 0)


async def test_self_consistency_groups_answers_as_consensus_does_knowing_the_question(
    tmp_path, sim: ProviderSimulator
):
    # asked for the capital, "Paris is the capital of France." and "Paris." are one answer
    replies = itertools.cycle(["Paris is the capital of France.", "Lyon.", "Paris."])
    sim.responder = lambda request: Text(next(replies))
    orchestrator = sim_team(tmp_path, sim)
    out = tmp_path / "rows.jsonl"
    rows = [{"id": "c", "question": "What is the capital of France?", "answer": "Paris"}]
    try:
        report = await orchestrator.aevaluate(rows, methods="self-consistency", samples=3, out=out)
    finally:
        await orchestrator.aclose()
    import json

    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["distribution"] == {"paris": 2, "lyon": 1} and row["agreement"] == 0.6667
    assert report["self-consistency"].correct == 1


def test_vote_is_the_consensus_vote_mode_with_no_review_nor_synthesis(tmp_path):
    # the team's file asks for review rounds and a synthesis; vote runs neither
    text = REPLAY_TEAM + "  consensus: {mode: debate, final: synthesize, max_rounds: 2}\n"
    report = team(tmp_path, text).evaluate(QUESTIONS, methods="vote,consensus")
    assert report["vote"].requests == 3 and report["vote"].correct == 2
    assert report["consensus"].requests > 3  # reviews ran where the answers differ


async def test_a_tie_goes_to_the_earliest_seat_or_draw_in_vote_and_self_consistency(
    tmp_path, sim: ProviderSimulator
):
    draws = itertools.cycle(["Answer: 7", "Answer: 4", "Answer: 5"])  # 3 distinct: a tie
    sim.responder = lambda request: Text(next(draws))
    orchestrator = sim_team(tmp_path, sim)
    out = tmp_path / "rows.jsonl"
    try:
        await orchestrator.aevaluate(
            [QUESTIONS[0]], methods="self-consistency", samples=3, out=out, concurrency=1
        )
    finally:
        await orchestrator.aclose()
    import json

    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    # the draws are sent at once, so which reply each gets is the simulator's order
    first = row["answers"]["ada#1"]
    assert row["final_answer"] == first and row["agreement"] == 0.3333
    replay = """\
agents:
  - {name: ada, backend: {type: replay, rules: [{match: '2\\+2', reply: 'Answer: 3'}]}}
  - {name: bob, backend: {type: replay, rules: [{match: '2\\+2', reply: 'Answer: 4'}]}}
  - {name: cy, backend: {type: replay, rules: [{match: '2\\+2', reply: 'Answer: 5'}]}}
"""
    report = await team(tmp_path, replay).aevaluate([QUESTIONS[0]], methods="vote")
    assert report["vote"].correct == 0  # ada's 3 wins the three-way tie


def test_a_team_seats_only_the_agents_it_is_told_to(tmp_path):
    from massgen.errors import ConfigError

    whole = team(tmp_path)
    alone = Orchestrator(list(whole.agents.values()), whole.config, seats=["bob"])
    assert alone.seats() == ["bob"] and whole.seats() == ["ada", "bob", "cy"]
    assert alone.run("What is 2+2?").final_answer == "Answer: 5"
    try:
        Orchestrator(list(whole.agents.values()), seats=["zed"])
    except ConfigError as e:
        assert e.key == "seats"
    else:
        raise AssertionError("an unknown seat is accepted")
