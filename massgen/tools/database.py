"""``database_query``: read-only SQL over a SQLite file, or PostgreSQL/MySQL/MariaDB through
SQLAlchemy (``massgen[sql]``). docs/tools.md, ``database_query``, gives each guard and why."""

from __future__ import annotations

import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from pydantic import Field

from massgen.errors import ConfigError, ToolError
from massgen.tools.base import BuiltinTool, ToolSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine, Row

_READ_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info"}
_READ_PRAGMAS |= {"index_xinfo", "foreign_key_list", "collation_list", "function_list"}
MAX_SQL = 20_000  # characters of SQL text one query may have (SQLITE_LIMIT_SQL_LENGTH)
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
# printf('%.*c', 1e9, 'x') loops a billion times in one step: no limit stops it.
_DENIED_FUNCTIONS |= {"zipfile", "printf", "format"}


class DatabaseSettings(ToolSettings):
    database: str  # a SQLite file (relative to the config file), or a SQLAlchemy URL
    max_rows: int = Field(default=100, gt=0, le=10_000)
    max_cell: int = Field(default=200, gt=0)  # characters kept of each value
    time_limit: float = Field(default=5.0, gt=0)  # seconds, then the query is aborted
    max_bytes: int = Field(default=1_000_000, ge=1000)  # of a result; SQLite: of one value


class DatabaseQuery(BuiltinTool[DatabaseSettings]):
    """Run one read-only SQL query (SQLite dialect) against the configured database and get
    the rows back as a table. Use `SELECT name, sql FROM sqlite_schema` to see the tables."""

    engine: Engine | None = None

    def setup(self) -> None:
        s = self.settings
        where = make_engine(s.database, s.time_limit) if "://" in s.database else Path(s.database)
        if not isinstance(where, Path):
            self.engine = where
            self.description = (
                f"Run one read-only SQL query ({where.dialect.name} dialect) against the "
                "configured database and get the rows back as a table. One statement, no `;` "
                "inside it."
            )
            return
        path = (self.base_dir or Path()) / where.expanduser()
        if not path.is_file():
            raise ConfigError("no such database file", key="database")
        self.path = path.resolve()

    def execute(self, sql: Annotated[str, Field(description="one SELECT statement")]) -> str:
        s = self.settings
        if "\x00" in sql:
            raise ToolError("NUL byte in the query")
        if self.engine is not None:
            limits = (s.max_rows, s.time_limit, s.max_bytes)
            columns, rows, note = run_read_only(self.engine, check_statement(sql), *limits)
            return table(columns, rows, s.max_cell, note)
        try:
            connection = sqlite3.connect(
                f"file:{quote(str(self.path))}?mode=ro", uri=True, isolation_level=None
            )
        except sqlite3.Error as e:
            raise ToolError(f"cannot open the database: {e}") from None
        deadline = time.monotonic() + s.time_limit
        with closing(connection):
            connection.execute("PRAGMA query_only=ON")
            connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, s.max_bytes)
            connection.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL)
            connection.set_authorizer(_authorize)
            connection.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
            try:
                cursor = connection.execute(sql)
                rows, note = collect(cursor, s.max_rows, s.max_bytes)
                columns = [d[0] for d in cursor.description or ()]
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
        return table(columns, rows, s.max_cell, note)


def _authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    allowed = action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE)
    if action == sqlite3.SQLITE_FUNCTION:
        allowed = (arg2 or "").lower() not in _DENIED_FUNCTIONS
    elif action == sqlite3.SQLITE_PRAGMA:
        # Only schema-reading pragmas; their argument is a table name, never a new value.
        allowed = (arg1 or "").lower() in _READ_PRAGMAS
    return sqlite3.SQLITE_OK if allowed else sqlite3.SQLITE_DENY


def size(value: Any) -> int:
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace"))
    return 8 if value is None or isinstance(value, int | float) else len(str(value))


def collect(rows: Iterable[Any], max_rows: int, max_bytes: int) -> tuple[list[Any], str | None]:
    """Rows until ``max_rows`` rows or ``max_bytes`` bytes of values, and a note if cut short."""
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


