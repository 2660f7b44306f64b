"""Agreement on extracted answers: the text rule knowing the question, the kind ``auto``
picks, and the consensus modes (vote, debate, adaptive) judged on answers, not prose; grouped
review blocks; a sparse view for large teams; the agreement score in every result."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from massgen.answers import extract_text
from massgen.config import ConsensusConfig
from massgen.errors import ConfigError
from massgen.orchestrator import Orchestrator
from massgen.record import RunRecorder
from massgen.strategies.agreement import answer_key, detect, listed_choices
from tests.teamkit import BLOCK, is_review, prompt_of, requests_made, scripted, team, vote

ROOT = Path(__file__).resolve().parents[1]
CAPITAL = "What is the capital of France?"

# -- the text rule, knowing the question ---------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "question", "expected"),
    [
        ("Paris is the capital of France.", CAPITAL, "paris"),
        ("Paris is the capital of France.", None, "capital of france"),  # no question: y
        ("Paris is the capital.", CAPITAL, "paris"),
        ("The capital of France is Paris, which is also its largest city.", CAPITAL, "paris"),
        ("It isn't Lyon, it's Paris.", CAPITAL, "paris"),
        ("Paris, not Lyon.", CAPITAL, "paris"),
        ("Not Lyon but Paris.", CAPITAL, "paris"),
        ("It is not Paris.", CAPITAL, None),  # negated: no answer, not "paris"
        ("I don't know.", CAPITAL, None),
        ("I'm not sure, maybe Paris.", CAPITAL, "paris"),
        ("Probably Paris, I think.", CAPITAL, "paris"),
        ("I'm pretty sure it's Paris.", CAPITAL, "paris"),
        ("Lyon, I believe, though I am not certain.", CAPITAL, "lyon"),
        ("Paris is the answer.", CAPITAL, "paris"),
        ("Shakespeare wrote Hamlet.", "Who wrote Hamlet?", "shakespeare"),
        ("The sun is larger.", "Which is larger, the sun or the moon?", "sun"),
        ("Yes, Paris is the capital of France.", "Is Paris the capital of France?", "yes"),
        ("No.", "Is Lyon the capital of France?", "no"),
        ("After some thought: the answer is Paris.", CAPITAL, "paris"),
    ],
)
def test_the_text_rule_knows_the_question_negation_and_hedges(reply, question, expected):
    assert extract_text(reply, question) == expected
    assert answer_key(reply, "text", question or "") == expected


def test_three_wordings_of_paris_are_one_answer_and_a_refusal_is_none():
    keys = {answer_key(r, "text", CAPITAL) for r in PARIS}
    assert keys == {"paris"}
    assert answer_key("I cannot answer that.", "text", CAPITAL) is None
    assert answer_key("Paris.", "prose", CAPITAL) == answer_key("  PARIS! ", "prose", CAPITAL)
    assert answer_key("Paris.", "prose", CAPITAL) != answer_key("It's Paris.", "prose", CAPITAL)


PARIS = ["Paris.", "It's Paris.", "The capital of France is Paris."]
MCQ = "Which is the capital of France?\nA) London\nB) Paris\nC) Rome\n"


def test_auto_picks_the_kind_from_the_task_and_the_replies():
    assert listed_choices(MCQ) == ["London", "Paris", "Rome"]
    assert listed_choices("Plan A) is risky") is None
    assert detect(MCQ, ["B", "Paris"]) == "choice"
    assert answer_key("The answer is Paris.", "choice", MCQ) == "B"
    assert detect("What is 6 x 7?", ["42", "The answer is 42.", "#### 42"]) == "number"
    assert detect("What is 6 x 7?", ["Six sevens: 42 apples", "42"]) == "number"
    assert detect(CAPITAL, PARIS) == "text"
    long = " ".join(["word"] * 40)
    assert detect(CAPITAL, [long, "Paris."]) == "prose"
    assert detect(CAPITAL, [long + " The answer is Paris.", "Paris."]) == "text"
    # a number somewhere in long prose is not a stated answer
    prose = [long + f" (Variant {i}.)" for i in range(3)]
    assert detect(CAPITAL, prose) == "prose"
    assert detect("How many?", [long + " The answer is 12.", long + " #### 12"]) == "number"


# -- modes ---------------------------------------------------------------------------------


async def test_adaptive_stops_after_the_answer_round_when_the_answers_agree():
    agents, backends = team(a=scripted(PARIS[0]), b=scripted(PARIS[1]), c=scripted(PARIS[2]))
    result = await Orchestrator(agents).arun(CAPITAL)
    assert requests_made(backends) == 3 and result.rounds == 0 and result.converged
    assert result.winner == "a" and result.final_answer == "Paris."
    assert result.support == 1.0 and result.distribution == {"paris": 3}


async def test_adaptive_stops_on_a_qualified_majority_and_reports_the_split():
    agents, backends = team(a=scripted("Lyon."), b=scripted("It's Paris."), c=scripted("Paris!"))
    result = await Orchestrator(agents).arun(CAPITAL)
    assert requests_made(backends) == 3 and result.converged
    assert result.winner == "b" and result.final_answer == "It's Paris."  # first author
    assert result.agreement() == pytest.approx(2 / 3, abs=1e-4)
    assert result.distribution == {"paris": 2, "lyon": 1}
    data = result.to_dict()
    assert data["agreement"] == result.support and data["distribution"] == result.distribution


async def test_debate_reviews_what_adaptive_would_accept():
    agents, backends = team(
        a=scripted("Lyon.", lambda r: vote(r, "Paris")),
        b=scripted("It's Paris."),
        c=scripted("Paris!", lambda r: vote(r, "Paris")),
    )
    result = await Orchestrator(agents, consensus={"mode": "debate"}).arun(CAPITAL)
    assert requests_made(backends) == 6 and result.rounds == 1 and result.converged
    review = prompt_of(backends["a"].calls[1])
    # the two Paris replies are one block, its text b's (first in config order), with support
    blocks = BLOCK.findall(review)
    assert len(blocks) == 2 and 'agents="2">\nIt\'s Paris.\n</answer>' in review
    assert result.winner == "b" and result.support == 1.0


async def test_vote_mode_never_reviews_and_breaks_a_tie_by_config_order():
    agents, backends = team(
        a=scripted("The answer is 7."), b=scripted("#### 8"), c=scripted("8"), d=scripted("7.0")
    )
    orchestrator = Orchestrator(agents, consensus={"mode": "vote", "answer": "number"})
    result = await orchestrator.arun("What is 3 + 4?")
    assert requests_made(backends) == 4 and result.rounds == 0
    assert not result.converged  # 2-2: no majority, the tie rule picks
    assert result.winner == "a" and result.final_answer == "The answer is 7."
    assert result.distribution == {"7": 2, "8": 2} and result.support == 0.5


async def test_in_a_tie_a_checkable_answer_beats_a_reply_with_none():
    agents, backends = team(
        a=scripted("I cannot work this out."), b=scripted("#### 8"), c=scripted("The answer is 7.")
    )
    orchestrator = Orchestrator(agents, consensus={"mode": "vote", "answer": "number"})
    result = await orchestrator.arun("What is 3 + 4?")
    assert requests_made(backends) == 3 and not result.converged  # 1-1-1
    assert result.winner == "b" and result.final_answer == "#### 8"  # not a, first in order


async def test_a_vote_for_a_grouped_answer_backs_all_its_authors():
    # 5 agents, threshold 0.6: 3 needed; the answer round gives 2-1-1-1, so a review runs
    def backs_42(request):
        return vote(request, "42")

    scripts = {
        "a": scripted("41", backs_42),
        "b": scripted("The answer is 42."),
        "c": scripted("#### 42", backs_42),
        "d": scripted("40", backs_42),
        "e": scripted("39", backs_42),
    }
    agents, backends = team(**scripts)
    result = await Orchestrator(agents, threshold=0.6, max_rounds=1).arun("6 x 7?")
    assert result.rounds == 1 and result.converged
    assert result.winner == "b" and result.final_answer == "The answer is 42."
    assert {v.for_agent for v in result.votes} == {"b"}  # the group's author stands for it
    reviews = [prompt_of(b.calls[1]) for b in backends.values()]
    assert all(len(BLOCK.findall(r)) == 4 for r in reviews)  # 4 distinct answers, not 5
    assert all(r.count(' agents="2"') == 1 for r in reviews)
    assert result.support == 1.0 and result.distribution == {"42": 2, "41": 1, "40": 1, "39": 1}


# -- cost in team size ---------------------------------------------------------------------


def vote_lowest(request):
    """A judge with a stable taste: the answer with the lowest number shown."""
    blocks = BLOCK.findall(prompt_of(request))
    best = min(blocks, key=lambda b: int(re.search(r"number (\d+)", b[1])[1]))
    return json.dumps({"vote": best[0]})


async def test_a_large_disagreeing_team_reviews_a_bounded_view_linear_in_size():
    sizes = {}
    for n in (6, 12, 24):
        names = [f"x{i}" for i in range(n)]
        scripts = {
            name: scripted(f"Answer number {i}: " + "lorem ipsum " * 20, vote_lowest)
            for i, name in enumerate(names)
        }
        agents, backends = team(**scripts)
        result = await Orchestrator(agents).arun("Describe the capital of France.")
        reviews = [prompt_of(c) for b in backends.values() for c in b.calls if is_review(c)]
        assert len(reviews) == n and requests_made(backends) <= 2 * n
        shown = {len(BLOCK.findall(r)) for r in reviews}
        assert shown == ({6} if n == 6 else {3})  # auto: all up to 6, then own + 2 others
        sizes[n] = sum(map(len, reviews))
        if n > 6:  # every reviewer sees the same shortlist, so the votes meet
            assert result.converged and result.rounds == 1
    assert sizes[24] / sizes[12] == pytest.approx(2, rel=0.1)  # linear, not quadratic


# -- configuration and the record ----------------------------------------------------------


def test_from_config_takes_a_nested_consensus_override_validated():
    built = Orchestrator.from_config(
        ROOT / "configs" / "offline.yaml",
        strategy="consensus",
        consensus={"mode": "vote", "answer": "number"},
    )
    c = built.config.consensus
    assert (c.mode, c.answer) == ("vote", "number")
    assert c.max_rounds == 1  # the file's other keys stay
    with pytest.raises(ConfigError) as info:
        Orchestrator.from_config(ROOT / "configs" / "offline.yaml", consensus={"mode": "poll"})
    assert "mode" in str(info.value)
    with pytest.raises(ConfigError):
        Orchestrator.from_config(ROOT / "configs" / "offline.yaml", consensus="vote")
    typed = Orchestrator.from_config(
        ROOT / "configs" / "offline.yaml", consensus=ConsensusConfig(mode="vote")
    )
    assert (typed.config.consensus.mode, typed.config.consensus.answer) == ("vote", "prose")


async def test_the_run_record_carries_the_agreement(tmp_path):
    agents, _ = team(a=scripted("Lyon."), b=scripted("Paris."), c=scripted("Paris"))
    recorder = RunRecorder(path=tmp_path / "run.json")
    await Orchestrator(agents, subscribers=[recorder]).arun(CAPITAL)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["agreement"] == pytest.approx(0.6667)
    assert record["distribution"] == {"paris": 2, "lyon": 1}
    assert record["winner"] == "b"


async def test_votes_can_elect_an_answer_with_no_checkable_form():
    # judged as numbers, b's reply has none; the others still find it best and vote for it
    agents, _ = team(
        a=scripted("12", lambda r: vote(r, "depends")),
        b=scripted("It depends on the units.", lambda r: vote(r, "depends")),
        c=scripted("13", lambda r: vote(r, "depends")),
    )
    result = await Orchestrator(agents, consensus={"answer": "number"}).arun("How long?")
    assert result.rounds == 1 and result.converged and result.winner == "b"
    assert result.support == 1.0 and result.distribution == {"12": 1, "13": 1}
