"""R14: the SQL tool is truly read-only; nothing is created or changed."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from massgen.errors import ConfigError, ToolError
from massgen.tools import DatabaseQuery


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "shop.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, bio TEXT)")
        c.executemany(
            "INSERT INTO users (name, bio) VALUES (?, ?)",
            [(f"user{i}", "x" * 500 if i == 1 else None) for i in range(1, 251)],
        )
    c.close()
    return path


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.parent.rglob("*"))
        if p.is_file()
    }


ATTACKS = [
    "PRAGMA query_only=OFF",
    "PRAGMA query_only = 0",
    "PRAGMA journal_mode=WAL",
    "PRAGMA writable_schema=ON",
    "PRAGMA user_version=7",
    "ATTACH DATABASE '{new}' AS evil",
    "ATTACH '{new}' AS evil",
    "SELECT load_extension('/tmp/evil.so')",
    "SELECT load_extension('libevil')",
    "SELECT 1; DROP TABLE users",
    "SELECT 1; INSERT INTO users (name) VALUES ('mallory')",
    "SELECT 1; ATTACH DATABASE '{new}' AS evil",
    "INSERT INTO users (name) VALUES ('mallory')",
    "UPDATE users SET name = 'x'",
    "DELETE FROM users",
    "DROP TABLE users",
    "CREATE TABLE evil (x)",
    "CREATE TEMP TABLE evil (x)",
    "BEGIN IMMEDIATE",
    "VACUUM INTO '{new}'",
    "REPLACE INTO users (id, name) VALUES (1, 'm')",
    "WITH t AS (SELECT 1) DELETE FROM users",
]


@pytest.mark.parametrize("sql", ATTACKS)
async def test_writes_and_escapes_are_denied(db: Path, tmp_path: Path, sql: str) -> None:
    new = tmp_path / "created.db"
    before = snapshot(db.parent)
    tool = DatabaseQuery(database=str(db))
    with pytest.raises(ToolError, match="refused|failed"):
        await tool.run({"sql": sql.format(new=new)})
    assert not new.exists()
    assert snapshot(db.parent) == before
    assert await tool.run({"sql": "SELECT count(*) AS n FROM users"}) == "n\n250\n(1 rows)"


async def test_reads_work_and_are_bounded(db: Path) -> None:
    tool = DatabaseQuery(database=str(db), max_rows=3, max_cell=10)
    out = await tool.run({"sql": "SELECT id, name, bio FROM users ORDER BY id"})
    assert out.splitlines() == [
        "id | name | bio",
        "1 | user1 | xxxxxxxxx…",
        "2 | user2 | NULL",
        "3 | user3 | NULL",
        "(3 rows shown; there are more)",
    ]
    schema = await tool.run({"sql": "PRAGMA table_info(users)"})
    assert "name" in schema.splitlines()[0] and "bio" in schema
    recursive = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) "
    assert (await tool.run({"sql": recursive + "SELECT sum(i) AS s FROM n"})).startswith("s\n15")


async def test_a_runaway_query_is_aborted(db: Path) -> None:
    tool = DatabaseQuery(database=str(db), time_limit=0.05)
    forever = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT max(i) FROM n"
    with pytest.raises(ToolError, match="longer than 0.05s"):
        await tool.run({"sql": forever})


def test_a_missing_database_is_a_config_error_and_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        DatabaseQuery(database="missing.db", base_dir=tmp_path)
    assert err.value.key == "database"
    assert not (tmp_path / "missing.db").exists()


async def test_relative_to_the_config_folder(db: Path) -> None:
    tool = DatabaseQuery(database="data/shop.db", base_dir=db.parent.parent)
    out = await tool.run({"sql": "SELECT name FROM users WHERE id = 2"})
    assert out == "name\nuser2\n(1 rows)"


# -- R20: limits are totals, on time and on bytes ------------------------------------------------
HUGE = [
    "SELECT randomblob(1000000000)",
    "SELECT zeroblob(1000000000)",
    "SELECT printf('%.*c', 1000000000, 'x')",
    "SELECT length(replace(hex(zeroblob(400000000)), '0', 'ab'))",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)"
    " SELECT length(group_concat(hex(randomblob(5000)))) FROM n",
]

_PROBE = """
import asyncio, json, resource, sys, time
from massgen.errors import ToolError
from massgen.tools import DatabaseQuery

async def main():
    tool = DatabaseQuery(database=sys.argv[1], time_limit=2)
    out = []
    for sql in json.loads(sys.argv[2]):
        started = time.monotonic()
        try:
            text = await tool.run({"sql": sql})
        except ToolError as e:
            text = "error: " + str(e)
        out.append([time.monotonic() - started, len(text)])
    # This process's own peak (VmHWM): ru_maxrss would count the parent's, kept across exec.
    try:
        with open("/proc/self/status") as f:
            peak = next(int(x.split()[1]) for x in f if x.startswith("VmHWM:"))
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"calls": out, "rss_mb": peak / 1024}))  # KiB

asyncio.run(main())
"""


def test_huge_values_are_refused_in_time_and_memory(db: Path) -> None:
    """In a process of its own, so its peak memory is the queries' alone."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(db), json.dumps(HUGE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    for sql, (elapsed, length) in zip(HUGE, report["calls"], strict=True):
        assert elapsed <= 2.2, sql
        assert length < 20_000, sql
    assert report["rss_mb"] < 250


async def test_a_result_stops_at_max_bytes(db: Path) -> None:
    tool = DatabaseQuery(database=str(db), max_bytes=1_000_000, max_cell=10)
    wide = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)"
        " SELECT i, randomblob(100000) AS b FROM n"
    )
    out = (await tool.run({"sql": wide})).splitlines()
    assert out[-1] == "(9 rows shown; the result passed 1000000 bytes)"
    assert len(out) == 1 + 9 + 1
    assert all(len(line.split(" | ")[1]) == 10 for line in out[1:-1])  # hex cut to the cell


async def test_a_value_past_max_bytes_is_refused(db: Path) -> None:
    with sqlite3.connect(db) as c:
        c.execute("UPDATE users SET bio = ? WHERE id = 2", ("y" * 2_000_000,))
    c.close()
    tool = DatabaseQuery(database=str(db), max_bytes=1_000_000)
    with pytest.raises(ToolError, match="would pass 1000000 bytes"):
        await tool.run({"sql": "SELECT bio FROM users WHERE id = 2"})
    assert await tool.run({"sql": "SELECT name FROM users WHERE id = 2"}) == (
        "name\nuser2\n(1 rows)"
    )
