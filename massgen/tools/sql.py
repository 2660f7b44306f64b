"""Read-only SQL over a SQLAlchemy URL (PostgreSQL, MySQL, MariaDB), for ``database_query``.

The SQL may try to write, make the transaction writable, stack statements, or reach the
server's host (``COPY ... TO PROGRAM``, ``INTO OUTFILE``, ``lo_export``). Layers:

1. a lexical check first: one statement, starting with a reading keyword, none of
   :data:`DENIED_WORDS`;
2. a transaction the server keeps read-only (PostgreSQL ``SET TRANSACTION READ ONLY`` then
   a first query; MySQL/MariaDB a read-only session too, since DDL commits implicitly),
   always rolled back; dialects without one are refused when the tool is built;
3. a connection of its own per call (no pool), so no session setting outlives the call;
4. on PostgreSQL, where no word list can be the guard (``U&"pg\\005fread\\005ffile"``,
   ``query_to_xml``), :func:`check_pg_role` refuses a role with server-reaching rights.

``time_limit`` is one deadline per call (a server-side statement timeout, and on PostgreSQL
the connection cancelled at the deadline); rows stream until ``max_rows`` or ``max_bytes``.
Connect as a user with only the privileges the agent should have.
"""

from __future__ import annotations

import math
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from massgen.errors import ConfigError, ToolError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine, Row

INSTALL_HINT = "pip install 'massgen[sql]'"
READ_ONLY_DIALECTS = ("postgresql", "mysql", "mariadb")

