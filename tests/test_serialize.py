"""One Completion serializer for the cache and the bus: every field survives both."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from massgen.backends.function import FunctionBackend
from massgen.distributed.worker import completion_from_dict as from_bus
from massgen.resilience.cache import CachingBackend, decode_completion, encode_completion
from massgen.serialize import completion_from_dict, completion_to_dict
from massgen.serialize import completion_to_dict as to_bus
from massgen.store import MemoryStore
from massgen.types import (
    ChatMessage,
    Completion,
    CompletionRequest,
    ServerToolCall,
    Source,
    ToolCall,
    Usage,
)

text = st.text(max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
arguments = st.dictionaries(text, json_values, max_size=3)
completions = st.builds(
    Completion,
    text=text,
    model=text,
    usage=st.builds(
        Usage,
        st.integers(0, 10**9),
        st.integers(0, 10**9),
        st.integers(0, 10**9),
        st.integers(0, 10**9),
        st.integers(0, 10**9),
        st.integers(0, 10**9),
    ),
    finish_reason=st.sampled_from(["stop", "length", "tool_calls", "content_filter", "other"]),
    tool_calls=st.lists(st.builds(ToolCall, text, text, arguments), max_size=3).map(tuple),
    latency=st.floats(0, 1e6),
    cached=st.booleans(),
    sources=st.lists(st.builds(Source, text, text), max_size=3).map(tuple),
    server_calls=st.lists(
        st.builds(ServerToolCall, text, text, arguments, st.booleans(), text), max_size=3
    ).map(tuple),
    requests=st.integers(0, 100),
    reasoning=text,
)


@given(completions)
def test_every_field_round_trips(completion: Completion) -> None:
    assert completion_from_dict(completion_to_dict(completion)) == completion
    # through JSON text, as the bus and the cache carry it
    wire = json.loads(json.dumps(completion_to_dict(completion)))
    assert completion_from_dict(wire) == completion
    assert from_bus(json.loads(json.dumps(to_bus(completion)))) == completion
    # a cache hit is the same answer, marked cached, timed by the lookup, no request made
    hit = decode_completion(encode_completion(completion), 0.125)
    assert hit == replace(completion, cached=True, requests=0, latency=0.125)


def test_a_completion_from_before_cached_and_reasoning_tokens_reads_them_as_zero() -> None:
    """A cache entry, or a worker's answer on the bus, from a massgen that did not count them."""
    done = Completion(text="4", model="m", usage=Usage(3, 1, 2, 1, 1))
    entry = json.loads(encode_completion(done))
    wire = completion_to_dict(done)
    for usage in (entry["usage"], wire["usage"]):
        got = (usage.pop("cached_tokens"), usage.pop("reasoning_tokens"))
        assert (*got, usage.pop("cache_write_tokens")) == (2, 1, 1)
    assert decode_completion(json.dumps(entry).encode(), 0.0).usage == Usage(3, 1)
    assert completion_from_dict(wire).usage == Usage(3, 1)


def test_a_completion_from_before_cache_write_tokens_reads_them_as_zero() -> None:
    """One written by a massgen that counted cached and reasoning tokens, not cache writes."""
    done = Completion(text="4", model="m", usage=Usage(3, 1, 2, 1, 1))
    entry = json.loads(encode_completion(done))
    wire = completion_to_dict(done)
    for usage in (entry["usage"], wire["usage"]):
        assert usage.pop("cache_write_tokens") == 1
    assert decode_completion(json.dumps(entry).encode(), 0.0).usage == Usage(3, 1, 2, 1)
    assert completion_from_dict(wire).usage == Usage(3, 1, 2, 1)


def test_a_completion_from_before_one_hour_cache_writes_reads_them_as_zero() -> None:
    """One written by a massgen that counted cache writes whole, not their one-hour part."""
    done = Completion(text="4", model="m", usage=Usage(3926, 4, 0, 0, 3913, 3913))
    entry = json.loads(encode_completion(done))
    wire = completion_to_dict(done)
    for usage in (entry["usage"], wire["usage"]):
        assert usage.pop("cache_write_1h_tokens") == 3913
    older = Usage(3926, 4, 0, 0, 3913)
    assert decode_completion(json.dumps(entry).encode(), 0.0).usage == older
    assert completion_from_dict(wire).usage == older


# Written by the cache before this format (entry version 2): usage and sources as pairs.
_V2_ENTRY = (
    b'{"finish_reason":"tool_calls","latency":0.5,"model":"gpt-4o-mini","reasoning":"thinking",'
    b'"server_calls":[{"arguments":{"query":"capital"},"id":"s1","name":"web_search","ok":true,'
    b'"output":"1 result"}],"sources":[["https://example.org/p","Paris"]],"text":"Paris.",'
    b'"tool_calls":[{"arguments":{"a":2,"b":[3]},"id":"c1","name":"add"}],"usage":[12,3],"v":2}'
)


def test_an_entry_of_the_previous_format_still_reads() -> None:
    assert decode_completion(_V2_ENTRY, 0.01) == Completion(
        text="Paris.",
        model="gpt-4o-mini",
        usage=Usage(12, 3),
        finish_reason="tool_calls",
        tool_calls=(ToolCall("c1", "add", {"a": 2, "b": [3]}),),
        latency=0.01,
        cached=True,
        sources=(Source("https://example.org/p", "Paris"),),
        server_calls=(ServerToolCall("s1", "web_search", {"query": "capital"}, True, "1 result"),),
        requests=0,
        reasoning="thinking",
    )


async def test_a_stored_entry_of_the_previous_format_is_served() -> None:
    inner = FunctionBackend(lambda request: "fresh")
    store = MemoryStore()
    cache = CachingBackend(inner, store)
    request = CompletionRequest(messages=(ChatMessage("user", "Capital of France?"),))
    key = cache.key_for(request)
    assert key is not None
    await store.set(key, _V2_ENTRY)
    got = await cache.complete(request)
    assert got.text == "Paris." and got.cached and got.usage == Usage(12, 3)
    assert inner.calls == []
