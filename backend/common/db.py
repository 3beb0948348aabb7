"""SQLite with group commit: many writes, one fsync.

Every write is a function of a connection. A single writer thread takes the
writes that are waiting (up to MAX_BATCH), runs each inside its own SAVEPOINT of
one `BEGIN IMMEDIATE` transaction, commits once (WAL, synchronous=FULL, so the
commit is on disk), and only then answers each caller. A write that raises is
rolled back alone and its caller gets the exception; the rest of the batch
commits. Reads run on a second connection and see only committed data.

The schema is versioned (PRAGMA user_version): a store lists its migrations in
order, and opening a database runs the ones it lacks, in one transaction.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from backend.common.limits import MAX_BATCH

T = TypeVar("T")
MAX_PENDING = 10_000


class SchemaTooNew(RuntimeError):
    """The database was written by a newer Strife than this one."""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    return conn


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


class Database:
    def __init__(self, path: Path, migrations: Sequence[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = connect(self.path)
        try:
            migrate(self._writer, migrations)
        except SchemaTooNew as exc:
            self._writer.close()
            raise SchemaTooNew(f"{self.path}: {exc}") from None
        self._reader = connect(self.path)
        self._reader_lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(MAX_PENDING)
        self._thread = threading.Thread(target=self._run, name=f"db-{self.path.name}", daemon=True)
        self._closed = False
        self._thread.start()

    # -- writes ---------------------------------------------------------
    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn in the next batch; return its result once the batch is on disk."""
        if self._closed:
            raise RuntimeError("database is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        await asyncio.to_thread(self._queue.put, (fn, loop, future)) if self._queue.full() else self._queue.put_nowait(
            (fn, loop, future)
        )
        return await future

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
            self._commit(batch)

    def _commit(self, batch: list) -> None:
        conn = self._writer
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, _, _ in batch:
                conn.execute("SAVEPOINT op")
                try:
                    result = fn(conn)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((False, exc))
                else:
                    conn.execute("RELEASE op")
                    outcomes.append((True, result))
            conn.commit()
        except BaseException as exc:  # noqa: BLE001 - the whole batch failed
            try:
                conn.rollback()
            except sqlite3.Error:
                pass
            outcomes = [(False, exc)] * len(batch)
        # One wake-up per event loop for the whole batch, not one per write: each
        # call_soon_threadsafe is a write to the loop's self-pipe and a loop wake-up.
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for (_, loop, future), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # that loop is closed: nobody waits there; the writer must live on
                pass

    # -- reads ----------------------------------------------------------
    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._read, fn)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._reader_lock:
            self._reader.execute("BEGIN")
            try:
                return fn(self._reader)
            finally:
                self._reader.commit()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._writer.close()
        self._reader.close()


def _settle_all(settled: list[tuple[asyncio.Future, bool, Any]]) -> None:
    for future, ok, value in settled:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
