"""The one contract every Store keeps, run against memory, SQLite and a real Redis.

Expiry is tested with a fake clock where the store takes one (memory, SQLite); Redis expires
keys on its own clock, so there we check the PTTL it set and wait (bounded) for a tiny TTL.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from massgen.errors import ConfigError, TransportError
from massgen.store import MemoryStore, SQLiteStore, Store, open_store

REDIS_URL = os.environ.get("MASSGEN_TEST_REDIS", "redis://127.0.0.1:6379/0")


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Env:
    """One store under test, plus what a test needs to look behind it."""

    kind: str
    reopen: Callable[[], Store]  # another store on the same data (memory: a fresh one)
    clock: FakeClock | None
    raw: Any = None  # redis-py client on the same Redis (redis only)
    prefix: str = ""
    opened: list[Store] = field(default_factory=list)

    def open(self) -> Store:
        store = self.reopen()
        self.opened.append(store)
        return store

    @property
    def store(self) -> Store:
        return self.opened[0]


async def delete_redis_prefix(client: Any, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)


async def eventually(cond: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait until ``cond()`` holds, checking often; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    kind: str = request.param
    if kind == "memory":
        clock = FakeClock()
        e = Env(kind, lambda: MemoryStore(clock=clock), clock)
    elif kind == "sqlite":
        clock = FakeClock()
        path = tmp_path / "sub" / "store.sqlite3"
        e = Env(kind, lambda: SQLiteStore(path, clock=clock), clock)
    else:
        import redis.asyncio as aioredis

        from massgen.store import RedisStore

        prefix = f"test:{uuid.uuid4().hex[:10]}:"
        e = Env(
            kind,
            lambda: RedisStore(REDIS_URL, prefix=prefix),
            None,
            raw=aioredis.Redis.from_url(REDIS_URL),
            prefix=prefix,
        )
    e.open()
    try:
        yield e
    finally:
        for s in e.opened:
            await s.aclose()
        if e.raw is not None:
            await delete_redis_prefix(e.raw, e.prefix)
            await e.raw.aclose()


# -- key/value -------------------------------------------------------------------------------
async def test_set_get_overwrite(env: Env) -> None:
    s = env.store
    assert await s.get("k") is None
    await s.set("k", b"one")
    assert await s.get("k") == b"one"
    await s.set("k", b"two")
    assert await s.get("k") == b"two"
    assert await s.count() == 1


async def test_binary_values_round_trip(env: Env) -> None:
    s = env.store
    values = {
        "all-bytes": bytes(range(256)),
        "empty": b"",
        "nul": b"\x00\x00",
        "big": os.urandom(1 << 20),
        "unicode key \u00e9\u4e2d\U0001f600": b"\xff\xfe",
    }
    for key, value in values.items():
        await s.set(key, value)
    for key, value in values.items():
        assert await s.get(key) == value, key


async def test_delete(env: Env) -> None:
    s = env.store
    await s.set("k", b"v")
    assert await s.delete("k") is True
    assert await s.get("k") is None
    assert await s.delete("k") is False
    assert await s.count() == 0


async def test_ttl_expiry(env: Env) -> None:
    s = env.store
    await s.set("short", b"v", ttl=10)
    await s.set("forever", b"v")
    assert await s.get("short") == b"v"
    if env.clock is not None:
        env.clock.advance(9.9)
        assert await s.get("short") == b"v"
        assert await s.count() == 2
        env.clock.advance(0.2)
        assert await s.get("short") is None
        assert await s.count() == 1
        assert await s.delete("short") is False  # an expired value is not "live"
    else:
        assert 9_000 < await env.raw.pttl(f"{env.prefix}kv:short") <= 10_000
        await s.set("short", b"v", ttl=0.05)

        async def gone() -> bool:
            return await s.get("short") is None

        await eventually(gone)
        assert await s.count() == 1
    assert await s.get("forever") == b"v"


async def test_overwrite_replaces_the_ttl(env: Env) -> None:
    s = env.store
    await s.set("k", b"old", ttl=5)
    await s.set("k", b"new")
    await s.set("j", b"forever")
    await s.set("j", b"brief", ttl=5)
    if env.clock is not None:
        env.clock.advance(60)
        assert await s.get("k") == b"new"
        assert await s.get("j") is None
    else:
        assert await env.raw.pttl(f"{env.prefix}kv:k") == -1  # no expiry
        assert 0 < await env.raw.pttl(f"{env.prefix}kv:j") <= 5_000


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
async def test_ttl_must_be_positive(env: Env, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await env.store.set("k", b"v", ttl=ttl)
    assert await env.store.get("k") is None


async def test_delete_prefix_and_count(env: Env) -> None:
    s = env.store
    for key in ["a:1", "a:2", "a:3", "ab", "b:1", "x*1", "x*2", "xy", "[q]1", "q1", "%_", "%a"]:
        await s.set(key, b"v")
    await s.append("a:log", b"r")
    assert await s.count() == 12
    assert await s.count("a:") == 3
    assert await s.count("a") == 4
    assert await s.count("x*") == 2  # glob characters are literal
    assert await s.count("[q]") == 1
    assert await s.count("%") == 2  # so are LIKE wildcards
    assert await s.count("nothing") == 0
    assert await s.delete_prefix("a:") == 3
    assert await s.get("ab") == b"v"
    assert await s.delete_prefix("x*") == 2
    assert await s.get("xy") == b"v"
    assert await s.delete_prefix("[q]") == 1
    assert await s.get("q1") == b"v"
    assert await s.delete_prefix("") == 6
    assert await s.count() == 0
    assert await s.read("a:log") == [b"r"]  # logs are another namespace


async def test_delete_prefix_counts_only_live_keys(env: Env) -> None:
    if env.clock is None:
        pytest.skip("Redis drops expired keys itself; nothing stale is ever visible")
    s = env.store
    await s.set("p:old", b"v", ttl=1)
    await s.set("p:new", b"v")
    env.clock.advance(2)
    assert await s.delete_prefix("p:") == 1
    assert await s.count() == 0


async def test_concurrent_sets(env: Env) -> None:
    s = env.store
    await asyncio.gather(*(s.set(f"c:{i}", str(i).encode()) for i in range(200)))
    assert await s.count("c:") == 200
    got = await asyncio.gather(*(s.get(f"c:{i}") for i in range(200)))
    assert got == [str(i).encode() for i in range(200)]


# -- logs ------------------------------------------------------------------------------------
async def test_append_and_read(env: Env) -> None:
    s = env.store
    assert await s.read("log") == []
    assert await s.length("log") == 0
    records = [f"r{i}".encode() for i in range(6)] + [b"\x00\xff"]
    for r in records:
        await s.append("log", r)
    assert await s.length("log") == 7
    assert await s.read("log") == records
    for start in [0, 1, 3, 6, 7, 20, -1, -3, -7, -20]:
        for limit in [None, 0, 1, 2, 5, 100]:
            assert await s.read("log", start, limit) == records[start:][:limit], (start, limit)


async def test_logs_are_separate(env: Env) -> None:
    s = env.store
    await s.append("one", b"1")
    await s.append("two", b"2")
    await s.set("one", b"value")
    assert await s.read("one") == [b"1"]
    assert await s.read("two") == [b"2"]
    assert await s.get("one") == b"value"


async def test_trim(env: Env) -> None:
    s = env.store
    for i in range(10):
        await s.append("log", str(i).encode())
        await s.append("other", str(i).encode())
    await s.trim("log", 20)
    assert await s.length("log") == 10
    await s.trim("log", 3)
    assert await s.read("log") == [b"7", b"8", b"9"]
    await s.append("log", b"10")
    assert await s.read("log") == [b"7", b"8", b"9", b"10"]
    await s.trim("log", 0)
    assert await s.read("log") == []
    assert await s.length("log") == 0
    await s.trim("missing", 2)
    assert await s.length("other") == 10
    with pytest.raises(ValueError):
        await s.trim("log", -1)
    with pytest.raises(ValueError):
        await s.read("log", 0, -1)


async def test_concurrent_appends(env: Env) -> None:
    s = env.store
    await asyncio.gather(*(s.append("log", str(i).encode()) for i in range(200)))
    records = await s.read("log")
    assert sorted(records, key=int) == [str(i).encode() for i in range(200)]


# -- search ----------------------------------------------------------------------------------
def words_of(record: bytes) -> str:
    """Records here are ``id|words``: only the words are searched."""
    return record.decode().split("|", 1)[1]


async def found(s: Store, query: str, limit: int = 10) -> list[str]:
    return [r.decode().split("|")[0] for _, r in await s.search("docs", query, words_of, limit)]


async def test_search_ranks_by_shared_words_and_keeps_up_with_the_log(env: Env) -> None:
    s = env.store
    assert await found(s, "cat") == []
    for i, words in enumerate(
        ["cat sat on mat", "dog ate cat food", "quantum chromodynamics", "rust compiler"]
        + [f"filler {i}" for i in range(4)]
    ):
        await s.append("docs", f"{i}|{words}".encode())
    await s.append("other", b"x|cat quantum")  # another log is never searched
    assert await found(s, "quantum cat") == ["2", "1", "0"]  # the rarer word first; a tie: newer
    assert await found(s, "Quantum") == ["2"]  # case-folded
    assert await found(s, "nothing shared") == []
    assert await found(s, "") == []
    assert await found(s, "quantum cat", limit=1) == ["2"]
    scores = [score for score, _ in await s.search("docs", "quantum cat", words_of, 10)]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    # the index follows the log: appends, trims (as retention does) and clearing
    await s.append("docs", b"8|cat cat cat")
    assert (await found(s, "cat"))[0] == "8"
    await s.trim("docs", 7)  # drops 0 and 1
    assert sorted(await found(s, "quantum cat")) == ["2", "8"]
    await s.trim("docs", 0)
    assert await found(s, "cat") == []
    await s.append("docs", b"9|cat again")
    assert await found(s, "cat") == ["9"]
    with pytest.raises(ValueError):
        await s.search("docs", "cat", words_of, -1)


async def test_search_of_a_long_log(env: Env) -> None:
    s = env.store
    for i in range(1200):  # more than one trip's worth for a store that copies the log
        await s.append("docs", f"{i}|word{i} common".encode())
    assert sorted(await found(s, "word0 word1199")) == ["0", "1199"]
    await s.trim("docs", 600)
    for i in range(1200, 1300):
        await s.append("docs", f"{i}|word{i} common".encode())
    assert sorted(await found(s, "word0 word1199 word1299")) == ["1199", "1299"]
    assert len(await s.search("docs", "common", words_of, 2000)) == 700


async def test_search_sees_what_another_store_on_the_same_data_wrote(env: Env) -> None:
    if env.kind == "memory":
        pytest.skip("a memory store shares its data with no other")
    one, other = env.store, env.open()
    await one.append("docs", b"1|ledger database")
    assert await found(one, "database") == ["1"]
    await other.append("docs", b"2|database migration")
    await other.trim("docs", 1)
    assert await found(one, "database") == ["2"]
    assert await found(other, "database") == ["2"]


# -- durability ------------------------------------------------------------------------------
async def test_persists_across_reopen(env: Env) -> None:
    if env.kind == "memory":
        pytest.skip("a memory store lives and dies with its object")
    s = env.store
    await s.set("k", b"v")
    await s.set("t", b"v", ttl=100)
    await s.append("log", b"1")
    await s.append("log", b"2")
    await s.aclose()
    again = env.open()
    assert await again.get("k") == b"v"
    assert await again.get("t") == b"v"
    assert await again.read("log") == [b"1", b"2"]
    if env.clock is not None:
        env.clock.advance(101)
        assert await again.get("t") is None


# -- SQLite specifics ------------------------------------------------------------------------
async def test_sqlite_creates_folder_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.sqlite3"
    async with SQLiteStore(path) as s:
        await s.set("k", b"v")
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


async def test_sqlite_sweeps_expired_rows_on_open(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "s.sqlite3"
    async with SQLiteStore(path, clock=clock) as s:
        await s.set("old", b"v", ttl=1)
        await s.set("keep", b"v")
    clock.advance(2)
    async with SQLiteStore(path, clock=clock) as s:
        assert await s.count() == 1
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("SELECT key FROM kv").fetchall() == [("keep",)]
    finally:
        raw.close()


async def test_sqlite_gets_in_flight_together_share_one_trip(tmp_path: Path) -> None:
    clock = FakeClock()
    async with SQLiteStore(tmp_path / "s.sqlite3", clock=clock) as s:
        for i in range(1200):  # more than one SELECT's worth of keys
            await s.set(f"k{i}", str(i).encode(), ttl=10 if i % 2 else None)
        clock.advance(11)  # the odd ones expire
        keys = [f"k{i}" for i in range(1200)] + ["k0", "missing"]
        trips = s.reads.trips
        got = await asyncio.gather(*(s.get(k) for k in keys))
        assert s.reads.trips - trips <= 2
        assert got[:1200] == [None if i % 2 else str(i).encode() for i in range(1200)]
        assert got[1200:] == [b"0", None]


async def test_sqlite_sets_in_flight_together_share_one_transaction(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "s.sqlite3") as s:
        await s.set("warm", b"up")
        trips = s.writes.trips
        await asyncio.gather(*(s.set(f"k{i}", str(i).encode()) for i in range(300)))
        await asyncio.gather(s.set("dup", b"first"), s.set("dup", b"second"))
        assert s.writes.trips - trips <= 3
        got = await asyncio.gather(*(s.get(f"k{i}") for i in range(300)))
        assert got == [str(i).encode() for i in range(300)]
        assert await s.get("dup") == b"second"  # in the order they were made


async def test_sqlite_a_failed_grouped_read_fails_each_get(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "s.sqlite3") as s:
        await s.set("k", b"v")

        def broken(c: sqlite3.Connection) -> None:
            c.execute("DROP TABLE kv")

        await s.run(broken)
        results = await asyncio.gather(s.get("k"), s.get("j"), return_exceptions=True)
        assert all(isinstance(r, TransportError) for r in results)


async def test_sqlite_closed_store_refuses_work(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "s.sqlite3")
    await s.set("k", b"v")
    await s.aclose()
    await s.aclose()  # twice is fine
    with pytest.raises(TransportError, match="closed"):
        await s.get("k")


async def test_sqlite_unusable_path_is_a_transport_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    async with SQLiteStore(blocker / "store.sqlite3") as s:
        with pytest.raises(TransportError, match="store.sqlite3"):
            await s.get("k")


_WRITER = """
import asyncio, sys
from massgen.store import SQLiteStore

