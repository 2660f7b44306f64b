"""The README's and docs/config.md's examples do what they say, run as shown.

Every fenced block is handled here: a YAML team is built (``massgen config validate``) with
dummy keys, an error example is reproduced byte for byte, Python is compiled, and each shell
command is run as written (in a folder holding a ``team.yaml``), or skipped with its reason
when it needs a real provider or a local server (its config is still built with dummy keys).
The inline ``massgen ...`` commands of the prose run too. An example nothing here knows how
to handle fails the test, so a new one cannot go unchecked.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from massgen.config import load
from tests.procs import run_massgen, start_ready

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", ROOT / "docs" / "config.md")
REDIS_URL = "redis://127.0.0.1:6379/0"
DUMMY_KEYS = {
    "OPENAI_API_KEY": "sk-dummy",
    "ANTHROPIC_API_KEY": "sk-ant-dummy",
    "GEMINI_API_KEY": "dummy",
    "XAI_API_KEY": "xai-dummy",
    "OPENROUTER_API_KEY": "sk-or-dummy",
}
CLEAN = ("MASSGEN_REDIS_URL", "MASSGEN_CONFIG", "MASSGEN_SECRET", "MASSGEN_LOG")
"""Unset for every command, so the examples meet the machine a reader has."""

NOT_MASSGEN = {
    "ollama": "starts a local Ollama server and downloads a model",
}
"""Programs other than massgen that examples run, and why they are not run here."""

MAKE_SKIPPED = {"test": "runs this very suite"}
"""Make targets not run here; every other one has its massgen command run instead."""

INLINE_SKIPPED = {
    "massgen service": "runs until stopped; covered by the distributed tests",
    "massgen worker": "needs a config; the README's full `massgen worker team.yaml` runs",
    "massgen agents list": "needs --redis or --config; `agents list --config team.yaml` runs",
    "massgen run": "names the command; its full forms (config and task) run",
}
"""Inline commands without placeholders that are still not run, and why."""

NEEDS_PROVIDER = {
    "quickstart": "needs OpenAI, Anthropic and Gemini keys",
    "consensus": "needs OpenAI, Anthropic and Gemini keys",
    "parallel": "needs OpenAI and Anthropic keys",
    "sequential": "needs OpenAI and Anthropic keys",
    "local": "needs Ollama and LM Studio servers on localhost",
}
"""Example configs a shown command runs, that need a provider or a local server."""


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
    if block.lang == "yaml":
        return "yaml"
    if block.lang == "python":
        return "python"
    if _ERROR.fullmatch(block.text.strip()):
        return "error"
    if block.lang in ("sh", "") and all(_program(c) for c in _commands(block)):
        return "shell"
    return "unknown"


def _commands(block: Block) -> list[list[str]]:
    return [argv for line in block.text.splitlines() if (argv := shlex.split(line, comments=True))]


def _program(argv: list[str]) -> str | None:
    name = argv[0].removeprefix(".venv/bin/")
    return name if name in ("massgen", "make", *NOT_MASSGEN) else None


def _of(kind: str) -> list[Block]:
    return [b for b in BLOCKS if _kind(b) == kind]


def test_every_example_is_handled() -> None:
    assert {b.doc for b in BLOCKS} == {"README.md", "docs/config.md"}
    unknown = [f"{b} ({b.lang or 'no language'})" for b in BLOCKS if _kind(b) == "unknown"]
    assert not unknown, f"examples this test does not know how to check: {unknown}"
    assert _of("yaml") and _of("shell") and _of("error") and _of("python")


# -- YAML teams -----------------------------------------------------------------------------


@pytest.mark.parametrize("block", _of("yaml"), ids=str)
def test_yaml_example_builds(block: Block, tmp_path: Path) -> None:
    """Each YAML example is a team (or the part of one it shows) that a run would build."""
    data = yaml.safe_load(block.text)
    for entry in (data.get("tools") or {}).values():  # the reader's own folders
        if isinstance(entry, dict) and isinstance(entry.get("root"), str):
            (tmp_path / entry["root"]).mkdir(parents=True, exist_ok=True)
    (tmp_path / "team.yaml").write_text(block.text)
    done = run_massgen("config", "validate", "team.yaml", cwd=tmp_path, env=DUMMY_KEYS, unset=CLEAN)
    assert done.returncode == 0, f"{block}: {done.stderr}"
    names = [a["name"] for a in data["agents"]]
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


@pytest.mark.parametrize("block", _of("python"), ids=str)
def test_python_example_compiles(block: Block) -> None:
    compile(block.text, str(block), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


# -- shell commands -------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path, prefix: str) -> Path:
    """Where commands run: a ``team.yaml`` (the offline demo's team, on the test's Redis
    prefix, so the distributed example works as written) next to nothing else."""
    offline = yaml.safe_load((ROOT / "configs/offline.yaml").read_text())
    offline["redis"] = {"url": REDIS_URL, "prefix": prefix}
    (tmp_path / "team.yaml").write_text(yaml.safe_dump(offline))
    return tmp_path


def _make_command(target: str) -> list[str]:
    """The massgen command the Makefile's ``target`` runs, with its variables filled in."""
    makefile = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+)\s*\?=\s*(.*)$", makefile, re.MULTILINE))
    recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None, f"no make target {target!r}"
    (line,) = [ln for ln in recipe.group(1).splitlines() if "/massgen " in ln]
    line = re.sub(r"\$\((\w+)\)", lambda v: variables.get(v.group(1), ""), line.strip())
    return shlex.split(line)[1:]


