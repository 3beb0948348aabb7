"""What the store and ledger unit tests share: a migrated database without fsync,
and one function run in its own transaction, as one write of a Database."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from backend.common.db import connect, migrate


def open_migrated(path: Path, migrations: Sequence[str]) -> sqlite3.Connection:
    conn = connect(path)
    migrate(conn, migrations)
    conn.execute("PRAGMA synchronous=OFF")  # what is tested here is the logic, not the fsync: milliseconds per test
    return conn


def tx(conn: sqlite3.Connection, fn, *args):
    """Run fn(conn, *args) in its own BEGIN IMMEDIATE transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return result
