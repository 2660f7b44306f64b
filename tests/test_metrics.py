"""Prometheus metrics (docs/observability.md, "Metrics"): known runs against in-process
backends, then ``/metrics`` fetched over real HTTP and parsed with prometheus_client's own
parser; the labels never carry a task or a run id; without metrics nothing is imported."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import prometheus_client as prom
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from massgen import events as ev
from massgen.agents.agent import Agent
from massgen.backends.function import FunctionBackend
from massgen.cli import app
from massgen.errors import ProviderConnectionError, ProviderError, ProviderTimeout, RateLimited
from massgen.observability.metrics import LATENCY_BUCKETS, Metrics, serve
from massgen.orchestrator import Orchestrator
from massgen.resilience import Guards
from massgen.resilience.breaker import BreakerPolicy
from massgen.result import RunResult
from massgen.types import Completion, CompletionRequest, ToolCall, Usage

ROOT = Path(__file__).resolve().parent.parent
TASK = "What is 6*7? (secret-task-text)"
MODEL = "fake-model"
PRICES = {MODEL: {"input": 100.0, "output": 1000.0}}  # USD per million tokens
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample ``url`` serves, by name and sorted labels."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scripted(*replies: Completion | Exception) -> FunctionBackend:
    queue = list(replies)

    def respond(_: CompletionRequest) -> Completion:
        reply = queue.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return FunctionBackend(respond, model=MODEL, tools=True)


def answer(text: str, usage: Usage) -> Completion:
    return Completion(text=text, model=MODEL, usage=usage)


@pytest.fixture
def served() -> Iterator[tuple[Metrics, str]]:
    metrics = Metrics()
    with serve(metrics, "127.0.0.1", 0) as url:
        yield metrics, url


def team(tmp_path: Path, metrics: Metrics) -> Orchestrator:
    calc = ToolCall("call_0", "calculator", {"expression": "6*7"})
    ada = scripted(
        RateLimited("slow down", provider="function", status=429),
        ProviderError("unavailable", provider="function", status=503),
        Completion(
            text="", model=MODEL, usage=Usage(10, 2), tool_calls=(calc,), finish_reason="tool_calls"
        ),
        answer("It is 42.", Usage(20, 3)),
    )
    bob = scripted(answer("42.", Usage(5, 1)))
    agents = [
        Agent("ada", ada, tools=["calculator"], prices=PRICES),
        Agent("bob", bob, prices=PRICES),
    ]
    orchestrator = Orchestrator(
        agents,
        strategy="parallel",
        retry_delay=0.001,
        cache_enabled=True,
        cache_path=str(tmp_path / "cache.sqlite3"),
        subscribers=[metrics],
    )
    metrics.watch_backends(orchestrator.backends)
    return orchestrator


async def test_a_known_run_is_counted_exactly(tmp_path: Path, served: tuple[Metrics, str]) -> None:
    metrics, url = served
    async with team(tmp_path, metrics) as orchestrator:
        first = await orchestrator.arun(TASK)
        again = await orchestrator.arun(TASK)  # every request answered from the cache
    assert first.status == again.status == "done"
    s = scrape(url)
    ada = {"provider": "function", "model": MODEL, "agent": "ada"}
    bob = {**ada, "agent": "bob"}
    requests = {st: value(s, "massgen_requests_total", **ada, status=st) for st in ("429", "503")}
    assert requests == {"429": 1, "503": 1}
    assert value(s, "massgen_requests_total", **ada, status="ok") == 2
    assert value(s, "massgen_requests_total", **bob, status="ok") == 1
    assert value(s, "massgen_request_duration_seconds_count", **ada) == 4
    assert value(s, "massgen_tokens_total", **ada, type="input") == 30
    assert value(s, "massgen_tokens_total", **ada, type="output") == 5
    assert value(s, "massgen_tokens_total", **bob, type="input") == 5
    assert value(s, "massgen_retries_total", agent="ada", reason="rate_limit") == 1
    assert value(s, "massgen_retries_total", agent="ada", reason="server_error") == 1
    assert value(s, "massgen_tool_calls_total", agent="ada", tool="calculator", ok="true") == 2
    assert value(s, "massgen_tool_duration_seconds_count", tool="calculator") == 2
    assert value(s, "massgen_cache_hits_total", backend="function") == 3
    assert value(s, "massgen_cache_misses_total", backend="function") == 3
    assert value(s, "massgen_answers_total", agent="ada", cached="true") == 1
    assert value(s, "massgen_answers_total", agent="bob", cached="false") == 1
    assert value(s, "massgen_cost_usd_total", agent="ada", model=MODEL) == pytest.approx(0.008)
    assert value(s, "massgen_cost_usd_total", agent="bob", model=MODEL) == pytest.approx(0.0015)
    assert value(s, "massgen_runs_total", strategy="parallel", status="done") == 2
    assert value(s, "massgen_run_duration_seconds_count", strategy="parallel") == 2
    assert value(s, "massgen_runs_in_progress") == 0
    assert value(s, "process_cpu_seconds_total") > 0  # the process collector is ours too
    labels = {v for (_, pairs) in s for _, v in pairs}
    assert not any(TASK in v or "secret-task-text" in v for v in labels)
    assert not any(run in v for v in labels for run in (first.run_id, again.run_id))


def test_retry_reasons_are_a_small_fixed_set() -> None:
    reasons = {
        ev.retry_reason(RateLimited("x", status=429)),
        ev.retry_reason(ProviderTimeout("x")),
        ev.retry_reason(ProviderConnectionError("x")),
        ev.retry_reason(ProviderError("x", status=502)),
        ev.retry_reason(ProviderError("x", status=418)),
        ev.retry_reason(ValueError("no status")),
    }
    assert reasons == {"rate_limit", "timeout", "connection", "server_error", "other"}


async def test_an_open_breaker_shows_in_the_gauge(served: tuple[Metrics, str]) -> None:
    metrics, url = served
    down = scripted(*[ProviderError("down", provider="function", status=500)] * 2)
    agents = [Agent("ada", down), Agent("bob", scripted(answer("fine", Usage(1, 1))))]
    orchestrator = Orchestrator(
        agents, strategy="parallel", max_retries=0, error_strategy="continue"
    )
    orchestrator.guards["ada"] = Guards(breaker=BreakerPolicy(failures=1, cooldown=600))
    orchestrator.subscribers.append(metrics)
    metrics.watch_backends(orchestrator.backends)
    async with orchestrator:
        result = await orchestrator.arun("anything")
    assert result.status == "degraded"
    s = scrape(url)
    assert value(s, "massgen_circuit_breaker_state", endpoint="function:function") == 2
    assert value(s, "massgen_agent_failures_total", agent="ada") == 1
    assert (
        value(
            s, "massgen_requests_total", provider="function", model=MODEL, agent="ada", status="500"
        )
        == 1
    )
    assert value(s, "massgen_runs_total", strategy="parallel", status="degraded") == 1


def test_the_run_command_serves_metrics_and_stops_serving(tmp_path: Path) -> None:
    """``massgen run --metrics-port 0`` tells where it serves; the server is gone after."""
    config = ROOT / "configs" / "offline.yaml"
    done = CliRunner().invoke(
        app,
        ["run", str(config), "hello", "--no-record", "-q", "--metrics-port", "0"],
    )
    assert done.exit_code == 0, done.output
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("metrics on ")]
    url = line.removeprefix("metrics on ")
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=5)


def test_metrics_off_imports_nothing(tmp_path: Path) -> None:
    config = ROOT / "configs" / "offline.yaml"
    script = (
        "import sys\n"
        "from massgen.cli import main\n"
        f"sys.argv = ['massgen', 'run', {str(config)!r}, 'hello', '--no-record', '-q']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "sys.exit(7 if 'prometheus_client' in sys.modules else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr


def test_a_missing_prometheus_client_is_a_config_error_with_a_hint(tmp_path: Path) -> None:
    config = ROOT / "configs" / "offline.yaml"
    script = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None  # not installed\n"
        "from massgen.cli import main\n"
        f"sys.argv = ['massgen', 'run', {str(config)!r}, 'hi', '--metrics-port', '0']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'massgen[observability]'" in done.stderr


async def test_a_batch_counts_its_runs_into_one_metrics() -> None:
    metrics = Metrics(process=False)
    reply = Completion(text="ok", model=MODEL, usage=Usage(2, 1))
    agents = [Agent("ada", FunctionBackend(lambda _: reply, model=MODEL))]
    async with Orchestrator(agents, strategy="parallel", subscribers=[metrics]) as orchestrator:
        batch = await orchestrator.abatch_run(["one", "two", "three"], concurrency=2)
    assert batch.summary.done == 3
    get = metrics.registry.get_sample_value
    assert get("massgen_runs_total", {"strategy": "parallel", "status": "done"}) == 3
    labels = {"provider": "function", "model": MODEL, "agent": "ada"}
    assert get("massgen_tokens_total", {**labels, "type": "input"}) == 6
    assert get("massgen_runs_in_progress") == 0


def test_the_batch_command_serves_metrics(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("one\ntwo\n")
    config = str(ROOT / "configs" / "offline.yaml")
    done = CliRunner().invoke(
        app, ["batch", str(tasks), "--config", config, "-q", "--metrics-port", "0"]
    )
    assert done.exit_code == 0, done.output
    assert any(ln.startswith("metrics on http://127.0.0.1:") for ln in done.stderr.splitlines())


def test_a_port_in_use_is_a_config_error() -> None:
    import socket

    from massgen.errors import ConfigError

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(ConfigError) as caught, serve(Metrics(process=False), port=port):
            pass
    assert caught.value.key == "--metrics-port"


def families(registry: prom.CollectorRegistry, *names: str) -> dict[str, object]:
    """The samples of the families ``names``, by family; a ``_created`` time only as there."""
    return {
        f.name: sorted(
            (s.name, sorted(s.labels.items()), None if s.name.endswith("_created") else s.value)
            for s in f.samples
        )
        for f in registry.collect()
        if f.name in names
    }


def test_counts_are_folded_into_the_samples_prometheus_client_makes() -> None:
    """Events update plain numbers, made families at scrape time: the same samples as
    prometheus_client's own Counter and Histogram fed the same events (a bound is ``le``)."""
    metrics, reference = Metrics(process=False), prom.CollectorRegistry()
    model = ["provider", "model", "agent"]
    requests = prom.Counter("massgen_requests", "-", [*model, "status"], registry=reference)
    latency = prom.Histogram(
        "massgen_request_duration_seconds", "-", model, registry=reference, buckets=LATENCY_BUCKETS
    )
    tokens = prom.Counter("massgen_tokens", "-", [*model, "type"], registry=reference)
    prom.Counter("massgen_rounds", "-", registry=reference)  # unlabelled: 0 before any round
    for seconds, status in ((0.05, "ok"), (0.3, "429"), (1.0, "ok"), (0.07, "ok"), (500.0, "ok")):
        usage = Usage(3, 4) if status == "ok" else None
        at = ("function", MODEL, "ada")
        metrics(
            ev.RequestDone(
                agent="ada", provider="function", model=MODEL, attempt=1, status=status,
                started=0.0, latency=seconds, usage=usage,
            )
        )  # fmt: skip
        requests.labels(*at, status).inc()
        latency.labels(*at).observe(seconds)
        if usage is not None:
            tokens.labels(*at, "input").inc(3)
            tokens.labels(*at, "output").inc(4)
    names = ("massgen_requests", "massgen_request_duration_seconds", "massgen_tokens")
    assert families(metrics.registry, *names, "massgen_rounds") == families(
        reference, *names, "massgen_rounds"
    )
    created = {s.name: s.value for f in metrics.registry.collect() for s in f.samples}
    assert created["massgen_request_duration_seconds_created"] > 0


