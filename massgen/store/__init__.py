"""massgen.store: key/value with TTL plus append-only logs, on SQLite, Redis or in memory. Importing
it does not import redis (:class:`RedisStore` loads on first use). The default store is one
SQLite file (WAL) shared by several processes: every call runs on the store's own thread, reads
made together share one trip, writes one transaction. Logs are searched with FTS5, one index per
log, ranked by BM25."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from massgen.errors import ConfigError, TransportError
from massgen.grouped import Grouped
from massgen.store.base import Store, check_count, check_ttl

if TYPE_CHECKING:
    from massgen.store.redis_client import RedisStore

__all__ = ["MemoryStore", "RedisStore", "SQLiteStore", "Store", "open_store"]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":  # lazy: it imports redis
        from massgen.store.redis_client import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(target: str | Path, *, prefix: str = "massgen:") -> Store:
    """The store ``target`` names: ``memory://``; ``redis://``, ``rediss://`` (TLS) or
    ``unix://`` (keys under ``prefix``); else a SQLite file, as a path or ``sqlite:///path``
    (SQLAlchemy's spelling)."""
    if isinstance(target, Path):
        return SQLiteStore(target)
    text = target.strip()
    lower = text.lower()
    if lower == "memory://":
        return MemoryStore()
    if lower.startswith(("redis://", "rediss://", "unix://")):
        from massgen.store.redis_client import RedisStore

        return RedisStore(text, prefix=prefix)
    if lower.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        hint = "use memory://, a file path, sqlite:///path, redis://host or rediss://host"
        raise ConfigError(f"unknown store {text.split('://', 1)[0]!r}://", hint=hint)
    if not text:
        hint = "give a file path, e.g. .massgen/state.sqlite3"
        raise ConfigError("the store path is empty", hint=hint)
    return SQLiteStore(text)


T = TypeVar("T")
Text = Callable[[bytes], str]  # the words a record is found by
TRIM = (  # all but the newest OFFSET records: up to the newest that must go
    "DELETE FROM logs WHERE log = ? AND id <= (SELECT id FROM logs WHERE log = ?"
    " ORDER BY id DESC LIMIT 1 OFFSET ?)"
)
_TOKENIZE = "unicode61 remove_diacritics 0 tokenchars '_'"


@contextmanager
def transaction(c: sqlite3.Connection, kind: str = "IMMEDIATE") -> Iterator[None]:
    """One transaction on an autocommit connection: committed, or rolled back on error."""
    c.execute(f"BEGIN {kind}")
    try:
        yield
        c.execute("COMMIT")
    except BaseException:
        c.execute("ROLLBACK")
        raise


def match_any(query: str) -> str | None:
    """An FTS5 query for the records sharing a word with ``query``; ``None`` if it has none."""
    terms = dict.fromkeys(query.split())
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms) or None


def _index_of(c: sqlite3.Connection, log: str, *, create: bool = False) -> str | None:
    """The index table of ``log``; ``create``: made now if it has none, with a trigger that
    drops a record's words when the record leaves the log (whoever trims it)."""
    row = c.execute("SELECT n FROM log_words WHERE log = ?", (log,)).fetchone()
    if row is not None:
        return f"log_words_{int(row[0])}"
    if not create:
        return None
    (n,) = c.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM log_words").fetchone()
    c.execute("INSERT INTO log_words (log, n) VALUES (?, ?)", (log, n))
    table = f"log_words_{int(n)}"
    literal = "'" + log.replace("'", "''") + "'"
    c.execute(f'CREATE VIRTUAL TABLE {table} USING fts5(words, tokenize = "{_TOKENIZE}")')
    c.execute(
        f"CREATE TRIGGER {table}_forget AFTER DELETE ON logs WHEN old.log = {literal}"
        f" BEGIN DELETE FROM {table} WHERE rowid = old.id; END"
    )
    return table


def _newest(c: sqlite3.Connection, table: str | None) -> int:
    sql = f"SELECT rowid FROM {table} ORDER BY rowid DESC LIMIT 1"
    row = None if table is None else c.execute(sql).fetchone()
    return 0 if row is None else int(row[0])


