"""Every request of a tool loop fits the model's context window: earlier-turn memory goes
first, then the largest tool results are clipped (marked), calls never lose their results,
and a turn that cannot fit fails with a clear error before anything too large is sent."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from massgen.agents.agent import Agent
from massgen.agents.loop import CLIPPED
from massgen.backends.function import FunctionBackend
from massgen.memory import ContextLimitExceeded, Exchange
from massgen.memory.short_term import REQUEST_OVERHEAD
from massgen.tokens import estimate_message, estimate_tools
from massgen.tools import tool
from massgen.types import ChatMessage, Completion, CompletionRequest, ToolCall, Turn, Usage

CLIP_MARK = CLIPPED.split("{")[0].strip()


@tool(max_output=100_000)
def fetch(size: int) -> str:
    """Return ``size`` characters of data."""
    return ("data " * (size // 5 + 1))[:size]


def _agent(rounds: list[list[int]], window: int, history: int, seen: list[CompletionRequest]):
    """An agent whose model calls ``fetch`` with the sizes of each round, then answers."""
    queue = list(rounds)

    def model(request: CompletionRequest) -> Completion:
        seen.append(request)
        if request.tool_choice == "none" or not queue:
            return Completion(text="done", model="m", usage=Usage(1, 1))
        sizes = queue.pop(0)
        n = len(seen)
        calls = tuple(ToolCall(f"c{n}-{i}", "fetch", {"size": s}) for i, s in enumerate(sizes))
        return Completion(text="", model="m", usage=Usage(1, 1), tool_calls=calls)

    agent = Agent("ada", FunctionBackend(model, tools=True), role="role", tools=[fetch])
    agent.memory.context_window = window
    agent.memory.exchanges = [
        Exchange(f"task {i} " + "x" * 200, f"answer {i}") for i in range(history)
    ]
    return agent


def _paired(messages: tuple[ChatMessage, ...]) -> bool:
    calls = [c.id for m in messages for c in m.tool_calls]
    results = [m.tool_call_id for m in messages if m.role == "tool"]
    return calls == results


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rounds=st.lists(st.lists(st.integers(0, 6000), min_size=1, max_size=3), max_size=4),
    window=st.integers(300, 6000),
    history=st.integers(0, 6),
    reserve=st.sampled_from([0, 50, 200]),
)
async def test_no_request_of_a_tool_loop_exceeds_the_window(rounds, window, history, reserve):
    seen: list[CompletionRequest] = []
    agent = _agent(rounds, window, history, seen)
    limit = window - reserve - REQUEST_OVERHEAD
    try:
        done = await agent.respond(Turn("answer", "use the tool", max_tokens=reserve or None))
    except ContextLimitExceeded as e:
        assert "context window" in str(e)
    else:
        assert done.text == "done"
    for request in seen:  # every request the model saw fits
        # ...with the tool declarations counted too
        assert (
            sum(estimate_message(m) for m in request.messages) + estimate_tools(request.tools)
            <= limit
        )
        assert _paired(request.messages)  # never a call without its result
        assert request.messages[-1].role in ("user", "tool")
        if any(CLIP_MARK in m.content for m in request.messages if m.role == "tool"):
            assert not any(m.content.startswith("answer ") for m in request.messages)


async def test_memory_goes_first_then_the_largest_result_is_clipped():
    seen: list[CompletionRequest] = []
    agent = _agent([[300, 8000]], window=1500, history=3, seen=seen)
    done = await agent.respond(Turn("answer", "use the tool"))
    assert done.text == "done" and len(seen) == 2
    first, second = seen
    assert [m.content for m in first.messages if m.role == "assistant"][:1] == ["answer 0"]
    assert not any(m.content.startswith("answer") for m in second.messages)  # memory went
    small, large = [m for m in second.messages if m.role == "tool"]
    assert CLIP_MARK not in small.content and "data data" in small.content  # kept whole
    assert CLIP_MARK in large.content and "more characters left out" in large.content
    assert large.content.startswith('<tool_output tool="fetch">\ndata')  # still fenced
    assert "</tool_output>" in large.content
    assert sum(estimate_message(m) for m in second.messages) <= 1500 - REQUEST_OVERHEAD


async def test_memory_is_trimmed_only_as_far_as_needed():
    seen: list[CompletionRequest] = []
    agent = _agent([[2600]], window=1000, history=6, seen=seen)
    await agent.respond(Turn("answer", "use the tool"))
    first, second = seen
    remembered = [m.content for m in first.messages if m.content.startswith("answer")]
    kept = [m.content for m in second.messages if m.content.startswith("answer")]
    assert 0 < len(kept) < len(remembered) and kept == remembered[-len(kept) :]  # newest stay
    assert all(CLIP_MARK not in m.content for m in second.messages)


async def test_a_turn_whose_calls_cannot_fit_fails_clearly():
    seen: list[CompletionRequest] = []

    def model(request: CompletionRequest) -> Completion:
        seen.append(request)
        calls = tuple(ToolCall(f"c{i}", "fetch", {"size": 1, "pad": "p" * 800}) for i in range(3))
        return Completion(text="", model="m", usage=Usage(1, 1), tool_calls=calls)

    agent = Agent("ada", FunctionBackend(model, tools=True), role="role", tools=[fetch])
    agent.memory.context_window = 500
    try:
        await agent.respond(Turn("answer", "use the tool"))
    except ContextLimitExceeded as e:
        assert "even with every tool result clipped" in str(e)
    else:
        raise AssertionError("the turn should not fit")
    assert len(seen) == 1  # the oversized follow-up was never sent
