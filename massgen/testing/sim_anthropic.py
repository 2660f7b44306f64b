"""Anthropic Messages on the wire: ``POST /v1/messages``, JSON or SSE events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from massgen.testing.sim_types import (
    ParsedRequest,
    ToolResult,
    compact_json,
    prompt_text,
    tokens_for_chars,
)
from massgen.testing.sim_wire import Answer, dumps, split_json, split_text, sse, text_of

CALL_ID_PREFIX = "toolu_"

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
    for msg in messages:
        role = "assistant" if msg.get("role") == "assistant" else "user"
        content = msg.get("content")
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
            elif kind == "tool_result":
                text = text_of(block.get("content"))
                call_id = block.get("tool_use_id", "")
                out.append(("tool", text))
                results.append(
                    ToolResult(
                        call_id, call_names.get(call_id, ""), text, bool(block.get("is_error"))
                    )
                )
        if texts or role == "assistant":
            out.append((role, "".join(texts)))
    system = text_of(body.get("system"))
    tools = body.get("tools") or []
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


def _stop_reason(answer: Answer) -> str:
    if answer.calls:
        return "tool_use"
    return "max_tokens" if answer.truncated else "end_turn"


def _usage(answer: Answer, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": answer.prompt_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


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
    if answer.text or not answer.calls:
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
    if answer.text or not answer.calls:
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
