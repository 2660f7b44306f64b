"""R7: provider faults are absorbed, end to end.

Everything here goes through the real backend adapters (massgen's own OpenAI client, the
Anthropic and Google SDKs) speaking HTTP to the provider simulator, so every count is
measured where it matters: at the simulator. Teams are built from YAML the way a user builds
them; the circuit breaker test builds the stack by hand so it can drive the breaker's clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from massgen import events as ev
from massgen.backends.base import Backend, layers
from massgen.backends.registry import create_backend
from massgen.config import loads
from massgen.errors import AgentFailed, CircuitOpen, ProviderError, ProviderTimeout
from massgen.orchestrator import Orchestrator
from massgen.resilience.breaker import (
    BreakerBackend,
    BreakerPolicy,
    CircuitBreaker,
    CircuitState,
    endpoint_key,
)
from massgen.resilience.retry import RetryingBackend, RetryPolicy
from massgen.result import RunResult
from massgen.types import ChatMessage, CompletionRequest
from tests.sim.sim_types import Drop, Fault, Hang, Reply, SimRequest, Text
from tests.sim.simulator import ProviderSimulator

# id -> (backend type, model, simulator URL attribute, OpenAI client)
PROVIDERS: dict[str, tuple[str, str, str, str | None]] = {
    "openai": ("openai", "gpt-4o-mini", "openai_base_url", None),  # massgen's own client
    "anthropic": ("anthropic", "claude-sonnet-5", "anthropic_base_url", None),
    "google": ("google", "gemini-2.5-flash", "gemini_base_url", None),
    "openai-sdk": ("openai", "gpt-4o-mini", "openai_base_url", "sdk"),
}
NATIVE = ["openai", "anthropic", "google"]  # the OpenAI SDK client joins the costlier tests

MAX_RETRIES = 2
BUDGET = MAX_RETRIES + 1  # attempts per request: the first one and its retries
HANG_TIMEOUT = 0.3  # the failing backend's request timeout, for Hang faults
TASK = "What is the capital of France?"


# -- building and running a team -------------------------------------------------------------


def backend_yaml(sim: ProviderSimulator, kind: str, timeout: float) -> str:
    type_, model, url_attr, client = PROVIDERS[kind]
    extra = f", client: {client}" if client else ""
    return (
        f"{{type: {type_}, model: {model}, base_url: '{getattr(sim, url_attr)}', "
        f"api_key: x, timeout: {timeout}{extra}}}"
    )


def team_yaml(
    sim: ProviderSimulator,
    kind: str,
    agents: Sequence[str] = ("alpha", "beta"),
    *,
    error_strategy: str = "continue",
    fallback: dict[str, str] | None = None,
    timeouts: dict[str, float] | None = None,
) -> str:
    """A parallel team, one inline backend per agent; each agent's role names it, so the
    simulator can tell (and script) the agents apart by their system prompt."""
    fallback = fallback or {}
    timeouts = timeouts or {}
    lines = ["agents:"]
    for name in agents:
        lines += [
            f"  - name: {name}",
            f"    role: You are agent {name}.",
            f"    backend: {backend_yaml(sim, kind, timeouts.get(name, 10.0))}",
        ]
        if name in fallback:
            lines.append(f"    fallback: {fallback[name]}")
        if name in fallback.values():
            lines.append("    standby: true")
    lines += [
        "orchestrator:",
        "  strategy: parallel",
        f"  error_strategy: {error_strategy}",
        f"  max_retries: {MAX_RETRIES}",
        "  retry_delay: 0.01",
    ]
    return "\n".join(lines) + "\n"


async def run_team(text: str) -> tuple[RunResult | BaseException, list[ev.Event]]:
    """Run the team on TASK; the result (or the error it raised) and every event."""
    events: list[ev.Event] = []
    orchestrator = Orchestrator.from_config(loads(text), subscribers=[events.append])
    try:
        return await orchestrator.arun(TASK), events
    except ProviderError:
        raise  # a bare provider error escaping the orchestrator is a bug, not an outcome
    except Exception as error:
        return error, events
    finally:
        await orchestrator.aclose()


def of(agent: str, requests: Sequence[SimRequest]) -> list[SimRequest]:
    """The requests ``agent`` sent (its role is its system prompt)."""
    return [r for r in requests if f"agent {agent}." in r.system]


def retries(events: Sequence[ev.Event], agent: str) -> list[ev.AgentRetrying]:
    return [e for e in events if isinstance(e, ev.AgentRetrying) and e.agent == agent]


def script_agent(sim: ProviderSimulator, agent: str, replies: Sequence[Reply]) -> None:
    sim.script(list(replies), match=f"agent {agent}.")


# -- 429 with Retry-After --------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(PROVIDERS))
async def test_429_waits_at_least_retry_after_then_answers(
    sim: ProviderSimulator, kind: str
) -> None:
    retry_after = 0.5
    script_agent(sim, "alpha", [Fault(429, retry_after=retry_after), Text("Paris.")])

    result, events = await run_team(team_yaml(sim, kind, ["alpha"]))

    assert isinstance(result, RunResult), result
    assert result.status == "done"
    assert result.final_answer == "Paris."
    seen = sim.requests
    assert len(seen) == 2
    assert seen[1].arrived - seen[0].arrived >= retry_after  # measured at the provider
    [retry] = retries(events, "alpha")
    assert retry.attempt == 1
    assert retry.wait >= retry_after
    assert "429" in retry.error


# -- transient faults spend the whole budget -------------------------------------------------

TRANSIENT: dict[str, Reply] = {
    "500": Fault(500),
    "503": Fault(503),
    "529": Fault(529),
    "hang": Hang(),
    "drop-headers": Drop("headers"),
    "drop-partial": Drop("partial"),
}


def failing_team(
    sim: ProviderSimulator, kind: str, fault: Reply, agents: Sequence[str], strategy: str
) -> str:
    """``alpha`` always gets ``fault``; any other agent gets the simulator's default answer."""
    script_agent(sim, "alpha", [fault])
    timeouts = {"alpha": HANG_TIMEOUT} if isinstance(fault, Hang) else {}
    return team_yaml(sim, kind, agents, error_strategy=strategy, timeouts=timeouts)


