"""Consensus: early exit, votes, revisions, plurality, tie-break, malformed replies, failures."""

from __future__ import annotations

import pytest

from massgen import events as ev
from massgen.errors import AgentFailed
from massgen.orchestrator import Orchestrator
from tests.teamkit import failing, requests_made, revise, scripted, team, vote


async def test_unanimous_answers_stop_after_the_answer_round():
    agents, backends = team(a=scripted("Paris."), b=scripted("paris"), c=scripted("  PARIS! "))
    result = await Orchestrator(agents).arun("Capital of France?")
    assert requests_made(backends) == 3
    assert result.rounds == 0 and result.converged
    assert result.final_answer == "Paris." and result.winner == "a"
    assert result.requests == 3


async def test_votes_converge_on_the_majority_answer_in_one_round():
    agents, backends = team(
        a=scripted("Paris is the capital."),
        b=scripted("It is Paris.", lambda r: vote(r, "Paris is the capital")),
        c=scripted("Lyon.", lambda r: vote(r, "Paris is the capital")),
    )
    seen: list[ev.Event] = []
    orchestrator = Orchestrator(agents, subscribers=[seen.append], mode="debate")
    result = await orchestrator.arun("Capital of France?")
    assert requests_made(backends) == 6
    assert result.winner == "a" and result.final_answer == "Paris is the capital."
    assert result.rounds == 1 and result.converged
    assert {(v.voter, v.for_agent) for v in result.votes} == {("a", "a"), ("b", "a"), ("c", "a")}
    rounds = [e for e in seen if isinstance(e, ev.RoundDone)]
    assert rounds and rounds[0].converged and rounds[0].leader == "a"
    assert isinstance(seen[-1], ev.RunEnded) and seen[-1].result is result


async def test_votes_by_tool_call_when_the_backend_has_tools():
    agents, backends = team(
        a=scripted("Paris.", lambda r: vote(r, "Paris", tools=True)),
        b=scripted("Rome.", lambda r: vote(r, "Paris", tools=True)),
    )
    for b in backends.values():
        b.supports_tools = True
    result = await Orchestrator(agents).arun("Capital of France?")
    review_requests = [r for b in backends.values() for r in b.calls if r.tools]
    assert len(review_requests) == 2
    assert {t.name for t in review_requests[0].tools} == {"vote", "revise"}
    assert review_requests[0].tool_choice == "required"
    assert result.winner == "a"


async def test_peer_answers_are_shuffled_per_agent_and_anonymised():
    agents, backends = team(**{n: scripted(f"answer {n}") for n in "abcdef"})
    await Orchestrator(agents, max_rounds=1).arun("Task?")
    reviews = [b.calls[1].messages[-1].content for b in backends.values()]
    orders = {tuple(line for line in r.splitlines() if line.startswith("answer ")) for r in reviews}
    assert len(orders) > 1  # not every agent sees the same order
    assert all("agent" not in r.split("Answers")[1].split("Vote")[0] for r in reviews)


async def test_a_revision_voids_votes_for_the_old_text():
    # Round 1: b and c vote for a; a revises at the same time, so both votes are void.
    # Round 2: everyone votes for a's revised answer.
    def a_review(request):
        if "Paris, on the Seine" in request.messages[-1].content:
            return vote(request, "Paris, on the Seine")
        return revise("Paris, on the Seine.")

    agents, _ = team(
        a=scripted("Paris", a_review),
        b=scripted("Rome", lambda r: vote(r, "Paris")),
        c=scripted("Lyon", lambda r: vote(r, "Paris")),
    )
    # judged as prose: the revision ("Paris, on the Seine.") is new text, not the same answer
    consensus = {"mode": "debate", "answer": "prose", "max_rounds": 3}
    result = await Orchestrator(agents, consensus=consensus).arun("Capital of France?")
    assert result.rounds == 2
    assert [v.round for v in result.votes].count(1) == 0  # round-1 votes were voided
    assert result.final_answer == "Paris, on the Seine."
    assert result.history[1]["a"] == "Paris, on the Seine."


