"""Careless Redis settings, through every command that reaches Redis: one error (and its
hint), no traceback, nothing written, and exit code 2 (as docs/reliability asks).

A URL that cannot be right (port 99999, ``ssl_cert_reqs=bogus``, a database that is not a
number) or that the server refuses (a database beyond its ``databases``) is the file's
fault: exit 2, pointed at ``file:line`` and ``redis.url`` (or at ``--redis`` or
``MASSGEN_REDIS_URL`` when it came from there). A Redis that does not answer exits 2 too,
with the URL's origin named, the same for every command.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from massgen.cli import app
from tests.mas.helpers import SHARED_REDIS, free_port

HOST = SHARED_REDIS.split("://", 1)[1].split("/", 1)[0]
IMPOSSIBLE = {
    "port 99999": "redis://127.0.0.1:99999/0",
    "port 0": "redis://127.0.0.1:0/0",
    "ssl_cert_reqs=bogus": "rediss://127.0.0.1:6380/0?ssl_cert_reqs=bogus",
    "database not a number": f"redis://{HOST}/zero",
    "socket_timeout not a number": f"redis://{HOST}/0?socket_timeout=soon",
}
REFUSED = {"database out of range": f"redis://{HOST}/99999"}


def commands(config: Path) -> dict[str, list[str]]:
    c = str(config)
    return {
        "run": ["run", c, "Hi?"],
        "batch": ["batch", "tasks.txt", "-c", c, "-o", "out.jsonl"],
        "worker": ["worker", c],
        "service": ["service", "--config", c],
        "agents list": ["agents", "list", "--config", c],
        "config validate": ["config", "validate", c],
        "cache stats": ["cache", "stats", "--config", c],
        "session list": ["session", "list", "--config", c],
        "memory list": ["memory", "list", "--config", c],
    }


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("MASSGEN_REDIS_URL", "MASSGEN_SECRET", "MASSGEN_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # a run record would land in ./.massgen
    (tmp_path / "tasks.txt").write_text("One?\n")
    yield tmp_path


def team(folder: Path, url: str, prefix: str = "careless:") -> Path:
    path = folder / "team.yaml"
    path.write_text(
        "agents:\n"
        '  - {name: a, backend: {type: replay, default: "answer: {task}"}}\n'
        "redis:\n"
        f"  url: '{url}'\n"
        f"  prefix: '{prefix}'\n"
    )
    return path


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def refused(out: Result, *where: str) -> None:
    assert out.exit_code == 2, (out.exit_code, out.output)
    assert "Traceback" not in out.output and out.stdout == ""
    lines = out.stderr.splitlines()
    assert lines[0].startswith("error: " + "".join(where)), out.stderr
    assert all(line.startswith("  hint: ") for line in lines[1:]) and len(lines) <= 2


@pytest.mark.parametrize("command", list(commands(Path("team.yaml"))))
@pytest.mark.parametrize("url", list(IMPOSSIBLE.values()), ids=list(IMPOSSIBLE))
def test_an_impossible_url_is_refused_where_it_was_written(
    folder: Path, command: str, url: str
) -> None:
    config = team(folder, url)
    before = files(folder)
    out = CliRunner().invoke(app, commands(config)[command])
    refused(out, f"{config}:4: `redis.url`: ")
    assert files(folder) == before


@pytest.mark.parametrize("command", list(commands(Path("team.yaml"))))
def test_a_database_the_server_lacks_is_refused_and_nothing_written(
    folder: Path, command: str
) -> None:
    import redis

    prefix = f"test:careless:{uuid.uuid4().hex[:10]}:"
    config = team(folder, REFUSED["database out of range"], prefix)
    before = files(folder)
    out = CliRunner().invoke(app, commands(config)[command])
    refused(out, f"{config}:4: `redis.url`: ")
    assert files(folder) == before
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        assert list(client.scan_iter(match=f"{prefix}*")) == []
    finally:
        client.close()


def test_a_bad_url_from_the_flag_or_the_environment_names_it(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder / "local.yaml").write_text("agents:\n  - {name: a, backend: replay}\n")
    bad = "redis://127.0.0.1:99999/0"
    refused(CliRunner().invoke(app, ["agents", "list", "--redis", bad]), "`--redis`: ")
    monkeypatch.setenv("MASSGEN_REDIS_URL", bad)
    refused(CliRunner().invoke(app, ["run", "local.yaml", "Hi?"]), "`MASSGEN_REDIS_URL`: ")
    assert not (folder / ".massgen").exists()


@pytest.mark.parametrize("command", list(commands(Path("team.yaml"))))
def test_a_redis_that_does_not_answer_exits_2_for_every_command(folder: Path, command: str) -> None:
    config = team(folder, f"redis://127.0.0.1:{free_port()}/0")
    before = files(folder)
    out = CliRunner().invoke(app, commands(config)[command])
    assert out.exit_code == 2, (out.exit_code, out.output)
    assert "Traceback" not in out.output and out.stdout == ""
    lines = out.stderr.splitlines()
    assert lines[0].startswith("error: ") and "Redis" in lines[0]
    assert all(line.startswith("  hint: ") for line in lines[1:]) and len(lines) <= 2
    assert files(folder) == before
