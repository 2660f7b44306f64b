"""The OpenAI wire format of `massgen serve` (massgen/serve/openai_wire.py) as plain data:
model names, how messages become the task, what is refused, and chunks' shape."""

from __future__ import annotations

from typing import Any

import pytest

from massgen.errors import ConfigError
from massgen.result import RunResult
from massgen.serve import openai_wire as wire
from massgen.types import Usage


def test_model_names_are_a_team_and_maybe_a_strategy() -> None:
    assert wire.model_ids("t") == [
        "massgen/t",
        "massgen/t:parallel",
        "massgen/t:sequential",
        "massgen/t:consensus",
    ]
    assert wire.split_model("massgen/t") == ("t", None)
    assert wire.split_model("massgen/t:consensus") == ("t", "consensus")
    for other in ("gpt-4o", "massgen/", "massgen/t:chaos", "massgen/:parallel"):
        assert wire.split_model(other) is None, other


def test_one_user_message_is_the_task_as_is() -> None:
    assert wire.task_of([{"role": "user", "content": "Hi?"}], session=False) == "Hi?"


def test_with_a_session_earlier_turns_are_left_to_its_memory() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "One?"},
        {"role": "assistant", "content": "1"},
        {"role": "user", "content": "Two?"},
    ]
    without = wire.task_of(messages, session=False)
    assert without == (
        "Be brief.\n\nConversation so far:\nuser: One?\nassistant: 1\n\nCurrent request:\nTwo?"
    )
    assert wire.task_of(messages, session=True) == "Be brief.\n\nCurrent request:\nTwo?"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], "body"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "massgen/t", "messages": "hi"}, "messages"),
        (
            {"model": "massgen/t", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
        ),
        ({"model": "massgen/t", "messages": [{"role": "user", "content": "  "}]}, "messages"),
        (
            {"model": "massgen/t", "messages": [{"role": "user", "content": 3}]},
            "messages[0].content",
        ),
        (
            {"model": "massgen/t", "tools": [{}], "messages": [{"role": "user", "content": "x"}]},
            "tools",
        ),
        (
            {
                "model": "massgen/t",
                "metadata": {"session": "a b"},
                "messages": [{"role": "user", "content": "x"}],
            },
            "metadata.session",
        ),
        (
            {"model": "massgen/t", "user": "a b", "messages": [{"role": "user", "content": "x"}]},
            "user",
        ),
    ],
)
def test_what_is_refused_names_its_param(body: Any, param: str) -> None:
    with pytest.raises(ConfigError) as caught:
        wire.parse_chat(body)
    assert caught.value.key == param


def test_a_request_is_parsed_once_into_an_ask() -> None:
    asked = wire.parse_chat(
        {
            "model": "massgen/t:parallel",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "alice@example",
            "temperature": 0.2,  # the agents' own configs decide it
        }
    )
    assert asked == wire.Ask(
        "massgen/t:parallel", "t", "parallel", "Hi", True, True, "alice@example"
    )
    plain = wire.parse_response_request(
        {"model": "massgen/t", "input": "Hi", "instructions": "Be brief."}
    )
    assert (plain.team, plain.task, plain.stream) == (
        "t",
        "Be brief.\n\nCurrent request:\nHi",
        False,
    )


def test_the_answer_streams_as_chunks_then_the_usage() -> None:
    result = RunResult(run_id="r1", task="t", strategy="parallel", final_answer="x" * 100)
    result.usage = Usage(7, 5, cached_tokens=3, reasoning_tokens=2)
    asked = wire.Ask("massgen/t", "t", None, "t", True, True)
    chunks = list(wire.answer_chunks(asked, result, {"winner": None}))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "x" * 100
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and "massgen" in chunks[-2]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 5,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 3},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    assert all(c["usage"] is None for c in chunks[:-1])
    assert {c["id"] for c in chunks} == {"chatcmpl-r1"}


def test_a_response_streams_as_numbered_events_opened_once() -> None:
    result = RunResult(run_id="r-1", task="t", strategy="parallel", final_answer="x" * 100)
    result.usage = Usage(7, 5)
    told = wire.ResponseEvents(wire.Ask("massgen/t", "t", None, "t", True))
    events = [*told.opened("r-1", 1.5), *told.opened("r-2", 2.0), *told.answered(result, {})]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events].count("response.created") == 1
    texts = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert texts == ["x" * 64, "x" * 36]
    done = events[-1]["response"]
    assert (done["id"], done["created_at"], done["status"]) == ("resp_r1", 1, "completed")
    assert done["usage"]["total_tokens"] == 12 and done["output"][0]["id"] == "msg_r1"


def test_a_response_failing_before_it_began_is_opened_then_failed() -> None:
    told = wire.ResponseEvents(wire.Ask("massgen/t", "t", None, "t", True))
    error = wire.error_body("the team failed", "server_error", None)["error"]
    events = told.failed(error)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    failed = events[-1]["response"]
    assert failed["id"] == events[0]["response"]["id"] and failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "the team failed"}


def test_a_responses_stream_flag_must_be_a_boolean() -> None:
    assert wire.parse_response_request({"model": "massgen/t", "input": "Hi", "stream": True}).stream
    with pytest.raises(ConfigError) as caught:
        wire.parse_response_request({"model": "massgen/t", "input": "Hi", "stream": "yes"})
    assert caught.value.key == "stream"
