"""Every example of the README and of every page in docs/ does what it says, run as shown.

Every fenced block is handled here, or the test fails (so a new one cannot go unchecked):

- **YAML**: a whole team is built (``massgen config validate``) with dummy keys. A fragment
  (only ``tools:``, ``backends:``, ``redis:``...) is completed into a team by appending an
  ``agents:`` section: one agent per backend it names (else one ``replay`` agent), each
  using every tool it defines. Files the reader would have (a ``root`` folder, a SQLite
  file, a ``mytools`` module: the docs' own ``StockPrice``) are made in a tmp dir.
- **Python** is executed: statements up to the first one that awaits run as a script, the
  rest in one event loop (as in ``python -m asyncio``). A provider is the simulator (through
  the SDKs' own base-URL variables), Redis a private ``redis-server``; the few names an
  example leaves to the reader (``URL``, ``backend``...) are given in ``GIVEN``. An
  expression commented with a literal (``x  # 2``) must equal it.
- **Shell** (no language, ``sh``, or ``console`` with ``$`` prompts): each command is run as
  written in a tmp folder holding a ``team.yaml`` (the page's team, ``TEAMS``), providers
  being the simulator (the example configs too, all but one), a ``--metrics-port`` a free
  port; ``[...]``
  options are run without and with them; a Redis URL on another host stands for the
  reader's Redis and becomes the private one; workers and the service are real processes,
  stopped at the end. A line that is not a command is output, and must be what the command
  before it printed. Skipped, with the reason, only what needs a real provider or server.
- **Other blocks** (diagrams, output shown on its own, SQL) each have a check in ``OTHERS``.

The inline ``massgen ...`` commands of the prose run too, and so do its inline ``redis-cli``,
``python`` and ``pip`` commands (each as ``test_inline_command_of_another_program_runs_as_shown``
says). Every test that docs/reliability.md names must exist.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from massgen.config import load
from tests.mas.helpers import RedisServer
from tests.procs import DUMMY_KEYS as PROVIDER_KEYS
from tests.procs import read_line, run_massgen
from tests.sim.simulator import ProviderSimulator
from tests.teamkit import unpaced, unpaced_offline

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
REDIS_URL = "redis://127.0.0.1:6379/0"
DUMMY_KEYS = {**PROVIDER_KEYS, "BRAVE_API_KEY": "dummy", "PGPASSWORD": "dummy"}
DUMMY_KEYS |= {"MCP_TOKEN": "dummy", "API_TOKEN": "dummy"}  # docs/tools.md, MCP servers
DUMMY_KEYS |= {"LANGFUSE_AUTH": "dummy", "LOGFIRE_TOKEN": "dummy"}  # docs/observability.md
CLEAN = ("MASSGEN_REDIS_URL", "MASSGEN_CONFIG", "MASSGEN_SECRET", "MASSGEN_LOG")
"""Unset for every command, so the examples meet the machine a reader has."""

NOT_MASSGEN = {
    "ollama": "starts a local Ollama server and downloads a model",
}
"""Programs other than massgen that examples run, and why they are not run here."""

BENCHMARKS = "a benchmark: minutes of deliberate load, not a pass/fail test (`make bench`)"
"""Why the bench scripts are only started with ``--help`` here."""

MAKE_SKIPPED = {"test": "runs this very suite"}
"""Make targets not run here; every other one has its massgen command run instead."""

INLINE_SKIPPED = {
    "massgen service": "runs until stopped; docs/distributed.md's `massgen service --redis` runs",
    "massgen worker": "needs a config; the README's full `massgen worker team.yaml` runs",
    "massgen worker --agent b": "names an option; docs/distributed.md's workers with --agent run",
    "massgen agents list": "needs --redis or --config; `agents list --config team.yaml` runs",
    "massgen run": "names the command; its full forms (config and task) run",
    "massgen run --redis": "names an option; the full form needs a task",
    "massgen batch": "names the command; `massgen batch tasks.txt` runs",
    "massgen mcp": "names the command; docs/tools.md's `massgen mcp team.yaml` forms run",
    "massgen dashboard": "names the command; docs/dashboard.md's full form runs",
    "massgen serve": "names the command; docs/serve.md's quick start runs",
}
"""Inline commands without placeholders that are still not run, and why."""

NEEDS_SERVER = {
    "local": "needs Ollama and LM Studio servers on localhost",
}
"""Example configs a shown command runs, that need a local server. The others (OpenAI,
Anthropic, Gemini) run against the simulator."""

TEAMS: dict[str, dict[str, Any]] = {
    "docs/distributed.md": {
        "name": "review",
        "agents": [
            {"name": "analyst", "backend": "openai", "model": "gpt-4o-mini"},
            {"name": "critic", "backend": "anthropic", "model": "claude-haiku-4-5"},
            {"name": "judge", "backend": "replay"},
        ],
        "orchestrator": {"strategy": "parallel", "max_retries": 0},
    },
}
"""The team a page's commands run (``team.yaml``); any other page: configs/offline.yaml's.
distributed.md's is the one its output shows (analyst, critic, judge), its providers the
simulator."""

TASKS_TXT = "What is the capital of France?\n"
"""The ``tasks.txt`` a reader's folder holds, for ``massgen batch tasks.txt``."""


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


_FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
_ERROR = re.compile(r"^(?P<file>[\w.]+):(?P<line>\d+): `(?P<key>[\w.]+)`: .*\n  hint: .*$")
_REMOTE_REDIS = re.compile(r"(rediss?://)(?!127\.0\.0\.1|localhost)([\w.-]+):(\d+)")


