"""Facts read straight from a recording, independently of the adapters under test.

The replay tests compare what massgen parsed with what the recording itself says: the JSON of
a non-streamed body, or the ``data:`` payloads of an event stream read line by line here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.recorded.harness import HERE, VARIANTS, Recorded, load


def recording(provider: str, name: str) -> list[Recorded]:
    """The responses of ``tests/recorded/<provider>/<name>``."""
    return load(HERE / provider / name)


def path(provider: str, name: str) -> Path:
    return HERE / provider / name


def body(rec: Recorded) -> Any:
    """A non-streamed body as JSON."""
    return json.loads(rec.body)


def events(rec: Recorded) -> list[dict[str, Any]]:
    """Every ``data:`` payload of an event stream, as JSON, in order."""
    out: list[dict[str, Any]] = []
    data: list[str] = []
    for line in rec.body.decode("utf-8").replace("\r\n", "\n").split("\n"):
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line.strip() and data:
            out.append(json.loads("\n".join(data)))
            data = []
    if data:
        out.append(json.loads("\n".join(data)))
    return out


def wire_variants(rec: Recorded) -> tuple[str, ...]:
    """The wire variants that make sense for a response: the event-stream ones only for
    event streams (CRLF and comment lines change nothing in a JSON body)."""
    return VARIANTS if rec.is_stream else ("exact", "split", "gzip")


def gemini_variants(rec: Recorded) -> tuple[str, ...]:
    """Wire variants for Gemini: no SSE comment lines. Google never sends them, and
    google-genai's reader takes any line that is not ``data:`` for part of a JSON error
    body, so a comment line fails the stream (a limit of the SDK, left as it is)."""
    return tuple(v for v in wire_variants(rec) if v != "comments")


# -- Anthropic ---------------------------------------------------------------------------------
def anthropic_blocks(rec: Recorded) -> tuple[list[dict[str, Any]], dict[str, Any], str | None]:
    """A Messages response's content blocks, final usage and stop reason, streamed or not.

    For a stream the blocks are put together from its events (text, thinking and tool input
    deltas), the usage is ``message_start``'s updated by ``message_delta``'s.
    """
    if not rec.is_stream:
        message = body(rec)
        return message["content"], message["usage"], message["stop_reason"]
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    usage: dict[str, Any] = {}
    stop: str | None = None
    for event in events(rec):
        kind = event["type"]
        if kind == "message_start":
            usage = dict(event["message"]["usage"])
        elif kind == "content_block_start":
            blocks[event["index"]] = dict(event["content_block"])
        elif kind == "content_block_delta":
            block, delta = blocks[event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] = block.get("text", "") + delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "citations_delta":
                block.setdefault("citations", []).append(delta["citation"])
            elif delta["type"] == "input_json_delta":
                partial[event["index"]] = partial.get(event["index"], "") + delta["partial_json"]
        elif kind == "message_delta":
            stop = event["delta"].get("stop_reason") or stop
            usage.update({k: v for k, v in event["usage"].items() if v is not None})
    for index, raw in partial.items():
        blocks[index]["input"] = json.loads(raw) if raw else {}
    return [blocks[i] for i in sorted(blocks)], usage, stop


def anthropic_input_tokens(usage: dict[str, Any]) -> int:
    return (
        (usage.get("input_tokens") or 0)
        + (usage.get("cache_creation_input_tokens") or 0)
        + (usage.get("cache_read_input_tokens") or 0)
    )


# -- Gemini ------------------------------------------------------------------------------------
def gemini_chunks(rec: Recorded) -> list[dict[str, Any]]:
    """A generateContent body as one chunk, or every chunk of a streamGenerateContent."""
    return events(rec) if rec.is_stream else [body(rec)]


def gemini_parts(rec: Recorded) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for chunk in gemini_chunks(rec):
        for candidate in chunk.get("candidates", [])[:1]:
            parts.extend(candidate.get("content", {}).get("parts", []))
    return parts


def gemini_usage(rec: Recorded) -> dict[str, Any]:
    """The last usage the response reported (a stream repeats it, growing)."""
    usage: dict[str, Any] = {}
    for chunk in gemini_chunks(rec):
        usage = chunk.get("usageMetadata") or usage
    return usage