# -- other databases, through SQLAlchemy --------------------------------------------------
INSTALL_HINT = "pip install 'massgen[sql]'"
READ_ONLY_DIALECTS = ("postgresql", "mysql", "mariadb")

_STREAMED = frozenset({"select", "with", "values", "table"})
_FIRST_WORDS = _STREAMED | {"show", "explain", "describe", "desc"}
# Words that reach the server's files, other connections or sessions, or settings.
DENIED_WORDS = {"outfile", "dumpfile", "load_file", "lo_import", "lo_export", "set_config"}
DENIED_WORDS |= {"pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file"}
DENIED_WORDS |= {"dblink", "dblink_exec", "dblink_connect", "pg_terminate_backend"}
DENIED_WORDS |= {"pg_cancel_backend", "pg_reload_conf", "sys_exec", "sys_eval"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def check_statement(sql: str) -> str:
    """The statement without a trailing ``;``, or :class:`ToolError` if it is not one reading
    statement. Blunt: a ``;`` inside a string is refused too, so no quoting trick passes."""
    text = sql.strip().removesuffix(";").rstrip()
    if not text:
        raise ToolError("query refused: empty statement")
    if ";" in text:
        raise ToolError("query refused: one statement per call (no `;` inside the query)")
    first = _WORD.match(text.lstrip("( \t\r\n"))
    if first is None or first.group().lower() not in _FIRST_WORDS:
        raise ToolError(
            "query refused: only SELECT, WITH, VALUES, TABLE, SHOW, EXPLAIN or DESCRIBE"
        )
    denied = sorted({w.lower() for w in _WORD.findall(text)} & DENIED_WORDS)
    if denied:
        raise ToolError(f"query refused: {denied[0]} is not allowed")
    return text


_CONNECT_TIMEOUT_DRIVERS = frozenset({"psycopg", "psycopg2", "pymysql", "mysqldb"})


def make_engine(url: str, connect_timeout: float = 10.0) -> Engine | Path:
    """An engine without a pool for ``url``, or the file a ``sqlite`` URL names (read by the
    stdlib driver, under its own guards); :class:`ConfigError` naming what is missing."""

    def bad(message: str) -> ConfigError:
        return ConfigError(message, key="database")

    try:
        import sqlalchemy
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool
    except ImportError:
        raise bad(f"a database URL needs SQLAlchemy: {INSTALL_HINT}") from None
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise bad("not a valid SQLAlchemy URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise bad("a SQLite URL must name a file")
        return Path(parsed.database)
    if backend not in READ_ONLY_DIALECTS:
        dialects = ", ".join(READ_ONLY_DIALECTS)
        raise bad(
            f"{backend} cannot run read-only transactions here; use {dialects} or a SQLite file"
        )
    try:
        connect_args: dict[str, Any] = {}
        if parsed.get_driver_name() in _CONNECT_TIMEOUT_DRIVERS:
            connect_args["connect_timeout"] = max(2, math.ceil(connect_timeout))
        return sqlalchemy.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    except ImportError as e:
        missing = f"the database driver is not installed ({e.name or parsed.drivername})"
        raise bad(f"{missing}: {INSTALL_HINT} or install the driver") from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise bad(f"unknown database driver {parsed.drivername!r}") from None


def run_read_only(
    engine: Engine, sql: str, max_rows: int, time_limit: float, max_bytes: int = 1_000_000
) -> tuple[list[str], list[Row[Any]], str | None]:
    """Run ``sql`` (checked) in a read-only transaction, always rolled back: the columns, the
    rows (within ``max_rows``/``max_bytes``) and a note when rows were left out."""
    from sqlalchemy import exc

    deadline = time.monotonic() + time_limit
    try:
        with engine.connect() as connection:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ToolError(f"the query took longer than {time_limit:g}s")
            # Cancel at the deadline: a streamed result is several FETCHes, each with a fresh
            # statement timeout (drivers without ``cancel`` rely on that timeout alone).
            dbapi = getattr(connection.connection, "dbapi_connection", None)
            guard = threading.Timer(left, getattr(dbapi, "cancel", None) or (lambda: None))
            guard.daemon = True
            guard.start()
            try:
                _begin_read_only(connection, engine.dialect, left)
                first = _WORD.match(sql.lstrip("( \t\r\n"))
                streamed = first is not None and first.group().lower() in _STREAMED
                options = {"no_parameters": True, "stream_results": streamed}
                result = connection.exec_driver_sql(sql, execution_options=options)
                columns = list(result.keys()) if result.returns_rows else []
                rows, note = collect(result, max_rows, max_bytes) if columns else ([], None)
                result.close()
            finally:
                guard.cancel()
                connection.rollback()
    except exc.DBAPIError as e:
        if time.monotonic() >= deadline:
            raise ToolError(f"the query took longer than {time_limit:g}s") from None
        raise ToolError(f"query refused or failed: {_reason(e)}") from None
    except exc.SQLAlchemyError as e:
        raise ToolError(f"query failed: {type(e).__name__}") from None
    return columns, rows, note


# The roles the login role is or may become (SET ROLE): their name, whether each is the login,
# a superuser, a predefined role reaching the server's files, programs or sessions, and which
# superuser-only functions reaching the host (any overload) it may execute.
_PG_ROLE_CHECK = """
SELECT r.rolname, r.rolname = session_user, r.rolsuper,
       r.rolname IN ('pg_read_server_files', 'pg_write_server_files',
                     'pg_execute_server_program', 'pg_signal_backend'),
       ARRAY(SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
             WHERE p.proname IN ('pg_read_file', 'pg_read_binary_file', 'pg_ls_dir',
                   'pg_stat_file', 'pg_reload_conf', 'pg_rotate_logfile', 'pg_promote',
                   'lo_import', 'lo_export', 'pg_file_write', 'pg_file_unlink', 'dblink_connect_u')
               AND has_function_privilege(r.oid, p.oid, 'EXECUTE'))
FROM pg_catalog.pg_roles r
WHERE pg_has_role(session_user, r.oid, 'MEMBER')
ORDER BY r.rolname
"""


def check_pg_role(connection: Connection) -> None:
    """Refuse a login role that is, or may become, a superuser, a member of a server role or
    able to run a server function (:data:`_PG_ROLE_CHECK`); no word list can."""
    roles = connection.exec_driver_sql(_PG_ROLE_CHECK).all()  # (name, is login, super,...)
    login = next((r[0] for r in roles if r[1]), "")
    supers, members = [r[0] for r in roles if r[2]], [r[0] for r in roles if r[3]]
    functions = sorted({f for r in roles for f in r[4]})
    more = f" and {len(functions) - 3} more" if len(functions) > 3 else ""
    parts = [f"is a member of {', '.join(members)}"] if members else []
    parts += [f"may execute {', '.join(functions[:3])}{more}"] if functions else []
    if supers:
        parts = [
            "is a superuser" if login in supers else f"can become the superuser role {supers[0]!r}"
        ]
    if parts:
        advice = "Connect as a role without superuser, server-file, server-program or signal "
        advice += "rights (see database_query in docs/tools.md)"
        raise ToolError(f"query refused: the database role {login!r} {'; '.join(parts)}. {advice}")


def _begin_read_only(connection: Connection, dialect: Any, time_limit: float) -> None:
    milliseconds = max(1, int(time_limit * 1000))
    if dialect.name == "postgresql":
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")
        # A first query takes the snapshot: from here on, read-write mode cannot be set.
        check_pg_role(connection)
        return
    # MySQL/MariaDB: DDL commits implicitly, ending the read-only transaction, so the whole
    # session (closed after the call) is made read-only too: DDL is then refused.
    connection.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
    if getattr(dialect, "is_mariadb", False):
        connection.exec_driver_sql(f"SET SESSION max_statement_time = {milliseconds / 1000:.3f}")
    else:
        connection.exec_driver_sql(f"SET SESSION max_execution_time = {milliseconds}")
    connection.exec_driver_sql("START TRANSACTION READ ONLY")


def _reason(error: Any) -> str:
    """The driver's message, first line only (no SQL echo, no connection string)."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
