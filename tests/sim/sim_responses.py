"""The Responses API on the wire: ``POST /v1/responses``, JSON or SSE (OpenAI and xAI).

It checks what the real API checks and a client most easily gets wrong: Chat Completions
fields (``messages``, ``max_tokens``, tools nested under ``function``), unknown input items
or tool types, a ``function_call_output`` with no ``function_call`` before it. A streamed
answer is the real sequence of typed events, ending with ``response.completed`` (no
``[DONE]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.sim import sim_openai
from tests.sim.sim_types import (
    ParsedRequest,
    ToolResult,
    compact_json,
    prompt_text,
    tokens_for_chars,
)
from tests.sim.sim_wire import Answer, dumps, split_json, split_text, sse, text_of

CALL_ID_PREFIX = "call_"
SEARCH_SOURCES = "web_search_call.action.sources"
"""The ``include`` value that puts each search's sources on its ``web_search_call``."""

_ROLES = ("user", "assistant", "system", "developer")
_WEB_SEARCH = ("web_search", "web_search_2025_08_26", "web_search_preview")
_WEB_SEARCH_FIELDS = frozenset(
    {
        "type",
        "filters",
        "search_context_size",
        "user_location",
        "external_web_access",
        "allowed_domains",  # xAI's flat domain lists
        "excluded_domains",
        "enable_image_understanding",
    }
)
_CHAT_ONLY = ("messages", "max_tokens", "max_completion_tokens", "stream_options", "n")


def parse(body: Mapping[str, Any], path: str) -> ParsedRequest:
    """Read a Responses request; ``ValueError`` (the API's 400) when it is not one."""
    model = body.get("model")
    if not isinstance(model, str):
        raise ValueError("Missing required parameter: 'model'.")
    for name in _CHAT_ONLY:
        if name in body:
            raise ValueError(f"Unsupported parameter: '{name}'.")
    raw = body.get("input")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise ValueError("Missing required parameter: 'input'.")
    system = [str(body["instructions"])] if body.get("instructions") else []
    out: list[tuple[str, str]] = []
    results: list[ToolResult] = []
    call_names: dict[str, str] = {}
    extra_chars = 0
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"Invalid type for 'input[{i}]': expected an object.")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in _ROLES:
                raise ValueError(f"Invalid value: '{role}'. Supported values are: {_ROLES}.")
            text = text_of(item.get("content"))
            if role in ("system", "developer"):
                system.append(text)
            else:
                out.append((str(role), text))
        elif kind == "function_call":
            for field in ("call_id", "name", "arguments"):
                if not isinstance(item.get(field), str):
                    raise ValueError(f"Missing required parameter: 'input[{i}].{field}'.")
            call_names[item["call_id"]] = item["name"]
            extra_chars += len(item["name"]) + len(item["arguments"])
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in call_names:
                raise ValueError(
                    f"No tool call found for function call output with call_id {call_id}."
                )
            output = text_of(item.get("output"))
            out.append(("tool", output))
            results.append(ToolResult(call_id, call_names[call_id], output))
        else:
            raise ValueError(f"Invalid value: '{kind}' for 'input[{i}].type'.")
    tools = body.get("tools") or []
    names = tuple(_tool_name(i, t) for i, t in enumerate(tools))
    _check_tool_choice(body.get("tool_choice"), names)
    system_text = "\n".join(system)
    chars = len(prompt_text(system_text, out)) + extra_chars
    chars += len(compact_json(tools)) if tools else 0
    return ParsedRequest(
        model=model,
        stream=bool(body.get("stream")),
        system=system_text,
        messages=tuple(out),
        tools=names,
        tool_results=tuple(results),
        prompt_tokens=tokens_for_chars(chars),
        search_sources=SEARCH_SOURCES in (body.get("include") or ()),
    )


def _tool_name(i: int, tool: Any) -> str:
    """A tool's name (``web_search`` for the search tool); ``ValueError`` for a bad one."""
    if not isinstance(tool, Mapping):
        raise ValueError(f"Invalid type for 'tools[{i}]': expected an object.")
    kind = tool.get("type")
    if kind == "function":
        if not isinstance(tool.get("name"), str) or "function" in tool:
            raise ValueError(f"Missing required parameter: 'tools[{i}].name'.")
        if not isinstance(tool.get("parameters"), Mapping):
            raise ValueError(f"Missing required parameter: 'tools[{i}].parameters'.")
        return str(tool["name"])
    if kind in _WEB_SEARCH:
        unknown = sorted(set(tool) - _WEB_SEARCH_FIELDS)
        if unknown:
            raise ValueError(f"Unknown parameter: 'tools[{i}].{unknown[0]}'.")
        filters = tool.get("filters") or {}
        allowed = filters.get("allowed_domains") if isinstance(filters, Mapping) else None
        if filters and not isinstance(allowed, list):
            raise ValueError(f"Invalid type for 'tools[{i}].filters.allowed_domains'.")
        if tool.get("allowed_domains") and tool.get("excluded_domains"):
            raise ValueError("Set allowed_domains or excluded_domains, not both.")
        return "web_search"
    raise ValueError(f"Invalid value: '{kind}' for 'tools[{i}].type'.")


