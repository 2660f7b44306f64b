"""R14 beyond SQLite: ``database_query`` on a SQLAlchemy URL runs one statement in a
read-only transaction, always rolled back, against real PostgreSQL and MariaDB/MySQL.

The servers are taken from ``MASSGEN_TEST_POSTGRES_URL`` / ``MASSGEN_TEST_MYSQL_URL``
(default: trust/no-password users on 127.0.0.1); tests needing one are skipped, with the
reason, when it is not reachable. On PostgreSQL that URL is an administrator's, used to set
up; the tool connects as a role the test creates (and drops) with every right on the test's
table and schema but none on the server (the tool refuses a superuser), so what stops a
write is the read-only transaction, not a missing grant.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sqlalchemy = pytest.importorskip("sqlalchemy", reason="needs the sql extra: massgen[sql]")

from massgen.errors import ConfigError, ToolError  # noqa: E402
from massgen.tools import DatabaseQuery  # noqa: E402
from massgen.tools.database import check_statement, run_read_only  # noqa: E402

SERVERS = {
    "postgresql": os.environ.get(
        "MASSGEN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("MASSGEN_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


@dataclass
class Server:
    url: str
    """What the tool connects with (PostgreSQL: the test's restricted role)."""
    dialect: str
    table: str
    admin: sqlalchemy.engine.Engine
    admin_url: str = ""

    def snapshot(self) -> tuple[object, ...]:
        """Everything a write could change: the rows, and this test's tables."""
        with self.admin.connect() as c:
            rows = tuple(c.exec_driver_sql(f"SELECT * FROM {self.table} ORDER BY id"))
            if self.dialect == "postgresql":
                listing = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            else:
                listing = (
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = DATABASE()"
                )
            # only this test's tables: other test runs may share the database
            names = (r[0] for r in c.exec_driver_sql(listing))
            tables = tuple(sorted(n for n in names if n.startswith(self.table)))
        return rows, tables


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    dialect = request.param
    url = SERVERS[dialect]
    try:
        admin = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        admin.connect().close()
    except ImportError as e:
        pytest.skip(f"{dialect}: driver not installed ({e.name}); pip install 'massgen[dev]'")
    except sqlalchemy.exc.OperationalError as e:
        pytest.skip(f"{dialect} server not reachable at {url}: {str(e.orig).splitlines()[0]}")
    table = f"mg_users_{uuid.uuid4().hex[:10]}"
    with admin.begin() as c:
        c.exec_driver_sql(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(600))")
        names = ["x" * 500] + [f"user{i}" for i in range(2, 251)]  # ids 1 to 250
        rows = ", ".join(f"({i}, '{name}')" for i, name in enumerate(names, start=1))
        c.exec_driver_sql(f"INSERT INTO {table} VALUES {rows}")  # one statement, not 250
        if dialect == "postgresql":
            c.exec_driver_sql(f"CREATE SEQUENCE {table}_seq")
    tool_url = url
    if dialect == "postgresql":
        tool_url = pg_reader(admin, url, table, grants=(f"ALL ON {table}", f"ALL ON {table}_seq"))
    yield Server(tool_url, dialect, table, admin, url)
    with admin.begin() as c:
        c.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        c.exec_driver_sql(f"DROP TABLE IF EXISTS {table}_evil")
        if dialect == "postgresql":
            c.exec_driver_sql(f"DROP SEQUENCE IF EXISTS {table}_seq")
    if dialect == "postgresql":
        drop_role(admin, table)
    admin.dispose()


CATALOG_LOCK = "SELECT pg_advisory_xact_lock(7312401)"
"""Taken by every transaction that grants on, or drops what a role owns in, the shared
``public`` schema: two suites doing so at once on one server otherwise fail with "tuple
concurrently updated" (PostgreSQL updates the schema's ACL row in place)."""


def pg_reader(
    admin: sqlalchemy.engine.Engine,
    url: str,
    name: str,
    grants: tuple[str, ...] = (),
) -> str:
    """Create the login role ``name`` (no superuser, no server rights; CREATE on the public
    schema and ``grants`` so that only the read-only transaction stands in a write's way);
    its URL."""
    with admin.begin() as c:
        c.exec_driver_sql(CATALOG_LOCK)
        c.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
        c.exec_driver_sql(
            f"CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
        )
        c.exec_driver_sql(f"GRANT USAGE, CREATE ON SCHEMA public TO {name}")
        for grant in grants:
            what, _, on = grant.partition(" ON ")
            c.exec_driver_sql(f"GRANT {what} ON {on} TO {name}")
    return sqlalchemy.engine.make_url(url).set(username=name).render_as_string(hide_password=False)


def drop_role(admin: sqlalchemy.engine.Engine, name: str) -> None:
    with admin.begin() as c:
        c.exec_driver_sql(CATALOG_LOCK)
        c.exec_driver_sql(f"DROP OWNED BY {name}")
        c.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")


WRITES = [
    "INSERT INTO {t} (id, name) VALUES (999, 'mallory')",
    "UPDATE {t} SET name = 'x'",
    "DELETE FROM {t}",
    "DROP TABLE {t}",
    "CREATE TABLE {t}_evil (x INTEGER)",
    "ALTER TABLE {t} ADD COLUMN evil INTEGER",
    "TRUNCATE {t}",
    "SET TRANSACTION READ WRITE",
    "SET SESSION TRANSACTION READ WRITE",
    "COMMIT",
    "BEGIN",
    "SELECT 1; DROP TABLE {t}",
    "SELECT 1; COMMIT; INSERT INTO {t} (id, name) VALUES (999, 'm')",
    "SELECT ';'; DELETE FROM {t}",
    "SELECT 1 ; UPDATE {t} SET name = 'x' ;",
    "select 1;\ndelete from {t}",
    "/* hi */ DELETE FROM {t}",
    "COPY (SELECT 1) TO PROGRAM 'touch /tmp/massgen_evil'",
    "SELECT name FROM {t} INTO OUTFILE '/tmp/massgen_evil'",
    "SELECT lo_export(1, '/tmp/massgen_evil')",
    "SELECT set_config('transaction_read_only', 'off', true)",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT load_file('/etc/passwd')",
]
PG_WRITES_PAST_THE_CHECK = [
    # These pass the lexical check: the server refuses them (the read-only transaction, or
    # for a data-modifying WITH also the streaming cursor).
    "WITH gone AS (DELETE FROM {t} RETURNING id) SELECT count(*) FROM gone",
    "WITH x AS (INSERT INTO {t} (id, name) VALUES (999, 'm') RETURNING id) SELECT * FROM x",
    "EXPLAIN ANALYZE DELETE FROM {t}",
    "SELECT nextval('{t}_seq')",
]


@pytest.mark.parametrize("sql", WRITES)
async def test_writes_are_refused_and_change_nothing(server: Server, sql: str) -> None:
    before = server.snapshot()
    tool = DatabaseQuery(database=server.url)
    with pytest.raises(ToolError, match="refused|failed"):
        await tool.run({"sql": sql.format(t=server.table)})
    assert server.snapshot() == before
    assert not Path("/tmp/massgen_evil").exists()
    count = await tool.run({"sql": f"SELECT count(*) AS n FROM {server.table}"})
    assert count == "n\n250\n(1 rows)"


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
@pytest.mark.parametrize("sql", PG_WRITES_PAST_THE_CHECK)
async def test_the_read_only_transaction_refuses_what_the_check_lets_through(
    server: Server, sql: str
) -> None:
    statement = check_statement(sql.format(t=server.table))  # passes the lexical layer
    before = server.snapshot()
    with pytest.raises(ToolError, match="read-only transaction|data-modifying statements"):
        await DatabaseQuery(database=server.url).run({"sql": statement})
    assert server.snapshot() == before


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO {t} (id, name) VALUES (999, 'mallory')",
        "UPDATE {t} SET name = 'x'",
        "DELETE FROM {t}",
        "CREATE TABLE {t}_evil (x INTEGER)",
        "DROP TABLE {t}",
        "SET TRANSACTION READ WRITE",
    ],
)
def test_the_transaction_alone_is_read_only(server: Server, sql: str) -> None:
    """Layer 2 on its own, without the lexical check: the server refuses every write."""
    engine = DatabaseQuery(database=server.url).engine
    assert engine is not None
    before = server.snapshot()
    with pytest.raises(ToolError, match="refused or failed"):
        run_read_only(engine, sql.format(t=server.table), max_rows=5, time_limit=5)
    assert server.snapshot() == before


