"""The OpenAI wire format, both ways: a request body becomes a :class:`Ask` (the task, the
team and strategy its model names, how to answer), a run's result becomes a
``chat.completion``, its ``chat.completion.chunk``s or a ``response``, and an error becomes
OpenAI's error body. Plain data in and out; the HTTP side is massgen/serve/app.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from massgen.errors import ConfigError

if TYPE_CHECKING:
    from massgen.result import RunResult

PREFIX = "massgen/"
STRATEGIES = ("parallel", "sequential", "consensus")
CHUNK = 64
"""Characters of the final answer per streamed chunk."""


@dataclass(frozen=True, slots=True)
class Ask:
    """One request for a team's answer. ``model``: as the client named it; ``session``:
    continue this session (its agents remember earlier runs) instead of reading the
    earlier turns from the messages."""

    model: str
    team: str
    strategy: str | None
    task: str
    stream: bool = False
    include_usage: bool = False
    session: str | None = None


def model_ids(team: str) -> list[str]:
    """The models one team is served as: its name, then one per strategy."""
    return [PREFIX + team, *(f"{PREFIX}{team}:{s}" for s in STRATEGIES)]


def split_model(model: str) -> tuple[str, str | None] | None:
    """``massgen/<team>[:<strategy>]`` as (team, strategy); ``None`` if it is not one."""
    if not model.startswith(PREFIX):
        return None
    team, _, strategy = model.removeprefix(PREFIX).partition(":")
    if not team or (strategy and strategy not in STRATEGIES):
        return None
    return team, strategy or None


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
                raise ConfigError("only text content is supported", key=where)
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    if content is None:
        return ""
    raise ConfigError("must be a string or a list of text parts", key=where)


def task_of(messages: Any, *, session: bool) -> str:
    """The task the messages ask: the last user message, after the system (and developer)
    instructions and, without a session, the earlier turns as context."""
    if not isinstance(messages, list) or not messages:
        raise ConfigError("must be a non-empty list of messages", key="messages")
    rules: list[str] = []
    turns: list[str] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ConfigError("must be an object with a role", key=f"messages[{i}]")
        text = _text(m.get("content"), f"messages[{i}].content")
        if m["role"] in ("system", "developer"):
            rules.append(text)
        elif m["role"] in ("user", "assistant", "tool"):
            turns.append(f"{m['role']}: {text}")
        else:
            raise ConfigError(f"unknown role {m['role']!r}", key=f"messages[{i}].role")
    last = messages[-1]
    if last["role"] != "user" or not turns:
        raise ConfigError("the last message must be the user's", key="messages")
    ask = turns.pop().removeprefix("user: ")
    if not ask.strip():
        raise ConfigError("the last user message is empty", key="messages")
    parts = ["\n\n".join(rules)] if rules else []
    if turns and not session:
        parts.append("Conversation so far:\n" + "\n".join(turns))
    if parts:
        parts.append("Current request:\n" + ask)
    return "\n\n".join(parts) if parts else ask


def _session(body: dict[str, Any]) -> str | None:
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise ConfigError("must be an object", key="metadata")
    field = "metadata.session" if (metadata or {}).get("session") else "user"
    name = (metadata or {}).get("session") or body.get("user")
    if name is None:
        return None
    if not isinstance(name, str):
        raise ConfigError("must be a string", key=field)
    from massgen.memory.session import check_name

    try:
        return check_name(name)
    except ConfigError as e:
        raise ConfigError(e.message, key=field, hint=e.hint) from None


def _model(body: Any) -> tuple[str, str, str | None]:
    if not isinstance(body, dict):
        raise ConfigError("the body must be a JSON object", key="body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError("must name a model", key="model")
    named = split_model(model)
    team, strategy = named if named is not None else ("", None)
    return model, team, strategy


def parse_chat(body: Any) -> Ask:
    """A ``/v1/chat/completions`` body as an :class:`Ask` (``team`` empty: not one of ours).
    Options a team has no use for (temperature, max_tokens...) are accepted and ignored:
    each agent's own config decides them."""
    model, team, strategy = _model(body)
    if body.get("n", 1) != 1:
        raise ConfigError("only n=1 is supported", key="n")
    if body.get("tools"):
        raise ConfigError("tools are the team's own (its config); none may be passed", key="tools")
    stream = body.get("stream") or False
    options = body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise ConfigError("must be a boolean (stream) and an object (stream_options)", key="stream")
    session = _session(body)
    task = task_of(body.get("messages"), session=session is not None)
    include = bool(options.get("include_usage")) and stream
    return Ask(model, team, strategy, task, stream, include, session)


