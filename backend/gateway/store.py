"""The gateway's SQLite state: users, sessions, linked accounts, idempotency keys,
and the 2PC coordinator log (payments and their participants).

Functions taking a connection run inside one group-committed write (or a read)
of backend.common.db.Database.

Coordinator log invariants:
  a payment's state moves PREPARING -> COMMIT or PREPARING -> ABORT, once;
  a key (username, idempotency key) points at one payment; it is released only
  when that payment aborted before anything happened that the client must see.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from enum import StrEnum

from backend.api import strife_pb2 as pb
from backend.common.db import Conn, Row
from backend.common.errors import Aborted, AlreadyExists
from backend.common.states import Decision, Outcome

# Version 1 is the schema from before versioning (IF NOT EXISTS adopts such a
# database as it is); each later version changes what the one before made.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS links (
    bank TEXT NOT NULL,
    account_id TEXT NOT NULL,
    username TEXT NOT NULL REFERENCES users (username),
    PRIMARY KEY (bank, account_id)
);
CREATE INDEX IF NOT EXISTS links_user ON links (username);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users (username),
    expires_at REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (username, expires_at);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
CREATE TABLE IF NOT EXISTS payments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    txn_id TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    from_bank TEXT NOT NULL, from_account TEXT NOT NULL,
    to_bank TEXT NOT NULL, to_account TEXT NOT NULL,
    amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
    state TEXT NOT NULL CHECK (state IN ('PREPARING', 'COMMIT', 'ABORT')),
    outcome TEXT CHECK (outcome IN ('SUCCEEDED', 'DECLINED', 'RETRYABLE')),
    reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    decided_at REAL
);
CREATE INDEX IF NOT EXISTS payments_preparing ON payments (txn_id) WHERE state = 'PREPARING';
CREATE INDEX IF NOT EXISTS payments_user ON payments (username, seq);
CREATE INDEX IF NOT EXISTS payments_payee ON payments (to_bank, to_account, seq);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    username TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (username, idem_key)
);
CREATE TABLE IF NOT EXISTS participants (
    txn_id TEXT NOT NULL,
    bank TEXT NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (txn_id, bank)
);
CREATE INDEX IF NOT EXISTS participants_unacked ON participants (txn_id) WHERE acked = 0;
"""

# Version 2: the gateway tier. Each payment records the replica that runs it (owner;
# '' for payments from before replicas); replicas register and heartbeat in `gateways`;
# failed logins are counted per user for the whole tier in `login_failures`.
SCHEMA_V2 = """
ALTER TABLE payments ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX payments_owner_preparing ON payments (owner, created_at) WHERE state = 'PREPARING';
CREATE TABLE gateways (
    replica_id TEXT PRIMARY KEY,
    incarnation TEXT NOT NULL,
    address TEXT NOT NULL,
    region TEXT NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    in_flight INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE login_failures (
    username TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first_at REAL NOT NULL,
    locked_until REAL NOT NULL DEFAULT 0
);
"""

# Version 3: payment events, what WatchPayments streams. Their order is (xid, id): on
# SQLite xid is 0 and ids are given under the file's write lock, so in commit order; on
# PostgreSQL xid is the writing transaction's id and a reader takes only rows of finished
# transactions (events_after), so the order never changes under a reader's feet.
SCHEMA_V3 = """
CREATE TABLE payment_events (
    id INTEGER PRIMARY KEY,
    xid INTEGER NOT NULL DEFAULT 0,
    username TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('ACCEPTED', 'COMMITTED', 'DECLINED', 'ABORTED')),
    reason TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL
);
CREATE INDEX payment_events_user ON payment_events (username, xid, id);
"""

MIGRATIONS = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3)