async def test_reads_work_and_are_bounded(server: Server) -> None:
    tool = DatabaseQuery(database=server.url, max_rows=3, max_cell=10)
    out = await tool.run({"sql": f"SELECT id, name FROM {server.table} ORDER BY id;"})
    assert out.splitlines() == [
        "id | name",
        "1 | xxxxxxxxx…",
        "2 | user2",
        "3 | user3",
        "(3 rows shown; there are more)",
    ]
    like = f"SELECT count(*) AS n FROM {server.table} WHERE name LIKE 'user1%'"
    assert await tool.run({"sql": like}) == "n\n110\n(1 rows)"  # user10-19, user100-199
    with_query = (
        f"WITH s AS (SELECT id FROM {server.table} WHERE id <= 5) SELECT sum(id) AS t FROM s"
    )
    assert (await tool.run({"sql": with_query})).startswith("t\n15\n")
    show = "SHOW server_version" if server.dialect == "postgresql" else "SHOW TABLES"
    assert "(0 rows)" not in await tool.run({"sql": show})


async def test_a_runaway_query_is_aborted_by_the_server(server: Server) -> None:
    tool = DatabaseQuery(database=server.url, time_limit=0.2)
    sleep = "SELECT pg_sleep(30)" if server.dialect == "postgresql" else "SELECT sleep(30)"
    with pytest.raises(ToolError, match="longer than 0.2s"):
        await tool.run({"sql": sleep})


