"""The outbox: every payment is written here, with its idempotency key, before
it is sent, and leaves only with a final answer, which moves to `sent`.

SQLite in WAL mode with synchronous=FULL: a payment the client accepted survives
a power loss. Synchronous API (each call is one short transaction); async code
calls it through asyncio.to_thread. Several processes may share one outbox.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from backend.client.errors import ClientError
from backend.common.db import migrate
from backend.common.states import PaymentStatus

MAX_QUEUED = 1000  # queued entries over all users; more is refused
MAX_FINISHED = 1000  # final answers kept in `sent` (oldest dropped)
BUSY_TIMEOUT_S = 10.0

FINAL_STATUSES = tuple(s for s in PaymentStatus if s.final)

# Version 1 is the schema from before versioning (IF NOT EXISTS adopts such a file).
# A migration is history: its text never changes, so it names values, not enums.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idem_key TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL,
    from_bank TEXT NOT NULL,
    from_account TEXT NOT NULL,
    to_bank TEXT NOT NULL,
    to_account TEXT NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_retry_at REAL NOT NULL,
    last_code TEXT NOT NULL DEFAULT '',
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_user_due ON outbox (username, next_retry_at);
CREATE TABLE IF NOT EXISTS sent (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idem_key TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL,
    from_bank TEXT NOT NULL,
    from_account TEXT NOT NULL,
    to_bank TEXT NOT NULL,
    to_account TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('SUCCEEDED', 'DECLINED', 'REJECTED', 'EXPIRED')),
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    payment_id TEXT NOT NULL
);
"""
MIGRATIONS = (SCHEMA_V1,)

_ENTRY_COLUMNS = (
    "idem_key, username, from_bank, from_account, to_bank, to_account, amount_cents, "
    "attempts, next_retry_at, last_code, last_error, created_at"
)
_SENT_COLUMNS = (
    "idem_key, username, from_bank, from_account, to_bank, to_account, amount_cents, "
    "attempts, created_at, finished_at, status, code, reason, payment_id"
)


@dataclass(frozen=True)
class OutboxEntry:
    """A payment waiting for its final answer."""

    idempotency_key: str
    username: str
    from_bank: str  # "" when the gateway picks the user's only account
    from_account: str
    to_bank: str
    to_account: str
    amount_cents: int
    attempts: int  # sends tried so far
    next_retry_at: float
    last_code: str  # status code name of the last failed send, "" before the first
    last_error: str
    created_at: float

    @property
    def payee(self) -> str:
        return f"{self.to_bank}/{self.to_account}"

    @property
    def payer(self) -> str:
        return f"{self.from_bank}/{self.from_account}" if self.from_bank else ""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SentEntry:
    """A payment that left the outbox, with its final answer."""

    idempotency_key: str
    username: str
    from_bank: str
    from_account: str
    to_bank: str
    to_account: str
    amount_cents: int
    attempts: int
    created_at: float
    finished_at: float
    status: PaymentStatus  # SUCCEEDED | DECLINED | REJECTED (a final error) | EXPIRED (too old to resend)
    code: str  # "OK" or the status code name of the final error
    reason: str  # why declined, or the error message
    payment_id: str

    @property
    def payee(self) -> str:
        return f"{self.to_bank}/{self.to_account}"

    def to_json(self) -> dict:
        return asdict(self)


def _entry(row) -> OutboxEntry:
    return OutboxEntry(*row)


def _sent(row) -> SentEntry:
    entry = SentEntry(*row)
    return replace(entry, status=PaymentStatus(entry.status))


