"""Anthropic Messages on the wire: ``POST /v1/messages``, JSON or SSE events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.sim.sim_types import (
    ParsedRequest,
    ToolResult,
    compact_json,
    prompt_text,
    tokens_for_chars,
)
from tests.sim.sim_wire import Answer, dumps, split_json, split_text, sse, text_of

CALL_ID_PREFIX = "toolu_"

SERVER_TOOLS = frozenset({"web_search_20250305", "web_search_20260209", "web_search_20260318"})
"""Web search server tool versions the simulated API accepts."""

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def parse(body: Mapping[str, Any], path: str) -> ParsedRequest:
    """Read a Messages request; ``ValueError`` when it is not one."""
    model = body.get("model")
    messages = body.get("messages")
    if not isinstance(model, str) or not isinstance(messages, list):
        raise ValueError("model: Field required; messages: Field required")
    if not isinstance(body.get("max_tokens"), int):
        raise ValueError("max_tokens: Field required")
    out: list[tuple[str, str]] = []
    results: list[ToolResult] = []
    call_names: dict[str, str] = {}
    extra_chars = 0
    for m, msg in enumerate(messages):
        role = "assistant" if msg.get("role") == "assistant" else "user"
        content = msg.get("content")
        pending: set[str] = set()
        if isinstance(content, str):
            out.append((role, content))
            continue
        texts: list[str] = []
        for block in content or ():
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text", ""))
            elif kind == "tool_use":
                call_names[block.get("id", "")] = block.get("name", "")
                extra_chars += len(block.get("name", "")) + len(compact_json(block.get("input")))
            elif kind == "server_tool_use":
                pending.add(block.get("id", ""))
            elif kind == "web_search_tool_result":
                pending.discard(block.get("tool_use_id", ""))
            elif kind == "tool_result":
                text = text_of(block.get("content"))
                call_id = block.get("tool_use_id", "")
                out.append(("tool", text))
                results.append(
                    ToolResult(
                        call_id, call_names.get(call_id, ""), text, bool(block.get("is_error"))
                    )
                )
        if pending:  # as the API says it
            raise ValueError(
                f"messages.{m}: `web_search` tool use with id {sorted(pending)[0]!r} was found "
                "without a corresponding `web_search_tool_result` block"
            )
        if texts or role == "assistant":
            out.append((role, "".join(texts)))
    system = text_of(body.get("system"))
    tools = body.get("tools") or []
    for i, tool in enumerate(tools):
        _check_tool(i, tool)
    chars = len(prompt_text(system, out)) + extra_chars
    chars += len(compact_json(tools)) if tools else 0
    return ParsedRequest(
        model=model,
        stream=bool(body.get("stream")),
        system=system,
        messages=tuple(out),
        tools=tuple(t.get("name", "") for t in tools),
        tool_results=tuple(results),
        prompt_tokens=tokens_for_chars(chars),
    )


def _check_tool(i: int, tool: Mapping[str, Any]) -> None:
    """Refuse tool declarations the API would refuse: a server tool of a known version
    named as documented, or a custom tool with an ``input_schema``."""
    kind = tool.get("type")
    if kind in SERVER_TOOLS:
        if tool.get("name") != "web_search":
            raise ValueError(f"tools.{i}.name: must be 'web_search' for {kind}")
    elif kind in (None, "custom"):
        if not isinstance(tool.get("input_schema"), Mapping):
            raise ValueError(f"tools.{i}.custom.input_schema: Field required")
    else:
        raise ValueError(f"tools.{i}: unknown tool type {kind!r}")


def _stop_reason(answer: Answer) -> str:
    if answer.pause:
        return "pause_turn"
    if answer.calls:
        return "tool_use"
    return "max_tokens" if answer.truncated else "end_turn"


def _usage(answer: Answer, output_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": answer.prompt_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": answer.cache_write,
        "cache_read_input_tokens": answer.cache_read,
    }
    if answer.cache_write_1h:  # the split by lifetime; answers from before it had none
        five = answer.cache_write - answer.cache_write_1h
        hour = answer.cache_write_1h
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": five,
            "ephemeral_1h_input_tokens": hour,
        }
    if answer.searched:
        usage["server_tool_use"] = {"web_search_requests": len(answer.queries)}
    return usage


def _search_blocks(answer: Answer) -> list[dict[str, Any]]:
    """One ``server_tool_use`` and its ``web_search_tool_result`` per query."""
    blocks: list[dict[str, Any]] = []
    for i, query in enumerate(answer.queries):
        use_id = f"srvtoolu_{answer.response_id.removeprefix('msg_')}_{i}"
        blocks.append(
            {
                "type": "server_tool_use",
                "id": use_id,
                "name": "web_search",
                "input": {"query": query},
            }
        )
        results = [
            {
                "type": "web_search_result",
                "title": title,
                "url": url,
                "encrypted_content": f"enc-{i}-{n}",
                "page_age": None,
            }
            for n, (title, url) in enumerate(answer.sources)
        ]
        blocks.append({"type": "web_search_tool_result", "tool_use_id": use_id, "content": results})
    return blocks


def _citations(answer: Answer) -> list[dict[str, Any]]:
    return [
        {
            "type": "web_search_result_location",
            "url": url,
            "title": title,
            "cited_text": answer.text[:40],
            "encrypted_index": f"idx-{n}",
        }
        for n, (title, url) in enumerate(answer.sources)
    ]


def _message(answer: Answer, content: list[dict[str, Any]], stop: str | None) -> dict[str, Any]:
    return {
        "id": answer.response_id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _usage(answer, answer.completion_tokens if stop else 1),
    }


def render(answer: Answer) -> bytes:
    content: list[dict[str, Any]] = []
    if answer.searched:
        content += _search_blocks(answer)
        if not answer.pause and (answer.text or not answer.calls):
            content.append({"type": "text", "text": answer.text, "citations": _citations(answer)})
    elif answer.text or not answer.calls:
        content.append({"type": "text", "text": answer.text})
    content += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)}
        for c in answer.calls
    ]
    return dumps(_message(answer, content, _stop_reason(answer)))


def render_stream(answer: Answer) -> list[bytes]:
    """message_start, one content block per text/tool call, message_delta, message_stop."""
    events = [
        sse({"type": "message_start", "message": _message(answer, [], None)}, "message_start"),
        sse({"type": "ping"}, "ping"),
    ]

    def block(index: int, start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        events.append(
            sse(
                {"type": "content_block_start", "index": index, "content_block": start},
                "content_block_start",
            )
        )
        for delta in deltas:
            events.append(
                sse(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )
            )
        events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))

    index = 0
    if answer.searched:
        for start in _search_blocks(answer):
            if start["type"] == "server_tool_use":
                query = compact_json(start["input"])
                deltas = [
                    {"type": "input_json_delta", "partial_json": p} for p in split_json(query)
                ]
                block(index, {**start, "input": {}}, deltas)
            else:
                block(index, start, [])
            index += 1
        if not answer.pause and (answer.text or not answer.calls):
            cites = [{"type": "citations_delta", "citation": c} for c in _citations(answer)]
            pieces = [{"type": "text_delta", "text": p} for p in split_text(answer.text)]
            block(index, {"type": "text", "text": "", "citations": []}, cites + pieces)
            index += 1
    elif answer.text or not answer.calls:
        pieces = [{"type": "text_delta", "text": p} for p in split_text(answer.text)]
        block(index, {"type": "text", "text": ""}, pieces)
        index += 1
    for call in answer.calls:
        start = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        pieces = [
            {"type": "input_json_delta", "partial_json": p} for p in split_json(call.arguments_json)
        ]
        block(index, start, pieces)
        index += 1
    delta = {"stop_reason": _stop_reason(answer), "stop_sequence": None}
    events.append(
        sse(
            {
                "type": "message_delta",
                "delta": delta,
                "usage": _usage(answer, answer.completion_tokens),
            },
            "message_delta",
        )
    )
    events.append(sse({"type": "message_stop"}, "message_stop"))
    return events


def error_body(status: int, message: str) -> bytes:
    kind = _ERROR_TYPES.get(status, "api_error")
    return dumps({"type": "error", "error": {"type": kind, "message": message}})
