"""One agent turn against a backend: the request, streamed, until a final answer.

Kept apart from :class:`~massgen.agents.agent.Agent` because this is where the tool-call
loop lives: the agent decides *what* to send, this module runs the exchange.

With tools of the agent's own, a turn is a loop: send the tools, run the calls the model
makes (several at once when it makes several), send back one result per call, ask again;
at most ``max_iterations`` rounds of calls, then one last request with ``tool_choice``
``"none"`` so the model answers with what it has.

A turn that carries its own tools (a consensus review asking for ``vote``/``revise``) is a
structured reply the strategy reads: those calls are never executed, and the agent's own
tools are not offered in it.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from massgen import events as ev
from massgen.backends.base import Backend
from massgen.errors import ProviderConnectionError
from massgen.tools.scope import calling_agent, turn_state_var
from massgen.types import ChatMessage, Completion, CompletionRequest, Usage

if TYPE_CHECKING:
    from massgen.tools.runner import ToolBox

OnDelta = Callable[[str], None]
OnEvent = Callable[[ev.Event], None]

DEFAULT_MAX_TOOL_ITERATIONS = 8
"""Rounds of tool calls one turn may make before the model is asked to answer."""

tool_listener: contextvars.ContextVar[OnEvent | None] = contextvars.ContextVar(
    "massgen_tool_listener", default=None
)
"""Where a local agent's tool events go during a strategy's call (set by the run context)."""

peer_handles: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "massgen_peer_handles", default=None
)
"""The run's agent handles (local or remote) during a strategy's call: ``ask_agent`` reaches
teammates through them (set by the run context)."""


async def stream_once(
    backend: Backend, request: CompletionRequest, on_delta: OnDelta | None = None
) -> Completion:
    """Send ``request``; return the final completion.

    Streamed when someone listens (``on_delta``: the live view shows tokens as they come);
    otherwise one plain request, which costs a fraction of the CPU of parsing every chunk
    (a batch of thousands of turns, a ``--quiet`` run).
    """
    if on_delta is None:
        return await backend.complete(request)
    completion: Completion | None = None
    async for chunk in backend.stream(request):
        if chunk.delta and on_delta is not None:
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
    on_event: OnEvent | None = None,
    agent: str = "",
    max_iterations: int = DEFAULT_MAX_TOOL_ITERATIONS,
) -> Completion:
    """Answer one turn. Without tools of the agent's own this is one streamed request.

    ``on_event`` gets a :class:`~massgen.events.ToolCalled` and a
    :class:`~massgen.events.ToolResult` per call, named after ``agent``. The completion
    returned carries the usage and latency of every request the turn made.
    """
    if not tools or request.tools:
        return await stream_once(backend, request, on_delta)
    request = dataclasses.replace(
        request, tools=tools.specs(), tool_choice=request.tool_choice or "auto"
    )
    caller = calling_agent.set(agent)
    shared = turn_state_var.get()
    state = turn_state_var.set(shared if shared is not None else {})
    try:
        return await _loop(backend, request, on_delta, tools, on_event, agent, max_iterations)
    finally:
        calling_agent.reset(caller)
        turn_state_var.reset(state)


async def _loop(
    backend: Backend,
    request: CompletionRequest,
    on_delta: OnDelta | None,
    tools: ToolBox,
    on_event: OnEvent | None,
    agent: str,
    max_iterations: int,
) -> Completion:
    messages = list(request.messages)
    usage = Usage()
    latency = 0.0
    cached = True
    for _ in range(max_iterations):
        done = await stream_once(
            backend, dataclasses.replace(request, messages=tuple(messages)), on_delta
        )
        usage, latency, cached = usage + done.usage, latency + done.latency, cached and done.cached
        if not done.tool_calls:
            return dataclasses.replace(done, usage=usage, latency=latency, cached=cached)
        messages.append(ChatMessage("assistant", done.text, tool_calls=done.tool_calls))
        if on_event is not None:
            from massgen.tools.runner import short_args

            for call in done.tool_calls:
                on_event(
                    ev.ToolCalled(
                        agent=agent,
                        tool=call.name,
                        call_id=call.id,
                        args=short_args(call.arguments),
                    )
                )
        for outcome in await tools.call_all(done.tool_calls):
            call = outcome.call
            if on_event is not None:
                on_event(
                    ev.ToolResult(
                        agent=agent,
                        tool=call.name,
                        call_id=call.id,
                        ok=outcome.ok,
                        duration=outcome.duration,
                        output=outcome.output[:300],
                    )
                )
            messages.append(
                ChatMessage("tool", outcome.content, tool_call_id=call.id, name=call.name)
            )
    # The bound is reached: one last request, tools still declared (the history refers to
    # them) but not callable.
    last = await stream_once(
        backend,
        dataclasses.replace(request, messages=tuple(messages), tool_choice="none"),
        on_delta,
    )
    usage, latency, cached = usage + last.usage, latency + last.latency, cached and last.cached
    text = last.text or f"[stopped: tool-call limit of {max_iterations} rounds reached]"
    return dataclasses.replace(
        last,
        text=text,
        tool_calls=(),
        finish_reason="stop" if last.text else "other",
        usage=usage,
        latency=latency,
        cached=cached,
    )