async def test_errors_name_neither_the_password_nor_the_sql() -> None:
    tool = DatabaseQuery(database="postgresql+psycopg://reader:canary-pw-31337@127.0.0.1:1/x")
    with pytest.raises(ToolError) as err:
        await tool.run({"sql": "SELECT 'canary-sql-31337'"})
    assert "canary" not in str(err.value)
    assert "canary" not in tool.description


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mssql+pyodbc://u@h/db", "cannot run read-only transactions"),
        ("oracle://u@h/db", "cannot run read-only transactions"),
        ("postgresql+nosuchdriver://u@h/db", "unknown database driver"),
        ("mysql+mysqlconnector://u@h/db", "driver is not installed"),
        ("sqlite://", "must name a file"),
        ("sqlite+:://x", "not a valid SQLAlchemy URL"),
        ("postgresql+:://x", "not a valid SQLAlchemy URL"),
        ("sqlite:///no/such/file.db", "no such database file"),
    ],
)
def test_unsupported_urls_are_config_errors(url: str, message: str) -> None:
    pytest.importorskip("psycopg")
    if message == "driver is not installed" and _importable("mysql.connector"):
        pytest.skip("mysql-connector happens to be installed")
    with pytest.raises(ConfigError, match=message) as err:
        DatabaseQuery(database=url)
    assert err.value.key == "database"


def test_without_sqlalchemy_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m == "sqlalchemy" or m.startswith("sqlalchemy.")]:
        monkeypatch.setitem(sys.modules, name, None)
    for url in ("postgresql+psycopg://u@h/db", "sqlite:///x.db"):
        with pytest.raises(ConfigError, match=r"pip install 'massgen\[sql\]'"):
            DatabaseQuery(database=url)


