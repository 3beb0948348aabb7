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