# PostgreSQL starts at today's shape; a later change is a new script on both lists.
PG_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE links (
    bank TEXT NOT NULL,
    account_id TEXT NOT NULL,
    username TEXT NOT NULL REFERENCES users (username),
    PRIMARY KEY (bank, account_id)
);
CREATE INDEX links_user ON links (username);
CREATE TABLE sessions (
    token_sha256 TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users (username),
    expires_at DOUBLE PRECISION NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_user ON sessions (username, expires_at);
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE TABLE payments (
    seq BIGSERIAL PRIMARY KEY,
    txn_id TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    from_bank TEXT NOT NULL, from_account TEXT NOT NULL,
    to_bank TEXT NOT NULL, to_account TEXT NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    state TEXT NOT NULL CHECK (state IN ('PREPARING', 'COMMIT', 'ABORT')),
    outcome TEXT CHECK (outcome IN ('SUCCEEDED', 'DECLINED', 'RETRYABLE')),
    reason TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    decided_at DOUBLE PRECISION
);
CREATE INDEX payments_preparing ON payments (txn_id) WHERE state = 'PREPARING';
CREATE INDEX payments_user ON payments (username, seq);
CREATE INDEX payments_payee ON payments (to_bank, to_account, seq);
CREATE TABLE idempotency_keys (
    username TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (username, idem_key)
);
CREATE TABLE participants (
    txn_id TEXT NOT NULL,
    bank TEXT NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (txn_id, bank)
);
CREATE INDEX participants_unacked ON participants (txn_id) WHERE acked = 0;
"""

PG_MIGRATIONS = (
    PG_SCHEMA_V1,
    SCHEMA_V2.replace("REAL", "DOUBLE PRECISION"),
    SCHEMA_V3.replace("id INTEGER PRIMARY KEY", "id BIGSERIAL PRIMARY KEY")
    .replace("xid INTEGER NOT NULL DEFAULT 0", "xid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint)")
    .replace("REAL", "DOUBLE PRECISION")
    # SQLite orders everyone's events by rowid alone (xid is 0 there); PostgreSQL needs the pair
    + "CREATE INDEX payment_events_order ON payment_events (xid, id);",
)

# Only events of finished transactions, per engine (see SCHEMA_V3).
_FINISHED = {"sqlite": "", "postgres": "AND e.xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"}


MAX_SESSIONS_PER_USER = 100
CLAIM_TRIES = 3  # reads of a key that other writers claim and release under our feet


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ------------------------------------------------------------------ users --


def add_user(
    conn: Conn, username: str, password_hash: str, links: list[tuple[str, str]], if_missing: bool = False
) -> None:
    # A conditional write: two gateways on one database registering one name at once
    # make one user, and the other is told it is taken (or, seeding with if_missing, skips it).
    added = conn.execute(
        "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?) ON CONFLICT (username) DO NOTHING",
        (username, password_hash, time.time()),
    ).rowcount
    if not added and if_missing:
        return
    if not added:
        raise AlreadyExists(f"username {username!r} is taken: pick another or log in")
    for bank, account_id in links:
        add_link(conn, username, bank, account_id)


def add_link(conn: Conn, username: str, bank: str, account_id: str) -> list[tuple[str, str]]:
    conn.execute(
        "INSERT INTO links (bank, account_id, username) VALUES (?, ?, ?) ON CONFLICT (bank, account_id) DO NOTHING",
        (bank, account_id, username),
    )
    row = conn.execute("SELECT username FROM links WHERE bank = ? AND account_id = ?", (bank, account_id)).fetchone()
    if row[0] != username:
        raise AlreadyExists(
            f"account {account_id} at {bank} is already linked to another user", reason=pb.Errors.ACCOUNT_ALREADY_LINKED
        )
    return links_of(conn, username)


def password_hash(conn: Conn, username: str) -> str | None:
    row = conn.execute("SELECT password_hash FROM users WHERE username = ?", (username,)).fetchone()
    return row[0] if row else None


def links_of(conn: Conn, username: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT bank, account_id FROM links WHERE username = ? ORDER BY bank, account_id", (username,)
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def is_seeded(conn: Conn) -> bool:
    return conn.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone() is not None


def mark_seeded(conn: Conn) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('seeded', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(time.time()),),
    )


# --------------------------------------------------------------- sessions --


def add_session(conn: Conn, token: str, username: str, expires_at: float) -> list[str]:
    """Record a new session. A user keeps at most MAX_SESSIONS_PER_USER live sessions:
    the oldest are revoked to make room. Returns the digests of the sessions revoked."""
    now = time.time()
    conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now - 86400,))
    live = conn.execute(
        "SELECT token_sha256 FROM sessions WHERE username = ? AND revoked = 0 AND expires_at >= ? ORDER BY expires_at",
        (username, now),
    ).fetchall()
    revoked = [r[0] for r in live[: max(0, len(live) + 1 - MAX_SESSIONS_PER_USER)]]
    conn.executemany("UPDATE sessions SET revoked = 1 WHERE token_sha256 = ?", [(d,) for d in revoked])
    conn.execute(
        "INSERT INTO sessions (token_sha256, username, expires_at) VALUES (?, ?, ?)",
        (token_digest(token), username, expires_at),
    )
    return revoked


def session_user(conn: Conn, token: str) -> tuple[str, float] | None:
    """(username, expires_at) of a live session, or None if unknown or revoked."""
    row = conn.execute(
        "SELECT username, expires_at FROM sessions WHERE token_sha256 = ? AND revoked = 0", (token_digest(token),)
    ).fetchone()
    return (row[0], row[1]) if row else None


def live_sessions(conn: Conn, digests: list[str]) -> set[str]:
    """Which of these token digests are sessions not revoked (expiry is checked by the caller)."""
    live: set[str] = set()
    for start in range(0, len(digests), 500):
        chunk = digests[start : start + 500]
        rows = conn.execute(
            f"SELECT token_sha256 FROM sessions WHERE revoked = 0 AND token_sha256 IN ({', '.join('?' * len(chunk))})",
            chunk,
        ).fetchall()
        live.update(r[0] for r in rows)
    return live


def revoke_session(conn: Conn, token: str) -> None:
    conn.execute("UPDATE sessions SET revoked = 1 WHERE token_sha256 = ?", (token_digest(token),))


# --------------------------------------------------------------- payments --


@dataclass(frozen=True)
class PaymentFields:
    username: str
    idem_key: str
    from_bank: str
    from_account: str
    to_bank: str
    to_account: str
    amount_cents: int

    def fingerprint(self) -> str:
        parts = (self.from_bank, self.from_account, self.to_bank, self.to_account, str(self.amount_cents))
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class ClaimKind(StrEnum):
    NEW = "new"  # claimed now: go ahead
    CONFLICT = "conflict"  # the key holds a different request
    IN_FLIGHT = "in_flight"  # the key's payment is still PREPARING
    REPLAY = "replay"  # the key's payment is decided: answer what was recorded


@dataclass(frozen=True)
class Claim:
    """What claiming a key found, and the payment that holds it (all but NEW)."""

    kind: ClaimKind
    row: Row | None = None


PAYMENT_COLUMNS = (
    "txn_id, username, idem_key, from_bank, from_account, to_bank, to_account, amount_cents, "
    "state, outcome, reason, created_at, seq"
)


# One statement for a payment's participants: one bank (a payment inside a bank) or two.
PARTICIPANTS_INSERT = {
    1: "INSERT INTO participants (txn_id, bank) VALUES (?, ?)",
    2: "INSERT INTO participants (txn_id, bank) VALUES (?, ?), (?, ?)",
}


def claim(conn: Conn, fields: PaymentFields, txn_id: str, owner: str = "") -> Claim:
    """Claim the idempotency key for a new payment, or say what it already means.

    The claim is a conditional write (INSERT ... ON CONFLICT DO NOTHING): where several
    gateways share one database, the one whose insert lands owns the key, and the others
    read what it recorded (PostgreSQL makes a conflicting insert wait for the first one's
    commit, so they see its payment). `owner` is the replica that runs the payment."""
    fingerprint = fields.fingerprint()
    for _ in range(CLAIM_TRIES):
        now = time.time()
        claimed = conn.execute(
            "INSERT INTO idempotency_keys (username, idem_key, txn_id, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (username, idem_key) DO NOTHING",
            (fields.username, fields.idem_key, txn_id, now),
        ).rowcount
        if not claimed:  # the key is taken (by an earlier request, or another writer just now)
            row = _key_holder(conn, fields)
            if row is not None:
                return _claimed(row, fingerprint)
            continue  # released (a retryable abort) between our insert and our read: claim again
        conn.execute(
            "INSERT INTO payments (txn_id, username, idem_key, fingerprint, from_bank, from_account, to_bank, "
            "to_account, amount_cents, state, created_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'PREPARING', ?, ?)",
            (
                txn_id,
                fields.username,
                fields.idem_key,
                fingerprint,
                fields.from_bank,
                fields.from_account,
                fields.to_bank,
                fields.to_account,
                fields.amount_cents,
                now,
                owner,
            ),
        )
        banks = sorted({fields.from_bank, fields.to_bank})
        conn.execute(PARTICIPANTS_INSERT[len(banks)], [v for bank in banks for v in (txn_id, bank)])
        conn.execute(EVENT_INSERT, (fields.username, txn_id, EventKind.ACCEPTED, "", now))
        return Claim(ClaimKind.NEW)
    # Claimed and released (a retryable abort) again and again while we looked: as in flight.
    raise Aborted(f"idempotency key {fields.idem_key!r} is being used by another request: retry")


def existing_claim(conn: Conn, fields: PaymentFields) -> Claim | None:
    """What the key already means (a read: claims nothing), or None if it is free."""
    row = _key_holder(conn, fields)
    return None if row is None else _claimed(row, fields.fingerprint())


def _key_holder(conn: Conn, fields: PaymentFields) -> Row | None:
    return conn.execute(
        f"SELECT p.fingerprint, {', '.join('p.' + c.strip() for c in PAYMENT_COLUMNS.split(','))} "
        "FROM idempotency_keys k JOIN payments p ON p.txn_id = k.txn_id "
        "WHERE k.username = ? AND k.idem_key = ?",
        (fields.username, fields.idem_key),
    ).fetchone()


def _claimed(row: Row, fingerprint: str) -> Claim:
    if row["fingerprint"] != fingerprint:
        return Claim(ClaimKind.CONFLICT, row)
    if row["state"] == Decision.PREPARING:
        return Claim(ClaimKind.IN_FLIGHT, row)
    return Claim(ClaimKind.REPLAY, row)


class EventKind(StrEnum):
    """A payment's state change, as WatchPayments streams it (pb.PaymentEvent.Kind)."""

    ACCEPTED = "ACCEPTED"
    COMMITTED = "COMMITTED"
    DECLINED = "DECLINED"
    ABORTED = "ABORTED"


_EVENT_OF = {Outcome.SUCCEEDED: EventKind.COMMITTED, Outcome.DECLINED: EventKind.DECLINED}
_EVENT_OF[Outcome.RETRYABLE] = EventKind.ABORTED
EVENT_INSERT = "INSERT INTO payment_events (username, txn_id, kind, reason, at) VALUES (?, ?, ?, ?, ?)"
Position = tuple[int, int]  # (xid, id) of an event: where a stream stands


def events_after(conn: Conn, username: str, after: Position, limit: int, engine: str) -> list[Row]:
    """The user's events after `after`, in order, with their payments (engine: "sqlite" | "postgres")."""
    return conn.execute(
        "SELECT e.xid AS event_xid, e.id AS event_id, e.kind AS event_kind, e.reason AS event_reason, "
        f"e.at AS event_at, {', '.join('p.' + c.strip() for c in PAYMENT_COLUMNS.split(','))} "
        "FROM payment_events e JOIN payments p ON p.txn_id = e.txn_id "
        f"WHERE e.username = ? AND (e.xid, e.id) > (?, ?) {_FINISHED[engine]} "
        "ORDER BY e.xid, e.id LIMIT ?",
        (username, after[0], after[1], limit),
    ).fetchall()


def last_position(conn: Conn, username: str | None, engine: str) -> Position:
    """Where the user's events (everyone's with None) end now: a stream from now starts there."""
    mine, params = ("e.username = ?", (username,)) if username is not None else ("1 = 1", ())
    row = conn.execute(
        f"SELECT e.xid, e.id FROM payment_events e WHERE {mine} {_FINISHED[engine]} "
        "ORDER BY e.xid DESC, e.id DESC LIMIT 1",
        params,
    ).fetchone()
    return (row[0], row[1]) if row else (0, 0)


def users_with_events_after(conn: Conn, after: Position, limit: int, engine: str) -> list[tuple[int, int, str]]:
    """(xid, id, username) of everyone's events after `after`, in order: whom to wake."""
    params: tuple[int, ...]
    if engine == "sqlite":  # xid is 0 there: the rowid alone orders the events
        where, order, params = "e.id > ?", "e.id", (after[1], limit)
    else:
        where, order, params = "(e.xid, e.id) > (?, ?)", "e.xid, e.id", (after[0], after[1], limit)
    rows = conn.execute(
        f"SELECT e.xid, e.id, e.username FROM payment_events e WHERE {where} {_FINISHED[engine]} "
        f"ORDER BY {order} LIMIT ?",
        params,
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def claimed_source(conn: Conn, username: str, idem_key: str) -> tuple[str, str] | None:
    """The payer account of the payment that holds this key, if one does."""
    row = conn.execute(
        "SELECT p.from_bank, p.from_account FROM idempotency_keys k JOIN payments p ON p.txn_id = k.txn_id "
        "WHERE k.username = ? AND k.idem_key = ?",
        (username, idem_key),
    ).fetchone()
    return (row[0], row[1]) if row else None


def decide(conn: Conn, txn_id: str, decision: Decision, outcome: Outcome, reason: str) -> Row:
    """Record the decision unless one is already recorded; return the payment as recorded.

    A RETRYABLE abort releases the idempotency key, so the client may send it again.
    """
    decision, outcome = Decision(decision), Outcome(outcome)
    assert decision != Decision.PREPARING and (decision == Decision.COMMIT) == (outcome == Outcome.SUCCEEDED)
    rows = conn.execute(
        "UPDATE payments SET state = ?, outcome = ?, reason = ?, decided_at = ? "
        f"WHERE txn_id = ? AND state = 'PREPARING' RETURNING {PAYMENT_COLUMNS}",
        (decision, outcome, reason, time.time(), txn_id),
    ).fetchall()  # all (one row or none): a statement is done only once read to its end
    row = rows[0] if rows else None
    updated = row is not None
    if row is None:  # decided already (by a bank's question, or another gateway): that decision stands
        row = payment(conn, txn_id)
    assert row is not None and row["state"] != Decision.PREPARING, txn_id
    if updated:
        conn.execute(EVENT_INSERT, (row["username"], txn_id, _EVENT_OF[outcome], reason, time.time()))
    if updated and outcome == Outcome.RETRYABLE:  # by primary key: txn_id has no index there (a full scan each)
        conn.execute(
            "DELETE FROM idempotency_keys WHERE username = ? AND idem_key = ? AND txn_id = ?",
            (row["username"], row["idem_key"], txn_id),
        )
    return row


def presume_abort(conn: Conn, txn_id: str, reason: str) -> Decision:
    """The decision for a bank that asks: the recorded one, or ABORT recorded now."""
    row = conn.execute("SELECT state FROM payments WHERE txn_id = ?", (txn_id,)).fetchone()
    if row is None:
        return Decision.ABORT  # never logged here, so never committed: presumed abort
    if row["state"] != Decision.PREPARING:
        return Decision(row["state"])
    return Decision(decide(conn, txn_id, Decision.ABORT, Outcome.RETRYABLE, reason)["state"])


def preparing(conn: Conn, owner: str) -> list[str]:
    """The transactions `owner` left PREPARING (and those from before replicas, owner '')."""
    rows = conn.execute(
        "SELECT txn_id FROM payments WHERE state = 'PREPARING' AND owner IN (?, '')", (owner,)
    ).fetchall()
    return [r[0] for r in rows]


def preparing_since(conn: Conn, owner: str, before: float, limit: int) -> list[str]:
    """Transactions of `owner` PREPARING since before `before` (time.time()), the oldest first."""
    rows = conn.execute(
        "SELECT txn_id FROM payments WHERE state = 'PREPARING' AND owner IN (?, '') AND created_at < ? "
        "ORDER BY created_at LIMIT ?",
        (owner, before, limit),
    ).fetchall()
    return [r[0] for r in rows]


def ack_pairs(conn: Conn, pairs: list[tuple[str, str]]) -> None:
    """Mark many (txn_id, bank) acknowledgements at once."""
    conn.executemany("UPDATE participants SET acked = 1 WHERE txn_id = ? AND bank = ?", pairs)


def unacked(conn: Conn, owner: str, limit: int) -> list[tuple[str, str, Decision]]:
    """(txn_id, bank, decision) for decisions of `owner` a bank has not acknowledged yet."""
    rows = conn.execute(
        "SELECT pa.txn_id, pa.bank, p.state FROM participants pa JOIN payments p ON p.txn_id = pa.txn_id "
        "WHERE pa.acked = 0 AND p.state != 'PREPARING' AND p.owner IN (?, '') LIMIT ?",
        (owner, limit),
    ).fetchall()
    return [(r[0], r[1], Decision(r[2])) for r in rows]


def unacked_commits_of(conn: Conn, username: str, owner: str, limit: int) -> list[tuple[str, str]]:
    """(txn_id, bank): commits of `username`'s payments, recorded by replicas other than
    `owner`, that a bank has not acknowledged yet."""
    rows = conn.execute(
        "SELECT pa.txn_id, pa.bank FROM participants pa JOIN payments p ON p.txn_id = pa.txn_id "
        "WHERE pa.acked = 0 AND p.state = 'COMMIT' AND p.username = ? AND p.owner != ? LIMIT ?",
        (username, owner, limit),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def payment(conn: Conn, txn_id: str) -> Row | None:
    return conn.execute(f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE txn_id = ?", (txn_id,)).fetchone()


def visible_payment(conn: Conn, txn_id: str, username: str) -> Row | None:
    """A payment the user sent, or one that credited an account of theirs."""
    return conn.execute(
        f"SELECT {PAYMENT_COLUMNS} FROM payments p WHERE txn_id = ? AND COALESCE(outcome, '') != 'RETRYABLE' AND "
        "(username = ? OR (outcome = 'SUCCEEDED' AND EXISTS (SELECT 1 FROM links l WHERE l.username = ? "
        "AND l.bank = p.to_bank AND l.account_id = p.to_account)))",
        (txn_id, username, username),
    ).fetchone()


def history(conn: Conn, username: str, before_seq: int, limit: int) -> list[Row]:
    """Newest first: payments sent by the user (not the retryable aborts) and successful ones received."""
    sent = conn.execute(
        f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE username = ? AND seq < ? "
        "AND COALESCE(outcome, '') != 'RETRYABLE' ORDER BY seq DESC LIMIT ?",
        (username, before_seq, limit),
    ).fetchall()
    received: list[Row] = []
    for bank, account_id in links_of(conn, username):
        received += conn.execute(
            f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE to_bank = ? AND to_account = ? AND seq < ? "
            "AND outcome = 'SUCCEEDED' AND username != ? ORDER BY seq DESC LIMIT ?",
            (bank, account_id, before_seq, username, limit),
        ).fetchall()
    merged = sorted(sent + received, key=lambda r: r["seq"], reverse=True)
    return merged[:limit]


# ------------------------------------------------------------ the tier --


@dataclass(frozen=True)
class Replica:
    replica_id: str
    address: str
    region: str
    started_at: float
    heartbeat_at: float
    in_flight: int


def register(conn: Conn, replica: Replica, incarnation: str) -> None:
    """Join the tier as `replica` (a later process with the same replica_id replaces the
    earlier: its heartbeats then find another incarnation and it stops)."""
    conn.execute(
        "INSERT INTO gateways (replica_id, incarnation, address, region, started_at, heartbeat_at, in_flight) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (replica_id) DO UPDATE SET incarnation = excluded.incarnation, "
        "address = excluded.address, region = excluded.region, started_at = excluded.started_at, "
        "heartbeat_at = excluded.heartbeat_at, in_flight = excluded.in_flight",
        (
            replica.replica_id,
            incarnation,
            replica.address,
            replica.region,
            replica.started_at,
            replica.heartbeat_at,
            replica.in_flight,
        ),
    )


class Heartbeat(StrEnum):
    RECORDED = "recorded"
    TAKEN_OVER = "taken_over"  # our row is gone: a survivor took our work over while we were silent
    REPLACED = "replaced"  # another process registered with our replica_id


def heartbeat(conn: Conn, replica_id: str, incarnation: str, now: float, in_flight: int) -> Heartbeat:
    updated = conn.execute(
        "UPDATE gateways SET heartbeat_at = ?, in_flight = ? WHERE replica_id = ? AND incarnation = ?",
        (now, in_flight, replica_id, incarnation),
    ).rowcount
    if updated:
        return Heartbeat.RECORDED
    row = conn.execute("SELECT 1 FROM gateways WHERE replica_id = ?", (replica_id,)).fetchone()
    return Heartbeat.REPLACED if row else Heartbeat.TAKEN_OVER


def leave(conn: Conn, replica_id: str, incarnation: str) -> None:
    """A clean stop: out of the live list at once, and its lease run out, so a survivor takes
    over what it leaves unfinished (decisions not yet acknowledged) at its next heartbeat."""
    conn.execute(
        "UPDATE gateways SET heartbeat_at = 0, in_flight = 0 WHERE replica_id = ? AND incarnation = ?",
        (replica_id, incarnation),
    )


def replicas(conn: Conn) -> list[Replica]:
    rows = conn.execute(
        "SELECT replica_id, address, region, started_at, heartbeat_at, in_flight FROM gateways ORDER BY replica_id"
    ).fetchall()
    return [Replica(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


def take_over(conn: Conn, dead: str, survivor: str, stale_before: float) -> list[tuple[str, str]] | None:
    """Claim the work of replica `dead`, whose heartbeat is older than `stale_before`:
    its membership row goes, and its PREPARING and unacknowledged transactions become
    `survivor`'s. Conditional: None if it heartbeat meanwhile or another survivor was
    first. Returns (txn_id, state) of the transactions taken."""
    gone = conn.execute("DELETE FROM gateways WHERE replica_id = ? AND heartbeat_at < ?", (dead, stale_before)).rowcount
    if not gone:
        return None
    rows = conn.execute(
        "UPDATE payments SET owner = ? WHERE owner = ? AND (state = 'PREPARING' OR txn_id IN "
        "(SELECT txn_id FROM participants WHERE acked = 0)) RETURNING txn_id, state",
        (survivor, dead),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


# --------------------------------------------------------- failed logins --


def login_facts(conn: Conn, username: str) -> tuple[str | None, int, float]:
    """(password hash or None, failed logins counted, locked until) of a user, in one read."""
    row = conn.execute(
        "SELECT u.password_hash, f.failures, f.locked_until FROM users u "
        "LEFT JOIN login_failures f ON f.username = u.username WHERE u.username = ?",
        (username,),
    ).fetchone()
    if row is None:
        return None, 0, 0.0
    return row[0], row[1] or 0, row[2] or 0.0


def login_failed(conn: Conn, username: str, now: float, window_s: float, max_failures: int, lockout_s: float) -> float:
    """Count a failed login of `username` for the whole tier (one conditional upsert, so
    replicas counting at once lose no failure); returns until when it is locked (0: not)."""
    window_start = now - window_s
    row = conn.execute(
        "INSERT INTO login_failures (username, failures, first_at, locked_until) VALUES (?, 1, ?, 0) "
        "ON CONFLICT (username) DO UPDATE SET "
        "failures = CASE WHEN login_failures.first_at < ? THEN 1 ELSE login_failures.failures + 1 END, "
        "first_at = CASE WHEN login_failures.first_at < ? THEN excluded.first_at ELSE login_failures.first_at END "
        "RETURNING failures, locked_until",
        (username, now, window_start, window_start),
    ).fetchone()
    if row[0] < max_failures:
        return row[1] if row[1] > now else 0.0
    until = now + lockout_s
    conn.execute(
        "UPDATE login_failures SET locked_until = ?, failures = 0, first_at = ? WHERE username = ?",
        (until, now, username),
    )
    return until


def login_succeeded(conn: Conn, username: str) -> None:
    """Forget the user's failed logins (not a lockout in force: a lucky guess during it stays refused)."""
    conn.execute("DELETE FROM login_failures WHERE username = ? AND locked_until < ?", (username, time.time()))
