"""A database with group commit: many writes, one fsync; SQLite or PostgreSQL.

Every write is a function of a connection. A single writer thread takes the
writes that are waiting (up to MAX_BATCH), runs them in one transaction
(`BEGIN IMMEDIATE` on SQLite; each in a SAVEPOINT of its own once one of them
raised: see _attempt), commits once (SQLite: WAL,
synchronous=FULL; PostgreSQL: synchronous_commit=on; so the commit is on disk),
and only then answers each caller. A write that raises is rolled back alone and
its caller gets the exception; the rest of the batch commits. Reads run on other
connections and see only committed data.

The two engines run the same statements (`?` placeholders; backend/common/postgres.py
turns them into psycopg's); what differs is in an Engine: how to connect, begin a
write, run a read, and version the schema (SQLite: PRAGMA user_version; PostgreSQL:
a schema_version table). A store lists its migrations per engine, in order, and
opening a database runs the ones it lacks, in one transaction.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from backend.api import strife_pb2 as pb
from backend.common import metrics
from backend.common.errors import Unavailable
from backend.common.limits import MAX_BATCH

T = TypeVar("T")
# How long a SQLite write waits for the file's write lock (other processes on the file: the
# replicas of a tier); then it fails UNAVAILABLE. A write holds the lock for milliseconds, but
# a process frozen inside one holds it until it is thawed.
BUSY_TIMEOUT_S = 5.0
MAX_PENDING = 10_000
WAL_RETRY_S = 0.01


class SchemaTooNew(RuntimeError):
    """The database was written by a newer Strife than this one."""


class BatchLost(RuntimeError):
    """A write ended its batch's transaction itself (a ROLLBACK): none of the batch was committed."""


class CannotOpen(RuntimeError):
    """The database cannot be opened: a bad URI, a server that is down, a wrong password."""


# What a store function gets: a sqlite3.Connection or backend.common.postgres's
# connection, both with execute(sql, params) -> cursor (fetchone, fetchall, rowcount)
# and executemany. A row is indexable by position and by column name on both.
Conn = Any
Row = Any


class Engine(Protocol):
    """One storage engine behind Database (see the module docstring)."""

    name: str  # "sqlite" | "postgres"
    where: str  # a path, or a URI without its password: for messages

    def connect(self) -> Conn: ...

    def begin(self, conn: Conn, pipelined: bool = False) -> None:
        """Begin a write transaction; `pipelined`: statements may be sent without waiting
        for their results (an engine that has no such mode ignores it)."""
        ...

    def migrate(self, conn: Conn, migrations: Sequence[str]) -> int: ...

    def read(self, fn: Callable[[Conn], T]) -> T: ...

    def lost(self, exc: BaseException) -> bool:
        """Is `exc` a lost connection (the server went away), not the write's own fault?"""
        ...

    def close(self) -> None: ...


def connect(path: Path, key: bytes | None = None) -> sqlite3.Connection:
    """A connection to the SQLite file `path`, encrypted with SQLCipher under `key` if given
    (backend/common/encryption.py); CannotOpen if the file is not a database we can read."""
    if key is not None:
        from backend.common import encryption  # imports this module

        conn = encryption.connect(path, key)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        conn.row_factory = sqlite3.Row
    try:
        _wal(conn, path)
    except CannotOpen:
        conn.close()
        raise
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _wal(conn: sqlite3.Connection, path: Path) -> None:
    """Put the file in WAL mode (it stays so). Processes that open a new file at once (a tier's
    replicas starting together) can find it locked while another sets it up, and SQLite then
    answers "database is locked" at once, without waiting out the busy timeout: try again
    until BUSY_TIMEOUT_S has passed."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.DatabaseError as exc:
            if not _busy(exc):
                raise CannotOpen(
                    f"{path} is not a SQLite database, or it is encrypted: give its --encryption-key-file"
                ) from None
            if time.monotonic() >= deadline:
                raise CannotOpen(
                    f"{path} stayed locked by another process for {BUSY_TIMEOUT_S:g} s: is one frozen?"
                ) from None
            time.sleep(WAL_RETRY_S)


def _busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def migrate(conn: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Bring the schema to version len(migrations): run, in order and in one
    transaction, the migrations after the database's PRAGMA user_version.
    Returns the version the database had. Safe when several processes open one
    database at once: the version is read again under the write lock."""
    assert not isinstance(migrations, str), "a list of migration scripts, not one script"
    if _version(conn, len(migrations)) == len(migrations):
        return len(migrations)
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _version(conn, len(migrations))
        for script in migrations[found:]:
            for statement in _statements(script):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(migrations):d}")
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return found


def _version(conn: sqlite3.Connection, known: int) -> int:
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found > known:
        raise SchemaTooNew(f"schema version {found} is newer than this Strife knows ({known}): run a newer Strife")
    return found