def search_log(
    c: sqlite3.Connection, log: str, query: str, text: Text, limit: int
) -> list[tuple[float, bytes]]:
    """:meth:`Store.search <massgen.store.base.Store.search>` on a connection holding the logs,
    first indexing the records appended since the last search (ids only grow)."""
    match = match_any(query)
    if match is None or limit <= 0:
        return []
    table = _index_of(c, log)
    (newest,) = c.execute("SELECT MAX(id) FROM logs WHERE log = ?", (log,)).fetchone()
    if (newest or 0) != _newest(c, table):
        with transaction(c):
            table = _index_of(c, log, create=True)
            after = _newest(c, table)  # again: another process may have done it meanwhile
            new = c.execute(
                "SELECT id, record FROM logs WHERE log = ? AND id > ? ORDER BY id", (log, after)
            )
            c.executemany(
                f"INSERT INTO {table} (rowid, words) VALUES (?, ?)",
                [(i, text(bytes(r))) for i, r in new.fetchall()],
            )
    if table is None:
        return []
    rows = c.execute(
        f"SELECT -bm25({table}), logs.record FROM {table} JOIN logs ON logs.id = {table}.rowid"
        f" WHERE {table} MATCH ? ORDER BY bm25({table}), logs.id DESC LIMIT ?",
        (match, limit),
    )
    return [(float(score), bytes(record)) for score, record in rows]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key     TEXT PRIMARY KEY,
    value   BLOB NOT NULL,
    expires REAL              -- epoch seconds; NULL: never
);
CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS logs (
    id      INTEGER PRIMARY KEY, -- insertion order across the whole table
    log     TEXT NOT NULL,
    record  BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_log ON logs (log, id);
CREATE TABLE IF NOT EXISTS log_words (  -- one index per log: its ranking is its own
    log TEXT PRIMARY KEY,
    n   INTEGER NOT NULL UNIQUE  -- its index is the FTS5 table log_words_{n}
);
"""

_SWEEP_EVERY = 1000  # sets between two sweeps of expired rows (bounds the file)


def glob_prefix(prefix: str) -> str:
    """A GLOB pattern matching strings that start with ``prefix`` literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in prefix) + "*"


def _sweep(c: sqlite3.Connection, now: float) -> None:
    if c.execute("SELECT 1 FROM kv WHERE expires <= ? LIMIT 1", (now,)).fetchone():
        c.execute("DELETE FROM kv WHERE expires <= ?", (now,))


