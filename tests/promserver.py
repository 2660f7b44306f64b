"""A real Prometheus server (Debian's ``prometheus`` 2.42, and its ``promtool``) for tests of
what massgen serves on ``--metrics-port``: its own config, TSDB and loopback port, scraping
the given targets every second. Missing binaries fail the test with the reason, never skip
it (.ci/run installs them)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
"""The Accept header Prometheus 2.42 scrapes with: OpenMetrics first."""
PLAIN_ACCEPT = "text/plain;version=0.0.4"
"""What older scrapers (and Prometheus with OpenMetrics refused) ask for."""
POLL = 0.05  # seconds between two looks at Prometheus's HTTP API (nothing there can be awaited)


def tool(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; the test fails (not skips) without it."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"`{name}` is not installed: the Prometheus tests need Debian's `prometheus` "
            "package (.ci/run installs it)"
        )
    return found


def check_metrics(exposition: str) -> None:
    """``promtool check metrics`` on a text-format exposition: it must parse and lint clean."""
    done = subprocess.run(
        [tool("promtool"), "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def fetch(url: str, accept: str) -> tuple[str, str]:
    """``url``'s content type and body, asked for with ``accept``."""
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.headers["Content-Type"]), response.read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _when(stamp: str) -> float:
    """A Go RFC 3339 time (nanoseconds) as a Unix time."""
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


class Prometheus:
    """A running server: its HTTP API at :attr:`url`."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/PATH?PARAMS``'s JSON, whatever its status (a bad query is a 400
        whose body says why)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now; the test fails if it does not parse."""
        got = self.api("query", query=expr)
        assert got["status"] == "success", (expr, got)
        assert got["data"]["resultType"] == "vector", (expr, got)
        return list(got["data"]["result"])

    def values(self, expr: str, by: str) -> dict[str, float]:
        """``expr``'s values by the label ``by``."""
        return {s["metric"].get(by, ""): float(s["value"][1]) for s in self.query(expr)}

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["data"]["activeTargets"])

    def scraped_after(self, since: float, timeout: float = 15) -> list[dict[str, Any]]:
        """The targets, once each was scraped after ``since`` (a Unix time): fails on a
        target that is down or whose scrape failed. Polled: Prometheus says nothing."""
        deadline = time.monotonic() + timeout
        while True:
            targets = self.targets()
            for t in targets:
                bad = t["health"] == "down" or t["lastError"]
                assert not bad, f"{t['scrapeUrl']}: {t['health']}: {t['lastError']}"
            if targets and all(
                t["health"] == "up" and _when(t["lastScrape"]) > since for t in targets
            ):
                return targets
            assert time.monotonic() < deadline, f"no scrape after {since}: {targets}"
            time.sleep(POLL)

    def _ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:  # polled: Prometheus tells nothing when it is ready but on this URL
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus ended: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus not ready: {self.log.read_text()}")
            time.sleep(POLL)


@contextlib.contextmanager
def text_proxy(target: str) -> Iterator[str]:
    """``host:port`` of a loopback proxy to ``target``'s ``/metrics`` that asks it for the
    text format, whatever its caller asks for: Prometheus 2.42 always offers OpenMetrics
    first and cannot be told otherwise (``scrape_protocols`` came in 2.49)."""
    import http.server
    import threading

    class Plain(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                kind, body = fetch(f"http://{target}/metrics", PLAIN_ACCEPT)
            except OSError as e:  # the target stopped (its scrape is down too)
                self.send_error(502, str(e))
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def prometheus(
    where: Path, jobs: dict[str, list[str]], *, text: bool = False
) -> Iterator[Prometheus]:
    """A Prometheus scraping each job's targets (``host:port`` of a ``/metrics``) every
    second, with its config and TSDB in ``where``, once ready. Its first scrape comes about
    5 s later (its discovery sends targets at most every 5 s, from the start): start it
    first, with the ports (:func:`free_port`) the targets will serve on, then start them
    and wait on :meth:`Prometheus.scraped_after` (a target down, or whose exposition
    Prometheus refused, fails the test). ``text``: each job has a twin, ``JOB-text``,
    scraping its targets through :func:`text_proxy` (the text format, by Prometheus's own
    parser)."""
    with contextlib.ExitStack() as proxies:
        if text:
            twins = {
                f"{job}-text": [proxies.enter_context(text_proxy(t)) for t in targets]
                for job, targets in jobs.items()
            }
            jobs = {**jobs, **twins}
        with _prometheus(where, jobs) as server:
            yield server


@contextlib.contextmanager
def _prometheus(where: Path, jobs: dict[str, list[str]]) -> Iterator[Prometheus]:
    where.mkdir(parents=True, exist_ok=True)
    config = where / "prometheus.yml"
    scrape = [{"job_name": job, "static_configs": [{"targets": t}]} for job, t in jobs.items()]
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": scrape,
            }
        )
    )
    port, log = free_port(), where / "prometheus.log"
    argv = [
        tool("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={where / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=where)
    server = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        server._ready(timeout=30)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def check_config(text: str, where: Path) -> None:
    """``promtool check config`` on a Prometheus config's text."""
    path = where / "prometheus.yml"
    path.write_text(text)
    promtool("check", "config", str(path))


def promtool(*args: str) -> None:
    """``promtool ARGS``, which must succeed."""
    done = subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def check_rules(queries: list[str], where: Path) -> None:
    """``promtool check rules`` on ``queries`` as recording rules: each must parse."""
    rules = [{"record": f"massgen:query{i}", "expr": q} for i, q in enumerate(queries)]
    path = where / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs", "rules": rules}]}))
    promtool("check", "rules", str(path))
