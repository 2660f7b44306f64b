"""ReplayBackend: deterministic answers from rules, replies and templates; no network."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from massgen.backends import create_backend
from massgen.backends.replay import DEFAULT_REPLY, ReplayBackend
from massgen.errors import ConfigError
from massgen.tokens import estimate_request, estimate_text
from massgen.types import ChatMessage, CompletionRequest, Usage

REVIEW = """Task: What is the capital of France?
Your answer: Lyon.
Peer answers:
<answer label="A">
Marseille is the capital.
</answer>
<answer label="B">
The capital of France is Paris.
</answer>
Reply with JSON."""


def ask(text: str, system: str = "") -> CompletionRequest:
    messages = [ChatMessage("system", system)] if system else []
    return CompletionRequest(messages=(*messages, ChatMessage("user", text)))


async def test_first_matching_rule_wins_case_insensitively() -> None:
    b = ReplayBackend(
        rules=[
            {"match": r"capital of (France|Spain)", "reply": "Paris or Madrid."},
            {"match": "capital", "reply": "Some capital."},
        ]
    )
    assert (await b.complete(ask("What is the CAPITAL OF FRANCE?"))).text == "Paris or Madrid."
    assert (await b.complete(ask("Capital of Peru?"))).text == "Some capital."


async def test_rules_search_the_system_prompt_and_every_message() -> None:
    b = ReplayBackend(rules=[{"match": "reviewer", "reply": "as reviewer"}], default="plain")
    assert (await b.complete(ask("hi", system="You are a Reviewer."))).text == "as reviewer"
    assert (await b.complete(ask("hi", system="You are a writer."))).text == "plain"


async def test_replies_cycle_in_order_when_no_rule_matches() -> None:
    b = ReplayBackend(rules=[{"match": "special", "reply": "S"}], replies=["one", "two"])
    texts = [(await b.complete(ask(t))).text for t in ("a", "special", "b", "c")]
    assert texts == ["one", "S", "two", "one"]


async def test_default_reply_fills_in_the_task() -> None:
    assert (await ReplayBackend().complete(ask("Name a color.\nBe brief."))).text == (
        DEFAULT_REPLY.replace("{task}", "Name a color.")
    )
    b = ReplayBackend(default="Answer to: {task}")
    request = CompletionRequest(
        messages=(
            ChatMessage("user", "first question"),
            ChatMessage("assistant", "x"),
            ChatMessage("user", "  Second question\nmore lines"),
        )
    )
    assert (await b.complete(request)).text == "Answer to: Second question"


async def test_label_template_finds_the_peer_answer_and_keeps_json_braces() -> None:
    b = ReplayBackend(
        rules=[
            {
                "match": "<answer label=",
                "reply": '{"vote": "{label_containing:PARIS}", "reason": "right"}',
            }
        ]
    )
    out = (await b.complete(ask(REVIEW))).text
    assert json.loads(out) == {"vote": "B", "reason": "right"}


async def test_label_template_falls_back_to_a() -> None:
    b = ReplayBackend(default="{label_containing:Berlin}|{label_containing:marseille}")
    assert (await b.complete(ask(REVIEW))).text == "A|A"
    assert (await b.complete(ask("no answer blocks here"))).text.startswith("A|")


async def test_usage_is_estimated_and_replay_costs_no_tools() -> None:
    b = ReplayBackend(default="four score and seven")
    request = ask("How long?")
    done = await b.complete(request)
    assert done.usage == Usage(estimate_request(request), estimate_text("four score and seven"))
    assert done.model == "replay"
    assert done.finish_reason == "stop"
    assert b.supports_tools is False


async def test_stream_sends_chunks_of_the_configured_size() -> None:
    b = ReplayBackend(default="abcdefghij", stream_chunk=4)
    chunks = [c async for c in b.stream(ask("x"))]
    assert [c.delta for c in chunks[:-1]] == ["abcd", "efgh", "ij"]
    final = chunks[-1].completion
    assert final is not None and final.text == "abcdefghij"


async def test_stream_without_chunk_size_is_one_delta() -> None:
    chunks = [c async for c in ReplayBackend(default="whole").stream(ask("x"))]
    assert [c.delta for c in chunks[:-1]] == ["whole"]


async def test_latency_is_spent_in_complete_and_spread_over_a_stream() -> None:
    b = ReplayBackend(default="0123456789", latency=0.1, stream_chunk=1)
    started = time.perf_counter()
    done = await b.complete(ask("x"))
    assert time.perf_counter() - started >= 0.1
    assert done.latency >= 0.1
    started = time.perf_counter()
    arrivals = []
    async for _chunk in b.stream(ask("x")):
        arrivals.append(time.perf_counter() - started)
    assert len(arrivals) == 11
    assert arrivals[-1] >= 0.1
    assert arrivals[0] < 0.1  # the first delta comes before the whole latency has passed


def test_answers_file_in_yaml_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "answers.yaml").write_text(
        "rules:\n  - match: france\n    reply: Paris\nreplies: [r1]\ndefault: dflt\n"
    )
    b = ReplayBackend(
        rules=[{"match": "inline", "reply": "first"}],
        answers_file="answers.yaml",
        base_dir=tmp_path,
    )
    assert [r.reply for r in b.rules] == ["first", "Paris"]  # inline rules come first
    assert b.replies == ("r1",)
    assert b.default == "dflt"


async def test_answers_file_in_json_through_the_registry(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"rules": [{"match": "x", "reply": "from json"}]}))
    b = create_backend("replay", params={"answers_file": "a.json"}, base_dir=tmp_path)
    assert (await b.complete(ask("x marks"))).text == "from json"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("rules: [", "invalid YAML"),
        ("- just a string", "needs `match`"),
        ("rulez: []", "unknown key"),
        ("42", "mapping"),
    ],
)
def test_bad_answers_files_are_config_errors(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "a.yaml").write_text(content)
    with pytest.raises(ConfigError, match=message):
        ReplayBackend(answers_file=tmp_path / "a.yaml")


def test_missing_answers_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        ReplayBackend(answers_file="nope.yaml", base_dir=tmp_path)
    assert info.value.file == str(tmp_path / "nope.yaml")


def test_bad_regex_and_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="bad regex") as info:
        ReplayBackend(rules=[{"match": "(unclosed", "reply": "x"}])
    assert info.value.key == "rules[0].match"
    with pytest.raises(ConfigError, match="needs `match`"):
        ReplayBackend(rules=[{"reply": "x"}])
    with pytest.raises(ConfigError):
        ReplayBackend(latency=-1)
    with pytest.raises(ConfigError, match="replay"):
        create_backend("replay", params={"rulez": []})  # a typo is not silently ignored
