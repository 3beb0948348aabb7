"""The invariant checker of `strife chaos`.

`load()` reads a stopped stack's state read-only into a Snapshot: every bank's
ledger (accounts, txns, legs, journal), the gateway's coordinator log (payments,
unacknowledged decisions) and every client's records (outbox, sent answers and
the worker's own journal of queued keys and same-key replays). The servers' state
is read from their SQLite files or PostgreSQL databases (a Path or a URI: see
app/bench/storage.py) with the same statements; a client's outbox is SQLite. `check()` is a
pure function of a Snapshot (plus the answers of the post-heal replay) and
returns one Verdict per invariant, with the offending ids. Tests feed it
doctored snapshots to show it catches what it claims to.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.bench import storage
from backend.common.states import Decision, LedgerState, Outcome, PaymentStatus

MAX_OFFENDERS = 50  # ids kept per invariant (the count is always exact)
JOURNAL_FILE = "chaos-journal.jsonl"
FINAL_OUTCOMES = (Outcome.SUCCEEDED, Outcome.DECLINED)  # a client sees them as PaymentStatus: same names


# ---------------------------------------------------------------- snapshot --
@dataclass
class BankLedger:
    name: str
    accounts: dict[str, tuple[int, int]]  # account_id -> (balance_cents, held_cents)
    txns: dict[str, LedgerState]  # txn_id -> its state at this bank
    legs: dict[str, list[tuple[str, int]]]  # txn_id -> [(account_id, delta_cents)]
    journal: list[tuple[int, str, str, int, int]]  # (seq, txn_id, account_id, delta_cents, balance_after_cents)


@dataclass
class GatewayLog:
    payments: list[dict]  # rows of the payments table
    unacked: list[tuple[str, str]] = field(default_factory=list)  # (txn_id, bank) decisions not acknowledged


@dataclass
class ClientRecord:
    username: str
    queued: list[dict]  # outbox rows still waiting (must be empty)
    sent: list[dict]  # final answers (idem_key, status, payment_id, ...)
    journal: list[dict] = field(default_factory=list)  # the worker's own lines: {"q": key, ...}, {"replay": ...}


@dataclass
class Snapshot:
    start_balances: dict[tuple[str, str], int]  # (bank, account_id) -> balance at seed
    banks: dict[str, BankLedger]
    gateway: GatewayLog
    clients: list[ClientRecord]


@dataclass
class Again:
    """What asking again with a recorded key returned after the heal."""

    username: str
    key: str
    status: str  # a PaymentStatus (SUCCEEDED | DECLINED | PENDING) or an error code name
    payment_id: str


@dataclass
class Verdict:
    number: int
    title: str
    offenders: list[str] = field(default_factory=list)
    count: int = 0
    checked: int = 0  # how many things were looked at

    @property
    def ok(self) -> bool:
        return self.count == 0

    def fail(self, what: str) -> None:
        self.count += 1
        if len(self.offenders) < MAX_OFFENDERS:
            self.offenders.append(what)

    def to_json(self) -> dict:
        return {
            "number": self.number,
            "title": self.title,
            "ok": self.ok,
            "violations": self.count,
            "checked": self.checked,
            "offenders": self.offenders,
        }


# ------------------------------------------------------------------ loading --
def _ro(source: storage.Source) -> Any:
    """A read-only connection to a SQLite file or a PostgreSQL database; rows by column name."""
    return storage.connect(source)


def load_bank(name: str, source: storage.Source) -> BankLedger:
    conn = _ro(source)
    try:
        accounts = {
            r["account_id"]: (r["balance_cents"], r["held_cents"])
            for r in conn.execute("SELECT account_id, balance_cents, held_cents FROM accounts")
        }
        txns = {r["txn_id"]: LedgerState(r["state"]) for r in conn.execute("SELECT txn_id, state FROM txns")}
        legs: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for r in conn.execute("SELECT txn_id, account_id, delta_cents FROM legs"):
            legs[r["txn_id"]].append((r["account_id"], r["delta_cents"]))
        journal = [
            tuple(r)
            for r in conn.execute(
                "SELECT seq, txn_id, account_id, delta_cents, balance_after_cents FROM journal ORDER BY seq"
            )
        ]
    finally:
        conn.close()
    return BankLedger(name, accounts, txns, dict(legs), journal)


def load_gateway(source: storage.Source) -> GatewayLog:
    conn = _ro(source)
    try:
        payments = [
            dict(r)
            for r in conn.execute(
                "SELECT txn_id, username, idem_key, from_bank, from_account, to_bank, to_account, amount_cents, "
                "state, outcome FROM payments ORDER BY seq"
            )
        ]
        unacked = [(r[0], r[1]) for r in conn.execute("SELECT txn_id, bank FROM participants WHERE acked = 0")]
    finally:
        conn.close()
    return GatewayLog(payments, unacked)


def load_client(username: str, profile: Path) -> ClientRecord:
    conn = _ro(profile / "outbox.sqlite")
    try:
        queued = [dict(r) for r in conn.execute("SELECT * FROM outbox ORDER BY seq")]
        sent = [dict(r) for r in conn.execute("SELECT * FROM sent ORDER BY seq")]
    finally:
        conn.close()
    journal = []
    path = profile / JOURNAL_FILE
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                journal.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut short by SIGKILL
    return ClientRecord(username, queued, sent, journal)


def load(
    start_balances: dict[tuple[str, str], int],
    banks: dict[str, storage.Source],
    gateway: storage.Source,
    profiles: dict[str, Path],
) -> Snapshot:
    """`banks` and `gateway`: each server's SQLite file (Path) or PostgreSQL URI (str)."""
    return Snapshot(
        start_balances=start_balances,
        banks={name: load_bank(name, source) for name, source in banks.items()},
        gateway=load_gateway(gateway),
        clients=[load_client(user, path) for user, path in profiles.items()],
    )


