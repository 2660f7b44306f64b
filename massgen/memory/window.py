"""Cutting a conversation to a token budget only between *blocks*: a tool-calling message
and its results stay together (providers refuse one without the other)."""

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
    """The newest whole blocks of ``history`` within ``budget`` tokens, as one unbroken stretch."""
    kept: list[list[ChatMessage]] = []
    used = 0
    for block in reversed(blocks(history)):
        size = sum(count(m) for m in block)
        if used + size > budget:
            break
        kept.append(block)
        used += size
    return [m for block in reversed(kept) for m in block]


@dataclass(frozen=True, slots=True)
class RequestWindow:
    """Keeps a tool loop's requests within the context window: before each follow-up it asks
    :attr:`opening` for the turn's opening messages with room left for its own."""

    limit: int  # tokens the messages may take: the window less the answer and overhead
    count: Count
    opening: Callable[[int], tuple[ChatMessage, ...]]