def test_a_scrape_while_events_arrive_sees_each_event_whole() -> None:
    """Scrapes come from the server's thread: each sees an attempt counted in both its
    request and its latency, never one without the other, and nothing is lost."""
    metrics = Metrics(process=False)
    labels = {"provider": "function", "model": MODEL, "agent": "ada"}
    scraped: list[tuple[float | None, float | None]] = []
    enough, stop = threading.Event(), threading.Event()

    def scrape() -> None:
        wanted = ("massgen_requests_total", "massgen_request_duration_seconds_count")
        while not stop.is_set():
            seen = {s.name: s.value for f in metrics.registry.collect() for s in f.samples}
            scraped.append((seen.get(wanted[0]), seen.get(wanted[1])))
            if sum(1 for t, _ in scraped if t) >= 50:  # 50 scrapes while counting
                enough.set()

    thread = threading.Thread(target=scrape)
    thread.start()
    sent, deadline = 0, time.monotonic() + 10
    try:
        while not enough.is_set() and time.monotonic() < deadline:
            event = ev.RequestDone(
                agent="ada", provider="function", model=MODEL, attempt=1, status="ok",
                started=0.0, latency=0.1,
            )  # fmt: skip
            metrics(event)
            sent += 1
    finally:
        stop.set()
        thread.join(timeout=10)
    assert enough.is_set()
    assert all(a == b for a, b in scraped), [p for p in scraped if p[0] != p[1]][:3]
    assert (
        metrics.registry.get_sample_value("massgen_requests_total", {**labels, "status": "ok"})
        == sent
    )


