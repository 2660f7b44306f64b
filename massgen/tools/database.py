"""``database_query``: read-only SQL over a SQLite file (or, through SQLAlchemy, another
database: see :mod:`massgen.tools.sql`).

Threat model: the SQL is written by a model that may have read hostile text, so it may try
to write (``INSERT``, ``DROP``, stacked statements), to switch the connection to writable
(``PRAGMA query_only=OFF``), to open or create other files (``ATTACH``), or to load code
(``load_extension``). Four layers stop it, each enough on its own for writes:

1. the file is opened read-only by SQLite itself (``mode=ro`` URI; a missing file is an
   error, never created);
2. ``PRAGMA query_only=ON``;
3. an authorizer that allows only reading: ``SELECT``, reading columns, harmless
   functions, recursive CTEs, and argument-less schema pragmas (``table_info``...); every
   other action (writes, ``ATTACH``/``DETACH``, pragmas with a value, transactions,
   ``load_extension``...) is denied before the statement runs;
4. one statement per call (the driver refuses a second).

Work is bounded: at most ``max_rows`` rows come back (``fetchmany``), a progress handler
aborts a query running past ``time_limit``, and cells are cut to ``max_cell`` characters.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from pydantic import Field

from massgen.errors import ConfigError, ToolError
from massgen.tools._builtin import BuiltinTool, ToolSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

_READ_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "collation_list",
        "function_list",
    }
)
_DENIED_FUNCTIONS = frozenset(
    {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "zipfile"}
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


class DatabaseQuery(BuiltinTool):
    """Run one read-only SQL query (SQLite dialect) against the configured database and get
    the rows back as a table. Use `SELECT name, sql FROM sqlite_schema` to see the tables."""

    name = "database_query"
    Settings = DatabaseSettings
    settings: DatabaseSettings
    engine: Engine | None = None

    def setup(self) -> None:
        database = self.settings.database
        if "://" in database:
            self._setup_url(database)
            return
        self._setup_file(Path(database))

    def _setup_url(self, url: str) -> None:
        from massgen.tools.sql import make_engine

        if url.startswith("sqlite"):
            try:
                from sqlalchemy.engine import make_url
                from sqlalchemy.exc import ArgumentError
            except ImportError:
                raise ConfigError(
                    "a database URL needs SQLAlchemy: pip install 'massgen[sql]'", key="database"
                ) from None
            try:
                path = make_url(url).database
            except ArgumentError:
                raise ConfigError("not a valid SQLAlchemy URL", key="database") from None
            if not path or path == ":memory:":
                raise ConfigError("a SQLite URL must name a file", key="database")
            self._setup_file(Path(path))
            return
        self.engine, dialect = make_engine(url, connect_timeout=self.settings.time_limit)
        self.description = (
            f"Run one read-only SQL query ({dialect} dialect) against the configured database "
            "and get the rows back as a table. One statement, no `;` inside it."
        )

    def _setup_file(self, path: Path) -> None:
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
            columns, rows = run_read_only(
                self.engine, check_statement(sql), max_rows=s.max_rows, time_limit=s.time_limit
            )
            return table(columns, rows, s.max_rows, s.max_cell)
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
            rows = cursor.fetchmany(s.max_rows + 1)
        except sqlite3.DatabaseError as e:
            if time.monotonic() > deadline:
                raise ToolError(f"the query took longer than {s.time_limit:g}s") from None
            raise ToolError(f"query refused or failed: {e}") from None
        except (sqlite3.Error, sqlite3.Warning) as e:
            raise ToolError(f"query refused: {e}") from None
        columns = [d[0] for d in cursor.description or ()]
        return table(columns, rows, s.max_rows, s.max_cell)


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


def table(columns: list[str], rows: list[Any], max_rows: int, max_cell: int) -> str:
    """Rows as a compact ``|``-separated table with a count line."""
    if not columns:
        return "(no result set)"

    def cell(value: Any) -> str:
        text = "NULL" if value is None else value.hex() if isinstance(value, bytes) else str(value)
        text = " ".join(text.split())
        return text if len(text) <= max_cell else text[: max_cell - 1] + "…"

    lines = [" | ".join(columns)]
    lines += [" | ".join(cell(v) for v in row) for row in rows[:max_rows]]
    more = len(rows) > max_rows
    lines.append(f"({max_rows} rows shown; there are more)" if more else f"({len(rows)} rows)")
    return "\n".join(lines)