class SQLiteStore(Store):
    """A store in one SQLite file at ``path`` (its folder made if missing). ``clock`` decides
    expiry: a wall clock, since other processes share the file."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = Path(path).expanduser(), clock
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._sets = 0
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="massgen-sqlite")
        # Reads made together share one trip to the thread, writes one transaction.
        self.reads: Grouped[str, bytes | None] = Grouped(self._get_many)
        self.writes: Grouped[tuple[str, bytes, float | None], None] = Grouped(self._set_many)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=30.0,  # seconds another process may hold the write lock
                isolation_level=None,  # autocommit; multi-statement work opens its own BEGIN
                check_same_thread=False,  # created and used on the worker, closed there too
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
                _sweep(conn, self.clock())
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the store's thread (sqlite3 errors: TransportError)."""
        if self._closed:
            raise TransportError(f"SQLite store {self.path} is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._worker, lambda: fn(self._connect())
            )
        except (sqlite3.Error, OSError) as e:
            raise TransportError(f"SQLite store {self.path}: {e}") from e

    async def _exec(self, sql: str, *params: object) -> list[Any]:
        return await self.run(lambda c: c.execute(sql, params).fetchall())

    async def get(self, key: str) -> bytes | None:
        return await self.reads(key)  # a closed store: run() raises

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        now, unique = self.clock(), json.dumps(list(dict.fromkeys(keys)))

        def job(c: sqlite3.Connection) -> list[bytes | None]:
            rows = c.execute(  # one parameter for any number of keys
                "SELECT key, value FROM kv WHERE key IN (SELECT value FROM json_each(?))"
                " AND (expires IS NULL OR expires > ?)",
                (unique, now),
            )
            found = {k: bytes(v) for k, v in rows}
            return [found.get(k) for k in keys]

        return await self.run(job)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        check_ttl(ttl)
        await self.writes((key, value, None if ttl is None else self.clock() + ttl))

    async def _set_many(self, rows: list[tuple[str, bytes, float | None]]) -> list[None]:
        before, self._sets = self._sets, self._sets + len(rows)
        sweep_at = self.clock() if before // _SWEEP_EVERY != self._sets // _SWEEP_EVERY else None

        def job(c: sqlite3.Connection) -> list[None]:
            with transaction(c):
                c.executemany(
                    "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)", rows
                )
                if sweep_at is not None:
                    _sweep(c, sweep_at)
            return [None] * len(rows)

        return await self.run(job)

    async def delete(self, key: str) -> bool:
        now = self.clock()

        def op(c: sqlite3.Connection) -> bool:
            # Two statements rather than RETURNING, which needs SQLite 3.35 (Debian 11 has 3.34).
            live = c.execute(
                "DELETE FROM kv WHERE key = ? AND (expires IS NULL OR expires > ?)", (key, now)
            ).rowcount
            if not live:
                c.execute("DELETE FROM kv WHERE key = ?", (key,))
            return live > 0

        return await self.run(op)

    async def delete_prefix(self, prefix: str) -> int:
        now = self.clock()

        def op(c: sqlite3.Connection) -> int:
            with transaction(c):
                c.execute("DELETE FROM kv WHERE expires <= ?", (now,))
                return c.execute("DELETE FROM kv WHERE key GLOB ?", (glob_prefix(prefix),)).rowcount

        return await self.run(op)

    async def count(self, prefix: str = "") -> int:
        [(n,)] = await self._exec(
            "SELECT COUNT(*) FROM kv WHERE key GLOB ? AND (expires IS NULL OR expires > ?)",
            glob_prefix(prefix),
            self.clock(),
        )
        return int(n)

    async def append(self, log: str, record: bytes) -> None:
        await self._exec("INSERT INTO logs (log, record) VALUES (?, ?)", log, record)

    async def read(self, log: str, start: int = 0, limit: int | None = None) -> list[bytes]:
        check_count("limit", limit)
        sql_limit = -1 if limit is None else limit  # SQLite: a negative LIMIT means none
        if start >= 0:
            sql = "SELECT record FROM logs WHERE log = ? ORDER BY id LIMIT ? OFFSET ?"
            rows = await self._exec(sql, log, sql_limit, start)
        else:
            sql = (
                "SELECT record FROM (SELECT id, record FROM logs WHERE log = ?"
                " ORDER BY id DESC LIMIT ?) ORDER BY id LIMIT ?"
            )
            rows = await self._exec(sql, log, -start, sql_limit)
        return [bytes(r[0]) for r in rows]

    async def length(self, log: str) -> int:
        [(n,)] = await self._exec("SELECT COUNT(*) FROM logs WHERE log = ?", log)
        return int(n)

    async def trim(self, log: str, keep_last: int) -> None:
        check_count("keep_last", keep_last)
        await self._exec(TRIM, log, log, keep_last)

    async def search(
        self, log: str, query: str, text: Text, limit: int
    ) -> list[tuple[float, bytes]]:
        check_count("limit", limit)
        return await self.run(lambda c: search_log(c, log, query, text, limit))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:  # on the thread, after the calls queued before it
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await asyncio.get_running_loop().run_in_executor(self._worker, close)
        finally:
            self._worker.shutdown(wait=False)


class MemoryStore(SQLiteStore):
    """A store in a private in-memory SQLite database, gone with the object."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(":memory:", clock=clock)

    def __repr__(self) -> str:
        return "MemoryStore()"
