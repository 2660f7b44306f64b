"""One agent turn against a backend, until a final answer. With the agent's own tools it
is a loop (run the calls, send the results, ask again; after ``max_iterations`` rounds one
last request with ``tool_choice="none"``), each follow-up fitted to the context window. A
turn carrying its own tools (a consensus vote) is a structured reply: never run."""

from __future__ import annotations

import bisect
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

DEFAULT_MAX_TOOL_ITERATIONS = 8  # rounds of tool calls a turn may make before it must answer


async def stream_once(
    backend: Backend, request: CompletionRequest, on_delta: OnDelta | None = None
) -> Completion:
    """The final completion of ``request``, streamed only when ``on_delta`` listens (cheaper)."""
    if on_delta is None:
        return await backend.complete(request)
    completion: Completion | None = None
    async for chunk in backend.stream(request):
        if chunk.delta:
            on_delta(chunk.delta)
        if chunk.completion is not None:
            completion = chunk.completion
    if completion is None:
        why = "the stream ended without a final answer"
        raise ProviderConnectionError(why, provider=backend.provider)
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
    ``ctx.emit`` hears each tool call and result; ``window`` bounds the follow-ups."""
    if not tools or request.tools:
        return await stream_once(backend, request, on_delta)
    await tools.ready(ctx)
    asked = request.tool_choice or "auto"
    request = dataclasses.replace(request, tools=tools.specs(), tool_choice=asked)
    ctx = ctx or ToolContext()
    backend, request = tools.plan(backend, request, ctx)
    opening = request.messages
    messages: list[ChatMessage] = []  # the loop's own: calls and their results
    dones: list[Completion] = []  # every request's answer: their usage, reasoning, sources
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
        dones.append(done)
        if emit is not None and not done.cached:  # searches the provider ran for the model
            for server in done.server_calls:
                _called(emit, agent, server.id, server.name, server.arguments)
                _result(emit, agent, server.id, server.name, server.ok, 0.0, server.output)
        if not done.tool_calls or rounds == max_iterations:
            break
        messages.append(ChatMessage("assistant", done.text, tool_calls=done.tool_calls))
        if emit is not None:
            for call in done.tool_calls:
                _called(emit, agent, call.id, call.name, call.arguments)
        for result in await tools.call_all(done.tool_calls, ctx, images=backend.tool_images):
            call = result.call
            if emit is not None:
                _result(emit, agent, call.id, call.name, result.ok, result.duration, result.output)
            messages.append(
                ChatMessage("tool", result.content, (), call.id, call.name, result.images)
            )
    if rounds == max_iterations:
        text = done.text or f"[stopped: tool-call limit of {max_iterations} rounds reached]"
        done = dataclasses.replace(
            done, text=text, tool_calls=(), finish_reason="stop" if done.text else "other"
        )
    sources: dict[str, Source] = {}
    for source in (source for d in dones for source in d.sources):
        sources.setdefault(source.url, source)
    return dataclasses.replace(
        done,
        usage=sum((d.usage for d in dones), Usage()),
        latency=sum(d.latency for d in dones),
        cached=all(d.cached for d in dones),
        requests=sum(d.requests for d in dones),
        reasoning="\n\n".join(d.reasoning for d in dones if d.reasoning),
        sources=tuple(sources.values()),
    )


def _called(emit: ev.Subscriber, agent: str, call_id: str, name: str, arguments: object) -> None:
    args = json.dumps(arguments, ensure_ascii=False, default=str, separators=(",", ":"))
    args = args if len(args) <= 200 else args[:199] + "…"
    emit(ev.ToolCalled(agent=agent, tool=name, call_id=call_id, args=args))


def _result(
    emit: ev.Subscriber, agent: str, call_id: str, name: str, ok: bool, took: float, out: str
) -> None:
    out = out[:300]  # the start of the result (or the error)
    emit(ev.ToolResult(agent=agent, tool=name, call_id=call_id, ok=ok, duration=took, output=out))


CLIPPED = "\n[clipped to fit the context window: {n} more characters left out]"
_CLIPPED = re.compile(r"\n\[clipped to fit the context window: (\d+) more characters left out\]$")
_FENCE_END = "\n</tool_output>"


def _fit(window: RequestWindow, loop: list[ChatMessage]) -> tuple[ChatMessage, ...]:
    """The next request of a tool loop within ``window``: earlier-turn memory trimmed first,
    then the largest tool results clipped (in ``loop``, so they stay clipped)."""
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
    """``message`` (a tool result) cut to ``budget`` tokens if it can be, fence kept."""
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

    fits = bisect.bisect_right(range(len(body) + 1), budget, key=lambda keep: count(cut(keep)))
    return cut(max(fits - 1, 0))  # the longest prefix that fits