# ----------------------------------------------------------------- checking --
def check(snap: Snapshot, again: list[Again] | None = None) -> list[Verdict]:
    return [
        _money_conserved(snap),
        _never_negative(snap),
        _successes_committed(snap),
        _atomic(snap),
        _once_per_key(snap),
        _same_answer(snap, again or []),
    ]


def _money_conserved(snap: Snapshot) -> Verdict:
    v = Verdict(1, "total money equals the starting total; the journal explains every balance")
    start_total = sum(snap.start_balances.values())
    final_total = sum(bal for bank in snap.banks.values() for bal, _ in bank.accounts.values())
    v.checked = len(snap.start_balances)
    if final_total != start_total:
        v.fail(f"total {final_total} cents != starting {start_total} cents (diff {final_total - start_total:+d})")
    for bank in snap.banks.values():
        running = {acc: snap.start_balances.get((bank.name, acc), 0) for acc in bank.accounts}
        for acc in bank.accounts:
            if (bank.name, acc) not in snap.start_balances:
                v.fail(f"{bank.name}/{acc}: account not in the fixtures")
        for _, txn, acc, delta, after in bank.journal:
            running[acc] = running.get(acc, 0) + delta
            if running[acc] != after:
                v.fail(f"{bank.name}/{acc} txn {txn}: journal says {after}, start + deltas = {running[acc]}")
                running[acc] = after
        for acc, (bal, _) in bank.accounts.items():
            if running.get(acc) != bal:
                v.fail(f"{bank.name}/{acc}: balance {bal} but start + journal = {running.get(acc)}")
    for bank_name, acc in snap.start_balances:
        if bank_name in snap.banks and acc not in snap.banks[bank_name].accounts:
            v.fail(f"{bank_name}/{acc}: account vanished")
    return v


def _never_negative(snap: Snapshot) -> Verdict:
    v = Verdict(2, "no account ever below zero (journal balance_after, final balances)")
    for bank in snap.banks.values():
        for _, txn, acc, _, after in bank.journal:
            v.checked += 1
            if after < 0:
                v.fail(f"{bank.name}/{acc} at {after} cents after txn {txn}")
        for acc, (bal, held) in bank.accounts.items():
            if bal < 0 or bal - held < 0:
                v.fail(f"{bank.name}/{acc} final balance {bal}, available {bal - held}")
    return v


def _payments_by_txn(snap: Snapshot) -> dict[str, dict]:
    return {p["txn_id"]: p for p in snap.gateway.payments}


def _successes_committed(snap: Snapshot) -> Verdict:
    v = Verdict(3, "every payment a client saw succeed is committed at both banks")
    for client in snap.clients:
        for s in client.sent:
            if s["status"] != PaymentStatus.SUCCEEDED:
                continue
            v.checked += 1
            txn = s["payment_id"]
            want = {
                s["from_bank"]: (s["from_account"], -s["amount_cents"]),
                s["to_bank"]: (s["to_account"], s["amount_cents"]),
            }
            for bank_name, leg in want.items():
                bank = snap.banks.get(bank_name)
                if bank is None:
                    v.fail(f"key {s['idem_key']} (payment {txn}): NO SUCH BANK at {bank_name}")
                elif (state := bank.txns.get(txn, "ABSENT")) != LedgerState.COMMITTED:
                    v.fail(f"key {s['idem_key']} (payment {txn}): {state} at {bank_name}")
                elif leg not in bank.legs.get(txn, []):
                    v.fail(f"key {s['idem_key']} (payment {txn}): legs at {bank_name} {bank.legs.get(txn)} != {leg}")
    return v


