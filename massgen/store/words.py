"""Finding a log's records by their words: SQLite FTS5, ranked by BM25. A store whose medium
cannot search (Redis) keeps an in-memory copy of each searched log (:class:`WordIndex`)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from massgen.store.sqlite import SQLiteStore

Text = Callable[[bytes], str]  # the words a record is found by

LOGS_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    id      INTEGER PRIMARY KEY, -- insertion order across the whole table
    log     TEXT NOT NULL,
    record  BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_log ON logs (log, id);
"""

WORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_words (  -- one index per log: its ranking is its own
    log TEXT PRIMARY KEY,
    n   INTEGER NOT NULL UNIQUE  -- its index is the FTS5 table log_words_{n}
);
"""

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
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def _index_of(c: sqlite3.Connection, log: str) -> str | None:
    row = c.execute("SELECT n FROM log_words WHERE log = ?", (log,)).fetchone()
    return None if row is None else f"log_words_{int(row[0])}"


def _create_index(c: sqlite3.Connection, log: str) -> str:
    """The index of ``log``, made now if it has none, with a trigger that drops a record's
    words when the record leaves the log (whoever trims it)."""
    table = _index_of(c, log)
    if table is not None:
        return table
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
    if table is None:
        return 0
    row = c.execute(f"SELECT rowid FROM {table} ORDER BY rowid DESC LIMIT 1").fetchone()
    return 0 if row is None else int(row[0])


def index_log(c: sqlite3.Connection, log: str, text: Text) -> str | None:
    """Index the records appended since the last search (those after the newest indexed:
    ids only grow); the index table."""
    table = _index_of(c, log)
    (newest,) = c.execute("SELECT MAX(id) FROM logs WHERE log = ?", (log,)).fetchone()
    if (newest or 0) == _newest(c, table):
        return table
    with transaction(c):
        table = _create_index(c, log)
        after = _newest(c, table)  # again: another process may have done it meanwhile
        rows = c.execute(
            "SELECT id, record FROM logs WHERE log = ? AND id > ? ORDER BY id", (log, after)
        ).fetchall()
        c.executemany(
            f"INSERT INTO {table} (rowid, words) VALUES (?, ?)",
            [(i, text(bytes(r))) for i, r in rows],
        )
    return table


def search_log(
    c: sqlite3.Connection, log: str, query: str, text: Text, limit: int
) -> list[tuple[float, bytes]]:
    """:meth:`Store.search <massgen.store.base.Store.search>` on a connection holding the logs."""
    match = match_any(query)
    if match is None or limit <= 0:
        return []
    table = index_log(c, log, text)
    if table is None:
        return []
    rows = c.execute(
        f"SELECT -bm25({table}), logs.record FROM {table} JOIN logs ON logs.id = {table}.rowid"
        f" WHERE {table} MATCH ? ORDER BY bm25({table}), logs.id DESC LIMIT ?",
        (match, limit),
    )
    return [(float(score), bytes(record)) for score, record in rows]


Fetch = Callable[[int], Awaitable[tuple[int, int, list[bytes]]]]
"""Given the appends ``seen`` at the last read: appends now, records held, and the oldest
of the ``min(appended - seen, held)`` records not seen yet (all, or a first part)."""


class WordIndex:
    """An in-memory copy of each searched log, for a store whose medium cannot search; only
    what ``fetch`` reports as new is copied, so a search costs the same at any length."""

    def __init__(self) -> None:
        self._copy: SQLiteStore | None = None
        self._seen: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def search(
        self, log: str, query: str, text: Text, limit: int, fetch: Fetch
    ) -> list[tuple[float, bytes]]:
        if match_any(query) is None or limit <= 0:
            return []
        from massgen.store.sqlite import SQLiteStore  # it imports this module

        async with self._lock:  # one search at a time brings the copy up to date
            copy = self._copy = self._copy or SQLiteStore(":memory:")
            seen = self._seen.get(log, 0)
            while True:
                appended, held, new = await fetch(seen)
                if appended < seen:  # the log was deleted with its count: copy it afresh
                    seen = 0
                    appended, held, new = await fetch(0)
                unseen = min(appended - seen, held)
                last = len(new) >= unseen
                then = (query, text, limit) if last else None
                found = await copy.run(
                    partial(_copy, log=log, kept=held - unseen, new=new, then=then)
                )
                seen = appended - unseen + len(new)
                self._seen[log] = seen
                if last:
                    return found

    async def aclose(self) -> None:
        """Drop the copy (a later search makes it again)."""
        copy, self._copy = self._copy, None
        self._seen.clear()
        if copy is not None:
            await copy.aclose()


def _copy(
    c: sqlite3.Connection,
    log: str,
    kept: int,
    new: list[bytes],
    then: tuple[str, Text, int] | None = None,
) -> list[tuple[float, bytes]]:
    """Keep the newest ``kept`` records of the copy of ``log``, add ``new``, then search it
    if asked (query, text, limit)."""
    with transaction(c, "DEFERRED"):
        c.execute(
            "DELETE FROM logs WHERE log = ? AND id <= (SELECT id FROM logs"
            " WHERE log = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (log, log, kept),
        )
        c.executemany("INSERT INTO logs (log, record) VALUES (?, ?)", [(log, r) for r in new])
    return [] if then is None else search_log(c, log, *then)