def fenced(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        indent = len(m.group(1))
        body = "\n".join(line[indent:] for line in m.group(3).splitlines())
        line = text.count("\n", 0, m.start()) + 1
        out.append(Block(str(path.relative_to(ROOT)), line, m.group(2), body))
    return out


BLOCKS = [b for doc in DOCS for b in fenced(doc)]


def _kind(block: Block) -> str:
    if _other(block) is not None:  # a YAML block that is not massgen's (Prometheus')
        return "other"
    if block.lang == "yaml":
        return "yaml"
    if block.lang == "python":
        return "python"
    if _ERROR.fullmatch(block.text.strip()):
        return "error"
    if block.lang in ("sh", "", "console") and _lines(block) and _lines(block)[0][0] == "$":
        return "shell"
    return "unknown"


def _lines(block: Block) -> list[tuple[str, str]]:
    """("$", command) and (">", output) lines of a shell block; [] when it starts with output."""
    out: list[tuple[str, str]] = []
    for line in block.text.splitlines():
        text = line.removeprefix("$ ") if block.lang == "console" else line
        if block.lang == "console" and not line.startswith("$ "):
            out.append((">", line))
            continue
        try:
            argv = shlex.split(text, comments=True)
        except ValueError:
            argv = []
        if argv and _program(argv):
            out.append(("$", text))
        elif text.strip():
            out.append((">", text))
    return out


def _program(argv: list[str]) -> str | None:
    name = argv[0].removeprefix(".venv/bin/")
    return name if name in ("massgen", "make", "python", "curl", *NOT_MASSGEN) else None


def _of(kind: str) -> list[Block]:
    return [b for b in BLOCKS if _kind(b) == kind]


# -- other blocks: diagrams, output shown alone, SQL ------------------------------------------


def _check_run_diagram(block: Block, ctx: OtherContext) -> None:
    """The path of one run: numbered steps, one module each; every module and every file a
    step names exists, and every ``Class.method`` or ``module.function`` shown is defined."""
    steps, current = [], ROOT / "massgen"
    for line in block.text.splitlines()[1:]:
        m = re.match(r"\s*(\d+) ([\w/]+\.py)\s", line)
        if m:
            steps.append(int(m[1]))
            current = ROOT / "massgen" / m[2]
            assert current.is_file(), f"{block}: massgen/{m[2]} does not exist"
        for name in re.findall(r"(?<![/\w])(\w+\.py)\b", line):
            assert (current.parent / name).is_file(), f"{block}: {name} beside {current}?"
        for owner, attr in re.findall(r"\b([A-Za-z]\w*)\.([a-z_]\w*)\(?", line):
            if attr != "py" and (owner in {"team", "resilience"} or owner[0].isupper()):
                sources = [f.read_text() for f in (ROOT / "massgen").rglob("*.py")]
                assert any(f"def {attr}" in src for src in sources), f"{block}: {owner}.{attr}"
    assert steps == list(range(1, len(steps) + 1)), f"{block}: steps are numbered in order"


def _check_breaker_diagram(block: Block, ctx: OtherContext) -> None:
    from massgen.resilience.breaker import CircuitState

    shown = set(re.findall(r"\b[A-Z][A-Z_]{3,}\b", block.text))
    assert shown == {s.name for s in CircuitState}, shown


def _check_tool_fence(block: Block, ctx: OtherContext) -> None:
    from massgen.tools.runner import fence

    inside = block.text.splitlines()[1]
    assert fence("web_search", inside, 10_000) == block.text


def _check_recall(block: Block, ctx: OtherContext) -> None:
    from massgen.memory.long_term import MemoryItem
    from massgen.memory.short_term import _with_recalled

    item = MemoryItem(
        task="Which database for the ledger service?",
        final="Use PostgreSQL 16 for the ledger.",
        winner="ada",
        votes=[("ada", "ada"), ("bob", "ada")],
    )
    assert _with_recalled([item.text()], "<the prompt>") == block.text


def _check_worker_lines(block: Block, ctx: OtherContext) -> None:
    """The lines are what ``massgen worker team.yaml`` prints for the page's team."""
    session = ctx.session_for(block.doc)
    args = [sys.executable, "-m", "massgen", "worker", "team.yaml"]
    proc = subprocess.Popen(
        args,
        cwd=session.cwd,
        env=_clean_env(session.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    session.workers.append(proc)
    deadline = time.monotonic() + 30
    printed = [read_line(proc, deadline) for _ in load(session.cwd / "team.yaml").agents]
    for line in _local(block.text, session.redis).splitlines():
        assert f"{line}\n" in printed, (line, printed)


def _check_sql(block: Block, ctx: OtherContext) -> None:
    """Run as written on the local PostgreSQL, in a scratch database standing for
    ``warehouse``, in a transaction rolled back at the end; the role it makes can read and
    cannot write or reach the server."""
    import psycopg

    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    scratch = f"docs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {scratch}")
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{scratch}") as conn:
            conn.execute("CREATE TABLE items (name text)")
            conn.execute("INSERT INTO items VALUES ('ledger')")
            conn.execute(block.text.replace("warehouse", scratch))
            row = conn.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
                " FROM pg_roles WHERE rolname = 'massgen_reader'"
            ).fetchone()
            assert row == (False, False, False, False, False)
            conn.execute("SET ROLE massgen_reader")
            assert conn.execute("SELECT name FROM items").fetchall() == [("ledger",)]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("INSERT INTO items VALUES ('x')")
            conn.rollback()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {scratch}")


@dataclass
class OtherContext:
    session_for: Callable[[str], Session]


def _check_waiting_lines(block: Block, ctx: OtherContext) -> None:
    """The lines a run prints while a dead worker's turn waits: their words are the ones
    the run writes (tests/test_worker_lost.py reads them from a real run whose worker died)."""
    source = (ROOT / "massgen" / "distributed" / "connect.py").read_text()
    waiting, gone = block.text.strip().splitlines()
    assert re.fullmatch(r"\w+ waiting for a worker: \S+ pid \d+ silent for \d+s", waiting.strip())
    assert '"waiting for a worker: ' in source
    assert re.fullmatch(
        r"\w+ no live worker \(\S+ pid \d+ gone\); running the turn here", gone.strip()
    )
    assert "); running the turn here" in source and "no live worker (" in source
    lost = (ROOT / "tests" / "test_worker_lost.py").read_text()
    assert "waiting for a worker" in lost and "running the turn here" in lost


def _check_gateway_example(block: Block, ctx: OtherContext) -> None:
    """mas.md's gateway example is run, as written, by the seed-examples suite (it needs a
    live target agent on Redis, which that test starts)."""
    runner = (ROOT / "tests" / "mas" / "test_seed_examples.py").read_text()
    assert "def test_the_gateway_example_of_docs_mas_md_runs(" in runner
    assert block.doc == "docs/mas.md"


def _check_tls_example(block: Block, ctx: OtherContext) -> None:
    """observability.md's certificate variables are run, as written, by the tracing tests
    (the collector is an HTTPS receiver asking for a client certificate, which that test
    starts with certificates it makes)."""
    runner = (ROOT / "tests" / "test_tracing_tls.py").read_text()
    assert "def test_the_tls_example_of_docs_observability_md_runs(" in runner
    assert block.doc == "docs/observability.md"


def _check_unreachable(block: Block, ctx: OtherContext) -> None:
    """What a command prints when the config's Redis does not answer: the same lines, for a
    team whose ``redis.url`` on line 12 names a port nobody listens on."""
    import socket
    import tempfile

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        lines = ["# padding"] * 9 + [
            "agents: [{name: ada, backend: replay}]",
            "redis:",
            f"  url: redis://127.0.0.1:{port}/0",
        ]
        (Path(folder) / "team.yaml").write_text("\n".join(lines) + "\n")
        done = run_massgen("config", "validate", "team.yaml", cwd=Path(folder), unset=CLEAN)
    assert done.returncode == 2, done.stderr
    shown = block.text.strip().replace("redis://h:6379/0", f"redis://127.0.0.1:{port}/0")
    assert done.stderr.strip() == shown


def _check_scrape_config(block: Block, ctx: OtherContext) -> None:
    """A Prometheus scrape config: each target's port is one the page's commands serve
    metrics on, at the path they serve (tests/test_metrics_worker.py scrapes a worker's)."""
    config = yaml.safe_load(block.text)
    ports = set(re.findall(r"--metrics-port (\d+)", (ROOT / block.doc).read_text()))
    targets = [
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    ]
    assert targets and all(t.rsplit(":", 1)[1] in ports for t in targets), (targets, ports)
    assert all(
        job.get("metrics_path", "/metrics") == "/metrics" for job in config["scrape_configs"]
    )
    import tempfile

    from tests.promserver import check_config

    with tempfile.TemporaryDirectory() as folder:
        check_config(block.text, Path(folder))  # and Prometheus takes it


def _check_promql(block: Block, ctx: OtherContext) -> None:
    """PromQL queries, one a line, each after a ``#`` line saying what it shows: each parses
    (``promtool check rules`` on them as recording rules); tests/test_metrics_prometheus.py
    runs them against a real Prometheus scraping ``massgen serve``."""
    import tempfile

    from tests.promserver import check_rules

    lines = block.text.strip().splitlines()
    said, queries = lines[0::2], lines[1::2]
    assert queries and len(said) == len(queries), block.text
    assert all(s.startswith("# ") for s in said) and not any(q.startswith("#") for q in queries)
    with tempfile.TemporaryDirectory() as folder:
        check_rules(queries, Path(folder))


OTHERS: list[tuple[str, Callable[[Block, OtherContext], None]]] = [
    (r"massgen run team\.yaml \"task\"$", _check_run_diagram),
    (r"\s+failures consecutive tripping failures", _check_breaker_diagram),
    (r'<tool_output tool="web_search">', _check_tool_fence),
    (r"Recalled memory from earlier runs", _check_recall),
    (r"hosting \w+ \(", _check_worker_lines),
    (r"CREATE ROLE massgen_reader", _check_sql),
    (r"\s*\w+ waiting for a worker: ", _check_waiting_lines),
    (r"gateway = GatewayService\(\)", _check_gateway_example),
    (r"error: cannot reach Redis at ", _check_unreachable),
    (r"export OTEL_EXPORTER_OTLP_ENDPOINT=https://", _check_tls_example),
    (r"scrape_configs:", _check_scrape_config),
    (r"# runs a second, by team and status$", _check_promql),
]
"""Blocks that are neither YAML, Python nor commands, by their first line, and their check."""


def _other(block: Block) -> Callable[[Block, OtherContext], None] | None:
    first = block.text.splitlines()[0] if block.text else ""
    return next((check for pattern, check in OTHERS if re.match(pattern, first)), None)


def test_every_page_and_example_is_handled() -> None:
    pages = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")} | {"README.md"}
    assert {str(d.relative_to(ROOT)) for d in DOCS} == pages
    unknown = [f"{b} ({b.lang or 'no language'})" for b in BLOCKS if _kind(b) == "unknown"]
    assert not unknown, f"examples this test does not know how to check: {unknown}"
    for kind in ("yaml", "shell", "error", "python", "other"):
        assert _of(kind), kind


# -- shared machinery: a private Redis, the simulator, the reader's environment --------------


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of this module's own: examples that use the default prefix (or none)
    meet nobody else's keys."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def simulator() -> Iterator[ProviderSimulator]:
    with ProviderSimulator() as sim:
        yield sim


@pytest.fixture
def reader_env(private_redis: str, simulator: ProviderSimulator) -> dict[str, str]:
    """Dummy keys, the providers' SDKs pointed at the simulator, ``${REDIS_URL}`` the
    private Redis."""
    return {
        **DUMMY_KEYS,
        "OPENAI_BASE_URL": simulator.openai_base_url,
        "ANTHROPIC_BASE_URL": simulator.anthropic_base_url,
        "GOOGLE_GEMINI_BASE_URL": simulator.gemini_base_url,
        "REDIS_URL": private_redis,
    }


def _local(text: str, redis_url: str) -> str:
    """``text`` with every Redis URL on another host (the reader's) pointed at ``redis_url``."""
    port = redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    return _REMOTE_REDIS.sub(lambda m: f"{m[1]}127.0.0.1:{port}", text)


# -- YAML teams -----------------------------------------------------------------------------


FRAGMENT_KEYS = {"tools", "backends", "redis", "orchestrator", "pricing", "cache", "observability"}
"""Top-level sections a fragment may show alone; anything else fails the test."""


def _python_defining(name: str) -> Block:
    [block] = [b for b in _of("python") if re.search(rf"^class {name}\b", b.text, re.M)]
    return block


def team_text(block: Block, where: Path) -> str:
    """The team ``block`` shows (a fragment completed, as the module docstring says), with
    the reader's files it names made in ``where``."""
    data = yaml.safe_load(block.text)
    text = block.text
    if "agents" not in data:
        assert set(data) <= FRAGMENT_KEYS, f"{block}: a fragment of {set(data)} cannot be completed"
        tools = list(data.get("tools") or {})
        agents: list[dict[str, Any]] = [
            {"name": f"uses-{b}", "backend": b} for b in data.get("backends") or {}
        ] or [
            {"name": "ada", "backend": "openai", "model": "gpt-4o-mini"}  # calls tools
            if tools
            else {"name": "ada", "backend": "replay"}
        ]
        for agent in agents:
            agent.update({"tools": tools} if tools else {})
        text += "\n" + yaml.safe_dump({"agents": agents}, sort_keys=False)
    for entry in (data.get("tools") or {}).values():  # the reader's own files
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("root"), str):
            (where / entry["root"]).mkdir(parents=True, exist_ok=True)
        if str(entry.get("database", "")).endswith(".db"):
            import sqlite3

            sqlite3.connect(where / entry["database"]).close()
        if str(entry.get("use", "")).startswith("mytools:"):
            (where / "mytools.py").write_text(_python_defining(entry["use"].split(":")[1]).text)
    return text


