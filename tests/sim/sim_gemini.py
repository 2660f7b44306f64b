"""Gemini (Google AI) on the wire: ``POST /{version}/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``.

google-genai given ``http_options={"base_url": sim.gemini_base_url}`` and an API key posts to
``{base_url}/{api_version}/models/{model}:…`` (``api_version`` defaults to ``v1`` in 3.x; any
``v1``, ``v1beta``, ``v1alpha``… prefix is accepted) with the key in ``x-goog-api-key``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from tests.sim.sim_types import (
    ParsedRequest,
    ToolResult,
    compact_json,
    prompt_text,
    tokens_for_chars,
)
from tests.sim.sim_wire import Answer, dumps, split_text, sse, text_of

CALL_ID_PREFIX = "fc_"

PATH = re.compile(
    r"^/(v\d+(?:alpha|beta)?\d*)/models/([^:/]+):(generateContent|streamGenerateContent)$"
)

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def parse(body: Mapping[str, Any], path: str) -> ParsedRequest:
    """Read a generateContent request; the model and streaming come from ``path``."""
    found = PATH.match(path)
    if not found:
        raise ValueError(f"not a Gemini path: {path}")
    model = unquote(found.group(2))
    contents = body.get("contents")
    if not isinstance(contents, list):
        raise ValueError("* GenerateContentRequest.contents: contents is not specified")
    out: list[tuple[str, str]] = []
    results: list[ToolResult] = []
    extra_chars = 0
    for content in contents:
        role = "assistant" if content.get("role") == "model" else "user"
        texts: list[str] = []
        for part in content.get("parts") or ():
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif call := part.get("functionCall") or part.get("function_call"):
                extra_chars += len(call.get("name", "")) + len(compact_json(call.get("args")))
            elif response := part.get("functionResponse") or part.get("function_response"):
                text = compact_json(response.get("response"))
                out.append(("tool", text))
                results.append(ToolResult(response.get("id") or "", response.get("name", ""), text))
        if texts or role == "assistant":
            out.append((role, "".join(texts)))
    instruction = body.get("systemInstruction") or body.get("system_instruction") or {}
    system = text_of(instruction.get("parts")) if isinstance(instruction, Mapping) else ""
    tools = body.get("tools") or []
    _check_tools(model, tools, body.get("toolConfig") or body.get("tool_config") or {})
    names = tuple(
        decl.get("name", "")
        for tool in tools
        for decl in (tool.get("functionDeclarations") or tool.get("function_declarations") or ())
    )
    chars = len(prompt_text(system, out)) + extra_chars
    chars += len(compact_json(tools)) if tools else 0
    return ParsedRequest(
        model=model.removeprefix("models/"),
        stream=found.group(3) == "streamGenerateContent",
        system=system,
        messages=tuple(out),
        tools=names,
        tool_results=tuple(results),
        prompt_tokens=tokens_for_chars(chars),
    )


def _check_tools(model: str, tools: list[Any], config: Mapping[str, Any]) -> None:
    """As the API: Google Search next to function declarations only on Gemini 3 and later,
    with server-side tool invocations included in the response."""
    search = any("googleSearch" in t or "google_search" in t for t in tools)
    functions = any(t.get("functionDeclarations") or t.get("function_declarations") for t in tools)
    if not (search and functions):
        return
    if model.removeprefix("models/").startswith(("gemini-1", "gemini-2")):
        raise ValueError("Tool use with function calling is unsupported by the model")
    flag = config.get(
        "includeServerSideToolInvocations", config.get("include_server_side_tool_invocations")
    )
    if not flag:
        raise ValueError(
            "Please enable tool_config.include_server_side_tool_invocations to use built-in "
            "tools with function calling"
        )


def _usage(answer: Answer) -> dict[str, Any]:
    return {
        "promptTokenCount": answer.prompt_tokens,
        "candidatesTokenCount": answer.completion_tokens,
        "totalTokenCount": answer.prompt_tokens + answer.completion_tokens,
    }


def _response(answer: Answer, parts: list[dict[str, Any]], last: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    data: dict[str, Any] = {"candidates": [candidate]}
    if last:
        candidate["finishReason"] = "MAX_TOKENS" if answer.truncated else "STOP"
        if answer.searched:
            candidate["groundingMetadata"] = _grounding(answer)
        data["usageMetadata"] = _usage(answer)
    data["modelVersion"] = answer.model
    data["responseId"] = answer.response_id
    return data


def _grounding(answer: Answer) -> dict[str, Any]:
    return {
        "webSearchQueries": list(answer.queries),
        "groundingChunks": [{"web": {"uri": u, "title": t}} for t, u in answer.sources],
        "groundingSupports": [
            {
                "segment": {"startIndex": 0, "endIndex": len(answer.text), "text": answer.text},
                "groundingChunkIndices": list(range(len(answer.sources))),
            }
        ]
        if answer.sources
        else [],
        "searchEntryPoint": {"renderedContent": "<div>simulated search chips</div>"},
    }


def _call_parts(answer: Answer) -> list[dict[str, Any]]:
    return [{"functionCall": {"name": c.name, "args": dict(c.arguments)}} for c in answer.calls]


def render(answer: Answer) -> bytes:
    parts = [{"text": answer.text}] if answer.text or not answer.calls else []
    return dumps(_response(answer, parts + _call_parts(answer), last=True))


def render_stream(answer: Answer) -> list[bytes]:
    """One response per text piece; the last carries calls, finishReason and usage."""
    pieces = split_text(answer.text)
    events = [sse(_response(answer, [{"text": p}], last=False)) for p in pieces[:-1]]
    tail = [{"text": pieces[-1] if pieces else ""}] if pieces or not answer.calls else []
    events.append(sse(_response(answer, tail + _call_parts(answer), last=True)))
    return events


def error_body(status: int, message: str) -> bytes:
    name = _STATUS_NAMES.get(status, "UNAVAILABLE" if status >= 500 else "FAILED_PRECONDITION")
    return dumps({"error": {"code": status, "message": message, "status": name}})
