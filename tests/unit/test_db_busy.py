"""A SQLite write that cannot get the file's write lock (another process holds it: a frozen
replica of the tier) fails UNAVAILABLE after the busy timeout, not INTERNAL, and the
database works again once the lock is released."""

from __future__ import annotations

import sqlite3

import grpc
import pytest

from backend.common import db as db_module
from backend.common.db import Database
from backend.common.errors import Unavailable
from backend.gateway import store


async def test_a_write_behind_another_process_lock_is_unavailable_then_works(tmp_path, monkeypatch):
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "gateway.sqlite"
    db = Database(path, store.MIGRATIONS)
    holder = sqlite3.connect(path, isolation_level=None, timeout=0.2)
    try:
        holder.execute("BEGIN IMMEDIATE")  # as a replica frozen inside a write would
        with pytest.raises(Unavailable, match="busy") as err:
            await db.write(lambda c: store.add_user(c, "alice", "hash", []))
        assert err.value.code is grpc.StatusCode.UNAVAILABLE
        holder.rollback()
        await db.write(lambda c: store.add_user(c, "alice", "hash", []))
        assert await db.read(lambda c: store.password_hash(c, "alice")) == "hash"
    finally:
        holder.close()
        db.close()


class _Opening:
    """A connection to a file another process is setting up: its first answers to the WAL
    switch are `errors` (SQLite says "database is locked" at once there, without waiting
    out the busy timeout; the race itself is too rare to stage here)."""

    def __init__(self, *errors: sqlite3.DatabaseError) -> None:
        self.errors = list(errors)
        self.tries = 0

    def execute(self, sql: str) -> None:
        self.tries += 1
        if self.errors:
            raise self.errors.pop(0)


def test_a_new_file_locked_while_another_process_sets_it_up_is_tried_again(tmp_path):
    locked = sqlite3.OperationalError("database is locked")
    conn = _Opening(locked, locked)
    db_module._wal(conn, tmp_path / "gateway.sqlite")  # no CannotOpen
    assert conn.tries == 3


def test_a_file_that_stays_locked_or_is_no_database_says_which(tmp_path, monkeypatch):
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_S", 0.05)
    with pytest.raises(db_module.CannotOpen, match="stayed locked by another process"):
        db_module._wal(_Opening(*[sqlite3.OperationalError("database is locked")] * 1000), tmp_path / "g.sqlite")
    with pytest.raises(db_module.CannotOpen, match="is not a SQLite database"):
        db_module._wal(_Opening(sqlite3.DatabaseError("file is not a database")), tmp_path / "g.sqlite")
