"""Cutting a conversation to a token budget without breaking it.

A conversation is cut only between *blocks*: an assistant message that calls tools is one
block with the tool results that answer it, so a call is never separated from its result
(providers refuse a result without its call, and a call without its result); every other
message is a block of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from massgen.types import ChatMessage

Count = Callable[[ChatMessage], int]


def blocks(messages: Sequence[ChatMessage]) -> list[list[ChatMessage]]:
    """``messages`` grouped into the units a window may keep or drop."""
    out: list[list[ChatMessage]] = []
    for message in messages:
        if message.role == "tool" and out and _open_calls(out[-1]):
            out[-1].append(message)
        else:
            out.append([message])
    return out


def _open_calls(block: list[ChatMessage]) -> bool:
    head = block[0]
    if head.role != "assistant" or not head.tool_calls:
        return False
    answered = {m.tool_call_id for m in block[1:]}
    return any(call.id not in answered for call in head.tool_calls)


def newest_fitting(history: Sequence[ChatMessage], budget: int, count: Count) -> list[ChatMessage]:
    """The newest whole blocks of ``history`` whose tokens add up to at most ``budget``.

    Blocks are taken from the newest backwards and the first that does not fit stops the
    walk: what is kept is always a contiguous, most recent stretch of the conversation.
    """
    kept: list[list[ChatMessage]] = []
    used = 0
    for block in reversed(blocks(history)):
        size = sum(count(m) for m in block)
        if used + size > budget:
            break
        kept.append(block)
        used += size
    return [m for block in reversed(kept) for m in block]


def sliding_window(
    system: Sequence[ChatMessage],
    history: Sequence[ChatMessage],
    size: int,
    count: Count,
) -> list[ChatMessage]:
    """The system messages, then the newest blocks of ``history`` that fit ``size`` tokens
    with them (the system prompt is always kept, even when it alone exceeds ``size``)."""
    fixed = sum(count(m) for m in system)
    return [*system, *newest_fitting(history, max(0, size - fixed), count)]


@dataclass(frozen=True, slots=True)
class RequestWindow:
    """What keeps every request of one turn within the model's context window.

    A tool loop adds the model's calls and their results to the turn's opening messages;
    before each follow-up request it asks :attr:`opening` for those messages with room left
    for its own (earlier-turn memory trimmed as needed, down to the role and prompt alone).
    """

    limit: int
    """Tokens the messages may take: the window less the reserved answer and overhead."""
    count: Count
    opening: Callable[[int], tuple[ChatMessage, ...]]