async def test_plurality_at_max_rounds_with_a_deterministic_tie_break():
    # Four agents split 2-2 with threshold 0.75: no winner; the tie goes to config order.
    agents, _ = team(
        a=scripted("alpha"),
        b=scripted("beta"),
        c=scripted("gamma", lambda r: vote(r, "beta")),
        d=scripted("delta", lambda r: vote(r, "alpha")),
    )
    result = await Orchestrator(agents, max_rounds=2, threshold=0.75).arun("Pick")
    assert result.rounds == 2 and not result.converged
    assert result.winner == "a" and result.final_answer == "alpha"
    again = await Orchestrator(agents, max_rounds=2, threshold=0.75).arun("Pick")
    assert again.winner == result.winner


async def test_a_malformed_review_is_reprompted_once():
    replies = iter(["I like answer A a lot", vote])

    def b_review(request):
        nxt = next(replies)
        return nxt(request, "Paris") if callable(nxt) else nxt

    agents, backends = team(a=scripted("Paris"), b=scripted("Rome", b_review))
    result = await Orchestrator(agents).arun("Capital?")
    assert len(backends["b"].calls) == 3
    assert "not valid" in backends["b"].calls[2].messages[-1].content
    assert result.winner == "a"


async def test_a_review_still_malformed_after_the_reprompt_is_an_abstention():
    agents, backends = team(a=scripted("Paris"), b=scripted("Lutetia", lambda r: "no idea"))
    result = await Orchestrator(agents, threshold=0.5).arun("Capital?")
    assert len(backends["b"].calls) == 3
    assert all(v.voter != "b" for v in result.votes)
    assert result.winner == "a"


async def test_a_failing_agent_is_dropped_and_the_quorum_recomputed():
    agents, _ = team(
        a=scripted("Paris"), b=scripted("Rome", lambda r: vote(r, "Paris")), c=failing()
    )
    result = await Orchestrator(agents, error_strategy="continue", max_retries=0).arun("Capital?")
    assert result.status == "degraded" and result.degraded
    assert set(result.failed_agents) == {"c"}
    assert result.winner == "a"


async def test_fail_fast_aborts_with_the_agents_error():
    agents, _ = team(a=scripted("Paris"), b=failing(500))
    with pytest.raises(AgentFailed) as info:
        await Orchestrator(agents, error_strategy="fail_fast").arun("Capital?")
    assert info.value.agent == "b"
    assert info.value.result.status == "failed"  # type: ignore[attr-defined]


async def test_a_fallback_agent_takes_the_failed_agents_seat():
    agents, backends = team(a=scripted("Paris"), b=failing(), spare=scripted("Paris"))
    agents[1].fallback = "spare"
    agents[2].standby = True
    result = await Orchestrator(agents, max_retries=0).arun("Capital?")
    assert result.status == "done"
    answered = {(x.agent, x.answered_by) for x in result.answers}
    assert ("b", "spare") in answered
    assert len(backends["spare"].calls) == 1  # a reserve does not answer on its own


async def test_synthesize_makes_one_presenter_call():
    agents, backends = team(
        a=scripted("Paris"),
        b=scripted("Rome", lambda r: vote(r, "Paris")),
    )

    def present(request):
        return "Final: Paris" if "final answer" in request.messages[-1].content else "Paris"

    backends["a"].fn = lambda r: (
        present(r) if "final answer" in r.messages[-1].content else scripted("Paris")(r)
    )
    result = await Orchestrator(agents, final="synthesize").arun("Capital?")
    assert result.final_answer == "Final: Paris"
    assert [x.phase for x in result.answers].count("present") == 1


def test_run_is_synchronous_outside_an_event_loop():
    agents, _ = team(a=scripted("Paris"), b=scripted("Paris"))
    result = Orchestrator(agents).run(task="Capital?", strategy="consensus")
    assert result.final_answer == "Paris"
