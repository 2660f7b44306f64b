"""OpenAI Chat Completions on the wire: ``POST /v1/chat/completions``, JSON or SSE."""

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

CALL_ID_PREFIX = "call_"

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def parse(body: Mapping[str, Any], path: str) -> ParsedRequest:
    """Read a chat completions request; ``ValueError`` when it is not one."""
    model = body.get("model")
    messages = body.get("messages")
    if not isinstance(model, str) or not isinstance(messages, list):
        raise ValueError("'model' (string) and 'messages' (array) are required")
    system: list[str] = []
    out: list[tuple[str, str]] = []
    results: list[ToolResult] = []
    call_names: dict[str, str] = {}
    extra_chars = 0
    for msg in messages:
        role = msg.get("role")
        text = text_of(msg.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role == "assistant":
            out.append(("assistant", text))
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") or {}
                call_names[call.get("id", "")] = fn.get("name", "")
                extra_chars += len(fn.get("name", "")) + len(fn.get("arguments", ""))
        elif role in ("tool", "function"):
            parts = msg.get("content") if isinstance(msg.get("content"), list) else []
            if any(isinstance(p, Mapping) and p.get("type") != "text" for p in parts):
                raise ValueError(  # as the API: images go in a user message
                    f"Image URLs are only allowed for messages with role 'user', but this "
                    f"message with role '{role}' contains an image URL."
                )
            out.append(("tool", text))
            call_id = msg.get("tool_call_id", "")
            name = call_names.get(call_id, msg.get("name", ""))
            results.append(ToolResult(call_id, name, text))
        else:
            out.append(("user", text))
    tools = body.get("tools") or []
    if "web_search_options" in body:  # as OpenAI: search models only, and no function tools
        if "search" not in model:
            raise ValueError(f"web_search_options is not supported with the model {model}")
        if tools:
            raise ValueError(f"tools are not supported with the model {model}")
    names = tuple(t.get("function", {}).get("name", "") for t in tools if t.get("type", "function"))
    system_text = "\n".join(system)
    chars = len(prompt_text(system_text, out)) + extra_chars
    chars += len(compact_json(tools)) if tools else 0
    stream_options = body.get("stream_options") or {}
    return ParsedRequest(
        model=model,
        stream=bool(body.get("stream")),
        system=system_text,
        messages=tuple(out),
        tools=names,
        tool_results=tuple(results),
        prompt_tokens=tokens_for_chars(chars),
        include_usage=bool(stream_options.get("include_usage")),
    )


def _finish(answer: Answer) -> str:
    if answer.calls:
        return "tool_calls"
    return "length" if answer.truncated else "stop"


def _usage(answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def render(answer: Answer) -> bytes:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.text if answer.text or not answer.calls else None,
        "refusal": None,
    }
    if answer.searched:
        message["annotations"] = _annotations(answer)
    if answer.calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments_json},
            }
            for c in answer.calls
        ]
    return dumps(
        {
            "id": answer.response_id,
            "object": "chat.completion",
            "created": answer.created,
            "model": answer.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _finish(answer),
                }
            ],
            "usage": _usage(answer),
            "system_fingerprint": "fp_massgen_sim",
        }
    )


def render_stream(answer: Answer) -> list[bytes]:
    """The chunks of a streamed answer, ending with ``data: [DONE]``.

    With ``stream_options.include_usage`` every chunk carries ``"usage": null`` and a last
    chunk with no choices carries the usage, as OpenAI does.
    """
    base: dict[str, Any] = {
        "id": answer.response_id,
        "object": "chat.completion.chunk",
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": "fp_massgen_sim",
    }
    if answer.include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({**base, "choices": [choice]})

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in split_text(answer.text)]
    for i, call in enumerate(answer.calls):
        head = {"index": i, "id": call.id, "type": "function"}
        events.append(
            chunk({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]})
        )
        events += [
            chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
            for piece in split_json(call.arguments_json)
        ]
    if answer.searched:
        events.append(chunk({"annotations": _annotations(answer)}))
    events.append(chunk({}, _finish(answer)))
    if answer.include_usage:
        events.append(sse({**base, "choices": [], "usage": _usage(answer)}))
    events.append(sse("[DONE]"))
    return events


def _annotations(answer: Answer) -> list[dict[str, Any]]:
    return [
        {
            "type": "url_citation",
            "url_citation": {"start_index": 0, "end_index": len(answer.text), "title": t, "url": u},
        }
        for t, u in answer.sources
    ]


def error_body(status: int, message: str) -> bytes:
    kind, code = _ERROR_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})