def _check_tool_choice(choice: Any, names: tuple[str, ...]) -> None:
    if choice is None or choice in ("auto", "none", "required"):
        return
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        if choice.get("name") not in names:
            raise ValueError(f"Tool choice '{choice.get('name')}' not found in 'tools'.")
        return
    raise ValueError(f"Invalid value for 'tool_choice': {choice!r}.")


def error_body(status: int, message: str) -> bytes:
    """Errors look as on Chat Completions: ``{"error": {"message", "type", "code"}}``."""
    return sim_openai.error_body(status, message)


# -- rendering -------------------------------------------------------------------------------
def _items(answer: Answer) -> list[dict[str, Any]]:
    """The output items: one ``web_search_call`` per query, the message, the function calls."""
    tag = answer.response_id.removeprefix("resp_")
    items: list[dict[str, Any]] = []
    if answer.searched:
        for i, query in enumerate(answer.queries):
            action: dict[str, Any] = {"type": "search", "query": query}
            if answer.search_sources:
                action["sources"] = [{"type": "url", "url": u} for _, u in answer.sources]
            items.append(
                {
                    "type": "web_search_call",
                    "id": f"ws_{tag}_{i}",
                    "status": "completed",
                    "action": action,
                }
            )
    if answer.text or not answer.calls:
        annotations = [
            {
                "type": "url_citation",
                "start_index": 0,
                "end_index": len(answer.text),
                "url": u,
                "title": t,
            }
            for t, u in (answer.sources if answer.searched else ())
        ]
        items.append(
            {
                "type": "message",
                "id": f"msg_{tag}",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": answer.text,
                        "annotations": annotations,
                        "logprobs": [],
                    }
                ],
            }
        )
    for i, call in enumerate(answer.calls):
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{tag}_{i}",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments_json,
                "status": "completed",
            }
        )
    return items


def _response(answer: Answer, *, done: bool) -> dict[str, Any]:
    status = "incomplete" if answer.truncated else "completed"
    return {
        "id": answer.response_id,
        "object": "response",
        "created_at": answer.created,
        "status": status if done else "in_progress",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"}
        if done and answer.truncated
        else None,
        "model": answer.model,
        "output": _items(answer) if done else [],
        "parallel_tool_calls": True,
        "store": False,
        "usage": _usage(answer) if done else None,
    }


def _usage(answer: Answer) -> dict[str, Any]:
    return {
        "input_tokens": answer.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": answer.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def render(answer: Answer) -> bytes:
    return dumps(_response(answer, done=True))


def render_stream(answer: Answer) -> list[bytes]:
    """The typed events of a streamed answer, each with its ``sequence_number``."""
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": _response(answer, done=False)}),
        ("response.in_progress", {"response": _response(answer, done=False)}),
    ]
    for index, item in enumerate(_items(answer)):
        events += _item_events(index, item)
    final = "response.incomplete" if answer.truncated else "response.completed"
    events.append((final, {"response": _response(answer, done=True)}))
    return [
        sse({"type": kind, "sequence_number": n, **data}, event=kind)
        for n, (kind, data) in enumerate(events)
    ]


def _item_events(index: int, item: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    head = {"output_index": index, "item_id": item["id"]}
    kind = item["type"]
    if kind == "web_search_call":
        started = {**item, "status": "in_progress", "action": {"type": "search"}}
        middle = [
            (f"response.web_search_call.{step}", head)
            for step in ("in_progress", "searching", "completed")
        ]
    elif kind == "function_call":
        started = {**item, "status": "in_progress", "arguments": ""}
        middle = [
            ("response.function_call_arguments.delta", {**head, "delta": piece})
            for piece in split_json(item["arguments"])
        ]
        middle.append(
            ("response.function_call_arguments.done", {**head, "arguments": item["arguments"]})
        )
    else:
        started = {**item, "status": "in_progress", "content": []}
        part = item["content"][0]
        at = {**head, "content_index": 0}
        middle = [
            ("response.content_part.added", {**at, "part": {**part, "text": "", "annotations": []}})
        ]
        middle += [
            ("response.output_text.delta", {**at, "delta": piece, "logprobs": []})
            for piece in split_text(part["text"])
        ]
        middle += [
            (
                "response.output_text.annotation.added",
                {**at, "annotation_index": n, "annotation": a},
            )
            for n, a in enumerate(part["annotations"])
        ]
        middle.append(("response.output_text.done", {**at, "text": part["text"], "logprobs": []}))
        middle.append(("response.content_part.done", {**at, "part": part}))
    return [
        ("response.output_item.added", {"output_index": index, "item": started}),
        *middle,
        ("response.output_item.done", {"output_index": index, "item": item}),
    ]
