"""Build small teams of scripted agents for strategy tests (fakes at the Backend interface)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.errors import ProviderError
from massgen.types import Completion, CompletionRequest, ToolCall, Usage

OFFLINE = Path(__file__).resolve().parents[1] / "configs" / "offline.yaml"


def unpaced(offline: str) -> str:
    """configs/offline.yaml's text with its replies' ``latency`` 0. The demo paces its
    replies so that the live view streams as in a real run (0.6 s of waiting a run); what a
    run prints, records and returns does not depend on it."""
    text, n = re.subn(r"(?m)^(    latency:) [0-9.]+ ", r"\1 0 ", offline)
    assert n == 1, "configs/offline.yaml's `latency:` line moved"
    return text


def unpaced_offline(where: Path) -> Path:
    """``where/configs/offline.yaml``: the demo's team unpaced, beside a link to the
    examples its quiz reads (a path relative to the file)."""
    copy = where / "configs" / "offline.yaml"
    copy.parent.mkdir(parents=True)
    copy.write_text(unpaced(OFFLINE.read_text()))
    (where / "examples").symlink_to(OFFLINE.parents[1] / "examples")
    return copy


GEO_CONSENSUS = """
backends:
  sim:
    type: replay
    rules:
      - match: '<answer label='
        reply: '{"vote": "{label_containing:Paris is the capital}", "reason": "right"}'
      - match: 'You are Ada.*capital of France'
        reply: Paris.
      - match: 'You are Bob.*capital of France'
        reply: Paris is the capital of France.
      - match: 'You are Cy.*capital of France'
        reply: Lyon, I think.
agents:
  - {name: ada, backend: sim, role: You are Ada.}
  - {name: bob, backend: sim, role: You are Bob.}
  - {name: cy, backend: sim, role: You are Cy.}
orchestrator:
  strategy: consensus
  consensus: {mode: debate, answer: prose, threshold: 0.5, max_rounds: 1}
"""
"""Three replayed agents asked the capital of France: two say Paris, Cy says Lyon; every
reviewer votes for Bob's answer. Offline, no keys."""
CAPITALS = """\
name: capitals
backends:
  sim:
    type: replay
    latency: {latency}
    rules:
      - match: '<answer label='
        reply: '{{"vote": "{{label_containing:Paris is the capital}}", "reason": "right"}}'
      - match: 'You are Ada'
        reply: Paris.
      - match: 'You are Bob'
        reply: Paris is the capital of France.
      - match: 'You are Cy'
        reply: Lyon, I think.
agents:
  - {{name: ada, backend: sim, role: You are Ada.}}
  - {{name: bob, backend: sim, role: You are Bob.}}
  - {{name: cy, backend: sim, role: You are Cy.}}
# debate on the whole text: a review round runs, the answers agree on Paris otherwise
orchestrator: {{strategy: consensus, consensus: {{mode: debate, answer: prose}}}}
"""
"""A replayed team named capitals, the same answers, for the servers' tests (`massgen serve`,
`massgen mcp`): a str.format template of the replies' ``latency``."""


BLOCK = re.compile(r'<answer label="([A-Z])"[^>]*>\n(.*?)\n</answer>', re.DOTALL)


def prompt_of(request: CompletionRequest) -> str:
    return request.messages[-1].content


def is_review(request: CompletionRequest) -> bool:
    return '<answer label="' in prompt_of(request)


def label_of(request: CompletionRequest, needle: str) -> str:
    """The label of the answer block containing ``needle`` in a review prompt."""
    for label, text in BLOCK.findall(prompt_of(request)):
        if needle.lower() in text.lower():
            return label
    raise AssertionError(f"no answer contains {needle!r}")


def vote(request: CompletionRequest, needle: str, *, tools: bool = False) -> Completion | str:
    label = label_of(request, needle)
    if tools:
        return Completion(
            text="",
            model="m",
            usage=Usage(10, 5),
            tool_calls=(ToolCall("call_1", "vote", {"label": label, "reason": "best"}),),
            finish_reason="tool_calls",
        )
    return json.dumps({"vote": label, "reason": "best"})


def revise(text: str) -> str:
    return json.dumps({"revise": text})


Script = Callable[[CompletionRequest], "str | Completion"]


def scripted(answer: str, review: Script | None = None) -> Script:
    """An agent that answers ``answer`` and reviews with ``review`` (default: vote own)."""

    def respond(request: CompletionRequest) -> str | Completion:
        if is_review(request):
            return review(request) if review else vote(request, answer)
        return answer

    return respond


def failing(status: int = 500) -> Script:
    def respond(request: CompletionRequest) -> str:
        raise ProviderError("boom", provider="fake", status=status)

    return respond


def team(**scripts: Script) -> tuple[list[Agent], dict[str, FunctionBackend]]:
    backends = {name: FunctionBackend(fn) for name, fn in scripts.items()}
    agents = [Agent(name, backends[name], role=f"You are {name}.") for name in scripts]
    return agents, backends


def requests_made(backends: dict[str, FunctionBackend]) -> int:
    return sum(len(b.calls) for b in backends.values())