async def main(path: str, name: str, n: int) -> None:
    async with SQLiteStore(path) as s:
        await s.count()  # the file is open and set up
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # wait for the go
        for i in range(n):
            await s.set(f"{name}:{i}", f"{name}{i}".encode())
            await s.append("shared", f"{name}:{i}".encode())

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_sqlite_two_processes_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    async with SQLiteStore(path) as s:
        await s.set("parent", b"p")
    n = 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), name, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    try:
        for p in procs:  # both have the file open before either writes
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            _, err = p.communicate(timeout=30)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    async with SQLiteStore(path) as s:
        assert await s.count() == 2 * n + 1
        assert await s.get("a:7") == b"a7"
        assert await s.get("b:149") == b"b149"
        shared = [r.decode() for r in await s.read("shared")]
    assert len(shared) == 2 * n
    for name in ("a", "b"):  # each writer's records, in its order
        assert [r for r in shared if r.startswith(f"{name}:")] == [f"{name}:{i}" for i in range(n)]


# -- Redis specifics -------------------------------------------------------------------------
async def test_redis_keys_live_under_the_prefix(env: Env) -> None:
    if env.kind != "redis":
        pytest.skip("Redis only")
    await env.store.set("k", b"v")
    await env.store.append("l", b"r")
    keys = sorted([k async for k in env.raw.scan_iter(match=f"{env.prefix}*")])
    assert keys == [f"{env.prefix}kv:k".encode(), f"{env.prefix}log:l".encode()]
    assert await env.raw.type(f"{env.prefix}log:l") == b"list"