def parse_response_request(body: Any) -> Ask:
    """A minimal ``/v1/responses`` body: ``input`` text (or messages), ``instructions``."""
    model, team, strategy = _model(body)
    if body.get("stream"):
        raise ConfigError("streaming is supported on /v1/chat/completions only", key="stream")
    given = body.get("input")
    messages = [{"role": "user", "content": given}] if isinstance(given, str) else given
    if isinstance(body.get("instructions"), str) and isinstance(messages, list):
        messages = [{"role": "system", "content": body["instructions"]}, *messages]
    if not isinstance(messages, list):
        raise ConfigError("must be text or a list of messages", key="input")
    messages = [{"role": "user", **m} if isinstance(m, dict) else m for m in messages]
    session = _session(body)
    return Ask(
        model, team, strategy, task_of(messages, session=session is not None), session=session
    )


def usage(result: RunResult) -> dict[str, Any]:
    """The team's total usage, every agent's every request, as OpenAI counts it."""
    u = result.usage
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def completion(ask: Ask, result: RunResult, extra: dict[str, Any]) -> dict[str, Any]:
    """The ``chat.completion`` of a run; ``extra`` is its ``massgen`` field."""
    return {
        "id": "chatcmpl-" + result.run_id,
        "object": "chat.completion",
        "created": int(result.started_at or time.time()),
        "model": ask.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.final_answer, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage(result),
        "system_fingerprint": None,
        "massgen": extra,
    }


def chunk(
    ask: Ask, run_id: str, created: int, delta: dict[str, Any], **more: Any
) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    body = {
        "id": "chatcmpl-" + run_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": ask.model,
        "system_fingerprint": None,
        "choices": [choice],
    }
    if "finish_reason" in more:
        choice["finish_reason"] = more.pop("finish_reason")
    if ask.include_usage:
        body["usage"] = None
    return {**body, **more}


def answer_chunks(ask: Ask, result: RunResult, extra: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The final answer as chunks (the role first, the text in pieces, the finish with the
    ``massgen`` field), then, with ``include_usage``, the usage chunk with no choices."""
    created = int(result.started_at or time.time())
    rid = result.run_id
    yield chunk(ask, rid, created, {"role": "assistant", "content": ""})
    text = result.final_answer
    for i in range(0, len(text), CHUNK):
        yield chunk(ask, rid, created, {"content": text[i : i + CHUNK]})
    yield chunk(ask, rid, created, {}, finish_reason="stop", massgen=extra)
    if ask.include_usage:
        yield {**chunk(ask, rid, created, {}), "choices": [], "usage": usage(result)}


def response(ask: Ask, result: RunResult, extra: dict[str, Any]) -> dict[str, Any]:
    """The minimal ``response`` object of ``/v1/responses``: one output message of text."""
    u = result.usage
    return {
        "id": "resp_" + result.run_id.replace("-", ""),
        "object": "response",
        "created_at": int(result.started_at or time.time()),
        "status": "completed",
        "model": ask.model,
        "output": [
            {
                "type": "message",
                "id": "msg_" + result.run_id.replace("-", ""),
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": result.final_answer, "annotations": []}
                ],
            }
        ],
        "parallel_tool_calls": False,
        "tool_choice": "none",
        "tools": [],
        "usage": {
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "total_tokens": u.total_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens},
            "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        },
        "massgen": extra,
    }


def error_body(
    message: str, kind: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
