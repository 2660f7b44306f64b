"""What massgen serves on ``--metrics-port``, scraped by a real Prometheus (tests/promserver.py)
rather than read with prometheus_client's own lenient parser: ``massgen serve`` with two teams
whose agents share names, and a ``massgen worker`` beside ``massgen service``. Each target is
up with no scrape error, in OpenMetrics (what Prometheus asks for) and in the text format
(through a proxy, by Prometheus's own parser; and through ``promtool check metrics``), with
the same series; PromQL returns the counts of known runs; every query of
docs/grafana/massgen-workers.json and of docs/observability.md parses and, after the runs,
returns data; the families its table lists are those served; and a served session's cache
counts stay counted when it closes (``resets()`` sees none). A test takes ~7 s, most of it
Prometheus's wait before its first scrape."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import openai

from tests.mas.helpers import SHARED_REDIS
from tests.promserver import (
    PLAIN_ACCEPT,
    PROMETHEUS_ACCEPT,
    Prometheus,
    check_metrics,
    fetch,
    free_port,
)
from tests.promserver import prometheus as prometheus_scraping
from tests.teamkit import CAPITALS
from tests.test_cli_serve import serving
from tests.test_metrics_worker import TASK, TEAM, start, stop

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana" / "massgen-workers.json"
QUICK = "Capital of France?"


def docs_queries() -> list[str]:
    """The PromQL of docs/observability.md: its ``promql`` blocks, one query a line
    (``#`` lines are what the next one shows)."""
    text = (ROOT / "docs" / "observability.md").read_text()
    blocks = re.findall(r"^```promql\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    queries = [q for b in blocks for q in b.splitlines() if q.strip() and q[0] != "#"]
    assert queries, "docs/observability.md shows no PromQL"
    return queries


def dashboard_queries() -> dict[str, str]:
    """Each query of the Grafana dashboard, by its panel's title and legend."""
    board = json.loads(DASHBOARD.read_text())
    return {
        f"{p['title']}: {t.get('legendFormat', '')}": t["expr"]
        for p in board["panels"]
        for t in p.get("targets", [])
    }


def series(prom: Prometheus, job: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The massgen series ``job`` scraped last, by their labels (``job`` and ``instance``
    left out) with their values."""
    got = prom.query(f'{{job="{job}", __name__=~"massgen_.+"}}')
    assert got, job
    return {
        tuple(sorted((k, v) for k, v in s["metric"].items() if k not in ("job", "instance"))): (
            float(s["value"][1])
        )
        for s in got
    }


def documented() -> set[str]:
    """The metric families docs/observability.md's table lists (``_total`` left out)."""
    text = (ROOT / "docs" / "observability.md").read_text()
    rows = [row.split(" | ")[0] for row in text.splitlines() if row.startswith("| `massgen_")]
    return {re.sub(r"_total$", "", n) for row in rows for n in re.findall(r"`(massgen_\w+)`", row)}


def families(url: str | None) -> set[str]:
    """The massgen families served at ``url`` (empty ones too); ``None``: those a run's own
    metrics have (a run counts its runs, answers and cost)."""
    from prometheus_client.parser import text_string_to_metric_families

    from massgen.observability.metrics import Metrics

    if url is None:
        return {f.name for f in Metrics(process=False).registry.collect()}
    _, text = fetch(url, PLAIN_ACCEPT)
    named = {f.name for f in text_string_to_metric_families(text)}
    return {n for n in named if n.startswith("massgen_") and not n.endswith("_created")}


def assert_formats(url: str) -> None:
    """OpenMetrics for Prometheus's Accept header (the one it scraped, so it was accepted),
    and a text format ``promtool`` passes for a scraper that asks for it."""
    kind, _ = fetch(url, PROMETHEUS_ACCEPT)
    assert kind.startswith("application/openmetrics-text"), kind
    kind, plain = fetch(url, PLAIN_ACCEPT)
    assert kind.startswith("text/plain"), kind
    check_metrics(plain)


def assert_finite_data(prom: Prometheus, expr: str) -> None:
    """``expr`` parses and returns series, each a number (a latency percentile is NaN when
    no request was seen in its window)."""
    got = prom.query(expr)
    assert got, f"no data: {expr}"
    assert all(math.isfinite(float(s["value"][1])) for s in got), (expr, got)


def test_served_teams_are_scraped_and_counted_by_team(tmp_path: Path) -> None:
    """Two teams whose agents share names, each of their runs counted under its ``team``
    in the real Prometheus, every massgen series labelled with one; the docs' PromQL
    returns data."""
    other = tmp_path / "other.yaml"
    other.write_text(CAPITALS.format(latency=0).replace("name: capitals", "name: towns"))
    port = free_port()
    metrics = f"http://127.0.0.1:{port}/metrics"
    with (
        prometheus_scraping(
            tmp_path / "prometheus", {"serve": [f"127.0.0.1:{port}"]}, text=True
        ) as prom,
        serving(tmp_path, str(other), "--metrics-port", str(port)) as (_, url),
        openai.OpenAI(base_url=url + "/v1", api_key="first-secret-key", max_retries=0) as api,
    ):
        # twice: before the first scrape (Prometheus's ~5 s to it), then after it, so
        # that a rate sees an increase
        for first in (True, False):
            for model in ("massgen/capitals", "massgen/towns", "massgen/towns:parallel"):
                api.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": QUICK}]
                )
            if first:
                prom.scraped_after(0)
        targets = prom.scraped_after(time.time())
        assert {t["labels"]["job"] for t in targets} == {"serve", "serve-text"}
        assert all(t["health"] == "up" and t["lastError"] == "" for t in targets)
        assert series(prom, "serve") == series(prom, "serve-text")  # and the same values
        assert prom.values('sum by (team) (massgen_runs_total{job="serve"})', "team") == {
            "capitals": 2,
            "towns": 4,
        }
        parallel = 'sum by (team) (massgen_runs_total{job="serve", strategy="parallel"})'
        assert prom.values(parallel, "team") == {"towns": 2}
        # ada of each team: consensus asks her twice a run (answer, review), parallel once
        ada = 'sum by (team) (massgen_requests_total{job="serve", agent="ada", status="ok"})'
        assert prom.values(ada, "team") == {"capitals": 4, "towns": 6}
        assert prom.values('count by (team) (massgen_rounds_total{job="serve"})', "team") == {
            "capitals": 1,
            "towns": 1,
        }
        unlabelled = prom.query('{__name__=~"massgen_.+", team=""}')
        assert not unlabelled, unlabelled
        for expr in docs_queries():
            assert_finite_data(prom, expr)
        assert_formats(metrics)


def test_a_worker_and_the_service_are_scraped_and_the_dashboard_shows_them(
    tmp_path: Path, prefix: str
) -> None:
    """``massgen worker`` and ``massgen service`` scraped while runs go through the worker:
    the turns and requests of known runs in PromQL, and every query of the Grafana dashboard
    parses and shows data (a rate, once the counter moved between two scrapes)."""
    team = tmp_path / "team.yaml"
    team.write_text(TEAM + f"redis: {{url: '{SHARED_REDIS}', prefix: '{prefix}'}}\n")
    env = {k: v for k, v in os.environ.items() if k != "MASSGEN_REDIS_URL"}
    argv = [sys.executable, "-m", "massgen", "run", str(team), TASK, "--json", "--no-record"]
    ports = {"workers": free_port(), "service": free_port()}
    jobs = {job: [f"127.0.0.1:{port}"] for job, port in ports.items()}
    with prometheus_scraping(tmp_path / "prometheus", jobs, text=True) as prom:
        worker, worker_url = start(
            ["worker", str(team), "--metrics-port", str(ports["workers"])], "hosting ada"
        )
        service, service_url = start(
            ["service", "--config", str(team), "--metrics-port", str(ports["service"])],
            "service watching",
        )
        try:
            # twice: the first before Prometheus's first scrape (~5 s after it started),
            # the second after it, so that a rate sees an increase
            for first in (True, False):
                run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
                assert run.returncode == 0, run.stderr
                if first:
                    prom.scraped_after(0)
            targets = prom.scraped_after(time.time())
            assert {t["labels"]["job"] for t in targets} == {*jobs, *(f"{j}-text" for j in jobs)}
            assert all(t["health"] == "up" and t["lastError"] == "" for t in targets)
            turns = 'sum by (agent) (massgen_worker_turns_processed_total{job="workers"})'
            assert prom.values(turns, "agent") == {"ada": 2}
            asked = 'sum by (status) (massgen_requests_total{job="workers"})'
            assert prom.values(asked, "status") == {"ok": 2}
            tokens = prom.values('sum by (type) (massgen_tokens_total{job="workers"})', "type")
            assert tokens.keys() == {"input", "output"} and all(v > 0 for v in tokens.values())
            live = 'sum by (agent) (massgen_agent_instances{job="service"})'
            assert prom.values(live, "agent") == {"ada": 1}
            for job in jobs:  # the same series in either format (values move: ages)
                assert series(prom, job).keys() == series(prom, f"{job}-text").keys()
            queries = dashboard_queries()
            for title, expr in queries.items():
                got = prom.query(expr)  # parses, else the test fails here
                if not re.search(r"Retries|Tool calls", title):  # none retried, no tool
                    assert got, f"{title}: no data: {expr}"
            for title in [t for t in queries if re.search(r"[Tt]urns|[Rr]equest|[Tt]oken", t)]:
                assert_finite_data(prom, queries[title])
            assert_formats(worker_url)
            assert_formats(service_url)
            served = families(worker_url) | families(service_url) | families(None)
            assert served == documented()
        finally:
            stop(worker)
            stop(service)


def test_a_closed_session_s_cache_counts_stay_counted(tmp_path: Path) -> None:
    """``massgen serve`` closes its least recently used session past 64: what the session's
    cache counted stays in the counters, which Prometheus sees never reset."""
    cached = tmp_path / "cached.yaml"
    store = tmp_path / "cache.sqlite3"
    on = f"orchestrator: {{cache: {{enabled: true, path: '{store}'}}, strategy"
    text = CAPITALS.format(latency=0).replace("name: capitals", "name: cached")
    cached.write_text(text.replace("orchestrator: {strategy", on))
    port = free_port()
    jobs = {"serve": [f"127.0.0.1:{port}"]}
    with (
        prometheus_scraping(tmp_path / "prometheus", jobs) as prom,
        serving(tmp_path, str(cached), "--metrics-port", str(port)) as (_, url),
        openai.OpenAI(base_url=url + "/v1", api_key="first-secret-key", max_retries=0) as api,
    ):

        def ask(session: str, question: str = QUICK) -> None:
            api.chat.completions.create(
                model="massgen/cached:parallel",
                messages=[{"role": "user", "content": question}],
                user=session,
            )

        ask("first")  # its 3 agents miss
        prom.scraped_after(0)
        ask("brief", "Capital of Italy?")  # 3 misses too, likely never scraped
        for n in range(64):  # the first question in new sessions, all hits: both close
            ask(f"later-{n}")
        prom.scraped_after(time.time())
        hits, misses = (
            f'sum(massgen_cache_{c}_total{{team="cached"}})' for c in ("hits", "misses")
        )
        assert prom.values(misses, "") == {"": 6}
        assert prom.values(hits, "") == {"": 192}
        resets = 'sum(resets(massgen_cache_misses_total{team="cached"}[1m]))'
        assert prom.values(resets, "") == {"": 0}
