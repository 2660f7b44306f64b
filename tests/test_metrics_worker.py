"""Metrics of workers and of ``massgen service`` on real Redis: a worker's own provider
requests, retries and tool calls, its turns and heartbeats, its agents' inboxes read from
Redis at scrape time; then ``massgen worker``/``service --metrics-port`` as real processes
after a distributed run, and the Grafana dashboard checked against what a worker serves."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from massgen.agents.agent import Agent
from massgen.distributed import Worker, distributed
from massgen.errors import RateLimited
from massgen.observability.metrics import Metrics, serve
from massgen.orchestrator import Orchestrator
from massgen.types import Completion, ToolCall, Usage
from tests.mas.helpers import FAST, SHARED_REDIS, clean_prefix
from tests.procs import read_line
from tests.test_metrics import MODEL, Samples, scrape, scripted, value

ROOT = Path(__file__).resolve().parent.parent
TASK = "What is 6*7? (task-text-never-a-label)"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    p = f"test:metrics:{uuid.uuid4().hex[:10]}:"
    yield p
    await clean_prefix(SHARED_REDIS, p)


def ada(*replies: Completion | Exception) -> Agent:
    return Agent("ada", scripted(*replies), role="You are ada.", tools=["calculator"])


async def test_a_worker_counts_its_turns_requests_and_inboxes(prefix: str) -> None:
    calc = ToolCall("call_0", "calculator", {"expression": "6*7"})
    host = Orchestrator(
        [
            ada(
                RateLimited("slow down", provider="function", status=429),
                Completion(text="", model=MODEL, usage=Usage(10, 2), tool_calls=(calc,)),
                Completion(text="It is 42.", model=MODEL, usage=Usage(20, 3)),
            )
        ],
        strategy="parallel",
        retry_delay=0.001,
    )
    caller_metrics = Metrics(process=False)  # the run's: the worker counted the tool call
    caller = Orchestrator([ada()], strategy="parallel", subscribers=[caller_metrics])
    metrics = Metrics(process=False)
    worker = Worker(host, redis_url=SHARED_REDIS, prefix=prefix, settings=FAST, observer=metrics)
    with serve(metrics) as url:
        async with host, worker:
            metrics.watch_worker(worker.hosted, worker.transport, asyncio.get_running_loop())
            async with distributed(caller, SHARED_REDIS, prefix=prefix, settings=FAST):
                result = await caller.arun(TASK)
            s: Samples = await asyncio.to_thread(scrape, url)  # off the loop: it reads Redis
    assert result.final_answer == "It is 42."
    assert value(s, "massgen_worker_turns_processed_total", agent="ada") == 1
    assert value(s, "massgen_worker_turns_failed_total", agent="ada") == 0
    assert ("massgen_worker_turns_in_flight", (("agent", "ada"),)) in s
    labels = {"provider": "function", "model": MODEL, "agent": "ada"}
    assert value(s, "massgen_requests_total", **labels, status="429") == 1
    assert value(s, "massgen_requests_total", **labels, status="ok") == 2
    assert value(s, "massgen_tokens_total", **labels, type="input") == 30
    assert value(s, "massgen_retries_total", agent="ada", reason="rate_limit") == 1
    assert value(s, "massgen_tool_calls_total", agent="ada", tool="calculator", ok="true") == 1
    here = caller_metrics.registry.get_sample_value
    assert (
        here("massgen_tool_calls_total", {"agent": "ada", "tool": "calculator", "ok": "true"})
        is None
    )
    assert here("massgen_answers_total", {"agent": "ada", "cached": "false"}) == 1  # counted here
    for name in ("stream_pending_messages", "stream_lag_messages", "dead_letters"):
        assert (f"massgen_{name}", (("agent", "ada"),)) in s, name
        assert value(s, f"massgen_{name}", agent="ada") == 0
    assert 0 <= value(s, "massgen_worker_heartbeat_age_seconds", agent="ada") < 5
    assert ("massgen_worker_heartbeats_total", (("agent", "ada"),)) in s


TEAM = """\
name: metrics-demo
backends:
  sim: {type: replay, model: replay, rules: [{match: 'capital', reply: Paris.}]}