class Outbox:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)  # SQLite gives its -wal and -shm files the same mode
        with self._connect() as conn:
            migrate(conn, MIGRATIONS)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    # ------------------------------------------------------------ writes --
    def add(
        self,
        username: str,
        to_bank: str,
        to_account: str,
        amount_cents: int,
        from_bank: str = "",
        from_account: str = "",
        now: float | None = None,
    ) -> OutboxEntry:
        """Queue a new payment under a fresh idempotency key; durable when this returns.
        Raises ClientError(RESOURCE_EXHAUSTED) when MAX_QUEUED entries are waiting."""
        assert amount_cents > 0, amount_cents
        now = time.time() if now is None else now
        key = str(uuid.uuid4())
        with self._write() as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
            if count >= MAX_QUEUED:
                raise ClientError(
                    "RESOURCE_EXHAUSTED",
                    f"the outbox is full ({count} payments waiting): run `strife client sync` when the gateway is back",
                )
            conn.execute(
                "INSERT INTO outbox (idem_key, username, from_bank, from_account, to_bank, to_account, "
                "amount_cents, next_retry_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, username, from_bank, from_account, to_bank, to_account, amount_cents, now, now),
            )
            return _entry(conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM outbox WHERE idem_key = ?", (key,)).fetchone())

    def claim(
        self,
        username: str,
        now: float,
        lease_s: float,
        due_only: bool = True,
        keys: list[str] | None = None,
        limit: int = MAX_QUEUED,
    ) -> list[OutboxEntry]:
        """Take entries of `username` for sending: each gets attempts + 1 and is not due
        again for `lease_s` (so another sender skips it while this one waits for an answer).
        Oldest first; `keys` restricts to those entries."""
        where = "username = ?"
        args: list[object] = [username]
        if due_only:
            where += " AND next_retry_at <= ?"
            args.append(now)
        if keys is not None:
            if not keys:
                return []
            where += f" AND idem_key IN ({', '.join('?' * len(keys))})"
            args += keys
        with self._write() as conn:
            picked = [
                r[0]
                for r in conn.execute(f"SELECT idem_key FROM outbox WHERE {where} ORDER BY seq LIMIT ?", (*args, limit))
            ]
            conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_retry_at = ? WHERE idem_key = ?",
                [(now + lease_s, k) for k in picked],
            )
            rows = {
                r[0]: _entry(r)
                for r in conn.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM outbox WHERE idem_key IN ({', '.join('?' * len(picked))})", picked
                )
            }
        return [rows[k] for k in picked]

    def retry_later(self, key: str, code: str, message: str, next_retry_at: float) -> None:
        """Record a retryable failure; no-op when the entry already has its final answer."""
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET last_code = ?, last_error = ?, next_retry_at = ? WHERE idem_key = ?",
                (code, message[:500], next_retry_at, key),
            )

    def defer(self, username: str, until: float) -> None:
        """Push every due entry of `username` to `until` (the gateway is down: do not spin)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET next_retry_at = ? WHERE username = ? AND next_retry_at < ?",
                (until, username, until),
            )

    def make_due(self, username: str, now: float) -> None:
        """Every entry of `username` is due now (the user just logged in again)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET next_retry_at = ? WHERE username = ? AND next_retry_at > ?", (now, username, now)
            )

    def finish(
        self,
        key: str,
        status: PaymentStatus,
        code: str = "OK",
        reason: str = "",
        payment_id: str = "",
        now: float | None = None,
    ) -> SentEntry | None:
        """Move the entry to `sent` with its final answer, in one transaction. If another
        sender finished it first, return that answer; None if the key was never queued."""
        assert status in FINAL_STATUSES, status
        now = time.time() if now is None else now
        with self._write() as conn:
            row = conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM outbox WHERE idem_key = ?", (key,)).fetchone()
            if row is not None:
                e = _entry(row)
                conn.execute(
                    f"INSERT OR IGNORE INTO sent ({_SENT_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                    (
                        e.idempotency_key,
                        e.username,
                        e.from_bank,
                        e.from_account,
                        e.to_bank,
                        e.to_account,
                        e.amount_cents,
                        e.attempts,
                        e.created_at,
                        now,
                        status,
                        code,
                        reason[:500],
                        payment_id,
                    ),
                )
                conn.execute("DELETE FROM outbox WHERE idem_key = ?", (key,))
                conn.execute("DELETE FROM sent WHERE seq <= (SELECT MAX(seq) FROM sent) - ?", (MAX_FINISHED,))
            found = conn.execute(f"SELECT {_SENT_COLUMNS} FROM sent WHERE idem_key = ?", (key,)).fetchone()
        return _sent(found) if found else None

    # ------------------------------------------------------------- reads --
    def entries(self, username: str | None = None) -> list[OutboxEntry]:
        """Queued payments, oldest first (all users when `username` is None)."""
        with self._connect() as conn:
            if username is None:
                rows = conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM outbox ORDER BY seq")
            else:
                rows = conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM outbox WHERE username = ? ORDER BY seq", (username,))
            return [_entry(r) for r in rows]

    def get(self, key: str) -> OutboxEntry | None:
        with self._connect() as conn:
            row = conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM outbox WHERE idem_key = ?", (key,)).fetchone()
        return _entry(row) if row else None

    def sent(self, username: str | None = None, limit: int = 50) -> list[SentEntry]:
        """Final answers, newest first."""
        limit = max(1, min(limit, MAX_FINISHED))
        with self._connect() as conn:
            if username is None:
                rows = conn.execute(f"SELECT {_SENT_COLUMNS} FROM sent ORDER BY seq DESC LIMIT ?", (limit,))
            else:
                rows = conn.execute(
                    f"SELECT {_SENT_COLUMNS} FROM sent WHERE username = ? ORDER BY seq DESC LIMIT ?", (username, limit)
                )
            return [_sent(r) for r in rows]

    def get_sent(self, key: str) -> SentEntry | None:
        with self._connect() as conn:
            row = conn.execute(f"SELECT {_SENT_COLUMNS} FROM sent WHERE idem_key = ?", (key,)).fetchone()
        return _sent(row) if row else None

    def count(self, username: str | None = None) -> int:
        with self._connect() as conn:
            if username is None:
                return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            return conn.execute("SELECT COUNT(*) FROM outbox WHERE username = ?", (username,)).fetchone()[0]
