"""The retry wrapper: budget, Retry-After, what is never retried, events per agent."""

from __future__ import annotations

import random

import pytest

from massgen import events as ev
from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.errors import AuthenticationError, ProviderError, RateLimited
from massgen.orchestrator import Orchestrator
from massgen.resilience.retry import RetryingBackend, RetryPolicy
from massgen.types import ChatMessage, CompletionRequest

REQ = CompletionRequest(messages=(ChatMessage("user", "hi"),))


def flaky(errors: list[BaseException]):
    def respond(request):
        if errors:
            raise errors.pop(0)
        return "ok"

    return respond


async def test_transient_errors_are_retried_until_success():
    backend = FunctionBackend(flaky([ProviderError("x", status=500), RateLimited("y", status=429)]))
    wrapped = RetryingBackend(backend, RetryPolicy(max_retries=3, base_delay=0.001))
    assert (await wrapped.complete(REQ)).text == "ok"
    assert len(backend.calls) == 3


async def test_the_budget_is_max_retries_plus_one_attempts():
    backend = FunctionBackend(flaky([ProviderError("x", status=503)] * 10))
    wrapped = RetryingBackend(backend, RetryPolicy(max_retries=2, base_delay=0.001))
    with pytest.raises(ProviderError):
        await wrapped.complete(REQ)
    assert len(backend.calls) == 3


async def test_authentication_errors_are_never_retried():
    backend = FunctionBackend(flaky([AuthenticationError("no", status=401)]))
    wrapped = RetryingBackend(backend, RetryPolicy(max_retries=5, base_delay=0.001))
    with pytest.raises(AuthenticationError):
        await wrapped.complete(REQ)
    assert len(backend.calls) == 1


def test_waits_grow_and_respect_retry_after():
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, retry_after_cap=60)
    rng = random.Random(1)
    plain = ProviderError("x", status=500)
    waits = [policy.delay(n, plain, rng) for n in (1, 2, 3, 4, 5)]
    assert all(0.5 <= w <= 1.0 for w in waits[:1]) and all(w <= 8.0 for w in waits)
    assert waits[3] >= 4.0  # 8 s ceiling, jitter keeps at least half
    assert policy.delay(1, RateLimited("x", status=429, retry_after=7.5), rng) >= 7.5
    assert policy.delay(1, RateLimited("x", status=429, retry_after=999), rng) == 60


async def test_streams_are_retried_and_each_retry_is_an_event_of_its_agent():
    seen: list[ev.Event] = []
    backend = FunctionBackend(flaky([ProviderError("boom", status=502)]))
    agents = [Agent("a", backend)]
    orchestrator = Orchestrator(agents, retry_delay=0.001, subscribers=[seen.append])
    result = await orchestrator.arun("T", strategy="parallel")
    retries = [e for e in seen if isinstance(e, ev.AgentRetrying)]
    assert [(e.agent, e.attempt) for e in retries] == [("a", 1)]
    assert result.final_answer == "ok" and result.status == "done"


async def test_fail_fast_does_not_retry():
    backend = FunctionBackend(
        flaky([ProviderError("x", status=500), ProviderError("x", status=500)])
    )
    orchestrator = Orchestrator(
        [Agent("a", backend)], error_strategy="fail_fast", retry_delay=0.001
    )
    with pytest.raises(Exception, match="agent 'a' failed"):
        await orchestrator.arun("T")
    assert len(backend.calls) == 1