_FIRST_WORDS = frozenset(
    {"select", "with", "values", "table", "show", "explain", "describe", "desc"}
)
_STREAMED = frozenset({"select", "with", "values", "table"})
DENIED_WORDS = frozenset(
    [
        *("outfile", "dumpfile", "load_file", "lo_import", "lo_export"),
        *("pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file"),
        *("dblink", "dblink_exec", "dblink_connect", "pg_terminate_backend", "pg_cancel_backend"),
        *("pg_reload_conf", "set_config", "sys_exec", "sys_eval"),
    ]
)
"""Words that reach the server's files, other connections or sessions, or settings."""
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def check_statement(sql: str) -> str:
    """The statement without a trailing ``;``, or :class:`ToolError` if it is not one reading
    statement. Deliberately blunt: a ``;`` anywhere but at the end is refused, even inside a
    string, so no quoting trick can smuggle a second statement past the check."""
    text = sql.strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
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
    stdlib driver, under its own guards); :class:`ConfigError` if SQLAlchemy or the driver
    is missing or the dialect cannot run read-only transactions."""
    try:
        import sqlalchemy
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool
    except ImportError:
        raise ConfigError(
            f"a database URL needs SQLAlchemy: {INSTALL_HINT}", key="database"
        ) from None
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError("not a valid SQLAlchemy URL", key="database") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError("a SQLite URL must name a file", key="database")
        return Path(parsed.database)
    if backend not in READ_ONLY_DIALECTS:
        raise ConfigError(
            f"{backend} cannot run read-only transactions here; "
            f"use {', '.join(READ_ONLY_DIALECTS)} or a SQLite file",
            key="database",
        )
    try:
        connect_args: dict[str, Any] = {}
        if parsed.get_driver_name() in _CONNECT_TIMEOUT_DRIVERS:
            connect_args["connect_timeout"] = max(2, math.ceil(connect_timeout))
        engine = sqlalchemy.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    except ImportError as e:
        raise ConfigError(
            f"the database driver is not installed ({e.name or parsed.drivername}): "
            f"{INSTALL_HINT} or install the driver",
            key="database",
        ) from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise ConfigError(
            f"unknown database driver {parsed.drivername!r}", key="database"
        ) from None
    return engine


def run_read_only(
    engine: Engine, sql: str, *, max_rows: int, time_limit: float, max_bytes: int = 1_000_000
) -> tuple[list[str], list[Row[Any]], str | None]:
    """Run ``sql`` (already checked) in a read-only transaction that is always rolled back;
    the column names, at most ``max_rows`` rows holding at most ``max_bytes`` bytes of values,
    and a note when rows were left out."""
    from sqlalchemy import exc

    from massgen.tools.database import collect

    deadline = time.monotonic() + time_limit
    guard: threading.Timer | None = None
    try:
        with engine.connect() as connection:
            try:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ToolError(f"the query took longer than {time_limit:g}s")
                guard = _cancel_at_deadline(connection, left)
                _begin_read_only(connection, engine.dialect, left)
                first = _WORD.match(sql.lstrip("( \t\r\n"))
                options: dict[str, Any] = {"no_parameters": True}
                if first is not None and first.group().lower() in _STREAMED:
                    options["stream_results"] = True
                result = connection.exec_driver_sql(sql, execution_options=options)
                columns = list(result.keys()) if result.returns_rows else []
                rows: list[Row[Any]] = []
                note = None
                if result.returns_rows:
                    rows, note = collect(result, max_rows, max_bytes)
                result.close()
            finally:
                if guard is not None:
                    guard.cancel()
                connection.rollback()
    except exc.DBAPIError as e:
        if time.monotonic() >= deadline:
            raise ToolError(f"the query took longer than {time_limit:g}s") from None
        raise ToolError(f"query refused or failed: {_reason(e)}") from None
    except exc.SQLAlchemyError as e:
        raise ToolError(f"query failed: {type(e).__name__}") from None
    return columns, rows, note


def _cancel_at_deadline(connection: Connection, left: float) -> threading.Timer | None:
    """A timer cancelling the connection's work after ``left`` seconds: a streamed result is
    several ``FETCH``es, each with a fresh statement timeout. Drivers without ``cancel``
    (MySQL's) rely on the session's statement time limit."""
    dbapi = getattr(connection.connection, "dbapi_connection", None)
    cancel = getattr(dbapi, "cancel", None)
    if cancel is None:
        return None
    timer = threading.Timer(left, cancel)
    timer.daemon = True
    timer.start()
    return timer


PG_SERVER_ROLES = (
    *("pg_read_server_files", "pg_write_server_files"),
    *("pg_execute_server_program", "pg_signal_backend"),
)
"""Predefined PostgreSQL roles that reach the server's files, programs or other sessions."""
PG_SERVER_FUNCTIONS = (
    *("pg_read_file(text)", "pg_read_file(text,boolean)", "pg_read_file(text,bigint,bigint)"),
    *("pg_read_file(text,bigint,bigint,boolean)", "pg_read_binary_file(text)"),
    *("pg_read_binary_file(text,boolean)", "pg_read_binary_file(text,bigint,bigint)"),
    *("pg_read_binary_file(text,bigint,bigint,boolean)", "pg_ls_dir(text)"),
    *("pg_ls_dir(text,boolean,boolean)", "pg_stat_file(text)", "pg_stat_file(text,boolean)"),
    *("pg_reload_conf()", "pg_rotate_logfile()", "pg_promote(boolean,integer)"),
    *("lo_import(text)", "lo_import(text,oid)", "lo_export(oid,text)"),
    *("pg_file_write(text,text,boolean)", "pg_file_unlink(text)"),
    *("dblink_connect_u(text)", "dblink_connect_u(text,text)"),
)
"""Functions (superuser-only by default) the connecting role must not be able to execute,
by any role it may become; those not installed are skipped."""

_PG_ROLE_CHECK = f"""
SELECT r.rolname, r.rolname = session_user, r.rolsuper,
       r.rolname IN ({", ".join(f"'{x}'" for x in PG_SERVER_ROLES)}),
       ARRAY(SELECT f FROM unnest(ARRAY[{", ".join(f"'{x}'" for x in PG_SERVER_FUNCTIONS)}]) f
             WHERE to_regprocedure(f) IS NOT NULL
               AND has_function_privilege(r.oid, to_regprocedure(f), 'EXECUTE'))
FROM pg_catalog.pg_roles r
WHERE pg_has_role(session_user, r.oid, 'MEMBER')
ORDER BY r.rolname
"""


def check_pg_role(connection: Connection) -> None:
    """Refuse (:class:`ToolError`) a login role that is, or may become (``SET ROLE``), a
    superuser, a member of :data:`PG_SERVER_ROLES`, or able to execute one of
    :data:`PG_SERVER_FUNCTIONS`: the server's privileges are the guard no word list is."""
    login = ""
    supers: list[str] = []
    members: list[str] = []
    functions: set[str] = set()
    for name, itself, superuser, server_role, executable in connection.exec_driver_sql(
        _PG_ROLE_CHECK
    ):
        login = name if itself else login
        if superuser:
            supers.append(name)
        if server_role:
            members.append(name)
        functions.update(executable)
    if supers:
        problem = (
            "is a superuser" if login in supers else f"can become the superuser role {supers[0]!r}"
        )
    elif members or functions:
        parts = [f"is a member of {', '.join(members)}"] if members else []
        if functions:
            shown = sorted(functions)
            more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
            parts.append(f"may execute {', '.join(shown[:3])}{more}")
        problem = "; ".join(parts)
    else:
        return
    raise ToolError(
        f"query refused: the database role {login!r} {problem}. Connect as a role without "
        "superuser, server-file, server-program or signal rights (see database_query in "
        "docs/tools.md)"
    )


def _begin_read_only(connection: Connection, dialect: Any, time_limit: float) -> None:
    milliseconds = max(1, int(time_limit * 1000))
    if dialect.name == "postgresql":
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")
        # A first query takes the snapshot: from here on, read-write mode cannot be set.
        check_pg_role(connection)
        return
    # MySQL/MariaDB: DDL commits implicitly, ending the read-only transaction, so the whole
    # session is made read-only too (DDL is then refused). Session settings die with the
    # connection, closed after the call.
    connection.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
    if getattr(dialect, "is_mariadb", False):
        connection.exec_driver_sql(f"SET SESSION max_statement_time = {milliseconds / 1000:.3f}")
    else:
        connection.exec_driver_sql(f"SET SESSION max_execution_time = {milliseconds}")
    connection.exec_driver_sql("START TRANSACTION READ ONLY")


def _reason(error: Any) -> str:
    """The driver's message, first line only (no SQL echo, no connection string)."""
    original = getattr(error, "orig", None)
    text = str(original if original is not None else error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