def test_token_deltas_skip_subscribers_that_show_none() -> None:
    """Metrics and traces say ``wants_deltas = False``: a streamed run's hundreds of deltas
    are not handed to them (a live view still gets each one, and every other event)."""

    class Quiet(list[ev.Event]):
        wants_deltas = False

        def __call__(self, event: ev.Event) -> None:
            self.append(event)

    class Live(Quiet):
        wants_deltas = True

    quiet, live = Quiet(), Live()
    bus = ev.EventBus([quiet, live])
    delta, started = ev.TokenDelta(agent="a", text="hi"), ev.AgentStarted(agent="a", phase="answer")
    bus.emit(delta)
    bus.emit(started)
    assert bus.wants_deltas
    assert live == [delta, started]
    assert quiet == [started]


def test_holding_subscribers_are_handed_events_in_a_list() -> None:
    """A subscriber that ``holds`` (metrics, traces) has the run's events appended to its
    ``held`` list, not a call each, and is called for the run's start and end only; one that
    raises is dropped with its list."""

    class Holder:
        holds, wants_deltas = True, False

        def __init__(self) -> None:
            self.held: list[ev.Event] = []
            self.called: list[ev.Event] = []

        def __call__(self, event: ev.Event) -> None:
            self.called.append(event)

    class Broken(Holder):
        def __call__(self, event: ev.Event) -> None:
            raise RuntimeError("a subscriber's bug")

    kept, broken = Holder(), Broken()
    bus = ev.EventBus([kept, broken])
    result = RunResult(run_id="r", task="t", strategy="consensus", started_at=0.0)
    began = ev.RunStarted(run_id="r", task="t", strategy="consensus", agents=("a",))
    turn, delta = ev.AgentStarted(agent="a", phase="answer"), ev.TokenDelta(agent="a", text="x")
    ended = ev.RunEnded(result=result)
    for event in (began, turn, delta, ended):
        bus.emit(event)
    assert kept.called == [began, ended]
    assert kept.held == [turn]
    assert broken.held == [] and len(bus.errors) == 1