@pytest.mark.parametrize("fault", list(TRANSIENT))
@pytest.mark.parametrize("kind", list(PROVIDERS))
async def test_a_transient_fault_is_retried_until_the_budget_then_the_agent_is_dropped(
    sim: ProviderSimulator, kind: str, fault: str
) -> None:
    text = failing_team(sim, kind, TRANSIENT[fault], ["alpha", "beta"], "continue")

    result, events = await run_team(text)

    assert isinstance(result, RunResult), result
    assert result.status == "degraded"
    assert list(result.failed_agents) == ["alpha"]
    assert [a.agent for a in result.answers] == ["beta"]
    assert len(of("alpha", sim.requests)) == BUDGET
    assert len(of("beta", sim.requests)) == 1
    assert [r.attempt for r in retries(events, "alpha")] == list(range(1, BUDGET))
    dropped = [e for e in events if isinstance(e, ev.AgentFailedEvent)]
    assert [(e.agent, e.dropped) for e in dropped] == [("alpha", True)]
    sim.wait_until_idle(timeout=5)  # hung requests were given up by the client


@pytest.mark.parametrize("fault", list(TRANSIENT))
@pytest.mark.parametrize("kind", NATIVE)
async def test_fail_fast_fails_the_run_after_exactly_one_attempt(
    sim: ProviderSimulator, kind: str, fault: str
) -> None:
    text = failing_team(sim, kind, TRANSIENT[fault], ["alpha"], "fail_fast")

    result, events = await run_team(text)

    assert isinstance(result, AgentFailed), result
    assert result.agent == "alpha"
    assert isinstance(result.error, ProviderError)
    assert result.result.status == "failed"  # type: ignore[attr-defined]
    assert len(sim.requests) == 1
    assert retries(events, "alpha") == []
    sim.wait_until_idle(timeout=5)


@pytest.mark.parametrize("kind", NATIVE)
async def test_error_strategy_retry_fails_the_run_once_the_budget_is_spent(
    sim: ProviderSimulator, kind: str
) -> None:
    text = failing_team(sim, kind, Fault(503), ["alpha"], "retry")

    result, events = await run_team(text)

    assert isinstance(result, AgentFailed), result
    assert result.agent == "alpha"
    assert len(sim.requests) == BUDGET
    assert len(retries(events, "alpha")) == MAX_RETRIES