async def test_redis_search_starts_afresh_when_the_log_and_its_count_are_deleted(
    env: Env,
) -> None:
    if env.kind != "redis":
        pytest.skip("Redis only")
    s = env.store
    for i in range(3):
        await s.append("docs", f"{i}|old words".encode())
    assert len(await found(s, "old")) == 3
    await delete_redis_prefix(env.raw, env.prefix)  # what deleting the keys by hand does
    await s.append("docs", b"9|new words")
    assert await found(s, "old") == []
    assert await found(s, "new words") == ["9"]


async def test_redis_errors_are_transport_errors_without_the_password() -> None:
    from massgen.store import RedisStore

    s = RedisStore("redis://:hunter2secret@127.0.0.1:1/0", retries=0, connect_timeout=1)
    try:
        with pytest.raises(TransportError) as info:
            await s.get("k")
        assert "hunter2secret" not in str(info.value)
        assert "***" in str(info.value)
    finally:
        await s.aclose()


async def test_redis_a_frozen_server_is_a_transport_error_not_a_hang(tmp_path: Path) -> None:
    """SIGSTOP leaves the socket open and silent; the store gives up after its reply
    timeout, and works again after SIGCONT."""
    import signal

    from massgen.store import RedisStore
    from tests.mas.helpers import RedisServer

    server = RedisServer(tmp_path)
    server.start()
    s = RedisStore(server.url, retries=0, reply_timeout=0.3)
    try:
        await s.set("k", b"v")
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(TransportError):
                await asyncio.wait_for(s.get("k"), 5)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert await s.get("k") == b"v"
    finally:
        await s.aclose()
        server.stop()