def test_subscribers_that_name_what_they_hear_get_only_that() -> None:
    """A subscriber whose class sets ``hears`` is handed those events (and every run's start
    and end); metrics and traces name exactly the events they handle, so the bus does not
    hand them the rest (ballots, final answers, a turn's start for metrics)."""
    from massgen.observability.tracing import _HANDLERS, RunTracer

    class Picky(list[ev.Event]):
        hears = frozenset({ev.AgentAnswered})

        def __call__(self, event: ev.Event) -> None:
            self.append(event)

    picky = Picky()
    bus = ev.EventBus([picky])
    result = RunResult(run_id="r", task="t", strategy="consensus", started_at=0.0)
    began = ev.RunStarted(run_id="r", task="t", strategy="consensus", agents=("a",))
    turn = ev.AgentStarted(agent="a", phase="answer")
    answered = ev.AgentAnswered(
        agent="a", phase="answer", round=1, text="x", usage=Usage(), cost=0.0, latency=0.1
    )
    ended = ev.RunEnded(result=result)
    for event in (began, turn, answered, ended):
        bus.emit(event)
    assert picky == [began, answered, ended]
    assert Metrics.hears == frozenset(Metrics(process=False)._on)
    assert RunTracer.hears == frozenset(_HANDLERS)


def test_a_subscriber_that_raises_is_dropped_alone() -> None:
    """Dropped by identity: a subscriber equal to the one that raised (two empty lists) keeps
    hearing the run."""

    class Kept(list[ev.Event]):
        def __call__(self, event: ev.Event) -> None:
            self.append(event)

    class Broken(list[ev.Event]):
        def __call__(self, event: ev.Event) -> None:
            raise RuntimeError("a subscriber's bug")

    kept, broken = Kept(), Broken()
    assert kept == broken  # equal, not the same
    bus = ev.EventBus([broken, kept])
    first, second = (
        ev.AgentStarted(agent="a", phase="answer"),
        ev.AgentStarted(agent="b", phase="answer"),
    )
    bus.emit(first)
    bus.emit(second)
    assert kept == [first, second] and len(bus.errors) == 1


