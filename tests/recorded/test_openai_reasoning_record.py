"""Reasoning text travels with the answer to every place a Completion goes, never into it:
the run record, the cache, the distributed codec, a tool loop's final answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.backends.openai import OpenAIBackend
from massgen.distributed.worker import completion_from_dict
from massgen.orchestrator import Orchestrator
from massgen.record import RunRecorder
from massgen.resilience.cache import decode_completion, encode_completion
from massgen.serialize import completion_to_dict
from massgen.types import Completion, ToolCall, Usage
from tests.recorded import openai_facts
from tests.recorded.harness import HERE, ReplayServer, load

THINKING = HERE / "openai_compat" / "pydantic_ai-test_deepseek_model_thinking_part.yaml"


@pytest.mark.parametrize("client", ["http", "sdk"])
async def test_the_run_record_keeps_the_reasoning_apart_from_the_answer(
    tmp_path: Path, client: str
) -> None:
    """pydantic-ai's DeepSeek reasoner recording, through a whole run."""
    rec = load(THINKING)[0]
    facts = openai_facts.read(rec)
    assert facts.reasoning and facts.text
    record = tmp_path / "run.json"
    with ReplayServer([rec]) as server:
        backend = OpenAIBackend(
            "deepseek-reasoner", api_key="sk-test", base_url=f"{server.url}/v1", client=client
        )
        orchestrator = Orchestrator(
            [Agent("ada", backend)], strategy="parallel", subscribers=[RunRecorder(path=record)]
        )
        result = await orchestrator.arun("Hello")
        await orchestrator.aclose()
    assert facts.text in result.final_answer
    assert facts.reasoning not in result.final_answer
    answers = json.loads(record.read_text())["answers"]
    assert [(a["text"], a["reasoning"]) for a in answers] == [(facts.text, facts.reasoning)]


def test_the_cache_and_the_bus_carry_the_reasoning() -> None:
    done = Completion(text="4", model="m", usage=Usage(3, 1), reasoning="2 + 2 is 4.")
    assert decode_completion(encode_completion(done), 0.0).reasoning == "2 + 2 is 4."
    assert completion_from_dict(completion_to_dict(done)) == done


def test_a_cache_entry_written_before_reasoning_was_kept_still_reads() -> None:
    entry = json.loads(encode_completion(Completion(text="4", model="m")))
    del entry["reasoning"]
    assert decode_completion(json.dumps(entry).encode(), 0.0).reasoning == ""


async def test_a_tool_loop_keeps_the_reasoning_of_every_request() -> None:
    replies = [
        Completion(
            text="",
            model="m",
            tool_calls=(ToolCall("call_1", "calculator", {"expression": "6*7"}),),
            finish_reason="tool_calls",
            reasoning="I should compute it.",
        ),
        Completion(text="42", model="m", reasoning="The tool said 42."),
    ]
    backend = FunctionBackend(lambda _: replies.pop(0), tools=True)
    orchestrator = Orchestrator([Agent("ada", backend, tools=["calculator"])], strategy="parallel")
    result = await orchestrator.arun("6*7?")
    await orchestrator.aclose()
    assert [a.reasoning for a in result.answers] == ["I should compute it.\n\nThe tool said 42."]
    assert result.final_answer == "42"
