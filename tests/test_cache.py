"""The response cache: hits make no provider request, errors are never replayed, keys are
exact and stable, and it works on every store."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from massgen.backends.base import Backend
from massgen.backends.function import FunctionBackend
from massgen.errors import ProviderError, RateLimited, TransportError
from massgen.resilience.cache import (
    CachingBackend,
    backend_identity,
    cache_key,
    pieces,
)
from massgen.store import MemoryStore, SQLiteStore, Store
from massgen.types import (
    ChatMessage,
    Completion,
    CompletionRequest,
    NativeTool,
    ServerToolCall,
    Source,
    StreamChunk,
    ToolCall,
    ToolSpec,
    Usage,
)

REDIS_URL = os.environ.get("MASSGEN_TEST_REDIS", "redis://127.0.0.1:6379/0")
ANSWER = "The answer is forty two, as everyone who asked the machine knows."


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def ask(text: str = "What is six times seven?", **kw: Any) -> CompletionRequest:
    return CompletionRequest(messages=(ChatMessage("user", text),), **kw)


def counting(answer: str = ANSWER, **kw: Any) -> FunctionBackend:
    return FunctionBackend(lambda req: answer, model="fn-model", **kw)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        s: Store = MemoryStore()
    elif request.param == "sqlite":
        s = SQLiteStore(tmp_path / ".massgen" / "cache.sqlite3")
    else:
        from massgen.store import RedisStore

        s = RedisStore(REDIS_URL, prefix=f"test:{uuid.uuid4().hex[:10]}:")
    try:
        yield s
    finally:
        await s.delete_prefix("")
        await s.aclose()


async def test_second_identical_request_makes_no_provider_request(store: Store) -> None:
    inner = counting()
    cache = CachingBackend(inner, store, ttl=60)
    first = await cache.complete(ask())
    second = await cache.complete(ask())
    assert len(inner.calls) == 1
    assert (cache.hits, cache.misses) == (1, 1)
    assert first.cached is False and second.cached is True
    assert (first.requests, second.requests) == (1, 0)
    assert second.text == first.text == ANSWER
    assert (second.model, second.usage, second.finish_reason) == (
        first.model,
        first.usage,
        first.finish_reason,
    )
    assert second.latency < 1.0
    await cache.complete(ask("something else"))
    assert len(inner.calls) == 2


async def test_streaming_from_cache_still_streams(store: Store) -> None:
    inner = counting()
    cache = CachingBackend(inner, store)
    live = [c async for c in cache.stream(ask())]
    assert live[-1].completion is not None and live[-1].completion.cached is False
    replay = [c async for c in cache.stream(ask())]
    assert len(inner.calls) == 1
    deltas = [c.delta for c in replay[:-1]]
    assert len(deltas) > 1 and all(deltas)
    assert "".join(deltas) == ANSWER
    final = replay[-1].completion
    assert final is not None and final.cached is True and final.text == ANSWER
    assert all(c.completion is None for c in replay[:-1])
    assert (await cache.complete(ask())).cached is True  # one entry serves both paths
    assert len(inner.calls) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.7},
        {"temperature": 0.2},
        {"model": "other-model"},
        {"max_tokens": 100},
        {"tool_choice": "required"},
        {"extra": {"top_p": 0.9}},
        {"extra": {"top_p": 0.8}},
        {"tools": (ToolSpec("vote", "cast a vote", {"type": "object"}),)},
        {"native_tools": (NativeTool("web_search"),)},
        {"native_tools": (NativeTool("web_search", allowed_domains=("example.org",)),)},
        {"tools": (ToolSpec("vote", "cast a vote", {"type": "object", "required": ["x"]}),)},
        {"messages": (ChatMessage("user", "What is six times eight?"),)},
        {"messages": (ChatMessage("system", "What is six times seven?"),)},
        {
            "messages": (
                ChatMessage("user", "What is six times seven?"),
                ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "calc", {"x": 6}),)),
            )
        },
    ],
)
def test_anything_that_shapes_the_answer_changes_the_key(change: dict[str, Any]) -> None:
    base = ask(temperature=0.0)
    kw: dict[str, Any] = {"messages": base.messages, "temperature": 0.0, **change}
    model = kw.pop("model", None)
    changed = CompletionRequest(model=model, **kw)
    resolved = model or "m"
    assert cache_key(changed, "openai", resolved) != cache_key(base, "openai", "m")


def test_key_depends_on_provider_and_model_not_on_timeout() -> None:
    req = ask(temperature=1)
    key = cache_key(req, "openai", "gpt")
    assert cache_key(req, "anthropic", "gpt") != key
    assert cache_key(req, "openai", "gpt-mini") != key
    assert cache_key(ask(temperature=1, timeout=5.0), "openai", "gpt") == key
    assert cache_key(ask(temperature=1.0), "openai", "gpt") == key  # 1 and 1.0 agree
    assert cache_key(ask(temperature=1, extra={"b": 1, "a": 2}), "openai", "gpt") == cache_key(
        ask(temperature=1, extra={"a": 2, "b": 1}), "openai", "gpt"
    )
    assert len(key) == 64 and int(key, 16) >= 0


async def test_different_backends_and_models_do_not_share_entries() -> None:
    store = MemoryStore()
    a = CachingBackend(FunctionBackend(lambda r: "from a", model="m1"), store)
    b = CachingBackend(FunctionBackend(lambda r: "from b", model="m2"), store)
    assert (await a.complete(ask())).text == "from a"
    assert (await b.complete(ask())).text == "from b"
    assert (await b.complete(ask())).cached is True
    # Same backend class, same model: one entry. Tell such backends apart by namespace.
    shared = await a.complete(ask(model="m2"))
    assert shared.cached is True and shared.text == "from b"


def test_backend_identity_looks_through_wrappers() -> None:
    from massgen.resilience.retry import RetryingBackend, RetryPolicy

    inner = counting()
    wrapped = RetryingBackend(inner, RetryPolicy())
    assert backend_identity(wrapped) == backend_identity(inner)
    assert backend_identity(inner).startswith("function:massgen.backends.function.")

    class Endpoint(Backend):
        provider = "openai"
        base_url = "http://localhost:8000/v1"

    assert backend_identity(Endpoint()).endswith("@http://localhost:8000/v1")


_KEY_IN_CHILD = """
from massgen.resilience.cache import cache_key
from massgen.types import ChatMessage, CompletionRequest, ToolCall, ToolSpec
req = CompletionRequest(
    messages=(
        ChatMessage("system", "Be brief. \\u00e9\\u4e2d"),
        ChatMessage("user", "Add 2 and 3."),
        ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "add", {"b": 3, "a": 2}),)),
        ChatMessage("tool", "5", tool_call_id="c1", name="add"),
    ),
    temperature=0.3,
    max_tokens=256,
    tools=(ToolSpec("add", "add numbers", {"type": "object", "properties": {"a": {}, "b": {}}}),),
    tool_choice="auto",
    extra={"seed": 7, "stop": ["\\n\\n"], "nested": {"z": 1, "y": [1.5, None, True]}},
)
print(cache_key(req, "openai", "gpt-4o-mini"))
"""


def test_key_is_stable_across_processes() -> None:
    namespace: dict[str, Any] = {}
    exec(_KEY_IN_CHILD.replace("print(", "result = ("), namespace)
    here = namespace["result"]
    # As before tool results carried images: entries cached then are still found.
    assert here == "d526b3f2839519bd836fecc33ffe4e49f20775c3502ae8251ab2d546a05d61e4"
    for seed in ("1", "2"):  # str hashing differs per process; our key must not
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _KEY_IN_CHILD],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        assert out.stdout.strip() == here


async def test_entries_expire_after_the_ttl() -> None:
    clock = FakeClock()
    inner = counting()
    cache = CachingBackend(inner, MemoryStore(clock=clock), ttl=60)
    await cache.complete(ask())
    clock.now += 59
    assert (await cache.complete(ask())).cached is True
    clock.now += 2
    assert (await cache.complete(ask())).cached is False
    assert len(inner.calls) == 2


async def test_errors_are_never_cached(store: Store) -> None:
    failures = [RateLimited("slow down", provider="fn", status=429)]

    def flaky(req: CompletionRequest) -> str:
        if failures:
            raise failures.pop()
        return ANSWER

    inner = FunctionBackend(flaky)
    cache = CachingBackend(inner, store)
    with pytest.raises(ProviderError):
        await cache.complete(ask())
    assert await store.count() == 0
    second = await cache.complete(ask())
    assert second.cached is False and len(inner.calls) == 2
    assert (await cache.complete(ask())).cached is True
    assert len(inner.calls) == 2


class BrokenStream(Backend):
    """Streams a delta, then fails before its final chunk."""

    provider = "broken"

    def __init__(self) -> None:
        super().__init__(model="m")
        self.calls = 0

    async def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        self.calls += 1
        yield StreamChunk(delta="partial ")
        raise ProviderError("connection dropped", provider="broken")


async def test_a_stream_that_fails_is_not_cached() -> None:
    inner = BrokenStream()
    store = MemoryStore()
    cache = CachingBackend(inner, store)
    for _ in range(2):
        with pytest.raises(ProviderError):
            async for _chunk in cache.stream(ask()):
                pass
    assert inner.calls == 2 and await store.count() == 0


@pytest.mark.parametrize(
    ("completion", "kept"),
    [
        (Completion(ANSWER, "m", finish_reason="stop"), True),
        (Completion(ANSWER, "m", finish_reason="length"), True),
        (
            Completion("", "m", finish_reason="tool_calls", tool_calls=(ToolCall("1", "t", {}),)),
            True,
        ),
        (Completion(ANSWER, "m", finish_reason="content_filter"), False),
        (Completion(ANSWER, "m", finish_reason="other"), False),
        (Completion("", "m", finish_reason="stop"), False),
    ],
)
async def test_which_answers_are_kept(completion: Completion, kept: bool) -> None:
    inner = FunctionBackend(lambda req: completion)
    cache = CachingBackend(inner, MemoryStore())
    await cache.complete(ask())
    second = await cache.complete(ask())
    assert second.cached is kept
    assert len(inner.calls) == (1 if kept else 2)


async def test_tool_calls_and_usage_survive_the_round_trip(store: Store) -> None:
    answer = Completion(
        "",
        "fn-model",
        usage=Usage(120, 30),
        finish_reason="tool_calls",
        tool_calls=(ToolCall("call_1", "vote", {"label": "B", "reason": "correct \u2713"}),),
        latency=2.5,
    )
    cache = CachingBackend(FunctionBackend(lambda req: answer), store)
    await cache.complete(ask())
    hit = await cache.complete(ask())
    assert hit.cached is True
    assert hit.tool_calls == answer.tool_calls
    assert hit.usage == Usage(120, 30)
    assert hit.latency < answer.latency
    replay = [c async for c in cache.stream(ask())]
    assert len(replay) == 1 and replay[0].completion is not None  # no text, no deltas
    assert replay[0].completion.tool_calls == answer.tool_calls


async def test_sources_and_provider_searches_survive_the_round_trip(store: Store) -> None:
    answer = Completion(
        "Paris [1].",
        "claude",
        usage=Usage(50, 5),
        sources=(Source("https://example.org/paris", "Paris \u2013 capital"),),
        server_calls=(ServerToolCall("srv_1", "web_search", {"query": "capital"}, True, "1 hit"),),
    )
    cache = CachingBackend(FunctionBackend(lambda req: answer), store)
    await cache.complete(ask())
    hit = await cache.complete(ask())
    assert hit.cached is True
    assert (hit.sources, hit.server_calls) == (answer.sources, answer.server_calls)


class FailingStore(MemoryStore):
    async def get(self, key: str) -> bytes | None:
        raise TransportError("redis down")

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        raise TransportError("redis down")


async def test_a_failing_store_never_fails_a_request() -> None:
    inner = counting()
    cache = CachingBackend(inner, FailingStore())
    for _ in range(2):
        assert (await cache.complete(ask())).text == ANSWER
    assert len(inner.calls) == 2
    assert cache.store_errors == 4
    assert cache.misses == 2


async def test_corrupt_entries_are_misses() -> None:
    store = MemoryStore()
    inner = counting()
    cache = CachingBackend(inner, store)
    key = cache.key_for(ask())
    assert key is not None
    await store.set(key, b"not json at all")
    assert (await cache.complete(ask())).cached is False
    assert (await cache.complete(ask())).cached is True  # overwritten with a good entry


async def test_requests_that_cannot_be_keyed_bypass_the_cache() -> None:
    inner = counting()
    store = MemoryStore()
    cache = CachingBackend(inner, store)
    odd = ask(extra={"callback": object()})
    assert cache.key_for(odd) is None
    await cache.complete(odd)
    await cache.complete(odd)
    assert len(inner.calls) == 2 and await store.count() == 0


async def test_clear_and_namespaces(store: Store) -> None:
    inner = counting()
    a = CachingBackend(inner, store, namespace="a")
    b = CachingBackend(inner, store, namespace="b")
    await a.complete(ask())
    await b.complete(ask())
    assert len(inner.calls) == 2  # namespaces do not share entries
    assert await store.count("cache:") == 2
    assert await a.clear() == 1
    assert (await a.complete(ask())).cached is False
    assert (await b.complete(ask())).cached is True


async def test_wrapper_keeps_the_backend_face_and_leaves_the_store_open() -> None:
    closed: list[bool] = []

    class Closing(FunctionBackend):
        async def aclose(self) -> None:
            closed.append(True)

    inner = Closing(lambda req: ANSWER, model="m", tools=True)
    store = MemoryStore()
    cache = CachingBackend(inner, store)
    assert (cache.provider, cache.model, cache.supports_tools) == ("function", "m", True)
    assert cache.describe() == inner.describe()
    await cache.complete(ask())
    await cache.aclose()
    assert closed == [True]
    assert await store.count() == 1


def test_pieces_rebuild_the_text() -> None:
    for text in ["", "word", ANSWER, "a  b\n\nc ", "x" * 50]:
        parts = pieces(text)
        assert "".join(parts) == text
        assert len(parts) <= 4
        assert all(parts)
    assert len(pieces(ANSWER)) > 1
