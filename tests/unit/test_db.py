"""Database: group commit, savepoint isolation, committed reads, close.

A Gate parks the writer thread inside a write, so the writes submitted meanwhile
queue up and leave together in the next batch. Which batch a write ran in is told
by an observer connection: every write of one batch sees the same number of
committed rows (its batch-mates' rows are not committed yet), writes of a later
batch see more.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path

import pytest

from backend.common import db as db_module
from backend.common.db import BatchLost, Database

WAIT_S = 2.0  # upper bound for a thread hand-over; never reached when the code works
SCHEMA = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);"


def open_db(path: Path) -> Database:
    """The one place that builds a Database for these tests."""
    return Database(path, [SCHEMA])


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "unit.sqlite"


@pytest.fixture
def db(db_path: Path):
    database = open_db(db_path)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def observer(db, db_path: Path):
    """A connection of its own: it sees only what is committed."""
    conn = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
    try:
        yield conn
    finally:
        conn.close()


def committed_keys(conn: sqlite3.Connection) -> set[int]:
    return {k for (k,) in conn.execute("SELECT k FROM t").fetchall()}


def insert_row(k: int):
    def fn(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (k, v) VALUES (?, 'x')", (k,))
        return k

    return fn


class Gate:
    """A write that holds the writer thread until opened."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, conn: sqlite3.Connection) -> str:
        self.entered.set()
        assert self.opened.wait(WAIT_S), "gate never opened"
        return "gate"

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, WAIT_S), "the writer never reached the gate"


class Inserts:
    """Writes that insert one row each and note how many rows were committed when they ran."""

    def __init__(self, observer: sqlite3.Connection) -> None:
        self.observer = observer
        self.seen: dict[int, int] = {}

    def __call__(self, k: int, fail: BaseException | None = None):
        def fn(conn: sqlite3.Connection) -> int:
            self.seen[k] = len(committed_keys(self.observer))
            conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (k, f"v{k}"))
            if fail is not None:
                raise fail
            return k * 10

        return fn


async def hold_writer(db: Database) -> tuple[Gate, asyncio.Task]:
    gate = Gate()
    task = asyncio.ensure_future(db.write(gate))
    await gate.wait_entered()
    return gate, task


async def enqueue(db: Database, fns) -> list[asyncio.Task]:
    tasks = [asyncio.ensure_future(db.write(fn)) for fn in fns]
    await asyncio.sleep(0)  # each task runs up to its put on the queue
    return tasks


# ---------------------------------------------------------------- group commit --


async def test_writes_queued_during_a_batch_leave_together_and_each_gets_its_own_result(db, observer):
    gate, first = await hold_writer(db)
    inserts = Inserts(observer)
    tasks = await enqueue(db, [inserts(k) for k in range(50)])
    gate.opened.set()
    assert await first == "gate"
    assert await asyncio.gather(*tasks) == [k * 10 for k in range(50)]
    assert set(inserts.seen.values()) == {0}  # one batch: none saw another's row committed
    assert committed_keys(observer) == set(range(50))


async def test_a_batch_holds_at_most_max_batch_writes(db, observer, monkeypatch):
    monkeypatch.setattr(db_module, "MAX_BATCH", 4)
    gate, first = await hold_writer(db)
    inserts = Inserts(observer)
    tasks = await enqueue(db, [inserts(k) for k in range(10)])
    gate.opened.set()
    await first
    assert await asyncio.gather(*tasks) == [k * 10 for k in range(10)]
    # FIFO batches of 4, 4 and 2: the rows committed before each batch ran
    assert [inserts.seen[k] for k in range(10)] == [0] * 4 + [4] * 4 + [8] * 2