@dataclass
class Session:
    """The commands of one example, run in order in one folder; workers started by one are
    stopped at the end."""

    cwd: Path
    workers: list[subprocess.Popen[str]]
    skipped: list[str]
    ran: int = 0

    def run(self, argv: list[str]) -> None:
        program = _program(argv)
        if program in NOT_MASSGEN:
            self.skipped.append(f"{argv[0]}: {NOT_MASSGEN[program]}")
            return
        if program == "make":
            target = argv[1]
            if target in MAKE_SKIPPED:
                self.skipped.append(f"make {target}: {MAKE_SKIPPED[target]}")
                return
            argv = ["massgen", *_make_command(target)]
        self.massgen(argv[1:])

    def massgen(self, args: list[str]) -> None:
        out: Path | None = None
        if ">" in args:
            args, out = args[: args.index(">")], self.cwd / args[args.index(">") + 1]
        if args[0] == "run" and (stem := Path(args[1]).stem) in NEEDS_PROVIDER:
            self.skipped.append(f"{' '.join(args[:2])}: {NEEDS_PROVIDER[stem]}")
            built = run_massgen(
                "config", "validate", args[1], cwd=ROOT, env=DUMMY_KEYS, unset=CLEAN
            )
            assert built.returncode == 0, built.stderr  # yet it builds with dummy keys
            return
        if args[0] == "worker":
            team = load(self.cwd / args[1])
            self.workers.append(
                start_ready(
                    [sys.executable, "-m", "massgen", *args],
                    ready="hosting ",
                    count=len(team.agents),
                    cwd=self.cwd,
                    env=_clean_env(),
                )
            )
            self.ran += 1
            return
        # The repository's example configs, run from this folder (records land here).
        args = [str(ROOT / a) if a.startswith("configs/") else a for a in args]
        done = run_massgen(*args, cwd=self.cwd, unset=CLEAN)
        assert done.returncode == 0, f"massgen {' '.join(args)}: {done.stderr}"
        self.ran += 1
        if args[0] == "run":
            assert done.stdout.strip(), "a run prints its answer"
            if self.workers:  # "turns go to live workers"
                assert "on workers at" in done.stderr and "local:" not in done.stderr
        if args[:2] == ["agents", "list"] and "--config" in args:
            team = load(self.cwd / args[args.index("--config") + 1])
            assert all(a.name in done.stdout for a in team.agents), done.stdout
            if self.workers:
                assert "not hosted" not in done.stdout, done.stdout
        if out is not None:
            out.write_text(done.stdout)
            assert out.read_text().strip() and "round" not in out.read_text()


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    return {**env, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def session(folder: Path) -> Iterator[Session]:
    s = Session(folder, [], [])
    yield s
    for worker in s.workers:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=20)
        assert worker.returncode == 0


@pytest.mark.parametrize("block", _of("shell"), ids=str)
def test_shell_example_runs_as_shown(block: Block, session: Session) -> None:
    for argv in _commands(block):
        session.run(argv)
    if not session.ran:
        pytest.skip("; ".join(session.skipped))


_INLINE = re.compile(r"`((?:\.venv/bin/)?massgen [^`]+)`")
_PLACEHOLDER = re.compile(r"\b[A-Z]{2,}\b|…|\.\.\.")


def inline_commands() -> list[str]:
    found: dict[str, None] = {}
    for doc in DOCS:
        text = _FENCE.sub("", doc.read_text(encoding="utf-8"))
        for m in _INLINE.finditer(text):
            found.setdefault(m.group(1))
    return [c for c in found if not _PLACEHOLDER.search(c)]


def test_inline_commands_are_found() -> None:
    commands = inline_commands()
    assert 'massgen run configs/offline.yaml "What is the capital of France?"' in commands
    assert {"massgen --version", "massgen config schema"} <= set(commands)


@pytest.mark.parametrize("command", inline_commands())
def test_inline_command_runs_as_shown(command: str, session: Session) -> None:
    if command in INLINE_SKIPPED:
        pytest.skip(INLINE_SKIPPED[command])
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