@pytest.mark.parametrize("block", _of("yaml"), ids=str)
def test_yaml_example_builds(block: Block, tmp_path: Path, reader_env: dict[str, str]) -> None:
    """Each YAML example is a team (or the part of one it shows) that a run would build."""
    (tmp_path / "team.yaml").write_text(team_text(block, tmp_path))
    env = {**reader_env, "MASSGEN_SECRET": "dummy-secret"}  # `${MASSGEN_SECRET}` is set
    kept = tuple(c for c in CLEAN if c != "MASSGEN_SECRET")
    done = run_massgen("config", "validate", "team.yaml", cwd=tmp_path, env=env, unset=kept)
    assert done.returncode == 0, f"{block}: {done.stderr}"
    names = [a["name"] for a in yaml.safe_load((tmp_path / "team.yaml").read_text())["agents"]]
    assert all(f"  {name}: " in done.stdout for name in names), done.stdout


# -- error examples -------------------------------------------------------------------------


@pytest.mark.parametrize("block", _of("error"), ids=str)
def test_error_example_is_what_massgen_prints(block: Block, tmp_path: Path) -> None:
    """The team behind the example (its key, misspelt, on its line) gives exactly that."""
    m = _ERROR.fullmatch(block.text.strip())
    assert m is not None
    *parents, leaf = m["key"].split(".")
    body = ["agents:", "  - {name: ada, backend: replay}"]
    body += [f"{'  ' * i}{p}:" for i, p in enumerate(parents)]
    body.append(f"{'  ' * len(parents)}{leaf}: 2")
    padding = int(m["line"]) - len(body)
    assert padding >= 0
    (tmp_path / m["file"]).write_text("\n".join(["# padding"] * padding + body) + "\n")
    done = run_massgen("config", "validate", m["file"], cwd=tmp_path, unset=CLEAN)
    assert done.returncode == 2
    assert done.stderr == f"error: {block.text.strip()}\n"