async def test_a_sqlite_url_keeps_every_sqlite_layer(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO users (name) VALUES ('ann')")
    c.close()
    before = path.read_bytes()
    tool = DatabaseQuery(database="sqlite:///shop.db", base_dir=tmp_path)
    assert tool.engine is None
    assert await tool.run({"sql": "SELECT name FROM users"}) == "name\nann\n(1 rows)"
    with pytest.raises(ToolError, match="refused"):
        await tool.run({"sql": "PRAGMA query_only=OFF"})
    assert path.read_bytes() == before


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# -- R19: on PostgreSQL, the role is the guard a word list cannot be --------------------------
def _bypasses(pid: int) -> list[str]:
    return [
        r"""SELECT U&"pg\005fread\005ffile"('/etc/passwd')""",
        r"""SELECT U&"pg\005fread\005fbinary\005ffile"('/etc/passwd')""",
        "SELECT query_to_xml('select pg_rea' || 'd_file(''/etc/passwd'')', true, true, '')",
        "SELECT query_to_xml('select pg_ls' || '_dir(''.'')', true, true, '')",
        r"""SELECT U&"pg\005fls\005fdir"('.')""",
        r"""SELECT U&"pg\005fstat\005ffile"('/etc/passwd')""",
        rf"""SELECT U&"pg\005fterminate\005fbackend"({pid})""",
        r"""SELECT U&"pg\005freload\005fconf"()""",
        r"""SELECT U&"lo\005fimport"('/etc/passwd')""",
        r"""SELECT U&"set\005fconfig"('role', 'pg_read_server_files', true)""",
    ]


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
async def test_bypasses_of_the_word_list_fail_under_the_role(server: Server) -> None:
    with server.admin.connect() as victim:  # a session of another role, to terminate
        pid = victim.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        tool = DatabaseQuery(database=server.url)
        for sql in _bypasses(pid):
            assert check_statement(sql) == sql  # the word list lets every one through
            with pytest.raises(ToolError, match="query refused or failed"):
                await tool.run({"sql": sql})
        assert victim.exec_driver_sql("SELECT 1").scalar_one() == 1  # still alive
    # and the role does work
    assert await tool.run({"sql": f"SELECT count(*) AS n FROM {server.table}"}) == (
        "n\n250\n(1 rows)"
    )


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
async def test_a_superuser_is_refused_at_connect(server: Server) -> None:
    with server.admin.connect() as c:
        is_super = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        assert c.exec_driver_sql(is_super).scalar_one() is True
    tool = DatabaseQuery(database=server.admin_url)
    for sql in ("SELECT 1", r"""SELECT U&"pg\005freload\005fconf"()"""):
        with pytest.raises(ToolError, match="is a superuser"):
            await tool.run({"sql": sql})


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("grant", "message"),
    [
        ("pg_read_server_files", "member of pg_read_server_files"),
        ("pg_write_server_files", "member of pg_write_server_files"),
        ("pg_execute_server_program", "member of pg_execute_server_program"),
        ("pg_signal_backend", "member of pg_signal_backend"),
        ("EXECUTE ON FUNCTION pg_reload_conf()", r"may execute pg_reload_conf\(\)"),
        ("EXECUTE ON FUNCTION pg_read_file(text)", r"may execute pg_read_file\(text\)"),
        ("{superuser}", "can become the superuser role"),
        ("{middle}", "member of pg_read_server_files"),  # through a role in between
    ],
)
async def test_a_role_with_server_rights_is_refused(
    server: Server, grant: str, message: str
) -> None:
    name = f"{server.table}_x"
    middle = f"{server.table}_m"
    url = pg_reader(server.admin, server.admin_url, name)
    superuser = sqlalchemy.engine.make_url(server.admin_url).username
    try:
        with server.admin.begin() as c:
            if grant == "{middle}":
                c.exec_driver_sql(f"CREATE ROLE {middle} NOLOGIN")
                c.exec_driver_sql(f"GRANT pg_read_server_files TO {middle}")
                c.exec_driver_sql(f"GRANT {middle} TO {name}")
            elif grant == "{superuser}":
                c.exec_driver_sql(f"GRANT {superuser} TO {name}")
            else:
                c.exec_driver_sql(f"GRANT {grant} TO {name}")
        with pytest.raises(ToolError, match=message):
            await DatabaseQuery(database=url).run({"sql": "SELECT 1"})
    finally:
        drop_role(server.admin, name)
        with server.admin.begin() as c:
            c.exec_driver_sql(f"DROP ROLE IF EXISTS {middle}")


async def test_the_time_limit_is_a_total_over_a_streamed_result(server: Server) -> None:
    """Rows that come slowly, fetched batch after batch: each fetch is a statement of its own
    on PostgreSQL (a fresh statement timeout), yet the call ends at time_limit."""
    if server.dialect == "postgresql":
        sql = "SELECT pg_sleep(0.02), i FROM generate_series(1, 1000) AS i"
    else:
        sql = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)"
            " SELECT sleep(0.02), i FROM n"
        )
    tool = DatabaseQuery(database=server.url, time_limit=1.0, max_rows=1000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(5):  # a guard for the test, not the bound asserted
        with pytest.raises(ToolError, match="longer than 1s"):
            await tool.run({"sql": sql})
    assert loop.time() - started <= 1.1
