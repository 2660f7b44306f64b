"""A deterministic, offline backend for demos and tests: no SDK, no network, no key. It
answers a ``quiz`` question (quiz.py), else from ``rules`` (first regex match wins), then
``replies`` in turn, then ``default`` (docs/config.md: ``{task}``, ``{label_containing:TEXT}``)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from massgen.backends.base import Backend, final, text_completion
from massgen.backends.quiz import Quiz
from massgen.errors import ConfigError
from massgen.types import Completion, CompletionRequest, StreamChunk

DEFAULT_REPLY = "This is a replayed answer to: {task}"

_ANSWER_BLOCK = re.compile(r'<answer label="([^"]*)"[^>]*>\n?(.*?)\n?</answer>', re.DOTALL)
_LABEL_TEMPLATE = re.compile(r"\{label_containing:([^}]*)\}")


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: re.Pattern[str]
    reply: str


class ReplayBackend(Backend):
    """Answers from rules and canned replies, the same way every time (offline demos, tests)."""

    provider: str = "replay"
    supports_tools: bool = False

    def __init__(
        self,
        model: str = "replay",
        *,
        rules: list[Mapping[str, Any]] | None = None,
        replies: list[str] | None = None,
        default: str | None = None,
        answers_file: str | Path | None = None,
        latency: float | None = 0.0,
        stream_chunk: int | None = 0,
        base_dir: Path | None = None,
        name: str = "",
        quiz: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(model or "replay", name=name)
        script = load_answers(answers_file, base_dir=base_dir) if answers_file else {}
        raw_rules = [*(rules or []), *(script.get("rules") or [])]
        self.rules = tuple(_rule(r, i) for i, r in enumerate(raw_rules))
        self.replies = tuple(str(r) for r in [*(replies or []), *(script.get("replies") or [])])
        default = script.get("default") if default is None else default
        self.default = DEFAULT_REPLY if default is None else str(default)
        self.latency = float(latency or 0.0)
        self.stream_chunk = int(stream_chunk or 0)
        if self.latency < 0 or self.stream_chunk < 0:
            raise ConfigError("replay `latency` and `stream_chunk` must not be negative")
        self._turn = 0  # which of `replies` comes next
        self.quiz = Quiz(quiz, base_dir=base_dir, backend=self.name) if quiz else None

    def reply_for(self, request: CompletionRequest) -> tuple[str, float]:
        """The filled-in reply to ``request`` (advances ``replies``), and its latency."""
        if self.quiz is not None and (answer := self.quiz.reply(request)) is not None:
            return answer, self.quiz.options.latency
        prompt = "\n".join(m.content for m in request.messages)
        reply = next((rule.reply for rule in self.rules if rule.pattern.search(prompt)), None)
        if reply is None and self.replies:
            reply, self._turn = self.replies[self._turn % len(self.replies)], self._turn + 1
        return fill(self.default if reply is None else reply, request), self.latency

    async def complete(self, request: CompletionRequest) -> Completion:
        return await final(self.stream(request))

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        started, (text, latency) = time.perf_counter(), self.reply_for(request)
        size = self.stream_chunk or len(text) or 1
        pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
        for piece in pieces:
            if latency:
                await asyncio.sleep(latency / len(pieces))
            if piece:
                yield StreamChunk(delta=piece)
        yield StreamChunk(completion=await text_completion(self, request, text, started))


def fill(reply: str, request: CompletionRequest) -> str:
    """Fill ``{task}`` and ``{label_containing:TEXT}``; other braces (JSON) are left be."""
    if "{label_containing:" in reply:
        prompt = "\n".join(m.content for m in request.messages)
        blocks = _ANSWER_BLOCK.findall(prompt)

        def label(match: re.Match[str]) -> str:
            needle = match.group(1).strip().casefold()
            return next((str(name) for name, body in blocks if needle in body.casefold()), "A")

        reply = _LABEL_TEMPLATE.sub(label, reply)
    if "{task}" in reply:  # the first line of the last user message
        user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        reply = reply.replace("{task}", (user.strip().splitlines() or [""])[0].strip())
    return reply


def load_answers(path: str | Path, *, base_dir: Path | None = None) -> dict[str, Any]:
    """An answers file (YAML or JSON), a relative path taken from ``base_dir``."""
    file = Path(path).expanduser()
    if not file.is_absolute() and base_dir is not None:
        file = Path(base_dir) / file
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        message = f"cannot read answers file: {e.strerror or e}"
        hint = "the path is relative to the config file's folder"
        raise ConfigError(message, file=str(file), key="answers_file", hint=hint) from e
    from massgen.config.yamlsrc import parse  # JSON is YAML too; only demos use answers files

    data, _ = parse(text, str(file))
    if data is None:
        return {}
    if isinstance(data, list):  # a bare list of rules
        return {"rules": data}
    if not isinstance(data, dict):
        message = "an answers file holds a mapping with `rules`, `replies` and `default`"
        raise ConfigError(message, file=str(file))
    if unknown := set(data) - {"rules", "replies", "default"}:
        message = f"unknown key(s) in answers file: {', '.join(sorted(unknown))}"
        raise ConfigError(message, file=str(file), hint="allowed: rules, replies, default")
    return data


def _rule(raw: Any, index: int) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(raw, Mapping) or "match" not in raw or "reply" not in raw:
        message = "each replay rule needs `match` (a regex) and `reply` (text)"
        hint = 'e.g. {match: "capital of France", reply: "Paris"}'
        raise ConfigError(message, key=where, hint=hint)
    try:
        pattern = re.compile(str(raw["match"]), re.IGNORECASE | re.DOTALL)
    except re.error as e:
        hint = r"escape special characters, e.g. \? or \("
        raise ConfigError(
            f"bad regex {raw['match']!r}: {e}", key=f"{where}.match", hint=hint
        ) from e
    return Rule(pattern, str(raw["reply"]))
