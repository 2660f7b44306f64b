"""``database_query``: read-only SQL over a SQLite file (or another database through
SQLAlchemy: see :mod:`massgen.tools.sql`).

The SQL may try to write, to turn ``query_only`` off, to ``ATTACH`` files or to load code.
Each layer alone stops writes: the file opened read-only (``mode=ro``, never created);
``PRAGMA query_only=ON``; an authorizer allowing only reads, harmless functions and
argument-less schema pragmas; one statement per call.

Work is bounded in total: a progress handler aborts past ``time_limit``;
``SQLITE_LIMIT_LENGTH`` = ``max_bytes`` makes ``randomblob(1e9)``, ``zeroblob`` or
``group_concat`` fail at once instead of allocating in one uninterruptible step (and
``printf``/``format``, whose ``%c`` repeats inside one step, are denied); the SQL text is at
most ``MAX_SQL`` characters; rows stop at ``max_rows`` or ``max_bytes``, cells are cut to
``max_cell``. One row of many columns may still hold ``max_bytes`` per column.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from pydantic import Field

from massgen.errors import ConfigError, ToolError
from massgen.tools.base import BuiltinTool, ToolSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

_READ_PRAGMAS = frozenset(
    [
        *("table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo"),
        *("foreign_key_list", "collation_list", "function_list"),
    ]
)
MAX_SQL = 20_000
"""Characters of SQL text one query may have (``SQLITE_LIMIT_SQL_LENGTH``)."""
_DENIED_FUNCTIONS = frozenset(
    [
        *("load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "zipfile"),
        # printf('%.*c', 1e9, 'x') loops a billion times in one step: no limit stops it.
        *("printf", "format"),
    ]
)


class DatabaseSettings(ToolSettings):
    database: str
    """The SQLite file (relative to the config file's folder; it must exist), or a SQLAlchemy
    URL such as ``postgresql+psycopg://reader@db/shop`` (needs ``massgen[sql]``)."""
    max_rows: int = Field(default=100, gt=0, le=10_000)
    """Rows returned at most; the answer says when there were more."""
    max_cell: int = Field(default=200, gt=0)
    """Characters kept of each value."""
    time_limit: float = Field(default=5.0, gt=0)
    """Seconds one query may run before it is aborted."""
    max_bytes: int = Field(default=1_000_000, ge=1000)
    """Bytes of values one result may hold (rows stop there, with a note); on SQLite also
    the largest string or blob a query may build."""


class DatabaseQuery(BuiltinTool):
    """Run one read-only SQL query (SQLite dialect) against the configured database and get
    the rows back as a table. Use `SELECT name, sql FROM sqlite_schema` to see the tables."""

    name = "database_query"
    Settings = DatabaseSettings
    settings: DatabaseSettings
    engine: Engine | None = None

    def setup(self) -> None:
        path: Path | Engine = Path(self.settings.database)
        if "://" in self.settings.database:
            from massgen.tools.sql import make_engine

            path = make_engine(self.settings.database, connect_timeout=self.settings.time_limit)
        if not isinstance(path, Path):
            self.engine = path
            self.description = (
                f"Run one read-only SQL query ({path.dialect.name} dialect) against the configured "
                "database and get the rows back as a table. One statement, no `;` inside it."
            )
            return
        path = path.expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = Path(self.base_dir) / path
        if not path.is_file():
            raise ConfigError("no such database file", key="database")
        self.path = path.resolve()

    def execute(self, sql: Annotated[str, Field(description="one SELECT statement")]) -> str:
        if "\x00" in sql:
            raise ToolError("NUL byte in the query")
        if self.engine is not None:
            from massgen.tools.sql import check_statement, run_read_only

            s = self.settings
            columns, rows, note = run_read_only(
                self.engine,
                check_statement(sql),
                max_rows=s.max_rows,
                time_limit=s.time_limit,
                max_bytes=s.max_bytes,
            )
            return table(columns, rows, s.max_cell, note)
        connection = self._connect()
        try:
            return self._query(connection, sql)
        finally:
            connection.close()

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{quote(str(self.path))}?mode=ro"
        try:
            connection = sqlite3.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error as e:
            raise ToolError(f"cannot open the database: {e}") from None
        connection.execute("PRAGMA query_only=ON")
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.settings.max_bytes)
        connection.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL)
        connection.set_authorizer(_authorize)
        return connection

    def _query(self, connection: sqlite3.Connection, sql: str) -> str:
        s = self.settings
        deadline = time.monotonic() + s.time_limit

        def too_long() -> int:
            return 1 if time.monotonic() > deadline else 0

        connection.set_progress_handler(too_long, 1000)
        try:
            cursor = connection.execute(sql)
            rows, note = collect(cursor, s.max_rows, s.max_bytes)
        except sqlite3.DataError:
            raise ToolError(
                f"query refused or failed: a value would pass {s.max_bytes} bytes"
            ) from None
        except sqlite3.DatabaseError as e:
            if time.monotonic() > deadline:
                raise ToolError(f"the query took longer than {s.time_limit:g}s") from None
            raise ToolError(f"query refused or failed: {e}") from None
        except (sqlite3.Error, sqlite3.Warning) as e:
            raise ToolError(f"query refused: {e}") from None
        columns = [d[0] for d in cursor.description or ()]
        return table(columns, rows, s.max_cell, note)


def _authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        denied = (arg2 or "").lower() in _DENIED_FUNCTIONS
        return sqlite3.SQLITE_DENY if denied else sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        # Only schema-reading pragmas; their argument is a table name, never a new value.
        readable = (arg1 or "").lower() in _READ_PRAGMAS
        return sqlite3.SQLITE_OK if readable else sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_DENY


def size(value: Any) -> int:
    """Bytes a value holds (UTF-8 for text)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace"))
    return 8 if value is None or isinstance(value, int | float) else len(str(value))


def collect(rows: Iterable[Any], max_rows: int, max_bytes: int) -> tuple[list[Any], str | None]:
    """Rows taken one by one until ``max_rows`` rows or ``max_bytes`` bytes of values; and a
    note saying why it stopped early, or ``None``."""
    out: list[Any] = []
    total = 0
    for row in rows:
        if len(out) == max_rows:
            return out, f"{max_rows} rows shown; there are more"
        total += sum(size(v) for v in row)
        if total > max_bytes:
            return out, f"{len(out)} rows shown; the result passed {max_bytes} bytes"
        out.append(row)
    return out, None


def table(columns: list[str], rows: list[Any], max_cell: int, note: str | None = None) -> str:
    """Rows as a compact ``|``-separated table with a count line (``note`` when cut)."""
    if not columns:
        return "(no result set)"

    def cell(value: Any) -> str:
        if value is None:
            text = "NULL"
        elif isinstance(value, bytes | bytearray | memoryview):
            text = bytes(value[: max_cell // 2 + 1]).hex()  # only what can be shown
        else:
            text = str(value)
        text = " ".join(text.split())
        return text if len(text) <= max_cell else text[: max_cell - 1] + "…"

    lines = [" | ".join(columns)]
    lines += [" | ".join(cell(v) for v in row) for row in rows]
    lines.append(f"({note})" if note else f"({len(rows)} rows)")
    return "\n".join(lines)