# -- Python ---------------------------------------------------------------------------------


def _replay_backend() -> Any:
    from massgen.backends.registry import create_backend

    return create_backend("replay", model="replay")


def _an_agent() -> Any:
    from massgen import Agent

    return Agent("ada", backend="replay", model="replay")


GIVEN: dict[str, Callable[[str], dict[str, Any]]] = {
    "batch_run(tasks,": lambda url: {"tasks": ["Task 4", "Task 5"]},
    "loads(text,": lambda url: {"text": (ROOT / "configs/offline.yaml").read_text()},
    "distributed(orchestrator, URL": lambda url: {"URL": url},
    "wrap(backend,": lambda url: {"backend": _replay_backend()},
    "agent.long_term = ": lambda url: {"agent": _an_agent()},
}
"""Names an example leaves to the reader, by a phrase of the example that uses them."""


class _SentenceTransformer:
    """Stands in for a downloaded embedding model: a vector of letter counts."""

    encoded: list[str] = []

    def __init__(self, name: str) -> None:
        self.name = name

    def encode(self, texts: list[str]) -> _Array:
        self.encoded.extend(texts)
        return _Array([[float(t.lower().count(c)) for c in "aeiou"] for t in texts])


class _Array(list[list[float]]):
    """What ``encode`` returns (an array, without numpy)."""

    def tolist(self) -> list[list[float]]:
        return list(self)


async def _recall_by_meaning(scope: dict[str, Any]) -> None:
    """The memory the example gives an agent ranks what it remembers with the model."""
    from massgen.memory.long_term import MemoryItem
    from massgen.store import open_store

    memory = scope["agent"].long_term
    memory.bind(open_store("memory://"))
    await memory.remember(MemoryItem(task="Which database for the ledger?", final="PostgreSQL"))
    _SentenceTransformer.encoded.clear()
    [(_, item)] = await memory.search("ledger database")
    assert item.final == "PostgreSQL"
    assert "ledger database" in _SentenceTransformer.encoded  # ranked by the model


AFTER: dict[str, Callable[[dict[str, Any]], Any]] = {"agent.long_term = ": _recall_by_meaning}
"""What is done with an example's result, by a phrase of the example, to see it works."""