# -- caller faults are not retried -----------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401])
@pytest.mark.parametrize("kind", NATIVE)
async def test_auth_and_bad_request_errors_are_not_retried(
    sim: ProviderSimulator, kind: str, status: int
) -> None:
    text = failing_team(sim, kind, Fault(status), ["alpha", "beta"], "continue")

    result, events = await run_team(text)

    assert isinstance(result, RunResult), result
    assert result.status == "degraded"
    assert list(result.failed_agents) == ["alpha"]
    assert str(status) in result.failed_agents["alpha"]
    assert len(of("alpha", sim.requests)) == 1
    assert retries(events, "alpha") == []


# -- fallback --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", NATIVE)
async def test_a_fallback_agent_takes_the_seat_once_the_budget_is_spent(
    sim: ProviderSimulator, kind: str
) -> None:
    script_agent(sim, "alpha", [Fault(500)])
    script_agent(sim, "beta", [Text("Paris, says beta.")])
    text = team_yaml(sim, kind, ["alpha", "beta"], fallback={"alpha": "beta"})

    result, events = await run_team(text)

    assert isinstance(result, RunResult), result
    assert result.status == "done"
    assert result.failed_agents == {}
    [answer] = result.answers
    assert (answer.agent, answer.answered_by) == ("alpha", "beta")
    assert result.final_answer == "Paris, says beta."
    who = ["alpha" if of("alpha", [r]) else "beta" for r in sim.requests]
    assert who == ["alpha"] * BUDGET + ["beta"]
    handover = [e for e in events if isinstance(e, ev.AgentFailedEvent)]
    assert [(e.agent, e.dropped) for e in handover] == [("alpha", False)]


# -- circuit breaker -------------------------------------------------------------------------


class FakeClock:
    """The breaker's clock: seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


REQUEST = CompletionRequest(messages=(ChatMessage("user", TASK),))
COOLDOWN = 5.0


def guarded_stack(
    sim: ProviderSimulator, kind: str, clock: FakeClock
) -> tuple[Backend, CircuitBreaker]:
    """The orchestrator's order, built by hand: retry → breaker → real adapter."""
    type_, model, url_attr, client = PROVIDERS[kind]
    backend = create_backend(
        type_,
        model=model,
        api_key="x",
        base_url=getattr(sim, url_attr),
        timeout=HANG_TIMEOUT,
        client=client,
    )
    breaker = CircuitBreaker(
        endpoint_key(backend), BreakerPolicy(failures=3, cooldown=COOLDOWN), clock=clock
    )
    retrying = RetryingBackend(
        BreakerBackend(backend, breaker), RetryPolicy(max_retries=5, base_delay=0.01), seed=0
    )
    return retrying, breaker


@pytest.mark.parametrize("kind", NATIVE)
async def test_the_breaker_opens_fails_fast_and_lets_exactly_one_probe_through(
    sim: ProviderSimulator, kind: str
) -> None:
    # What reaches the simulator, in order; calls refused by the breaker take nothing.
    sim.script([Fault(500), Fault(500), Fault(500), Hang(), Text("back")])
    clock = FakeClock()
    backend, breaker = guarded_stack(sim, kind, clock)
    try:
        # Three failed attempts open the circuit; the fourth attempt fails fast, which
        # ends the retries although the budget (5) is not spent.
        with pytest.raises(CircuitOpen) as info:
            await backend.complete(REQUEST)
        assert sim.stats.requests == 3
        assert breaker.state is CircuitState.OPEN
        assert info.value.retry_after == pytest.approx(COOLDOWN)

        with pytest.raises(CircuitOpen):  # open: nothing is sent
            await backend.complete(REQUEST)
        assert sim.stats.requests == 3

        # After the cooldown one probe goes through; while it runs, others fail fast.
        clock.now += COOLDOWN
        probe = asyncio.create_task(backend.complete(REQUEST))
        await sim.wait_for_requests_async(4, timeout=5)
        with pytest.raises(CircuitOpen):
            await backend.complete(REQUEST)
        assert sim.stats.requests == 4
        assert breaker.state is CircuitState.HALF_OPEN

        # The probe times out: the circuit re-opens for a whole cooldown.
        with pytest.raises(CircuitOpen):
            await probe  # its own retry meets the re-opened circuit
        assert breaker.state is CircuitState.OPEN
        clock.now += COOLDOWN - 0.5
        with pytest.raises(CircuitOpen):
            await backend.complete(REQUEST)
        assert sim.stats.requests == 4

        # The next probe succeeds: the circuit closes and requests flow again.
        clock.now += 0.5
        assert (await backend.complete(REQUEST)).text == "back"
        assert breaker.state is CircuitState.CLOSED
        for _ in range(3):
            assert (await backend.complete(REQUEST)).text == "back"
        assert sim.stats.requests == 8
    finally:
        await backend.aclose()
        sim.wait_until_idle(timeout=5)


