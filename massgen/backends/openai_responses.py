"""The Responses API, for turns with a provider-side search (OpenAI's and xAI's
``web_search`` exist only there): our request as its body, its response as a Completion."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from massgen.backends._common import Draft, results_text, tool_call
from massgen.backends._errors import error_in_body, stream_incomplete
from massgen.errors import ProviderError
from massgen.types import ChatMessage, Completion, CompletionRequest, ServerToolCall, Usage

_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}
_FINAL_EVENTS = ("response.completed", "response.incomplete")


def input_items(messages: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    """Our conversation as ``input`` items, system turns in place (xAI takes no instructions)."""
    items: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            shown = [{"type": "input_image", "image_url": i.url} for i in m.images]
            output = [{"type": "input_text", "text": m.content}, *shown] if shown else m.content
            items.append({"type": "function_call_output", "output": output})
            items[-1]["call_id"] = m.tool_call_id or ""
            continue
        if m.role != "assistant" or not m.tool_calls or m.content:
            items.append({"role": m.role, "content": m.content})
        for call in m.tool_calls if m.role == "assistant" else ():
            items.append({"type": "function_call", "call_id": call.id, "name": call.name})
            items[-1]["arguments"] = json.dumps(dict(call.arguments))
    return items


def tool_choice(choice: str, *, nested: bool = False) -> Any:
    """Named: flat, or nested under ``function`` (Chat Completions)."""
    if choice in ("auto", "required", "none"):
        return choice
    return {"type": "function", **({"function": {"name": choice}} if nested else {"name": choice})}


def _reasoning_texts(item: Mapping[str, Any]) -> list[str]:
    """A ``reasoning`` item's summary parts (OpenAI's), else its ``reasoning_text`` parts."""

    def texts(parts: Any, kind: str | None) -> list[str]:
        return [
            str(p["text"])
            for p in parts or ()
            if isinstance(p, Mapping) and p.get("text") and kind in (None, p.get("type"))
        ]

    return texts(item.get("summary"), None) or texts(item.get("content"), "reasoning_text")


@dataclasses.dataclass(eq=False, slots=True)
class Assembly(Draft):
    """A response, whole or streamed (``response.completed`` carries the whole of it)."""

    summaries: dict[tuple[str, int], str] = dataclasses.field(default_factory=dict)  # by part
    final: Mapping[str, Any] | None = None

    def whole(self, data: Mapping[str, Any]) -> None:
        self.final = data

    def feed(self, event: Mapping[str, Any]) -> str:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            delta = str(event.get("delta") or "")
            self.text.append(delta)
            return delta
        if kind in ("response.reasoning_summary_text.done", "response.reasoning_text.done"):
            key = (str(event.get("item_id") or ""), int(event.get("summary_index") or 0))
            self.summaries[key] = str(event.get("text") or "")
        if kind in _FINAL_EVENTS:
            self.final = event.get("response") or {}
        elif kind == "response.failed":
            raise response_error((event.get("response") or {}).get("error"), provider=self.provider)
        elif kind == "error":
            raise response_error(event, provider=self.provider)
        return ""

    def completion(self, request: CompletionRequest, latency: float) -> Completion:
        data = self.final
        if data is None:  # the stream was cut off
            raise stream_incomplete(self.provider)
        if data.get("status") == "failed":
            raise response_error(data.get("error"), provider=self.provider)
        texts: list[str] = []
        cited: list[tuple[str, str]] = []
        found: list[tuple[str, str]] = []
        thoughts: list[str] = []
        for item in data.get("output") or ():
            kind = item.get("type")
            if kind == "reasoning":
                thoughts += _reasoning_texts(item)
            elif kind == "message":
                for part in item.get("content") or ():
                    if part.get("type") == "output_text":
                        texts.append(str(part.get("text") or ""))
                        cited += url_pairs(part.get("annotations"), "url_citation")
            elif kind == "function_call":
                call_id = item.get("call_id") or item.get("id")
                self.calls.append(tool_call(call_id, item.get("name"), item.get("arguments")))
            elif kind == "web_search_call":
                action = item.get("action")
                pairs = url_pairs(action.get("sources") if isinstance(action, Mapping) else ())
                found += pairs
                self.searches.append(_search(item, pairs))
        last = self.searches[-1] if self.searches else None
        if last and last.ok and cited and not found:
            # The provider did not list what the searches found: report what the answer cites.
            self.searches[-1] = dataclasses.replace(last, output=results_text(cited))
        if "".join(texts):  # a server may leave the final output or its reasoning items empty
            self.text = texts
        self.reasoning = thoughts or list(self.summaries.values())
        self.found = [*cited, *found]
        self.usage, self.finish = usage(data.get("usage")), _finish(data)
        self.model = str(data.get("model") or self.model)
        return self.build(request, latency, joiner="\n\n")


def response_error(error: Any, *, provider: str) -> ProviderError:
    """A failed response's (or ``error`` event's) error: most codes name a bad request."""
    if isinstance(error, Mapping) and isinstance(error.get("error"), Mapping):
        error = error["error"]  # an ``error`` event: {"type": "error", "error": {...}}
    return error_in_body(error, provider=provider, default_status=400)


def url_pairs(items: Any, kind: str | None = None) -> list[tuple[str, str]]:
    """``(url, title)`` of annotations of ``kind`` (or of every source, with ``None``)."""
    return [
        (str(a.get("url") or ""), str(a.get("title") or ""))
        for a in items or ()
        if isinstance(a, Mapping) and kind in (None, a.get("type"))
    ]


def _search(item: Mapping[str, Any], pairs: list[tuple[str, str]]) -> ServerToolCall:
    action = item.get("action")
    arguments: dict[str, Any] = {}
    if isinstance(action, Mapping):
        for key in ("query", "queries", "url", "pattern"):
            if action.get(key):
                arguments[key] = action[key]
        if action.get("type") not in (None, "search"):
            arguments["action"] = action["type"]
    status = str(item.get("status") or "completed")
    ok, call_id = status == "completed", str(item.get("id") or "web_search")
    output = results_text(pairs) if ok else status
    return ServerToolCall(call_id, "web_search", arguments, ok, output)


def usage(data: Any) -> Usage:
    """Usage as Chat Completions (``prompt_tokens``, ``prompt_tokens_details``...) or Responses
    (``input_tokens``, ``input_tokens_details``...) says; both count cached tokens within the
    prompt and reasoning tokens within the answer. DeepSeek's ``prompt_cache_hit_tokens``
    stands in for the cached count where no details came."""
    if not isinstance(data, Mapping):
        return Usage()
    prompt = _count(data, "prompt_tokens") or _count(data, "input_tokens")
    output = _count(data, "completion_tokens") or _count(data, "output_tokens")
    inputs = data.get("prompt_tokens_details") or data.get("input_tokens_details")
    outputs = data.get("completion_tokens_details") or data.get("output_tokens_details")
    cached = _count(inputs, "cached_tokens") or _count(data, "prompt_cache_hit_tokens")
    # A part is never more than its whole (OpenRouter has reported more reasoning than output).
    return Usage(
        prompt, output, min(cached, prompt), min(_count(outputs, "reasoning_tokens"), output)
    )


def _count(data: Any, key: str) -> int:
    """A token count of a usage object; 0 where it is missing, null or not a number."""
    value = data.get(key) if isinstance(data, Mapping) else None
    if type(value) is int:
        return value if value > 0 else 0
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _finish(data: Mapping[str, Any]) -> str:
    status = data.get("status")
    if status == "incomplete":
        details = data.get("incomplete_details") or {}
        return _INCOMPLETE.get(str(details.get("reason") or ""), "incomplete")
    return "stop" if status == "completed" else "other"
