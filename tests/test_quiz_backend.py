"""The replay backend's quiz: simulated agents of known accuracy. Driven through the real
team machinery over 2,000 generated questions, the measured accuracies match
bench/eval_theory.py's exact figures within a 99 % Wilson interval."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.eval_theory import majority, majority_binomial, single
from examples.make_arith import generate, with_choices, write
from massgen.answers import extract
from massgen.backends.replay import ReplayBackend
from massgen.config import loads
from massgen.errors import ConfigError
from massgen.evalstats import wilson, z_for
from massgen.orchestrator import Orchestrator
from massgen.types import CallContext, ChatMessage, CompletionRequest
from tests.procs import run_massgen

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = 2000
Z99 = z_for(0.99)
NAMES = ("ada", "bob", "cy")


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return generate(QUESTIONS, seed=1)


@pytest.fixture(scope="module")
def answers(rows: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quiz") / "arith.jsonl"
    write(path, rows)
    return path


def ask(text: str, agent: str = "ada", **extra: Any) -> CompletionRequest:
    return CompletionRequest(
        messages=(ChatMessage("system", f"You are {agent}."), ChatMessage("user", text)),
        call=CallContext(agent),
        extra=extra,
    )


def quiz(path: Path, **options: Any) -> ReplayBackend:
    return ReplayBackend(quiz={"answers": str(path), "p": 0.7, **options}, name="sim")


def review(question: str, blocks: Sequence[tuple[str, str, int]], yours: str = "A") -> str:
    shown = "\n".join(
        f'<answer label="{label}"{f" agents={chr(34)}{n}{chr(34)}" if n > 1 else ""}>\n'
        f"{text}\n</answer>"
        for label, text, n in blocks
    )
    return (
        f"Task: {question}\n\nAnswers (yours is {yours}):\n{shown}\n\n"
        'Reply with JSON only: {"vote": "<label>", "reason": "<few words>"}'
    )


def within(successes: int, n: int, expected: float) -> bool:
    low, high = wilson(successes, n, Z99)
    return low <= expected <= high


# -- one backend, request by request ---------------------------------------------------------


async def test_replies_are_deterministic_and_state_a_gradable_answer(
    rows: list[dict[str, Any]], answers: Path
) -> None:
    async def replies(seed: int) -> list[str]:
        backend = quiz(answers, seed=seed)
        return [(await backend.complete(ask(r["question"]))).text for r in rows[:200]]

    first = await replies(5)
    assert first == await replies(5)
    assert all(extract("number", text) is not None for text in first)
    assert first != await replies(6), "another seed draws otherwise"


async def test_agents_sharing_a_backend_draw_independently(
    rows: list[dict[str, Any]], answers: Path
) -> None:
    backend = quiz(answers, p=0.5)
    both = 0
    for row in rows[:1000]:
        right = []
        for name in ("ada", "bob"):
            text = (await backend.complete(ask(row["question"], name))).text
            right.append(extract("number", text) == str(row["answer"]))
        both += all(right)
    assert within(both, 1000, 0.25), both  # independent: 0.5 x 0.5


async def test_asking_again_is_a_new_sample_unless_the_request_sets_a_seed(
    rows: list[dict[str, Any]], answers: Path
) -> None:
    backend = quiz(answers, p=0.5)
    question = rows[0]["question"]
    samples = {(await backend.complete(ask(question))).text for _ in range(40)}
    assert len(samples) >= 2, "40 draws at p = 0.5 were all the same"
    seeded = {(await backend.complete(ask(question, seed=11))).text for _ in range(10)}
    assert len(seeded) == 1


async def test_p_per_agent_by_name(rows: list[dict[str, Any]], answers: Path) -> None:
    backend = quiz(answers, p={"ada": 1.0, "bob": 0.0})
    for row in rows[:50]:
        gold = str(row["answer"])
        assert extract("number", (await backend.complete(ask(row["question"], "ada"))).text) == gold
        assert extract("number", (await backend.complete(ask(row["question"], "bob"))).text) != gold
    with pytest.raises(ConfigError) as caught:
        await backend.complete(ask(rows[0]["question"], "cy"))
    assert caught.value.key == "quiz.p"


@pytest.mark.parametrize("wrong", ["coincide", "distinct"])
async def test_wrong_answers_coincide_or_not(
    rows: list[dict[str, Any]], answers: Path, wrong: str
) -> None:
    backend = quiz(answers, p=0.0, wrong=wrong)
    for row in rows[:100]:
        said = {
            extract("number", (await backend.complete(ask(row["question"], n))).text) for n in NAMES
        }
        assert str(row["answer"]) not in said
        assert len(said) == (1 if wrong == "coincide" else 3)


async def test_questions_not_in_the_file_fall_back_to_the_rules(answers: Path) -> None:
    backend = ReplayBackend(
        rules=[{"match": "capital of France", "reply": "Paris."}],
        default="no idea",
        quiz={"answers": str(answers), "p": 1.0},
    )
    assert (await backend.complete(ask("What is the capital of France?"))).text == "Paris."
    assert (await backend.complete(ask("What is 1 + 1?"))).text == "no idea"


async def test_the_question_is_found_inside_a_longer_prompt(
    rows: list[dict[str, Any]], answers: Path
) -> None:
    backend = quiz(answers, p=1.0)
    prompt = f"Solve this.\nQuestion:   {rows[3]['question'].upper()}\nThink step by step."
    reply = (await backend.complete(ask(prompt))).text
    assert extract("number", reply) == str(rows[3]["answer"])


async def test_plurality_counts_grouped_blocks(rows: list[dict[str, Any]], answers: Path) -> None:
    row = rows[0]
    gold, wrong = row["answer"], row["answer"] + 1
    prompt = review(
        row["question"],
        [("A", f"The answer is {wrong}.", 1), ("B", f"#### {gold}", 3), ("C", f"So {wrong}", 1)],
    )
    reply = (await quiz(answers, vote="plurality").complete(ask(prompt))).text
    assert json.loads(reply)["vote"] == "B"  # 3 agents against 2
    tie = review(row["question"], [("A", f"#### {wrong}", 2), ("B", f"#### {gold}", 2)], "B")
    reply = (await quiz(answers, vote="plurality").complete(ask(tie))).text
    assert json.loads(reply)["vote"] == "B"  # a tie goes to its own answer


async def test_own_and_correct_vote_rules(rows: list[dict[str, Any]], answers: Path) -> None:
    row = rows[0]
    gold, wrong = row["answer"], row["answer"] + 1
    blocks = [("A", f"#### {gold}", 1), ("B", f"#### {wrong}", 1), ("C", f"#### {wrong}", 1)]
    prompt = review(row["question"], blocks, yours="C")
    vote = json.loads((await quiz(answers, vote="own").complete(ask(prompt))).text)
    assert vote["vote"] == "C"
    vote = json.loads((await quiz(answers, vote="correct", p=1.0).complete(ask(prompt))).text)
    assert vote["vote"] == "A"
    vote = json.loads((await quiz(answers, vote="correct", p=0.0).complete(ask(prompt))).text)
    assert vote["vote"] == "C"


async def test_the_revise_rule_revises_to_the_plurality_answer(
    rows: list[dict[str, Any]], answers: Path
) -> None:
    row = rows[0]
    gold, wrong = row["answer"], row["answer"] + 1
    blocks = [("A", f"#### {gold}", 2), ("B", f"#### {wrong}", 1)]
    backend = quiz(answers, vote="revise")
    reply = json.loads((await backend.complete(ask(review(row["question"], blocks, "B")))).text)
    assert extract("number", reply["revise"]) == str(gold)
    reply = json.loads((await backend.complete(ask(review(row["question"], blocks, "A")))).text)
    assert reply["vote"] == "A"


async def test_an_aggregator_gives_the_answer_its_rule_picks(
    rows: list[dict[str, Any]], answers: Path
) -> None:
    row = rows[0]
    gold, wrong = row["answer"], row["answer"] + 1
    blocks = "\n".join(
        f'<answer label="{k}">\n#### {v}\n</answer>'
        for k, v in zip("ABC", (wrong, gold, gold), strict=True)
    )
    prompt = f"Task: {row['question']}\n\nIndependent answers:\n{blocks}\n\nSynthesize them."
    reply = (await quiz(answers, p=0.0).complete(ask(prompt))).text
    assert extract("number", reply) == str(gold)


async def test_multiple_choice_answers_a_letter(tmp_path: Path) -> None:
    items = with_choices(generate(100, seed=3), seed=3)
    path = tmp_path / "mc.jsonl"
    write(path, items)
    right = ReplayBackend(quiz={"answers": str(path), "p": 1.0})
    wrong = ReplayBackend(quiz={"answers": str(path), "p": 0.0})
    for row in items:
        for name in NAMES:
            said = (await right.complete(ask(row["question"], name))).text
            assert extract("choice", said, choices=row["choices"]) == row["answer"], said
            said = (await wrong.complete(ask(row["question"], name))).text
            assert extract("choice", said, choices=row["choices"]) not in (row["answer"], None)


def test_options_are_checked_when_the_team_loads(answers: Path, tmp_path: Path) -> None:
    text = (
        "backends:\n  sim:\n    type: replay\n    quiz:\n"
        f"      answers: {answers}\n      p: 1.5\n"
        "agents:\n  - {name: ada, backend: sim}\n"
    )
    with pytest.raises(ConfigError) as caught:
        loads(text, file="team.yaml")
    assert caught.value.line == 6 and "quiz.p" in (caught.value.key or "")
    with pytest.raises(ConfigError) as caught:
        loads(text.replace("p: 1.5", "p: 0.5\n      wrong: sometimes"), file="team.yaml")
    assert caught.value.line == 7
    missing = text.replace(str(answers), "missing.jsonl").replace("p: 1.5", "p: 0.5")
    (tmp_path / "team.yaml").write_text(missing)
    done = run_massgen("config", "validate", "team.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "quiz.answers" in done.stderr


def test_a_bad_answers_row_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "What is 2 + 2?", "answer": 4}\n\n{"question": "Hm?"}\n')
    with pytest.raises(ConfigError) as caught:
        ReplayBackend(quiz={"answers": str(path), "p": 0.5})
    assert caught.value.line == 3


def test_the_offline_demo_answers_an_arithmetic_question(tmp_path: Path) -> None:
    row = json.loads((ROOT / "examples/arith.jsonl").read_text().splitlines()[1])
    config = str(ROOT / "configs/offline.yaml")
    done = run_massgen("run", config, row["question"], "--json", "--no-record", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert extract("number", result["final_answer"]) is not None and result["votes"]


def test_the_sample_file_is_what_the_generator_writes() -> None:
    lines = (ROOT / "examples/arith.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == generate(200, seed=0)


# -- the theory ------------------------------------------------------------------------------


def test_theory_matches_the_binomial_sums_and_known_figures() -> None:
    assert single(0.7) == 0.7
    assert majority([0.7] * 3) == pytest.approx(0.784)
    assert majority([0.7] * 3, wrong="distinct") == pytest.approx(0.784 + 0.7 * 0.3**2)
    assert majority([0.7] * 3, correlation=1.0) == pytest.approx(0.7)
    for n in (1, 2, 3, 4, 5, 8):
        for p in (0.2, 0.5, 0.7):
            for wrong in ("coincide", "distinct"):
                assert majority([p] * n, wrong=wrong) == pytest.approx(  # type: ignore[arg-type]
                    majority_binomial(p, n, wrong)  # type: ignore[arg-type]
                )


# -- the real team machinery over 2,000 questions --------------------------------------------


def team_yaml(answers: Path, ps: Sequence[float], strategy: str = "parallel", **quiz: Any) -> str:
    """Three agents, each on a backend of its own (its own ``p``), the same seed; consensus
    debates (a review round whenever the answers differ)."""
    backends = {
        f"sim_{name}": {"type": "replay", "quiz": {"answers": str(answers), "p": p, **quiz}}
        for name, p in zip(NAMES, ps, strict=True)
    }
    agents = [{"name": n, "backend": f"sim_{n}", "role": f"You are {n}."} for n in NAMES]
    consensus = {"threshold": 0.5, "max_rounds": 1, "mode": "debate"}
    orchestrator = {"strategy": strategy, "consensus": consensus}
    team = {"backends": backends, "agents": agents, "orchestrator": orchestrator}
    return yaml.safe_dump(team)


def vote_of(texts: Sequence[str]) -> str | None:
    """Majority of the extracted answers; a tie goes to the group of the earliest agent."""
    count: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        if (answer := extract("number", text)) is not None:
            count[answer] = count.get(answer, 0) + 1
            first.setdefault(answer, i)
    return min(count, key=lambda a: (-count[a], first[a]), default=None)


async def _answers_of(team: str, rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    orchestrator = Orchestrator.from_config(loads(team))
    try:
        results = await asyncio.gather(*(orchestrator.arun(r["question"]) for r in rows))
    finally:
        await orchestrator.aclose()
    return [r.history[0] for r in results]


CASES = {
    "independent, wrong answers coincide": ([0.7] * 3, {}),
    "wrong answers never coincide (a tie goes to ada)": ([0.7] * 3, {"wrong": "distinct"}),
    "correlated 0.5": ([0.7] * 3, {"correlation": 0.5}),
    "p 0.8 / 0.7 / 0.6, correlated 0.3": ([0.8, 0.7, 0.6], {"correlation": 0.3}),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_measured_accuracy_matches_theory(
    case: str, rows: list[dict[str, Any]], answers: Path
) -> None:
    ps, options = CASES[case]
    got = await _answers_of(team_yaml(answers, ps, **options), rows)
    gold = [str(r["answer"]) for r in rows]
    for i, name in enumerate(NAMES):
        right = sum(extract("number", g[name]) == want for g, want in zip(got, gold, strict=True))
        assert within(right, len(rows), single(ps[i])), (name, right)
    right = sum(vote_of([g[n] for n in NAMES]) == want for g, want in zip(got, gold, strict=True))
    expected = majority(
        ps, correlation=options.get("correlation", 0.0), wrong=options.get("wrong", "coincide")
    )
    assert within(right, len(rows), expected), (right / len(rows), expected)


async def test_consensus_with_plurality_votes_scores_the_majority(
    rows: list[dict[str, Any]], answers: Path
) -> None:
    orchestrator = Orchestrator.from_config(
        loads(team_yaml(answers, [0.7] * 3, "consensus", vote="plurality"))
    )
    asked = rows[:1000]  # two requests per agent and question: half the questions
    try:
        results = await asyncio.gather(*(orchestrator.arun(r["question"]) for r in asked))
    finally:
        await orchestrator.aclose()
    right = sum(
        extract("number", res.final_answer) == str(r["answer"])
        for res, r in zip(results, asked, strict=True)
    )
    assert within(right, len(asked), majority([0.7] * 3)), right / len(asked)
    assert any(res.votes for res in results), "no review round ran"


async def test_quiz_replies_skip_the_demo_latency_unless_the_quiz_sets_its_own(
    rows: list[dict[str, Any]], answers: Path
) -> None:
    # configs/offline.yaml slows its demo replies (latency 0.3); its quiz answers at once
    slow = ReplayBackend(latency=30, quiz={"answers": str(answers), "p": 0.7}, name="sim")
    done = await asyncio.wait_for(slow.complete(ask(rows[0]["question"])), timeout=10)
    assert extract("number", done.text) is not None
    paced = ReplayBackend(quiz={"answers": str(answers), "p": 0.7, "latency": 0.2}, name="sim")
    started = asyncio.get_running_loop().time()
    await paced.complete(ask(rows[0]["question"]))
    assert asyncio.get_running_loop().time() - started >= 0.2
    with pytest.raises(ConfigError):
        ReplayBackend(quiz={"answers": str(answers), "p": 0.7, "latency": -1})
