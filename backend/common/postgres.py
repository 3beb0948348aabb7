"""PostgreSQL behind backend.common.db.Database (psycopg 3, psycopg_pool for reads).

The stores' statements are written once, with `?` placeholders; here they become
psycopg's `%s`. Every statement is a constant of a store module: nothing is
assembled from input. Rows answer by position and by column name, as sqlite3.Row.

Durability: synchronous_commit=on on every connection (a commit returns once it is
on disk), so a write the gateway or a bank acknowledged survives a crash of the
server. The writer connection runs the group commit's transactions itself (BEGIN,
SAVEPOINTs, COMMIT); reads run in short transactions on pooled connections.

The schema is versioned in a table `schema_version` (one row), read and raised
under a row lock, so two processes opening one database at once migrate it once.
Only SQL that PostgreSQL-compatible distributed databases (CockroachDB,
YugabyteDB) also accept: no advisory locks, no LISTEN/NOTIFY.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg_pool

from backend.common.db import CannotOpen, SchemaTooNew

T = TypeVar("T")
CONNECT_TIMEOUT_S = 5
IDLE_IN_TRANSACTION_S = 5.0  # the server ends a write transaction left open this long
READ_POOL_MAX = 4  # reads at once (the event loop hands them to threads)
URI_SCHEMES = ("postgresql", "postgres")
MIGRATION_LOCK = 0x5354524946  # the advisory lock key migrations take (per database): "STRIF"

# psycopg_pool logs each failed reconnection; with no handler configured, Python's last-resort
# handler would print them raw on stderr, which the supervisor shows as non-JSON error lines.
# A lost server already reaches callers as UNAVAILABLE and the Database's own log lines.
logging.getLogger("psycopg").addHandler(logging.NullHandler())
logging.getLogger("psycopg").propagate = False


def is_uri(spec: str) -> bool:
    return urlsplit(spec).scheme in URI_SCHEMES


def without_password(uri: str) -> str:
    """The URI as it may be shown: user, host, port and database, never a password."""
    parts = urlsplit(uri)
    if parts.password is None and "password=" not in parts.query:
        return uri
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("password="))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (and a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Row(tuple):
    """A row indexable by position and by column name (as sqlite3.Row)."""

    _names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _rows(cursor: psycopg.Cursor) -> Callable[[Sequence[Any]], Row]:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


class Connection:
    """A psycopg connection that takes the stores' statements (see the module docstring).

    pipelined(): until commit() or rollback(), statements are sent without waiting for
    their results (psycopg's pipeline mode: one round trip for many statements); a fetch,
    or a rowcount, waits for what it needs. An error then surfaces at a later statement
    or at commit, not at its own: Database runs such a batch again without a pipeline."""

    def __init__(self, raw: psycopg.Connection) -> None:
        self.raw = raw
        self._pipeline: psycopg.Pipeline | None = None
        self._in_pipeline: contextlib.AbstractContextManager[psycopg.Pipeline] | None = None

    def pipelined(self) -> None:
        self._in_pipeline = self.raw.pipeline()  # kept: a dropped context manager would leave the mode
        self._pipeline = self._in_pipeline.__enter__()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cursor = self.raw.cursor(row_factory=_rows)
        cursor.execute(_pg(sql), params)
        return cursor if self._pipeline is None else _Deferred(cursor, self._pipeline)

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any:
        cursor = self.raw.cursor()
        rows = list(params)
        if rows:
            cursor.executemany(_pg(sql), rows)
        return cursor

    @property
    def in_transaction(self) -> bool:
        if self._pipeline is not None:
            return True  # libpq's status is not the transaction's while results are pending; commit() tells
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def commit(self) -> None:
        self.raw.execute("COMMIT")
        self._end_pipeline()

    def rollback(self) -> None:
        self._end_pipeline(quiet=True)
        self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self._end_pipeline(quiet=True)
        self.raw.close()

    def _end_pipeline(self, quiet: bool = False) -> None:
        """Leave pipeline mode: wait for every result (an error among them is raised)."""
        context, self._in_pipeline, self._pipeline = self._in_pipeline, None, None
        if context is None:
            return
        try:
            context.__exit__(None, None, None)
        except psycopg.Error:
            if not quiet:
                raise


class _Deferred:
    """A cursor of pipeline mode whose rowcount waits for its result."""

    def __init__(self, cursor: psycopg.Cursor, pipeline: psycopg.Pipeline) -> None:
        self._cursor = cursor
        self._pipeline = pipeline

    @property
    def rowcount(self) -> int:
        if self._cursor.pgresult is None:
            self._pipeline.sync()
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()


def _configure(raw: psycopg.Connection) -> None:
    raw.execute("SET synchronous_commit = on")  # whatever the server's default: durable commits
    # A write transaction lasts milliseconds. One left open (its process frozen mid-batch) would
    # hold its row locks, and the other replicas of the tier would wait on them: the server ends it.
    raw.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_S * 1000:.0f}ms'")


class PostgresEngine:
    name = "postgres"

    def __init__(self, uri: str) -> None:
        if not is_uri(uri):
            raise CannotOpen(f"not a PostgreSQL URI: {without_password(uri)!r} (postgresql://user@host:port/database)")
        self.uri = uri
        self.where = without_password(uri)
        self._pool: psycopg_pool.ConnectionPool | None = None

    def connect(self) -> Connection:
        try:
            raw = psycopg.connect(self.uri, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise CannotOpen(f"cannot connect to {self.where}: {_first_line(exc)}") from None
        _configure(raw)
        return Connection(raw)

    def begin(self, conn: Connection, pipelined: bool = False) -> None:
        if pipelined:
            conn.pipelined()
        conn.execute("BEGIN")

    def migrate(self, conn: Connection, migrations: Sequence[str]) -> int:
        """Bring the schema to version len(migrations), in one transaction, under an advisory
        lock, so processes starting together (a tier's replicas) migrate one after another.
        Returns the version the database had."""
        assert not isinstance(migrations, str), "a list of migration scripts, not one script"
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
            )
            conn.execute("INSERT INTO schema_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
            found = conn.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()[0]
            if found > len(migrations):
                raise SchemaTooNew(
                    f"schema version {found} is newer than this Strife knows ({len(migrations)}): run a newer Strife"
                )
            for script in migrations[found:]:
                for statement in _statements(script):
                    conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ? WHERE id = 1", (len(migrations),))
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return found

    def read(self, fn: Callable[[Connection], T]) -> T:
        if self._pool is None:
            self._pool = psycopg_pool.ConnectionPool(
                self.uri,
                min_size=1,
                max_size=READ_POOL_MAX,
                kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
                configure=_configure,
                check=psycopg_pool.ConnectionPool.check_connection,
                timeout=CONNECT_TIMEOUT_S,
                open=True,
                name="strife-reads",
            )
        with self._pool.connection() as raw:
            conn = Connection(raw)
            conn.execute("BEGIN READ ONLY")
            try:
                return fn(conn)
            finally:
                conn.commit()

    def lost(self, exc: BaseException) -> bool:
        if isinstance(exc, psycopg.errors.PipelineAborted | psycopg.errors.TransactionRollback):
            return False  # the statements' own failure (or a serialization conflict), not the server's
        return isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout | CannotOpen)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _statements(script: str) -> list[str]:
    """The statements of a migration script (ours: no semicolon inside a literal)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return re.sub(r"password=\S+", "password=…", text[0]) if text else type(exc).__name__
