"""The OpenAI wire format, both ways: a request body becomes a :class:`Ask` (the task, the
team and strategy its model names, how to answer), a run's result becomes a
``chat.completion``, its ``chat.completion.chunk``s, a ``response`` or its stream's events,
and an error becomes OpenAI's error body. Plain data in and out; the HTTP side is
massgen/serve/app.py."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from massgen.errors import ConfigError
from massgen.types import STRATEGIES

if TYPE_CHECKING:
    from massgen.result import RunResult

PREFIX = "massgen/"
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
    """A minimal ``/v1/responses`` body: ``input`` text (or messages), ``instructions``,
    ``stream``."""
    model, team, strategy = _model(body)
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise ConfigError("must be a boolean", key="stream")
    given = body.get("input")
    messages = [{"role": "user", "content": given}] if isinstance(given, str) else given
    if isinstance(body.get("instructions"), str) and isinstance(messages, list):
        messages = [{"role": "system", "content": body["instructions"]}, *messages]
    if not isinstance(messages, list):
        raise ConfigError("must be text or a list of messages", key="input")
    messages = [{"role": "user", **m} if isinstance(m, dict) else m for m in messages]
    session = _session(body)
    task = task_of(messages, session=session is not None)
    return Ask(model, team, strategy, task, stream, session=session)


_CHAT_USAGE = ("prompt_tokens", "completion_tokens")
_RESPONSES_USAGE = ("input_tokens", "output_tokens")


def usage(result: RunResult, names: tuple[str, str] = _CHAT_USAGE) -> dict[str, Any]:
    """The team's total usage, every agent's every request, as OpenAI counts it: in Chat
    Completions' names, or (``names``) the Responses API's."""
    u, (given, said) = result.usage, names
    return {
        given: u.input_tokens,
        said: u.output_tokens,
        "total_tokens": u.total_tokens,
        f"{given}_details": {"cached_tokens": u.cached_tokens},
        f"{said}_details": {"reasoning_tokens": u.reasoning_tokens},
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


def _response(
    ask: Ask,
    rid: str,
    created: int,
    status: str,
    output: list[dict[str, Any]],
    **more: Any,
) -> dict[str, Any]:
    """A ``response`` object; ``more``: its ``usage``, ``error``, ``massgen``."""
    return {
        "id": "resp_" + rid,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": more.pop("error", None),
        "model": ask.model,
        "output": output,
        "parallel_tool_calls": False,
        "tool_choice": "none",
        "tools": [],
        "usage": more.pop("usage", None),
        **more,
    }


def _message(rid: str, text: str | None) -> dict[str, Any]:
    """The one output message: ``text`` its content (``None``: none yet, in progress)."""
    content = [] if text is None else [_part(text)]
    status = "in_progress" if text is None else "completed"
    return {
        "type": "message",
        "id": "msg_" + rid,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def response_usage(result: RunResult) -> dict[str, Any]:
    return usage(result, _RESPONSES_USAGE)


def response(ask: Ask, result: RunResult, extra: dict[str, Any]) -> dict[str, Any]:
    """The minimal ``response`` object of ``/v1/responses``: one output message of text."""
    rid = result.run_id.replace("-", "")
    created = int(result.started_at or time.time())
    output = [_message(rid, result.final_answer)]
    usage = response_usage(result)
    return _response(ask, rid, created, "completed", output, usage=usage, massgen=extra)


class ResponseEvents:
    """The events of one streamed ``response``, each its own ``type`` and numbered
    (``sequence_number``) in the order sent, as OpenAI's Responses API streams: once the run
    has an id, ``opened`` (``response.created``, ``response.in_progress``); then ``answered``
    (the output message, its text in pieces, ``response.completed`` with the usage and the
    ``massgen`` field) or ``failed`` (``error``, then ``response.failed``)."""

    def __init__(self, ask: Ask) -> None:
        self.ask = ask
        self.sent = 0
        self.rid = ""
        self.created = 0

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.sent += 1
        return {"type": kind, **fields, "sequence_number": self.sent - 1}

    def opened(self, run_id: str, at: float) -> list[dict[str, Any]]:
        """The response begun, in progress with no output yet (nothing if it was already)."""
        if self.rid:
            return []
        self.rid, self.created = run_id.replace("-", ""), int(at)
        head = _response(self.ask, self.rid, self.created, "in_progress", [])
        return [
            self._event("response.created", response=head),
            self._event("response.in_progress", response=head),
        ]

    def answered(self, result: RunResult, extra: dict[str, Any]) -> list[dict[str, Any]]:
        events = self.opened(result.run_id, result.started_at or time.time())
        text = result.final_answer
        where = {"item_id": "msg_" + self.rid, "output_index": 0}
        item = _message(self.rid, None)
        events += [
            self._event("response.output_item.added", item=item, output_index=0),
            self._event("response.content_part.added", **where, content_index=0, part=_part("")),
        ]
        for i in range(0, len(text), CHUNK):
            piece = text[i : i + CHUNK]
            events.append(
                self._event(
                    "response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[]
                )
            )
        item = _message(self.rid, text)
        output, usage = [item], response_usage(result)
        done = _response(self.ask, self.rid, self.created, "completed", output, usage=usage)
        return [
            *events,
            self._event(
                "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
            ),
            self._event("response.content_part.done", **where, content_index=0, part=_part(text)),
            self._event("response.output_item.done", item=item, output_index=0),
            self._event("response.completed", response={**done, "massgen": extra}),
        ]

    def failed(self, error: dict[str, Any]) -> list[dict[str, Any]]:
        """``error`` (OpenAI's error object, as :func:`error_body` holds it), then the
        response failed with its code and message."""
        events = self.opened(secrets.token_hex(12), time.time())
        reason = {"code": error.get("code") or error["type"], "message": error["message"]}
        gone = _response(self.ask, self.rid, self.created, "failed", [], error=reason)
        return [
            *events,
            self._event("error", error=error),
            self._event("response.failed", response=gone),
        ]


def error_body(
    message: str, kind: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