def _statements(script: str) -> list[str]:
    """The SQL statements of a script (executescript would commit on its own)."""
    out, pending = [], ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    assert not pending.strip(" \n;"), f"incomplete SQL statement: {pending[:80]!r}"
    return out


class SqliteEngine:
    """SQLite in WAL mode: a writer connection, and one reader connection behind a lock."""

    name = "sqlite"

    def __init__(self, path: Path, key: bytes | None = None) -> None:
        self.path = Path(path)
        self.key = key  # SQLCipher's, if the file is encrypted
        self.where = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()

    def connect(self) -> sqlite3.Connection:
        return connect(self.path, self.key)

    def begin(self, conn: sqlite3.Connection, pipelined: bool = False) -> None:
        conn.execute("BEGIN IMMEDIATE")  # in-process: nothing to pipeline

    def migrate(self, conn: sqlite3.Connection, migrations: Sequence[str]) -> int:
        return migrate(conn, migrations)

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._reader_lock:
            if self._reader is None:
                self._reader = connect(self.path, self.key)
            self._reader.execute("BEGIN")
            try:
                return fn(self._reader)
            finally:
                self._reader.commit()

    def lost(self, exc: BaseException) -> bool:
        return False  # a file does not go away like a server

    def close(self) -> None:
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None


class Database:
    """`target`: a SQLite file's path, or an Engine (backend.common.postgres.PostgresEngine);
    `migrations`: that engine's, in order."""

    def __init__(self, target: Path | Engine, migrations: Sequence[str]) -> None:
        self.engine: Engine = SqliteEngine(target) if isinstance(target, str | Path) else target
        self.path = Path(self.engine.where) if self.engine.name == "sqlite" else None
        try:
            self._writer: Conn | None = self.engine.connect()
        except CannotOpen:
            self.engine.close()
            raise
        try:
            self.engine.migrate(self._writer, migrations)
        except SchemaTooNew as exc:
            self._writer.close()
            self.engine.close()
            raise SchemaTooNew(f"{self.engine.where}: {exc}") from None
        self._queue: queue.Queue = queue.Queue(MAX_PENDING)
        label = self.path.name if self.path is not None else self.engine.name
        self._thread = threading.Thread(target=self._run, name=f"db-{label}", daemon=True)
        self._closed = False
        self._thread.start()

    # -- writes ---------------------------------------------------------
    async def write(self, fn: Callable[[Conn], T]) -> T:
        """Run fn in the next batch; return its result once the batch is on disk."""
        _, durable = await self.write_early(fn, early=False)
        return await durable

    async def write_early(self, fn: Callable[[Conn], T], early: bool = True) -> tuple[asyncio.Future, asyncio.Future]:
        """Queue fn for the next batch; two futures of its result. `executed` is set as soon as
        the batch's writes ran, before its commit: NOT durable (the commit may still fail, and
        a batch run again after another write raised may give another result), so act on it
        only where losing it is safe. `durable` is set once the batch is on disk: the truth.
        (early=False: `executed` is `durable`.)"""
        if self._closed:
            raise RuntimeError("database is closed")
        loop = asyncio.get_running_loop()
        durable: asyncio.Future = loop.create_future()
        executed: asyncio.Future | None = loop.create_future() if early else None
        item = (fn, loop, durable, time.perf_counter(), executed)
        await asyncio.to_thread(self._queue.put, item) if self._queue.full() else self._queue.put_nowait(item)
        return (executed if executed is not None else durable), durable

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            metrics.DB_BATCH_WRITES.observe(len(batch))
            started = time.perf_counter()
            for _, _, _, queued_at, _ in batch:
                _DB_QUEUE.observe(started - queued_at)
            self._commit(batch)

    def _connected(self) -> Conn:
        """The writer connection; a new one after the server went away (and came back)."""
        if self._writer is None:
            try:
                self._writer = self.engine.connect()
            except CannotOpen as exc:
                raise Unavailable(f"the database is unreachable: {exc}", reason=pb.Errors.STORE_UNAVAILABLE) from None
        return self._writer

    def _commit(self, batch: list) -> None:
        outcomes: list[tuple[bool, Any]]
        started = time.perf_counter()
        try:
            conn = self._connected()
            failed = self._attempt(conn, batch, isolated=False)
            if isinstance(failed, list):
                outcomes = failed
            elif len(batch) == 1:
                outcomes = [(False, failed)]
            else:  # one write raised: again, each write in a savepoint of its own
                attempt = self._attempt(conn, batch, isolated=True)
                assert isinstance(attempt, list)
                outcomes = attempt
        except BaseException as exc:  # noqa: BLE001 - the whole batch failed
            if self.engine.lost(exc):
                self._drop_writer()
                exc = Unavailable("the database is unreachable (the writes may not have been made): retry")
            elif _busy(exc):  # SQLite: another process held the file's write lock past the busy timeout
                exc = Unavailable(
                    "the database is busy: another process holds its write lock; retry",
                    reason=pb.Errors.STORE_UNAVAILABLE,
                )
            elif self._writer is not None:
                try:
                    self._writer.rollback()
                except Exception:  # noqa: BLE001 - a broken connection: start afresh next time
                    self._drop_writer()
            outcomes = [(False, exc)] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for (_, loop, future, _, executed), (ok, value) in zip(batch, outcomes, strict=True):
            if executed is not None:  # not told early (the batch failed first): told now, the same
                by_loop.setdefault(loop, []).append((executed, ok, value))
            by_loop.setdefault(loop, []).append((future, ok, value))
        done = time.perf_counter()
        for _ in batch:
            _DB_BATCH.observe(done - started)
        _settle_soon(by_loop, done)

    def _attempt(self, conn: Conn, batch: list, isolated: bool) -> list[tuple[bool, Any]] | BaseException:
        """Run the batch's writes in one transaction and commit it; their outcomes.

        Not isolated (the first try): no savepoints, which on PostgreSQL are two more round
        trips per write, and statements pipelined where the engine can. If a write raises (or
        the commit does: a pipelined error surfaces late), the transaction is rolled back and
        the exception returned: the caller runs the batch again isolated, each write in a SAVEPOINT, so
        the one that raised is rolled back alone (writes are functions of the connection
        only: running one again after a rollback is the same as running it once)."""
        self.engine.begin(conn, pipelined=not isolated)
        outcomes: list[tuple[bool, Any]] = []
        for fn, *_ in batch:
            if isolated:
                conn.execute("SAVEPOINT op")
            try:
                result = fn(conn)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                if self.engine.lost(exc):
                    raise
                if not isolated:
                    conn.rollback()
                    return exc
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                outcomes.append((False, exc))
            else:
                if isolated:
                    conn.execute("RELEASE op")
                outcomes.append((True, result))
            if not conn.in_transaction:  # a write ended the transaction (ROLLBACK): the batch is lost
                raise BatchLost("a write ended the batch's transaction: nothing of the batch was committed")
        _announce(batch, outcomes)
        started = time.perf_counter()
        try:
            conn.commit()
            metrics.DB_COMMIT_SECONDS.observe(time.perf_counter() - started)
        except BaseException as exc:  # noqa: BLE001 - pipelined: a write's error may surface only here
            if isolated or self.engine.lost(exc):
                raise
            conn.rollback()
            return exc
        return outcomes

    def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - it is broken already
                pass

    # -- reads ----------------------------------------------------------
    async def read(self, fn: Callable[[Conn], T]) -> T:
        return await asyncio.to_thread(self._read, fn)

    def _read(self, fn: Callable[[Conn], T]) -> T:
        try:
            return self.engine.read(fn)
        except Exception as exc:
            if self.engine.lost(exc):
                raise Unavailable(
                    "the database is unreachable: nothing was read; retry", reason=pb.Errors.STORE_UNAVAILABLE
                ) from None
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._drop_writer()
        self.engine.close()