async def test_no_caller_is_answered_before_its_batch_commits(db, observer):
    gate, first = await hold_writer(db)
    inserts = Inserts(observer)
    late = Gate()
    a, b, c = await enqueue(db, [inserts(1), inserts(2), late])
    gate.opened.set()
    await late.wait_entered()  # a and b ran in this batch, which cannot commit before c returns
    assert await first == "gate"
    for _ in range(5):
        await asyncio.sleep(0)
    assert not a.done() and not b.done()
    assert committed_keys(observer) == set()
    late.opened.set()
    assert await a == 10
    assert committed_keys(observer) == {1, 2}  # answered means committed
    assert await b == 20 and await c == "gate"


async def test_many_concurrent_writes_each_get_their_own_result(db, observer):
    inserts = Inserts(observer)
    results = await asyncio.gather(*(db.write(inserts(k)) for k in range(600)))
    assert results == [k * 10 for k in range(600)]
    assert committed_keys(observer) == set(range(600))


async def test_writes_from_two_event_loops_share_a_batch_and_each_is_answered_on_its_own_loop(db, observer):
    gate, first = await hold_writer(db)
    inserts = Inserts(observer)
    queued = threading.Event()
    other: dict[str, object] = {}

    async def other_loop() -> None:
        task = asyncio.ensure_future(db.write(inserts(2)))
        await asyncio.sleep(0)
        queued.set()
        other["result"] = await task
        other["loop"] = asyncio.get_running_loop()

    thread = threading.Thread(target=lambda: asyncio.run(other_loop()))
    thread.start()
    try:
        (mine,) = await enqueue(db, [inserts(1)])
        assert await asyncio.to_thread(queued.wait, WAIT_S)
        gate.opened.set()
        await first
        assert await mine == 10
    finally:
        await asyncio.to_thread(thread.join, WAIT_S)
    assert other["result"] == 20 and other["loop"] is not asyncio.get_running_loop()
    assert inserts.seen == {1: 0, 2: 0}  # same batch


async def test_a_full_queue_makes_writers_wait_instead_of_dropping_writes(db_path, monkeypatch):
    monkeypatch.setattr(db_module, "MAX_PENDING", 2)
    database = open_db(db_path)
    try:
        gate, first = await hold_writer(database)
        tasks = await enqueue(database, [insert_row(k) for k in range(10)])
        gate.opened.set()
        await first
        assert await asyncio.gather(*tasks) == list(range(10))
        assert await database.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 10
    finally:
        database.close()


# ---------------------------------------------------------- savepoint isolation --


@pytest.mark.parametrize("how", ["python exception", "constraint violation"])
async def test_a_failing_write_is_rolled_back_alone_and_only_its_caller_gets_the_error(db, observer, how):
    gate, first = await hold_writer(db)
    inserts = Inserts(observer)
    boom = ValueError("refused")
    failing = inserts(2, fail=boom) if how == "python exception" else inserts(1)  # k=1 again: primary key clash
    a, b, c = await enqueue(db, [inserts(1), failing, inserts(3)])
    gate.opened.set()
    await first
    assert await a == 10
    if how == "python exception":
        with pytest.raises(ValueError) as raised:
            await b
        assert raised.value is boom
    else:
        with pytest.raises(sqlite3.IntegrityError):
            await b
    assert await c == 30
    assert set(inserts.seen.values()) == {0}  # the three ran in one batch
    assert committed_keys(observer) == {1, 3}
    rows = dict(observer.execute("SELECT k, v FROM t").fetchall())
    assert rows == {1: "v1", 3: "v3"}