async def test_the_probe_timeout_is_the_error_a_lone_probe_reports(
    sim: ProviderSimulator,
) -> None:
    """Without retries around it, a hung probe surfaces as the timeout it is."""
    sim.script([Fault(503), Fault(503), Fault(503), Hang()])
    clock = FakeClock()
    type_, model, url_attr, _ = PROVIDERS["openai"]
    raw = create_backend(
        type_, model=model, api_key="x", base_url=getattr(sim, url_attr), timeout=HANG_TIMEOUT
    )
    breaker = CircuitBreaker(
        endpoint_key(raw), BreakerPolicy(failures=3, cooldown=COOLDOWN), clock=clock
    )
    backend = BreakerBackend(raw, breaker)
    try:
        for _ in range(3):
            with pytest.raises(ProviderError) as info:
                await backend.complete(REQUEST)
            assert info.value.status == 503
        clock.now += COOLDOWN
        with pytest.raises(ProviderTimeout):
            await backend.complete(REQUEST)
        assert breaker.state is CircuitState.OPEN
        assert sim.stats.requests == 4
    finally:
        await backend.aclose()
        sim.wait_until_idle(timeout=5)


async def test_the_breaker_configured_in_yaml_stops_the_retries(sim: ProviderSimulator) -> None:
    script_agent(sim, "alpha", [Fault(500)])
    base = team_yaml(sim, "openai", ["alpha", "beta"])
    text = base.replace(
        "timeout: 10.0}",
        "timeout: 10.0, breaker: {failures: 3, cooldown: 30}}",
        1,  # alpha's backend only
    ).replace(f"max_retries: {MAX_RETRIES}", "max_retries: 6")

    result, _ = await run_team(text)

    assert isinstance(result, RunResult), result
    assert list(result.failed_agents) == ["alpha"]
    assert "circuit open" in result.failed_agents["alpha"]
    assert len(of("alpha", sim.requests)) == 3  # not 7: the open circuit ends the retries


async def test_one_whole_stack_per_configured_backend_shared_by_its_agents(
    sim: ProviderSimulator, tmp_path: Path
) -> None:
    """The orchestrator builds each backend's stack once (cache → retry → request log →
    rate limit → breaker → backend): agents naming one backend share all of it."""
    url = sim.openai_base_url
    team = loads(
        f"""
backends:
  shared: {{type: openai, model: gpt-4o-mini, api_key: k, base_url: '{url}',
            rate_limit: {{rpm: 100}}}}
agents:
  - {{name: a, backend: shared}}
  - {{name: b, backend: shared}}
  - {{name: c, backend: {{type: openai, model: gpt-4o-mini, api_key: k, base_url: '{url}',
                         breaker: false}}}}
orchestrator: {{cache: {{enabled: true, path: '{tmp_path / "cache.sqlite3"}'}}}}
""",
        env={},
    )
    sim.script(Text("Paris."))
    async with Orchestrator.from_config(team) as orchestrator:
        a, b, c = (orchestrator.handles[n].backend.inner for n in "abc")  # type: ignore[attr-defined]
        assert a is b and a is not c
        names = [type(layer).__name__ for layer in layers(a)][:-1]
        assert names == [
            "CachingBackend",
            "RetryingBackend",
            "LoggedBackend",
            "RateLimitedBackend",
            "BreakerBackend",
        ]
        assert [type(layer).__name__ for layer in layers(c)][:-1] == names[:3]
        first = await orchestrator.arun("Capital of France?", "parallel")
        sent = sim.stats.requests
        again = await orchestrator.arun("Capital of France?", "parallel")
    assert first.status == again.status == "done" and 1 <= sent <= 3
    assert sim.stats.requests == sent  # the second run is all cache hits
