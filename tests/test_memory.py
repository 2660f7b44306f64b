"""Short-term memory: windows, the token estimator, context limits and summaries."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from massgen.agents.agent import Agent
from massgen.backends.registry import create_backend
from massgen.config import loads
from massgen.memory import ContextLimitExceeded, Conversation, Exchange, Sessions
from massgen.memory.window import blocks, newest_fitting
from massgen.orchestrator import Orchestrator
from massgen.store import MemoryStore
from massgen.tokens import TokenEstimator, context_window, estimate_message, estimate_text
from massgen.types import ChatMessage, ToolCall, Turn
from tests.sim.sim_types import Text
from tests.sim.simulator import ProviderSimulator

# -- the window, for any conversation ----------------------------------------------------------

_text = st.text(alphabet="abcdefghij klmnopé中", max_size=60)


@st.composite
def conversations(draw: st.DrawFn) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for i in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["user", "assistant", "tools"]))
        if kind == "tools":
            n = draw(st.integers(1, 3))
            calls = tuple(ToolCall(f"c{i}-{j}", "calc", {"x": draw(_text)}) for j in range(n))
            out.append(ChatMessage("assistant", draw(_text), tool_calls=calls))
            out += [ChatMessage("tool", draw(_text), tool_call_id=c.id, name="calc") for c in calls]
        else:
            out.append(ChatMessage(kind, draw(_text)))
    return out


@settings(max_examples=300, deadline=None)
@given(conversations(), st.integers(0, 400), _text)
def test_window_bounds_hold_for_any_conversation(history, size, role):
    system = [ChatMessage("system", role)]  # kept as Conversation.compose keeps it
    fixed = estimate_message(system[0])
    kept = [*system, *newest_fitting(history, max(0, size - fixed), estimate_message)]
    assert kept[:1] == system  # the system prompt is always kept
    rest = kept[1:]
    # a contiguous stretch ending at the newest message
    assert rest == history[len(history) - len(rest) :]
    used = sum(estimate_message(m) for m in kept)
    if estimate_message(system[0]) <= size:
        assert used <= size
    # never a tool call without its results, nor a result without its call
    calls = {c.id for m in rest for c in m.tool_calls}
    results = {m.tool_call_id for m in rest if m.role == "tool"}
    assert calls == results
    # the newest block that fits is kept: what was dropped did not fit
    dropped = blocks(history[: len(history) - len(rest)])
    if dropped:
        extra = sum(estimate_message(m) for m in dropped[-1])
        assert used + extra > size


# -- tokens and windows -------------------------------------------------------------------------


def test_estimator_counts_ascii_by_four_and_other_scripts_by_one():
    assert estimate_text("") == 0
    assert estimate_text("abcd" * 10) == 10
    assert estimate_text("中文字") == 3
    assert estimate_message(ChatMessage("user", "abcd")) == 1 + 4


def test_estimator_learns_from_reported_usage():
    est = TokenEstimator()
    msgs = [ChatMessage("user", "word " * 80)]  # 100 + 4 estimated
    before = est.messages(msgs)
    est.observe(msgs, 208)  # the provider counted twice as many
    assert est.ratio == pytest.approx(1.5)
    assert est.messages(msgs) > before
    est.observe(msgs, 10_000)
    assert est.ratio <= TokenEstimator.MAX_RATIO  # clamped, one odd report cannot run away


def test_context_windows_from_genai_prices_and_override():
    assert context_window("gpt-4o-mini") == 128_000
    assert context_window("gpt-4-0613") == 8_192
    assert context_window("claude-3-5-sonnet-latest") == 200_000
    assert context_window("openrouter/gemini-2.5-flash") == 1_048_576
    assert context_window("my-local-model") is None
    assert context_window("gpt-4o", 4096) == 4096


def _conversation(n: int, strategy: str = "full", size: int | None = None) -> Conversation:
    conv = Conversation(strategy, size)
    conv.exchanges = [Exchange(f"task {i} " + "x" * 200, f"answer {i}") for i in range(n)]
    return conv


def test_full_keeps_everything_sliding_window_keeps_the_newest():
    full = _conversation(10).compose("role", "now", model="gpt-4o")
    assert len(full) == 1 + 20 + 1
    conv = _conversation(10, "sliding_window", 200)
    msgs = conv.compose("role", "now", model="gpt-4o")
    assert msgs[0] == ChatMessage("system", "role") and msgs[-1] == ChatMessage("user", "now")
    assert sum(estimate_message(m) for m in msgs[:-1]) <= 200
    assert msgs[-2].content == "answer 9" and "task 9" in msgs[-3].content
    assert not any("task 0 " in m.content for m in msgs)


def test_context_limit_trims_memory_first_then_refuses():
    conv = _conversation(10)
    conv.context_window = 400
    msgs = conv.compose("role", "the task", model="gpt-4o", reserve=100)
    assert sum(estimate_message(m) for m in msgs) <= 400 - 100 - 3
    assert msgs[-1].content == "the task" and len(msgs) < 22
    assert msgs[-2].content == "answer 9"  # the newest turn stays
    with pytest.raises(ContextLimitExceeded, match="context window"):
        conv.compose("role", "y" * 2000, model="gpt-4o", reserve=100)


def test_recalled_memory_goes_before_summary_and_after_history():
    conv = _conversation(3)
    conv.summary = "S" * 400
    conv.recalled = ["R" * 400, "Q" * 400]
    conv.context_window = 300
    msgs = conv.compose("", "task", model=None)
    text = "".join(m.content for m in msgs)
    assert "answer" not in text  # the history went first
    assert "Q" * 400 not in text  # then the least relevant recalled item
    assert "R" * 400 in text and "S" * 400 in text
    conv.context_window = 200
    text = "".join(m.content for m in conv.compose("", "task", model=None))
    assert "R" * 400 not in text and "S" * 400 in text  # the summary goes last


def test_agent_refuses_a_task_too_large_for_its_model():
    agent = Agent("a", "replay", model="gpt-4")  # 8k tokens
    with pytest.raises(ContextLimitExceeded):
        agent.build_messages(Turn("answer", "word " * 40_000))


def test_agent_without_memory_sends_role_and_prompt_only():
    agent = Agent("a", "replay", role="be brief", model="gpt-4o")
    assert agent.build_messages(Turn("answer", "hi")) == (
        ChatMessage("system", "be brief"),
        ChatMessage("user", "hi"),
    )


# -- summary, through the simulator -------------------------------------------------------------


def _team(sim: ProviderSimulator, memory: str, extra: str = "") -> str:
    return textwrap.dedent(
        f"""
        backends:
          sim: {{type: openai, model: gpt-4o-mini, base_url: "{sim.openai_base_url}",
                 api_key: sk-test}}
        agents:
          - name: solo
            backend: sim
            role: You are terse.
            memory: {memory}
        {extra}
        orchestrator: {{strategy: parallel, max_retries: 0}}
        """
    )


async def _seed(store: MemoryStore, n: int) -> None:
    sessions = Sessions(store)
    for i in range(n):
        ex = Exchange(f"Question {i}: " + "lorem ipsum " * 20, f"Answer {i}.", f"r{i}")
        await sessions.record("s1", f"r{i}", {"solo": ex})


async def test_summary_is_written_when_the_budget_is_exceeded(sim: ProviderSimulator):
    store = MemoryStore()
    await _seed(store, 6)  # about 6 * 75 tokens: over the 250 budget
    sim.script(Text("SUMMARY-OF-EARLIER-RUNS"), match="Write the updated summary")
    cfg = loads(_team(sim, "{strategy: summary, size: 250}"))
    async with Orchestrator.from_config(cfg, session="s1", memory_store=store) as orch:
        result = await orch.arun("What now?")
    summary_req, answer_req = sim.requests
    assert "Question 0" in summary_req.prompt_text
    assert "SUMMARY-OF-EARLIER-RUNS" in answer_req.system
    assert "Question 0" not in answer_req.prompt_text  # folded away
    assert "Answer 5." in answer_req.prompt_text  # the newest turn is kept verbatim
    # the summary request is accounted like any other
    assert result.requests == 2
    expected = summary_req.prompt_tokens + answer_req.prompt_tokens
    assert result.usage.input_tokens == expected
    text, covered = await Sessions(store).summary("s1", "solo")
    assert text == "SUMMARY-OF-EARLIER-RUNS" and 1 <= covered < 6
    # the next run reuses the stored summary, no new summary request while it fits
    sim.reset()
    async with Orchestrator.from_config(cfg, session="s1", memory_store=store) as orch:
        await orch.arun("And then?")
    (again,) = sim.requests
    assert "SUMMARY-OF-EARLIER-RUNS" in again.system and "What now?" in again.prompt_text


async def test_no_summary_while_the_history_fits(sim: ProviderSimulator):
    store = MemoryStore()
    await _seed(store, 2)
    cfg = loads(_team(sim, "{strategy: summary, size: 2000}"))
    async with Orchestrator.from_config(cfg, session="s1", memory_store=store) as orch:
        result = await orch.arun("What now?")
    (req,) = sim.requests
    assert "Question 0" in req.prompt_text and result.requests == 1


async def test_summarizer_agent_writes_the_summary(sim: ProviderSimulator):
    store = MemoryStore()
    await _seed(store, 6)
    sim.script(Text("BY-THE-SCRIBE"), model="gpt-4o", match="Write the updated summary")
    scribe = (
        "  - name: scribe\n"
        "            backend: {type: openai, model: gpt-4o, api_key: sk-test,"
        f' base_url: "{sim.openai_base_url}"}}'
    )
    text = _team(sim, "{strategy: summary, size: 250, summarizer: scribe}", scribe)
    async with Orchestrator.from_config(loads(text), session="s1", memory_store=store) as orch:
        result = await orch.arun("What now?")
    (summary,) = [r for r in sim.requests if "Write the updated summary" in r.prompt_text]
    assert summary.model == "gpt-4o"  # the scribe's backend wrote it
    (answer,) = [r for r in sim.requests if r.model == "gpt-4o-mini"]
    assert "BY-THE-SCRIBE" in answer.system
    assert result.requests == 3  # the scribe's own answer, the summary, solo's answer
    assert "summary" not in {a.phase for a in result.answers}


async def test_a_shared_summarizer_writes_through_the_running_orchestrators_stack(
    sim: ProviderSimulator,
):
    store = MemoryStore()
    await _seed(store, 6)
    sim.script(Text("BY-THE-SCRIBE"), match="Write the updated summary")
    url = sim.openai_base_url
    scribe = Agent("scribe", create_backend("openai", model="gpt-4o", api_key="k", base_url=url))
    solo = Agent("solo", create_backend("openai", model="gpt-4o-mini", api_key="k", base_url=url))
    solo.memory = Conversation("summary", 250, summarizer=scribe)
    mine, other = MemoryStore(), MemoryStore()
    running = Orchestrator(
        [solo, scribe], session="s1", memory_store=store, cache_store=mine, cache_enabled=True
    )
    # built last over the same agents, with a cache of its own: it must stay untouched
    Orchestrator([solo, scribe], cache_store=other, cache_enabled=True)
    await running.arun("What now?")
    assert any("Write the updated summary" in r.prompt_text for r in sim.requests)
    assert await other.count("cache:") == 0
    assert await mine.count("cache:") == len(sim.requests)  # every request, the summary too


async def test_sliding_window_session_keeps_newest_turns(sim: ProviderSimulator):
    store = MemoryStore()
    await _seed(store, 6)
    cfg = loads(_team(sim, "{strategy: sliding_window, size: 200}"))
    async with Orchestrator.from_config(cfg, session="s1", memory_store=store) as orch:
        await orch.arun("What now?")
    (req,) = sim.requests
    assert "Answer 5." in req.prompt_text and "Question 0" not in req.prompt_text


def test_summary_triggers_exactly_when_the_budget_is_exceeded():
    conv = _conversation(4, "summary", 10)
    used = sum(estimate_message(m) for m in [*conv.system("role"), *conv.history()])
    conv.size = used
    assert conv._to_fold("role") == 0
    conv.size = used - 1
    fold = conv._to_fold("role")
    assert 1 <= fold <= 4
    rest = conv.history()[2 * fold :]
    header = estimate_message(ChatMessage("system", "role\n\nSummary of your earlier conversation"))
    assert sum(estimate_message(m) for m in rest) + header <= used  # what is left fits


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 8), st.integers(50, 3000), st.integers(0, 500), st.integers(0, 4000))
def test_a_request_never_exceeds_the_context_window(n, window, reserve, prompt_len):
    conv = _conversation(n)
    conv.context_window = window
    conv.recalled = ["memo " * 30]
    try:
        msgs = conv.compose("role", "p" * prompt_len, model=None, reserve=reserve)
    except ContextLimitExceeded:
        bare = [ChatMessage("system", "role"), ChatMessage("user", "p" * prompt_len)]
        assert sum(estimate_message(m) for m in bare) > window - reserve - 3
    else:
        assert sum(estimate_message(m) for m in msgs) <= window - reserve - 3
        assert msgs[-1].content.endswith("p" * prompt_len)


async def test_reported_usage_corrects_the_estimate(sim: ProviderSimulator):
    agent = Agent(
        "a",
        create_backend(
            "openai", model="gpt-4o-mini", base_url=sim.openai_base_url, api_key="sk-test"
        ),
        role="Be brief.",
    )
    turn = Turn("answer", "Count the words in this sentence, please.")
    estimate = sum(estimate_message(m) for m in agent.build_messages(turn))
    try:
        await agent.respond(turn)
    finally:
        await agent.backend.aclose()
    (req,) = sim.requests
    seen = req.prompt_tokens / estimate
    assert seen != 1.0  # the simulator counts differently: there is something to learn
    expected = 0.5 + 0.5 * min(3.0, max(0.8, seen))
    assert agent.memory.estimator.ratio == pytest.approx(expected)