def _atomic(snap: Snapshot) -> Verdict:
    v = Verdict(4, "each txn committed at both banks or neither; no hold or PREPARED remains")
    payments = _payments_by_txn(snap)
    seen: dict[str, dict[str, str]] = defaultdict(dict)
    for bank in snap.banks.values():
        for txn, state in bank.txns.items():
            seen[txn][bank.name] = state
        for acc, (_, held) in bank.accounts.items():
            if held:
                v.fail(f"{bank.name}/{acc}: {held} cents still held")
    for txn in sorted(set(seen) | set(payments)):
        v.checked += 1
        states = seen.get(txn, {})
        if LedgerState.PREPARED in states.values():
            v.fail(f"txn {txn} still PREPARED at {sorted(b for b, s in states.items() if s == LedgerState.PREPARED)}")
        p = payments.get(txn)
        committed = {b for b, s in states.items() if s == LedgerState.COMMITTED}
        if p is None:
            if committed:
                v.fail(f"txn {txn} COMMITTED at {sorted(committed)} but unknown to the gateway")
            continue
        banks = {p["from_bank"], p["to_bank"]}
        if committed and committed != banks:
            v.fail(
                f"txn {txn} split: COMMITTED at {sorted(committed)}, "
                f"{ {b: states.get(b, 'ABSENT') for b in sorted(banks - committed)} }"
            )
        if p["state"] == Decision.PREPARING:
            v.fail(f"txn {txn} still PREPARING at the gateway")
        elif p["state"] == Decision.COMMIT and committed != banks:
            v.fail(f"txn {txn} decided COMMIT but committed only at {sorted(committed)}")
        elif p["state"] == Decision.ABORT and committed:
            v.fail(f"txn {txn} decided ABORT but COMMITTED at {sorted(committed)}")
    for txn, bank_name in snap.gateway.unacked:
        if payments.get(txn, {}).get("state") != Decision.PREPARING:
            v.fail(f"txn {txn}: decision never acknowledged by {bank_name}")
    return v


def _once_per_key(snap: Snapshot) -> Verdict:
    v = Verdict(5, "no key moved money twice; every queued payment got exactly one final answer")
    finals: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for p in snap.gateway.payments:
        if p["outcome"] in FINAL_OUTCOMES:
            finals[(p["username"], p["idem_key"])].append(p)
    for (user, key), rows in finals.items():
        v.checked += 1
        commits = [r["txn_id"] for r in rows if r["state"] == Decision.COMMIT]
        if len(commits) > 1:
            v.fail(f"key {key} of {user} committed {len(commits)} times: {commits}")
        elif len(rows) > 1:
            v.fail(f"key {key} of {user} has {len(rows)} final outcomes: {[r['txn_id'] for r in rows]}")
    for bank in snap.banks.values():
        moves = Counter((txn, acc) for _, txn, acc, _, _ in bank.journal)
        for (txn, acc), n in moves.items():
            if n > 1:
                v.fail(f"txn {txn} moved {bank.name}/{acc} {n} times")
        by_txn = _journal_by_txn(bank)
        for txn, moved in by_txn.items():
            if bank.txns.get(txn) != LedgerState.COMMITTED:
                v.fail(f"txn {txn} moved money at {bank.name} but is {bank.txns.get(txn, 'ABSENT')} there")
            elif sorted(moved) != sorted(bank.legs.get(txn, [])):
                v.fail(f"txn {txn} at {bank.name}: journal {sorted(moved)} != legs {sorted(bank.legs.get(txn, []))}")
        for txn, state in bank.txns.items():
            if state == LedgerState.COMMITTED and txn not in by_txn:
                v.fail(f"txn {txn} COMMITTED at {bank.name} with no journal rows")
    answered: dict[tuple[str, str], dict] = {}
    for client in snap.clients:
        for q in client.queued:
            v.fail(f"key {q['idem_key']} of {client.username} still queued (no final answer)")
        keys = Counter(s["idem_key"] for s in client.sent)
        for key, n in keys.items():
            if n > 1:
                v.fail(f"key {key} of {client.username} has {n} final answers")
        for s in client.sent:
            answered[(client.username, s["idem_key"])] = s
        queued_keys = {line["q"] for line in client.journal if "q" in line}
        for key in sorted(queued_keys - set(keys) - {q["idem_key"] for q in client.queued}):
            v.fail(f"key {key} of {client.username} was queued but has no answer and is not in the outbox")
    # Each client answer matches the gateway's record, and money moved only for answers that said so.
    for (user, key), s in answered.items():
        v.checked += 1
        rows = finals.get((user, key), [])
        if s["status"] in FINAL_OUTCOMES:
            if not any(r["txn_id"] == s["payment_id"] and r["outcome"] == s["status"] for r in rows):
                v.fail(
                    f"key {key} of {user}: client saw {s['status']} {s['payment_id']}, gateway has "
                    f"{[(r['txn_id'], r['outcome']) for r in rows] or 'no final outcome'}"
                )
        elif rows:
            v.fail(
                f"key {key} of {user}: client saw {s['status']} ({s['code']}) but the gateway has "
                f"{[(r['txn_id'], r['outcome']) for r in rows]}"
            )
    for (user, key), rows in finals.items():
        if any(r["state"] == Decision.COMMIT for r in rows) and (user, key) not in answered:
            if any(c.username == user for c in snap.clients):
                v.fail(f"key {key} of {user} moved money but no client has an answer for it")
    return v


