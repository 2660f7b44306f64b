"""What the adapters share for provider-side tools: sources, short result text, refusals.

A provider-side search has already happened when its answer arrives: massgen only reports
it (a :class:`~massgen.types.ServerToolCall`) and keeps the pages it rests on
(:class:`~massgen.types.Source`). Titles and URLs are web text: kept short, never obeyed.
"""

from __future__ import annotations

from collections.abc import Iterable

from massgen.errors import BadRequestError
from massgen.types import CompletionRequest, Source

MAX_SOURCES = 50
"""Sources kept per answer: a long research turn can cite hundreds."""

_MAX_TITLE = 200
_MAX_OUTPUT = 1000


def unique_sources(pairs: Iterable[tuple[str, str]]) -> tuple[Source, ...]:
    """``(url, title)`` pairs as sources, first occurrence of each URL kept, in order."""
    seen: dict[str, Source] = {}
    for url, title in pairs:
        if not url or url in seen:
            continue
        seen[url] = Source(url=url, title=" ".join(title.split())[:_MAX_TITLE])
        if len(seen) >= MAX_SOURCES:
            break
    return tuple(seen.values())


def results_text(pairs: Iterable[tuple[str, str]]) -> str:
    """Search results as ``title <url>`` lines, for events and the run record."""
    lines = [f"{' '.join(title.split())[:_MAX_TITLE]} <{url}>" for url, title in pairs if url]
    text = "\n".join(lines) if lines else "no results"
    return text if len(text) <= _MAX_OUTPUT else text[: _MAX_OUTPUT - 1] + "…"


def check_native(request: CompletionRequest, supported: Iterable[str], provider: str) -> None:
    """Refuse a request for a provider-side tool this adapter cannot declare.

    The agent asks only for what the backend advertises, so this guards direct callers.
    """
    known = set(supported)
    for tool in request.native_tools:
        if tool.name not in known:
            raise BadRequestError(
                f"the {provider} backend has no provider-side tool {tool.name!r}",
                provider=provider,
            )