def _literal_asserts(tree: ast.Module, source: str) -> ast.Module:
    """``expr  # literal`` (or ``print(expr)  # literal``) is also ``assert expr == literal``."""
    lines = source.splitlines()
    body: list[ast.stmt] = []
    for stmt in tree.body:
        body.append(stmt)
        if not isinstance(stmt, ast.Expr) or stmt.end_lineno is None:
            continue
        m = re.search(r"#\s*(.+?)\s*$", lines[stmt.end_lineno - 1])
        if m is None:
            continue
        try:
            expected = ast.literal_eval(m[1])
        except (ValueError, SyntaxError):
            continue
        value = stmt.value
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "print":
            (value,) = value.args
        check = ast.Assert(
            test=ast.Compare(left=value, ops=[ast.Eq()], comparators=[ast.Constant(expected)]),
            msg=ast.Constant(f"line {stmt.lineno}: not {expected!r}"),
        )
        body.append(ast.fix_missing_locations(ast.copy_location(check, stmt)))
    return ast.Module(body=body, type_ignores=[])


def _awaits(stmt: ast.stmt) -> bool:
    return any(isinstance(n, ast.Await | ast.AsyncWith | ast.AsyncFor) for n in ast.walk(stmt))


async def _stop_what_is_left(scope: dict[str, Any]) -> None:
    from massgen import Orchestrator
    from massgen.mas import Agent as BusAgent

    for value in scope.values():
        if isinstance(value, BusAgent) and value.status == "running":
            await value.stop()
        elif isinstance(value, Orchestrator):
            await value.aclose()