agents:
  - {name: ada, backend: sim, role: "You are Ada."}
orchestrator: {strategy: parallel}
"""


def start(args: list[str], ready: str) -> tuple[subprocess.Popen[str], str]:
    """A served command and its metrics URL, once it printed its ``ready`` line."""
    env = {k: v for k, v in os.environ.items() if k not in ("MASSGEN_REDIS_URL", "MASSGEN_SECRET")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "massgen", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline, url = time.monotonic() + 30, ""
    try:
        while (line := read_line(proc, deadline)) is not None and not line.startswith(ready):
            url = (
                line.removeprefix("metrics on ").strip() if line.startswith("metrics on ") else url
            )
    except TimeoutError:
        pass
    if not url or proc.poll() is not None:
        proc.kill()
        raise AssertionError(f"{args[0]} not ready: {proc.communicate()[1]}")
    return proc, url


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def test_worker_and_service_serve_metrics_after_a_distributed_run(
    tmp_path: Path, prefix: str
) -> None:
    team = tmp_path / "team.yaml"
    team.write_text(TEAM + f"redis: {{url: '{SHARED_REDIS}', prefix: '{prefix}'}}\n")
    worker, worker_url = start(["worker", str(team), "--metrics-port", "0"], "hosting ada")
    service, service_url = start(
        ["service", "--config", str(team), "--metrics-port", "0"], "service watching"
    )
    try:
        env = {k: v for k, v in os.environ.items() if k != "MASSGEN_REDIS_URL"}
        run = subprocess.run(
            [sys.executable, "-m", "massgen", "run", str(team), TASK, "--json", "--no-record"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        run_id = json.loads(run.stdout)["run_id"]
        w, s = scrape(worker_url), scrape(service_url)
        text = scrape_text(worker_url)
    finally:
        stop(worker)
        stop(service)
    assert value(w, "massgen_worker_turns_processed_total", agent="ada") == 1
    requests = {dict(k[1])["status"]: v for k, v in w.items() if k[0] == "massgen_requests_total"}
    assert requests == {"ok": 1}  # the worker's own provider request, nobody else's
    assert ("massgen_stream_pending_messages", (("agent", "ada"),)) in s
    assert value(s, "massgen_dead_letters", agent="ada") == 0
    assert value(s, "massgen_agent_instances", agent="ada") == 1  # the worker, seen by the service
    assert value(s, "massgen_agent_turns_in_flight", agent="ada") == 0
    assert ("massgen_agent_heartbeat_age_seconds", (("agent", "ada"),)) in s
    assert 0 <= value(s, "massgen_agent_heartbeat_age_seconds", agent="ada") < 15
    label_values = {v for (_, pairs) in [*w, *s] for _, v in pairs}
    assert not any(TASK in v or run_id in v or "never-a-label" in v for v in label_values)
    assert_dashboard_queries_exist(text)


def scrape_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def assert_dashboard_queries_exist(exposition: str) -> None:
    """docs/grafana/massgen-workers.json is a dashboard Grafana imports, and every metric
    its queries name is one a worker serves (a family, or its _total, _bucket... sample)."""
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name for f in text_string_to_metric_families(exposition)}
    board = json.loads((ROOT / "docs" / "grafana" / "massgen-workers.json").read_text())
    assert board["title"] and board["panels"] and board["schemaVersion"] >= 30
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    named = {m for e in exprs for m in re.findall(r"\b(massgen_\w+)", e)}
    assert len(named) >= 8, exprs
    suffix = re.compile(r"_(total|bucket|count|sum)$")
    missing = {m for m in named if m not in families and suffix.sub("", m) not in families}
    assert not missing, missing
