"""What a recorded OpenAI-protocol response says, read straight from its bytes.

The replay tests compare what our clients parse with these facts. They are read here with
the plainest code that can read them (the JSON as recorded, the event stream line by line as
the SSE spec splits it), independently of the adapter under test, so the two cannot share a
mistake.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.recorded.harness import Recorded

Call = tuple[str, str, dict[str, Any]]
"""(id, name, arguments) of one tool call; the id is "" when the recording gave none."""


@dataclass
class Facts:
    """One response's content: the answer (text, reasoning, calls, usage, finish) or the
    error it carries (``status``; ``finished_before_error`` when an answer ended first)."""

    api: str  # "chat" or "responses"
    model: str = ""
    text: str = ""
    reasoning: str = ""
    calls: list[Call] = field(default_factory=list)
    usage: tuple[int, int, int, int] | None = None
    """(input, output, cached input, reasoning output) tokens, as recorded."""
    finish: str | None = None
    done: bool = False
    error_status: int | None = None
    error_message: str = ""
    finished_before_error: bool = False
    retry_after: float | None = None


def api_of(rec: Recorded) -> str:
    uri = str((rec.request or {}).get("uri") or "")
    if uri:
        return "responses" if "/responses" in uri else "chat"
    # A recording without its request (a .chunks.txt): Responses events name their type.
    return "responses" if b'"type":"response.' in rec.body else "chat"


def read(rec: Recorded) -> Facts:
    api = api_of(rec)
    if rec.status >= 400:
        return _status_error(rec, api)
    if rec.is_stream:
        return _chat_stream(rec) if api == "chat" else _responses_stream(rec)
    data = json.loads(rec.body)
    return _chat(data) if api == "chat" else _responses(data)


def sse_data(body: bytes) -> list[str]:
    """The ``data`` of each event, as the SSE spec splits a stream (CR, LF or CRLF)."""
    events: list[str] = []
    data: list[str] = []
    for line in body.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if data:
                events.append("\n".join(data))
                data = []
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        events.append("\n".join(data))
    return events


def _status_error(rec: Recorded, api: str) -> Facts:
    facts = Facts(api=api, error_status=rec.status)
    try:
        error = json.loads(rec.body).get("error")
    except ValueError:
        error = None
    if isinstance(error, dict):
        facts.error_message = str(error.get("message") or "")
    ms, seconds = rec.header("retry-after-ms"), rec.header("retry-after")
    if ms is not None:
        facts.retry_after = float(ms) / 1000
    elif seconds is not None:
        facts.retry_after = float(seconds)
    return facts


def _first(choices: Any) -> dict[str, Any] | None:
    for choice in choices or ():
        if (choice.get("index") or 0) == 0:
            return dict(choice)
    return None


def _reasoning(message: dict[str, Any]) -> str:
    return str(message.get("reasoning_content") or message.get("reasoning") or "")


def _chat(data: dict[str, Any]) -> Facts:
    choice = _first(data.get("choices")) or {}
    message = choice.get("message") or {}
    usage = data.get("usage")
    return Facts(
        api="chat",
        model=str(data.get("model") or ""),
        text=str(message.get("content") or ""),
        reasoning=_reasoning(message),
        calls=[
            (
                str(tc.get("id") or ""),
                tc["function"]["name"],
                json.loads(tc["function"].get("arguments") or "{}"),
            )
            for tc in message.get("tool_calls") or ()
        ],
        usage=_chat_usage(usage) if usage else None,
        finish=choice.get("finish_reason"),
    )


def _chat_usage(usage: dict[str, Any]) -> tuple[int, int, int, int]:
    """A Chat Completions usage; DeepSeek also says ``prompt_cache_hit_tokens``, and a server
    that sends no ``prompt_tokens_details`` (Groq, some turns) is read by that alone."""
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or usage.get("prompt_cache_hit_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return usage["prompt_tokens"], usage["completion_tokens"], cached, reasoning


def _chat_stream(rec: Recorded) -> Facts:
    facts = Facts(api="chat")
    calls: dict[int, dict[str, str]] = {}
    for data in sse_data(rec.body):
        if data.startswith("[DONE]"):
            facts.done = True
            break
        chunk = json.loads(data)
        if chunk.get("error"):
            error = chunk["error"]
            facts.error_message = str(error.get("message") or "")
            facts.error_status = next(
                (error[k] for k in ("code", "status_code") if isinstance(error.get(k), int)), None
            )
            facts.finished_before_error = facts.finish is not None
            break
        facts.model = chunk.get("model") or facts.model
        if chunk.get("usage"):
            facts.usage = _chat_usage(chunk["usage"])
        choice = _first(chunk.get("choices"))
        if choice is None:
            continue
        delta = choice.get("delta") or {}
        facts.text += delta.get("content") or ""
        facts.reasoning += _reasoning(delta)
        for tc in delta.get("tool_calls") or ():
            slot = calls.setdefault(tc.get("index", 0), {"id": "", "name": "", "arguments": ""})
            slot["id"] = slot["id"] or tc.get("id") or ""
            function = tc.get("function") or {}
            # The name, once: a server that repeats it in later deltas repeats the same name.
            slot["name"] = slot["name"] or function.get("name") or ""
            slot["arguments"] += function.get("arguments") or ""
        facts.finish = choice.get("finish_reason") or facts.finish
    facts.calls = [
        (c["id"], c["name"], json.loads(c["arguments"] or "{}")) for _, c in sorted(calls.items())
    ]
    return facts


def _responses(data: dict[str, Any]) -> Facts:
    facts = Facts(api="responses", model=str(data.get("model") or ""))
    thoughts: list[str] = []
    for item in data.get("output") or ():
        if item["type"] == "message":
            facts.text += "".join(
                p.get("text") or "" for p in item["content"] if p["type"] == "output_text"
            )
        elif item["type"] == "function_call":
            facts.calls.append((item["call_id"], item["name"], json.loads(item["arguments"])))
        elif item["type"] == "reasoning":
            thoughts += [p["text"] for p in item.get("summary") or () if p.get("text")]
    facts.reasoning = "\n\n".join(thoughts)
    usage = data.get("usage")
    if usage:
        facts.usage = (
            usage["input_tokens"],
            usage["output_tokens"],
            (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0,
            (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0,
        )
    facts.finish = str(data.get("status"))
    if data.get("status") == "failed":
        facts.error_message = str((data.get("error") or {}).get("message") or "")
    return facts


def _responses_stream(rec: Recorded) -> Facts:
    for data in sse_data(rec.body):
        if data.startswith("[DONE]"):
            continue
        event = json.loads(data)
        if event.get("type") in ("response.completed", "response.incomplete"):
            return _responses(event["response"])
        if event.get("type") == "error":
            error = event.get("error") or event
            return Facts(api="responses", error_message=str(error.get("message") or ""))
    raise AssertionError(f"{rec.name}: a Responses stream with no final event")