async def test_a_write_that_ruins_the_transaction_fails_its_whole_batch_and_the_next_batch_works(db, observer):
    gate, first = await hold_writer(db)
    inserts = Inserts(observer)

    def ruin(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")  # the batch's earlier writes are gone with it

    a, b, c = await enqueue(db, [inserts(1), ruin, inserts(3)])
    gate.opened.set()
    await first
    for task in (a, b, c):
        with pytest.raises(BatchLost):
            await task  # nobody is told "done" for a write that is not on disk
    assert committed_keys(observer) == set()
    assert await db.write(inserts(4)) == 40
    assert committed_keys(observer) == {4}


# ------------------------------------------------------------------------ reads --


async def test_reads_see_only_committed_data(db, observer):
    count = lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]  # noqa: E731
    gate = Gate()

    def insert_then_wait(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t VALUES (1, 'x')")
        return gate(conn)

    pending = asyncio.ensure_future(db.write(insert_then_wait))
    await gate.wait_entered()
    assert await db.read(count) == 0
    gate.opened.set()
    await pending
    assert await db.read(count) == 1


async def test_a_failing_read_raises_and_leaves_the_reader_usable(db):
    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("SELECT nope FROM t")

    with pytest.raises(sqlite3.OperationalError):
        await db.read(bad)
    await db.write(lambda c: c.execute("INSERT INTO t VALUES (7, 'x')"))
    assert await db.read(lambda c: c.execute("SELECT v FROM t WHERE k = 7").fetchone()[0]) == "x"


# ------------------------------------------------------------------------ close --


async def test_close_answers_the_writes_already_queued_and_they_are_on_disk(db_path):
    database = open_db(db_path)
    gate, first = await hold_writer(database)
    tasks = await enqueue(database, [insert_row(k) for k in range(5)])
    closing = asyncio.ensure_future(asyncio.to_thread(database.close))
    await asyncio.sleep(0.002)  # let close begin while the writes wait; passes either way
    gate.opened.set()
    await closing
    assert await first == "gate"
    assert await asyncio.gather(*tasks) == list(range(5))
    fresh = sqlite3.connect(str(db_path))
    try:
        assert fresh.execute("SELECT count(*) FROM t").fetchone()[0] == 5
    finally:
        fresh.close()


async def test_close_from_the_event_loop_still_answers_pending_writes(db_path):
    database = open_db(db_path)
    tasks = await enqueue(database, [insert_row(k) for k in range(20)])
    database.close()  # blocks the loop until the writer drained the queue
    assert await asyncio.gather(*tasks) == list(range(20))


async def test_write_after_close_raises_and_writes_nothing(db_path):
    database = open_db(db_path)
    await database.write(lambda c: c.execute("INSERT INTO t VALUES (1, 'x')"))
    database.close()
    database.close()  # a second close is harmless
    ran = []
    with pytest.raises(RuntimeError, match="closed"):
        await database.write(lambda c: ran.append(c))
    assert ran == []
    fresh = sqlite3.connect(str(db_path))
    try:
        assert fresh.execute("SELECT k FROM t").fetchall() == [(1,)]
    finally:
        fresh.close()


async def test_database_reopens_with_what_was_committed(db_path):
    database = open_db(db_path)
    await database.write(lambda c: c.execute("INSERT INTO t VALUES (1, 'kept')"))
    database.close()
    again = open_db(db_path)
    try:
        assert await again.read(lambda c: c.execute("SELECT v FROM t").fetchall()[0][0]) == "kept"
    finally:
        again.close()


async def test_a_caller_whose_event_loop_closed_does_not_kill_the_writer(tmp_path):
    """Answers go to each caller's own loop; one that has closed meanwhile must not stop
    the writer thread (every later write would hang)."""
    db = Database(tmp_path / "unit.sqlite", ["CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY);"])
    try:
        entered, opened = threading.Event(), threading.Event()

        def gate(conn):
            entered.set()
            assert opened.wait(2)

        first = asyncio.ensure_future(db.write(gate))
        assert await asyncio.to_thread(entered.wait, 2)

        async def short_lived() -> None:  # queues a write, stops waiting, and its loop closes
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(db.write(lambda c: c.execute("INSERT INTO t VALUES (1)")), 0.001)

        await asyncio.to_thread(asyncio.run, short_lived())
        opened.set()
        await first
        count = await asyncio.wait_for(db.write(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]), 1)
        assert count == 1
    finally:
        db.close()