# -- open_store ------------------------------------------------------------------------------
async def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    from massgen.store import RedisStore

    cases: list[tuple[str | Path, type[Store]]] = [
        ("memory://", MemoryStore),
        (str(tmp_path / "plain.sqlite3"), SQLiteStore),
        (tmp_path / "path.sqlite3", SQLiteStore),
        (f"sqlite:///{tmp_path}/url.sqlite3", SQLiteStore),
        (REDIS_URL, RedisStore),
        ("rediss://127.0.0.1:1/0", RedisStore),
    ]
    for target, kind in cases:
        store = open_store(target)
        try:
            assert type(store) is kind, target
        finally:
            await store.aclose()
    s = open_store(f"sqlite:///{tmp_path}/url.sqlite3")
    assert isinstance(s, SQLiteStore) and s.path == tmp_path / "url.sqlite3"
    await s.aclose()


@pytest.mark.parametrize("target", ["ftp://host/x", "sqlite:///", "  "])
def test_open_store_refuses_unknown_targets(target: str) -> None:
    with pytest.raises(ConfigError):
        open_store(target)


def test_importing_the_store_does_not_load_redis(tmp_path: Path) -> None:
    code = (
        "import sys, massgen.store as st; "
        f"st.open_store('memory://'); st.open_store({str(tmp_path / 'x.sqlite3')!r}); "
        "print('redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_exported_name_exists() -> None:
    import massgen.store as st

    for name in st.__all__:
        assert getattr(st, name) is not None, name