def _journal_by_txn(bank: BankLedger) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for _, txn, acc, delta, _ in bank.journal:
        out[txn].append((acc, delta))
    return out


def _same_answer(snap: Snapshot, again: list[Again]) -> Verdict:
    v = Verdict(6, "asking again with a key returns the same answer as the first time")
    first = {(c.username, s["idem_key"]): s for c in snap.clients for s in c.sent}
    for a in again:
        v.checked += 1
        s = first.get((a.username, a.key))
        if s is None:
            v.fail(f"key {a.key} of {a.username}: asked again but the client has no first answer")
        elif (a.status, a.payment_id) != (s["status"], s["payment_id"]):
            v.fail(
                f"key {a.key} of {a.username}: first {s['status']} {s['payment_id']}, again {a.status} {a.payment_id}"
            )
    for c in snap.clients:  # same-key replays the workers made during the run
        for line in c.journal:
            if "replay" in line:
                v.checked += 1
                if not line.get("same", False):
                    v.fail(
                        f"key {line['replay']} of {c.username}: first {line.get('first')}, during the run {line.get('again')}"
                    )
            elif "conflict" in line and line.get("code") == "OK":
                v.checked += 1
                v.fail(f"key {line['conflict']} of {c.username}: reused for a different payment and accepted")
    return v


# ------------------------------------------------------------------- counts --
def tally(snap: Snapshot) -> dict[str, int]:
    """What the clients did, from their records and the gateway's log."""
    sent = [s for c in snap.clients for s in c.sent]
    lines = [line for c in snap.clients for line in c.journal]
    status = Counter(s["status"] for s in sent)
    overdraws = {line["q"] for line in lines if line.get("overdraw")}
    return {
        "payments tried (keys queued)": len(sent) + sum(len(c.queued) for c in snap.clients),
        "succeeded": status[PaymentStatus.SUCCEEDED],
        "declined": status[PaymentStatus.DECLINED],
        "must-decline (amount > all money) declined": sum(
            1 for s in sent if s["idem_key"] in overdraws and s["status"] == PaymentStatus.DECLINED
        ),
        "must-decline that did not end DECLINED": sum(
            1 for s in sent if s["idem_key"] in overdraws and s["status"] != PaymentStatus.DECLINED
        ),
        "rejected / expired": status[PaymentStatus.REJECTED] + status[PaymentStatus.EXPIRED],
        "payments sent more than once (same key)": sum(1 for s in sent if s["attempts"] > 1),
        "resends under the same key": sum(max(0, s["attempts"] - 1) for s in sent),
        "retryable failures seen by clients": sum(1 for line in lines if "retry" in line),
        "2PC aborted, key released (gateway)": sum(
            1 for p in snap.gateway.payments if p["outcome"] == Outcome.RETRYABLE
        ),
        "same-key replays during the run": sum(1 for line in lines if "replay" in line),
        "key-reuse conflicts probed": sum(1 for line in lines if "conflict" in line),
        "txns committed (gateway)": sum(1 for p in snap.gateway.payments if p["state"] == Decision.COMMIT),
    }