def _announce(batch: list, outcomes: list[tuple[bool, Any]]) -> None:
    """Tell the writes that asked (write_early) their results before the commit. Only results:
    a write that raised is told with the batch's outcome."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for (_, loop, _, _, executed), (ok, value) in zip(batch, outcomes, strict=True):
        if executed is not None and ok:
            by_loop.setdefault(loop, []).append((executed, ok, value))
    _settle_soon(by_loop, None)


def _settle_soon(by_loop: dict[asyncio.AbstractEventLoop, list], done: float | None) -> None:
    """Settle futures from the writer thread: one wake-up per event loop, not one per write
    (each call_soon_threadsafe is a write to the loop's self-pipe and a loop wake-up). `done`:
    when the batch finished, to measure the loop's delay (None: not measured)."""
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_all, settled, done)
        except RuntimeError:  # that loop is closed: nobody waits there; the writer must live on
            pass


def _settle_all(settled: list[tuple[asyncio.Future, bool, Any]], done: float | None) -> None:
    if done is not None:
        _LOOP_WAKE.observe(time.perf_counter() - done)
    for future, ok, value in settled:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


# The stages a write spends its time in (backend/common/metrics.STAGE_SECONDS), looked up once.
_DB_QUEUE = metrics.STAGE_SECONDS.labels("db_queue")
_DB_BATCH = metrics.STAGE_SECONDS.labels("db_batch")
_LOOP_WAKE = metrics.STAGE_SECONDS.labels("loop_wake")
