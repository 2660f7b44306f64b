"""One agent turn against a backend: the request, streamed, until a final answer.

With tools of the agent's own a turn is a loop: send the tools, run the calls the model
makes (concurrently), send back one result per call, ask again; at most ``max_iterations``
rounds, then one last request with ``tool_choice="none"``. A turn carrying its own tools (a
consensus vote) is a structured reply the strategy reads: those calls are never run.
Every follow-up request fits the context window: earlier-turn memory is trimmed first, then
the largest tool results clipped; if even that does not fit, :class:`ContextLimitExceeded`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from massgen import events as ev
from massgen.backends.base import Backend
from massgen.errors import ContextLimitExceeded, ProviderConnectionError
from massgen.memory.window import RequestWindow
from massgen.tools.context import ToolContext
from massgen.types import ChatMessage, Completion, CompletionRequest, Source, Usage

if TYPE_CHECKING:
    from massgen.tools.runner import ToolBox

OnDelta = Callable[[str], None]
OnEvent = Callable[[ev.Event], None]

DEFAULT_MAX_TOOL_ITERATIONS = 8
"""Rounds of tool calls one turn may make before the model is asked to answer."""


async def stream_once(
    backend: Backend, request: CompletionRequest, on_delta: OnDelta | None = None
) -> Completion:
    """Send ``request``; return the final completion. Streamed only when someone listens
    (``on_delta``): a plain request costs a fraction of the CPU of parsing every chunk."""
    if on_delta is None:
        return await backend.complete(request)
    completion: Completion | None = None
    async for chunk in backend.stream(request):
        if chunk.delta:
            on_delta(chunk.delta)
        if chunk.completion is not None:
            completion = chunk.completion
    if completion is None:
        raise ProviderConnectionError(
            "the stream ended without a final answer", provider=backend.provider
        )
    return completion


async def run_turn(
    backend: Backend,
    request: CompletionRequest,
    on_delta: OnDelta | None = None,
    *,
    tools: ToolBox | None = None,
    ctx: ToolContext | None = None,
    max_iterations: int = DEFAULT_MAX_TOOL_ITERATIONS,
    window: RequestWindow | None = None,
) -> Completion:
    """Answer one turn; the completion carries the usage and latency of all its requests.

    ``ctx`` goes to every tool call; ``ctx.emit`` gets a ``ToolCalled`` and a ``ToolResult``
    per call. ``window`` bounds the follow-up requests (``request`` is sent as it is)."""
    if not tools or request.tools:
        return await stream_once(backend, request, on_delta)
    request = dataclasses.replace(
        request, tools=tools.specs(), tool_choice=request.tool_choice or "auto"
    )
    ctx = ctx or ToolContext()
    backend, request = tools.plan(backend, request, ctx)
    return await _loop(backend, request, on_delta, tools, ctx, max_iterations, window)


async def _loop(
    backend: Backend,
    request: CompletionRequest,
    on_delta: OnDelta | None,
    tools: ToolBox,
    ctx: ToolContext,
    max_iterations: int,
    window: RequestWindow | None,
) -> Completion:
    opening = request.messages
    messages: list[ChatMessage] = []  # the loop's own: calls and their results
    usage, latency, cached, requests = Usage(), 0.0, True, 0
    thoughts: list[str] = []  # each request's reasoning, kept for the record
    sources: dict[str, Source] = {}  # every request's, on the answer
    emit, agent = ctx.emit, ctx.agent
    for rounds in range(max_iterations + 1):
        sent = (
            opening if not messages else _fit(window, messages) if window else (*opening, *messages)
        )
        # Past the bound, one last request: tools still declared (the history refers to
        # them) but not callable.
        choice = "none" if rounds == max_iterations else request.tool_choice
        done = await stream_once(
            backend, dataclasses.replace(request, messages=sent, tool_choice=choice), on_delta
        )
        usage, latency, cached = usage + done.usage, latency + done.latency, cached and done.cached
        requests += done.requests
        if done.reasoning:
            thoughts.append(done.reasoning)
        for source in done.sources:
            sources.setdefault(source.url, source)
        if emit is not None and not done.cached:  # searches the provider ran for the model
            for server in done.server_calls:
                _called(emit, agent, server.id, server.name, server.arguments)
                emit(_result(agent, server.id, server.name, server.ok, 0.0, server.output))
        if not done.tool_calls or rounds == max_iterations:
            break
        messages.append(ChatMessage("assistant", done.text, tool_calls=done.tool_calls))
        if emit is not None:
            for call in done.tool_calls:
                _called(emit, agent, call.id, call.name, call.arguments)
        for outcome in await tools.call_all(done.tool_calls, ctx):
            call = outcome.call
            if emit is not None:
                emit(
                    _result(agent, call.id, call.name, outcome.ok, outcome.duration, outcome.output)
                )
            messages.append(
                ChatMessage("tool", outcome.content, tool_call_id=call.id, name=call.name)
            )
    if rounds == max_iterations:
        text = done.text or f"[stopped: tool-call limit of {max_iterations} rounds reached]"
        done = dataclasses.replace(
            done, text=text, tool_calls=(), finish_reason="stop" if done.text else "other"
        )
    return dataclasses.replace(
        done,
        usage=usage,
        latency=latency,
        cached=cached,
        requests=requests,
        reasoning="\n\n".join(thoughts),
        sources=tuple(sources.values()),
    )


def short_args(arguments: object, limit: int = 200) -> str:
    """Arguments as compact JSON, cut for events and logs."""
    text = json.dumps(arguments, ensure_ascii=False, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _called(emit: OnEvent, agent: str, call_id: str, name: str, arguments: object) -> None:
    emit(ev.ToolCalled(agent=agent, tool=name, call_id=call_id, args=short_args(arguments)))


def _result(agent: str, call_id: str, name: str, ok: bool, took: float, out: str) -> ev.Event:
    return ev.ToolResult(
        agent=agent, tool=name, call_id=call_id, ok=ok, duration=took, output=out[:300]
    )


CLIPPED = "\n[clipped to fit the context window: {n} more characters left out]"
_CLIPPED = re.compile(r"\n\[clipped to fit the context window: (\d+) more characters left out\]$")
_FENCE_END = "\n</tool_output>"


def _fit(window: RequestWindow, loop: list[ChatMessage]) -> tuple[ChatMessage, ...]:
    """The next request of a tool loop within ``window``: the opening messages with as
    much earlier-turn memory as fits beside ``loop``, else the role and prompt alone with
    the largest tool results clipped (in ``loop`` itself, so later requests keep them
    clipped). Raises :class:`ContextLimitExceeded` when even that does not fit."""
    count = window.count
    need = sum(count(m) for m in loop)
    opening = window.opening(need)
    excess = sum(count(m) for m in opening) + need - window.limit
    if excess <= 0:
        return (*opening, *loop)
    results = [i for i, m in enumerate(loop) if m.role == "tool"]
    for i in sorted(results, key=lambda i: (-count(loop[i]), i)):  # largest, then oldest
        before = count(loop[i])
        loop[i] = _clip(loop[i], max(0, before - excess), count)
        excess -= before - count(loop[i])
        if excess <= 0:
            return (*opening, *loop)
    raise ContextLimitExceeded(
        f"this turn's tool calls and results need {excess} tokens more than the context "
        f"window leaves ({window.limit} for the messages), even with every tool result "
        "clipped and no earlier turns; lower max_tool_iterations or max_tokens, or use a "
        "model with a larger window"
    )


def _clip(message: ChatMessage, budget: int, count: Callable[[ChatMessage], int]) -> ChatMessage:
    """``message`` (a tool result) with its output cut so that it counts at most ``budget``
    tokens if it can, keeping the fence and saying how much was left out."""
    if count(message) <= budget:
        return message
    content = message.content
    start = content.find(">\n") + 2 if content.startswith("<tool_output") else 0
    end = content.rfind(_FENCE_END)
    if start < 2 or end < start:
        start, end = 0, len(content)
    head, body, tail = content[:start], content[start:end], content[end:]
    omitted = 0
    if found := _CLIPPED.search(body):  # clipped before: cut further
        omitted, body = int(found.group(1)), body[: found.start()]

    def cut(keep: int) -> ChatMessage:
        text = body[:keep] + CLIPPED.format(n=omitted + len(body) - keep)
        return dataclasses.replace(message, content=head + text + tail)

    lo, hi = 0, len(body)
    while lo < hi:  # the longest prefix that fits
        mid = (lo + hi + 1) // 2
        if count(cut(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return cut(lo)