async def test_cache_counters_keep_the_counts_of_backends_gone() -> None:
    """``massgen serve`` closes a session's orchestrator (its backends with it) when more
    sessions come: the cache counters must keep what its cache counted, to the last
    lookup, or they go down and Prometheus reads a reset; once, whether a scrape saw the
    session or not, before or after it was retired."""
    from massgen.resilience.cache import CachingBackend
    from massgen.store import MemoryStore
    from massgen.types import ChatMessage

    store = MemoryStore()
    shared, session = (
        CachingBackend(scripted(*[answer("42.", Usage(1, 1))] * 3), store) for _ in "ab"
    )
    stacks = [shared, session]
    metrics = Metrics(process=False)
    metrics.watch_backends(lambda: list(stacks))
    counted = metrics.registry.get_sample_value

    def ask(text: str) -> CompletionRequest:
        return CompletionRequest(messages=(ChatMessage("user", text),))

    await session.complete(ask("six times seven?"))  # a miss
    assert counted("massgen_cache_misses_total", {"backend": "function"}) == 1
    await session.complete(ask("six times seven?"))  # a hit, after the scrape
    await session.complete(ask("seven times six?"))  # a miss
    stacks.remove(session)  # the session closed, not retired yet: held from the last scrape
    await shared.complete(ask("six times seven?"))  # a hit
    assert counted("massgen_cache_misses_total", {"backend": "function"}) == 2
    assert counted("massgen_cache_hits_total", {"backend": "function"}) == 2
    metrics.retire([session])  # after a scrape found it gone: counted once
    brief = CachingBackend(scripted(answer("56.", Usage(1, 1))), store)
    stacks.append(brief)  # a session opened and closed between two scrapes
    await brief.complete(ask("seven times eight?"))  # a miss
    stacks.remove(brief)
    metrics.retire([brief])
    assert counted("massgen_cache_misses_total", {"backend": "function"}) == 3
    assert counted("massgen_cache_hits_total", {"backend": "function"}) == 2


async def test_a_model_s_attempts_share_the_team_file_s_model_label() -> None:
    """Providers answer as a dated model (``gpt-4o-mini`` as ``gpt-4o-mini-2024-07-18``):
    a model's failed and answered attempts, latency and tokens are labelled with the model
    the team file names, one series a status, not split between two names."""
    dated = f"{MODEL}-2024-07-18"
    ada = scripted(
        RateLimited("slow down", provider="function", status=429),
        Completion(text="42.", model=dated, usage=Usage(7, 2)),
    )
    metrics = Metrics(process=False)
    team = Orchestrator([Agent("ada", ada)], strategy="parallel", retry_delay=0.001)
    team.subscribers.append(metrics)
    assert (await team.arun(TASK)).status == "done"
    counted = metrics.registry.get_sample_value
    labels = {"provider": "function", "model": MODEL, "agent": "ada"}
    assert counted("massgen_requests_total", {**labels, "status": "429"}) == 1
    assert counted("massgen_requests_total", {**labels, "status": "ok"}) == 1
    assert counted("massgen_request_duration_seconds_count", labels) == 2
    assert counted("massgen_tokens_total", {**labels, "type": "input"}) == 7
    models = {
        s.labels["model"]
        for family in metrics.registry.collect()
        for s in family.samples
        if "model" in s.labels and s.name != "massgen_cost_usd_total"
    }
    assert models == {MODEL}