def execute(block: Block, scope: dict[str, Any]) -> str:
    """Run ``block`` as the module docstring says; what it printed."""
    tree = _literal_asserts(ast.parse(block.text), block.text)
    first = next((i for i, s in enumerate(tree.body) if _awaits(s)), len(tree.body))
    script = ast.Module(body=tree.body[:first], type_ignores=[])
    rest = ast.Module(body=tree.body[first:], type_ignores=[])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(script, str(block), "exec"), scope)

        async def in_a_loop() -> None:
            code = compile(rest, str(block), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            try:
                awaitable = eval(code, scope)
                if awaitable is not None:
                    await awaitable
            finally:
                await _stop_what_is_left(scope)

        asyncio.run(in_a_loop())
    return out.getvalue()


@pytest.mark.parametrize("block", _of("python"), ids=str)
def test_python_example_runs(
    block: Block,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reader_env: dict[str, str],
    private_redis: str,
) -> None:
    for name, value in {**reader_env, "MASSGEN_REDIS_URL": private_redis}.items():
        monkeypatch.setenv(name, value)
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # offline.yaml's quiz answers
    offline = tmp_path / "configs" / "offline.yaml"
    offline.write_text(unpaced(offline.read_text()))
    (tmp_path / "team.yaml").write_text(yaml.safe_dump(TEAMS["docs/distributed.md"]))
    monkeypatch.chdir(tmp_path)
    stub = types.ModuleType("sentence_transformers")
    stub.SentenceTransformer = _SentenceTransformer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentence_transformers", stub)
    scope: dict[str, Any] = {"__name__": "__docs__"}
    for phrase, given in GIVEN.items():
        if phrase in block.text:
            scope.update(given(private_redis))
    with served_for(block, tmp_path, reader_env) as block:
        printed = execute(block, scope)
    for phrase, after in AFTER.items():
        if phrase in block.text:
            asyncio.run(after(scope))
    if any(re.match(r"print\(", line) for line in block.text.splitlines()):
        assert printed.strip(), f"{block} prints nothing"


@contextlib.contextmanager
def served_for(block: Block, cwd: Path, env: dict[str, str]) -> Iterator[Block]:
    """An example that asks ``massgen serve`` at 127.0.0.1:8080 (as docs/serve.md starts it,
    with configs/offline.yaml's team) asks one started on a free port for it."""
    shown = "http://127.0.0.1:8080"
    if shown not in block.text:
        yield block
        return
    team = str(cwd / "configs/offline.yaml")  # the reader's copy, unpaced
    argv = [sys.executable, "-m", "massgen", "serve", team, "--port", "0"]
    proc = subprocess.Popen(
        argv, cwd=cwd, env=_clean_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert " on http://127.0.0.1:" in line, line
        url = line.rsplit(" on ", 1)[1].strip()
        yield dataclasses.replace(block, text=block.text.replace(shown, url))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


# -- shell commands -------------------------------------------------------------------------


@dataclass
class Session:
    """The commands of one example, run in order in one folder; workers and services
    started by one are stopped at the end."""

    cwd: Path
    redis: str
    env: dict[str, str]
    workers: list[subprocess.Popen[str]] = field(default_factory=list)
    starting: list[tuple[subprocess.Popen[str], str, int]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ran: int = 0
    last: str = ""
    served: str = ""  # the address `massgen serve` told, standing for the one shown

    def run(self, argv: list[str], expected: list[str] | None = None) -> None:
        argv = [_local(a, self.redis) for a in argv]
        expected = [_local(e, self.redis) for e in expected or []]
        program = _program(argv)
        if program in NOT_MASSGEN:
            self.skipped.append(f"{argv[0]}: {NOT_MASSGEN[program]}")
            return
        if program == "python":
            assert argv[1].startswith("bench/"), argv
            done = subprocess.run(
                [sys.executable, str(ROOT / argv[1]), "--help"], capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            self.skipped.append(f"{argv[1]}: {BENCHMARKS}")
            return
        if program == "curl":
            self.curl(argv, expected)
            return
        if program == "make":
            target = argv[1]
            if target in MAKE_SKIPPED:
                self.skipped.append(f"make {target}: {MAKE_SKIPPED[target]}")
                return
            argv = ["massgen", *_make_command(target)]
        self.massgen(argv[1:], expected)

    def massgen(self, args: list[str], expected: list[str]) -> None:
        out: Path | None = None
        if ">" in args:
            args, out = args[: args.index(">")], self.cwd / args[args.index(">") + 1]
        if args[0] == "run" and (stem := Path(args[1]).stem) in NEEDS_SERVER:
            self.skipped.append(f"{' '.join(args[:2])}: {NEEDS_SERVER[stem]}")
            built = run_massgen(
                "config", "validate", args[1], cwd=ROOT, env=DUMMY_KEYS, unset=CLEAN
            )
            assert built.returncode == 0, built.stderr  # yet it builds with dummy keys
            return
        # the reader's metrics port: a free one here (other tests may hold the one shown)
        args = ["0" if i and args[i - 1] == "--metrics-port" else a for i, a in enumerate(args)]
        if args[0] in ("worker", "service"):
            self.start(args)
            return
        if args[0] == "mcp":
            self.serve_mcp(args)
            return
        if args[0] == "dashboard":
            self.serve_dashboard(args)
            return
        if args[0] == "serve":
            self.serve(args)
            return
        if args[0] == "eval":  # its data files are the page's to name: they are made there
            self.skipped.append("massgen eval: runs in tests/test_eval_docs.py, beside its files")
            return
        if args[0] == "run" and any(" on workers at " in e for e in expected):
            self.start_the_workers_of(expected)
        self.ready()
        # The repository's example configs, run from this folder (records land here).
        args = [_repo_config(a, self.cwd) for a in args]
        done = run_massgen(*args, cwd=self.cwd, env=self.env, unset=CLEAN)
        assert done.returncode == 0, f"massgen {' '.join(args)}: {done.stderr}"
        self.ran += 1
        for line in expected:  # the output the example shows is what it printed
            assert line in done.stdout + done.stderr, f"{line!r} not in {done.stderr}"
        if args[0] == "run":
            assert done.stdout.strip(), "a run prints its answer"
            if self.workers:  # "turns go to live workers"
                assert "on workers at" in done.stderr
        if args[:2] == ["agents", "list"] and "--config" in args:
            team = load(self.cwd / args[args.index("--config") + 1])
            assert all(a.name in done.stdout for a in team.agents), done.stdout
            if self.workers:
                assert "not hosted" not in done.stdout, done.stdout
        if out is not None:
            out.write_text(done.stdout)
            assert out.read_text().strip() and "round" not in out.read_text()

    def serve_mcp(self, args: list[str]) -> None:
        """``massgen mcp``: over stdio, served until stdin ends (at once here); over HTTP,
        until it said where it serves, then stopped by SIGTERM. tests/test_cli_mcp.py asks
        the team through the SDK's client."""
        argv = [sys.executable, "-m", "massgen", *args]
        env = _clean_env(self.env)
        if "--http" not in args:
            done = subprocess.run(
                argv, cwd=self.cwd, env=env, input="", capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0 and done.stdout == "", done.stderr
            self.ran += 1
            return
        proc = subprocess.Popen(
            argv, cwd=self.cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline().decode()  # the first line, or EOF if it ended
            assert "massgen mcp: serving on http://127.0.0.1:" in line, line
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err.decode()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        self.ran += 1

    def serve_dashboard(self, args: list[str]) -> None:
        """``massgen dashboard``: on a free port (the page's is an example), until it said
        where it serves; the state it serves reads the registry of its Redis; then SIGTERM.
        tests/test_dashboard.py sees a worker's agents listed in it."""
        import json
        import urllib.request

        if "--port" in args:
            args = [*args[: args.index("--port")], *args[args.index("--port") + 2 :]]
        proc = subprocess.Popen(
            [sys.executable, "-m", "massgen", *args, "--port", "0"],
            cwd=self.cwd,
            env=_clean_env(self.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = read_line(proc, time.monotonic() + 30) or ""
            url = re.search(r"^massgen dashboard: serving on (http://127\.0\.0\.1:\d+/) ", line)
            assert url is not None, line
            with urllib.request.urlopen(url[1] + "dashboard/state", timeout=10) as response:
                registry = json.loads(response.read())["registry"]
            assert registry["error"] is None and registry["redis"].startswith("redis://127.0.0.1:")
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        self.ran += 1

    def serve(self, args: list[str]) -> None:
        """``massgen serve ... &``: started on a free port (for the one shown) and left
        running until the example ends; the ``curl`` commands after it ask it."""
        args = [_repo_config(a, self.cwd) for a in args if a != "&"]
        if "--port" in args:
            args[args.index("--port") + 1] = "0"
        proc = subprocess.Popen(
            [sys.executable, "-m", "massgen", *args],
            cwd=self.cwd,
            env=_clean_env(self.env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.workers.append(proc)
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the first line, or EOF if it ended
        assert " on http://127.0.0.1:" in line, line
        self.served = line.rsplit(" on ", 1)[1].strip()
        self.ran += 1

    def curl(self, argv: list[str], expected: list[str]) -> None:
        """A ``curl`` of the served API: to the address it told; it answers JSON, no error."""
        assert self.served, f"{argv}: nothing is served"
        argv = [a.replace("http://127.0.0.1:8080", self.served) for a in argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        body = json.loads(done.stdout)
        assert "error" not in body, body
        for line in expected:
            assert line in done.stdout, f"{line!r} not in {done.stdout}"
        self.ran += 1

    def start(self, args: list[str]) -> None:
        """A worker (ready once each agent it hosts is) or the service, left running."""
        if args[0] == "worker":
            named = [args[i + 1] for i, a in enumerate(args) if a in ("--agent", "-a")]
            count = len(named) or len(load(self.cwd / args[1]).agents)
            ready = "hosting "
        else:
            count, ready = 1, "service watching "
        proc = subprocess.Popen(
            [sys.executable, "-m", "massgen", *args],
            cwd=self.cwd,
            env=_clean_env(self.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.workers.append(proc)
        self.starting.append((proc, ready, count))
        self.ran += 1

    def ready(self) -> None:
        """Wait until the processes started since the last wait (together, so they start up
        at once) say they are ready; one that ends or stalls first fails the test."""
        deadline = time.monotonic() + 30
        for proc, ready, count in self.starting:
            seen = 0
            while seen < count:
                try:
                    line = read_line(proc, deadline)
                except TimeoutError:
                    line = None
                if line is None:
                    proc.kill()
                    raise AssertionError(f"{proc.args}: not ready:\n{proc.communicate()[1]}")
                seen += line.startswith(ready)
        self.starting.clear()

    def start_the_workers_of(self, expected: list[str]) -> None:
        """The workers a ``massgen: A (2 workers), B on workers at URL; local: C`` line names."""
        [line] = [e for e in expected if " on workers at " in e]
        remote = line.removeprefix("massgen: ").split(" on workers at ")[0]
        for part in remote.split(", "):
            name, _, n = part.partition(" (")
            for _ in range(int(n.split()[0]) if n else 1):
                self.start(["worker", "team.yaml", "--agent", name])

    def stop(self) -> None:
        try:
            self.ready()
        finally:
            for worker in self.workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.communicate(timeout=20)
            assert worker.returncode == 0, worker.args


def _make_command(target: str) -> list[str]:
    """The massgen command the Makefile's ``target`` runs, with its variables filled in."""
    makefile = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+)\s*\?=\s*(.*)$", makefile, re.MULTILINE))
    recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None, f"no make target {target!r}"
    (line,) = [ln for ln in recipe.group(1).splitlines() if "/massgen " in ln]
    line = re.sub(r"\$\((\w+)\)", lambda v: variables.get(v.group(1), ""), line.strip())
    return shlex.split(line)[1:]


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    return {**env, **extra, "PYTHONUNBUFFERED": "1"}


def _repo_config(arg: str, cwd: Path) -> str:
    """A command's argument naming one of the repository's configs (``configs/X.yaml``, as
    run from a checkout): its path; offline.yaml's is an unpaced copy under ``cwd``, beside
    the examples its quiz reads. Any other argument as it is."""
    if not arg.startswith("configs/"):
        return arg
    if arg != "configs/offline.yaml":
        return str(ROOT / arg)
    copy = cwd / "checkout" / arg
    return str(copy if copy.exists() else unpaced_offline(cwd / "checkout"))


def _offline_team() -> dict[str, Any]:
    """configs/offline.yaml's team, for a copy in another folder: its quiz's answers file
    (a path relative to configs/) given whole, its replies unpaced."""
    team = yaml.safe_load(unpaced((ROOT / "configs/offline.yaml").read_text()))
    quiz = team["backends"]["sim"]["quiz"]
    quiz["answers"] = str((ROOT / "configs" / quiz["answers"]).resolve())
    return team


def _folder(tmp_path: Path, doc: str, prefix: str, redis: str) -> Path:
    """Where a page's commands run: its ``team.yaml`` and a ``tasks.txt``. The README's
    team is on the test's Redis prefix, distributed.md's on the private Redis (whose default
    prefix is free), so their distributed examples work as written; memory.md's remembers
    (``long_term``)."""
    team = dict(TEAMS.get(doc) or _offline_team())
    if doc == "README.md":
        team["redis"] = {"url": REDIS_URL, "prefix": prefix}
    elif doc in TEAMS:
        team["redis"] = {"url": redis}
    if doc == "docs/memory.md":
        for agent in team["agents"]:
            agent["memory"] = {"long_term": True}
    (tmp_path / "team.yaml").write_text(yaml.safe_dump(team))
    (tmp_path / "tasks.txt").write_text(TASKS_TXT)
    return tmp_path


PAGE_SETUP = {"docs/memory.md": ["massgen run team.yaml 'What is the capital of France?'"]}
"""What a reader of the page has done before its examples (memory.md's list a memory)."""


@pytest.fixture
def session_for(
    tmp_path: Path, prefix: str, private_redis: str, reader_env: dict[str, str]
) -> Iterator[Callable[[str], Session]]:
    made: list[Session] = []

    def make(doc: str) -> Session:
        s = Session(_folder(tmp_path, doc, prefix, private_redis), private_redis, reader_env)
        made.append(s)
        for command in PAGE_SETUP.get(doc, []):
            s.run(shlex.split(command))
        s.ran = 0
        return s

    yield make
    for s in made:
        s.stop()


def _optional(command: str) -> list[str]:
    """``cmd [--a x] [--b]`` as run: without its optional parts, then with all of them (an
    option in brackets; other brackets, as in a JSON body, are the command's own)."""
    if " [-" not in command:
        return [command]
    return [re.sub(r"\s+\[(-[^]]*)\]", "", command), re.sub(r"(?<=\s)\[(-[^]]*)\]", r"\1", command)]


@pytest.mark.parametrize("block", _of("shell"), ids=str)
def test_shell_example_runs_as_shown(block: Block, session_for: Callable[[str], Session]) -> None:
    session = session_for(block.doc)
    lines = _lines(block)
    for i, (mark, text) in enumerate(lines):
        if mark != "$":
            continue
        shown = [t for _, t in _output_after(lines[i + 1 :])]
        for command in _optional(text):
            session.run(shlex.split(command, comments=True), shown)
    session.ready()
    if not session.ran:
        pytest.skip("; ".join(session.skipped))


def _output_after(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    for mark, text in lines:
        if mark != ">":
            break
        out.append((mark, text))
    return out


_INLINE = re.compile(r"`((?:\.venv/bin/)?massgen [^`]+)`")
_PLACEHOLDER = re.compile(r"\b[A-Z]{2,}\b|…|\.\.\.")


def inline_commands() -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for doc in DOCS:
        text = _FENCE.sub("", doc.read_text(encoding="utf-8"))
        for m in _INLINE.finditer(re.sub(r"\s*\n\s*", " ", text)):
            found.setdefault(m.group(1), str(doc.relative_to(ROOT)))
    return [(c, d) for c, d in found.items() if not _PLACEHOLDER.search(c)]


def test_inline_commands_are_found() -> None:
    commands = [c for c, _ in inline_commands()]
    assert 'massgen run configs/offline.yaml "What is the capital of France?"' in commands
    assert {"massgen --version", "massgen config schema", "massgen memory clear"} <= set(commands)


@pytest.mark.parametrize(("command", "doc"), inline_commands())
def test_inline_command_runs_as_shown(
    command: str, doc: str, session_for: Callable[[str], Session]
) -> None:
    if command in INLINE_SKIPPED:
        pytest.skip(INLINE_SKIPPED[command])
    session = session_for(doc)
    session.run(shlex.split(command))
    if not session.ran:
        pytest.skip("; ".join(session.skipped))


def test_make_demo_runs_the_command_the_readme_names() -> None:
    readme = (ROOT / "README.md").read_text()
    shown = re.search(r"`make demo` runs `massgen ([^`]*)`", readme)
    assert shown is not None
    assert _make_command("demo") == shlex.split(shown.group(1))


def test_the_validate_docs_say_what_it_checks() -> None:
    doc = (ROOT / "docs/config.md").read_text()
    section = doc.partition("## Checking a file")[2].partition("\n## ")[0]
    for thing in ("API key", "model", "tools", "Redis", "exit"):
        assert thing in section, f"docs/config.md does not say validate checks {thing}"


@pytest.mark.parametrize("block", _of("other"), ids=str)
def test_other_example_is_true(block: Block, session_for: Callable[[str], Session]) -> None:
    check = _other(block)
    assert check is not None
    check(block, OtherContext(session_for))


# -- docs/reliability.md --------------------------------------------------------------------


def named_tests() -> list[str]:
    text = (ROOT / "docs/reliability.md").read_text()
    return re.findall(r"`(tests/[\w/]+\.py::\w+)`", text)


def test_reliability_names_the_tests_it_promises_with() -> None:
    named = named_tests()
    assert len(named) > 50
    for promise in ("R1 ", "R8 ", "R21 ", "R22 ", "R25 ", "R16 ", "R26 "):
        assert f"| {promise.strip()} |" in (ROOT / "docs/reliability.md").read_text(), promise


@pytest.mark.parametrize("name", named_tests())
def test_every_test_reliability_md_names_exists(name: str) -> None:
    path, _, test = name.partition("::")
    tree = ast.parse((ROOT / path).read_text())
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    defined = {n.name for n in tree.body if isinstance(n, functions)}
    for n in tree.body:  # ``test_x = Machine.TestCase``
        if isinstance(n, ast.Assign):
            defined |= {t.id for t in n.targets if isinstance(t, ast.Name)}
    assert test.startswith("test_") and test in defined, f"{name} does not exist"


# -- inline commands of other programs ------------------------------------------------------

_INLINE_OTHER = re.compile(r"`((?:redis-cli|python|pip) [^`]+)`")


def inline_other_commands() -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for doc in DOCS:
        text = re.sub(r"\s*\n\s*", " ", _FENCE.sub("", doc.read_text(encoding="utf-8")))
        for m in _INLINE_OTHER.finditer(text):
            found.setdefault(m.group(1), str(doc.relative_to(ROOT)))
    return list(found.items())


def _run_monitor(command: str, redis: str) -> None:
    """``python -m massgen.mas.service ...`` on the private Redis: it starts, logs that it
    watches, and exits 0 on SIGTERM."""
    argv = shlex.split(_local(command, redis))
    proc = subprocess.Popen(
        [sys.executable, *argv[1:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_clean_env({"MASSGEN_REDIS_URL": redis}),  # a command without --redis uses it
    )
    try:
        deadline = time.monotonic() + 30
        while "mas service started on " not in (line := read_line(proc, deadline) or "?"):
            assert line != "?", "the monitor ended before it started"
        assert f"127.0.0.1:{redis.rsplit(':', 1)[1].split('/', maxsplit=1)[0]}" in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def _clear_the_cache(command: str, redis: str, tmp_path: Path) -> None:
    """A cached run on the private Redis, then the command, its ``redis-cli`` pointed at
    that Redis (``-p PORT``): the cache entries are gone, the other keys kept."""
    import redis as sync_redis

    team = _offline_team()
    team["orchestrator"]["cache"] = {"enabled": True}
    team["redis"] = {"url": redis}
    (tmp_path / "team.yaml").write_text(yaml.safe_dump(team))
    done = run_massgen("run", "team.yaml", "What is the capital of France?", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    client = sync_redis.Redis.from_url(redis)
    try:
        client.set("massgen:kv:session:kept", "1")
        assert client.keys("massgen:kv:cache:*"), "the run cached nothing under that pattern"
        port = redis.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
        pipeline = command.replace("redis-cli", f"redis-cli -p {port}")
        subprocess.run(["bash", "-c", pipeline], check=True, capture_output=True)
        assert client.keys("massgen:kv:cache:*") == []
        assert client.get("massgen:kv:session:kept") == b"1"
    finally:
        client.flushdb()
        client.close()


def _extra_exists(command: str) -> None:
    """``pip install 'massgen[X]'`` is not run (it reaches PyPI); the extra must exist."""
    import tomllib

    [extra] = re.findall(r"massgen\[(\w+)\]", command)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert extra in project["optional-dependencies"], extra


@pytest.mark.parametrize(("command", "doc"), inline_other_commands())
def test_inline_command_of_another_program_runs_as_shown(
    command: str, doc: str, private_redis: str, tmp_path: Path
) -> None:
    if command.startswith("python bench/"):
        done = subprocess.run(
            [sys.executable, str(ROOT / command.split()[1]), "--help"], capture_output=True
        )
        assert done.returncode == 0
        pytest.skip(BENCHMARKS)
    elif command.startswith("python -m mas.service"):
        pytest.skip("the seed framework's command, named to compare; ours runs")
    elif command.startswith("python -m massgen.mas.service") and _PLACEHOLDER.search(command):
        pytest.skip("has placeholders; docs/redis.md's full form runs")
    elif command.startswith("python -m massgen.mas.service"):
        for variant in _optional(command):
            _run_monitor(variant, private_redis)
    elif command.startswith("redis-cli"):
        _clear_the_cache(command, private_redis, tmp_path)
    elif command.startswith("pip install"):
        _extra_exists(command)
    else:
        pytest.fail(f"{doc}: this test does not know how to run `{command}`")


def test_the_serve_quick_start_names_files_a_fresh_checkout_has() -> None:
    """docs/serve.md's quick start says it serves configs/offline.yaml, and a reader runs it
    from the repository's root (not from this suite's folder holding a ``team.yaml``)."""
    section = (ROOT / "docs/serve.md").read_text().partition("## Quick start")[2]
    commands = _FENCE.search(section)
    assert commands is not None
    for line in commands.group(3).splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["massgen", "serve"]:
            files = [w for w in words[2:] if w.endswith((".yaml", ".yml"))]
            assert files and all((ROOT / f).is_file() for f in files), line
