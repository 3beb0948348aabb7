"""Fold the 2PC events of every process's log into one TxnRow per payment.

Pure: no clock, no I/O. The live source feeds it every LogRecord and posts a
TxnChanged for each row it returns. Events (LogRecord.event == "2pc", the phase
and the rest in LogRecord.fields) come from the gateway (process "gateway") and
from each bank (process = the bank's name); see backend/gateway/coordinator.py
and backend/bank/service.py. Per payment the gateway says begin (prepares go to
every participant), decision and acked (with the list of banks), and a vote only
for a bank that gave none; each bank says its own vote and committed/aborted.
Lines from different processes may arrive in any
order, so a participant's phase only moves forward (see _RANK).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

from app.model import LogRecord, Participant, TxnRow

GATEWAY = "gateway"
DEFAULT_MAX_ROWS = 200

PREPARE_SENT = "prepare sent"
VOTED_YES = "voted yes"
VOTED_NO = "voted no"
NO_ANSWER = "no answer"
IN_DOUBT = "in doubt"
COMMITTED = "committed"
ABORTED = "aborted"

# A later line never moves a participant back: a bank's own vote beats the
# gateway's "no answer" (the bank did prepare; its answer came too late), and a
# bank that has committed or aborted is no longer in doubt.
_RANK = {"": 0, PREPARE_SENT: 1, NO_ANSWER: 2, VOTED_YES: 3, VOTED_NO: 3, IN_DOUBT: 4, COMMITTED: 5, ABORTED: 5}
_VOTE_PHASE = {"YES": VOTED_YES, "NO": VOTED_NO, "NONE": NO_ANSWER}
_DONE_PHASE = {"COMMIT": COMMITTED, "ABORT": ABORTED}


@dataclass
class _Txn:
    row: TxnRow
    no_reasons: set[str] = field(default_factory=set)  # why banks voted NO: a decline, not an outage
    acked: set[str] = field(default_factory=set)       # banks that acknowledged the decision


class Timeline:
    """The most recent `max_rows` payments, oldest evicted first."""

    def __init__(self, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        assert max_rows > 0
        self.max_rows = max_rows
        self._txns: OrderedDict[str, _Txn] = OrderedDict()

    def __len__(self) -> int:
        return len(self._txns)

    def rows(self) -> list[TxnRow]:
        """Oldest first."""
        return [t.row for t in self._txns.values()]

    def apply(self, record: LogRecord) -> TxnRow | None:
        """Fold one record in; return the row it changed, or None (not a 2PC event,
        an unknown transaction, or nothing new)."""
        if record.event != "2pc":
            return None
        f = record.fields
        txn_id, phase = f.get("txn"), f.get("phase")
        if not txn_id or not phase:
            return None
        if phase == "begin" and record.process == GATEWAY:
            return self._begin(record, txn_id)
        txn = self._txns.get(txn_id)
        if txn is None:
            return None  # began before we were watching, or long evicted
        before = txn.row
        if record.process == GATEWAY:
            self._gateway_event(txn, phase, f)
        else:
            self._bank_event(txn, record.process, phase, f)
        self._finish_latency(txn, record.time)
        return txn.row if txn.row != before else None

    # -------------------------------------------------------------- events --
    def _begin(self, record: LogRecord, txn_id: str) -> TxnRow | None:
        if txn_id in self._txns:
            return None
        f = record.fields
        banks = dict.fromkeys([f.get("from_bank", "?"), f.get("to_bank", "?")])  # payer first, no duplicate
        row = TxnRow(
            txn_id=txn_id,
            payer=f"{f.get('from_bank', '?')}/{f.get('from_account', '?')}",
            payee=f"{f.get('to_bank', '?')}/{f.get('to_account', '?')}",
            amount_cents=int(f.get("amount_cents", 0)),
            # The gateway sends every prepare right after "begin" (it logs no line per prepare).
            participants=tuple(Participant(bank, PREPARE_SENT) for bank in banks),
            started_at=record.time,
            user=str(f.get("user", "")),
        )
        self._txns[txn_id] = _Txn(row)
        while len(self._txns) > self.max_rows:
            self._txns.popitem(last=False)
        return row

    def _gateway_event(self, txn: _Txn, phase: str, f: dict) -> None:
        bank = f.get("bank", "")
        if phase == "prepare_sent":
            _advance(txn, bank, PREPARE_SENT)
        elif phase == "vote":
            _vote(txn, bank, f)
        elif phase in ("decision", "resolved"):
            _decide(txn, f.get("decision", ""), f.get("reason") or "")
        elif phase == "acked":  # one line for every bank that acknowledged ("banks"), or one ("bank")
            for acked in f.get("banks") or [bank]:
                txn.acked.add(acked)
                _advance(txn, acked, _DONE_PHASE.get(f.get("decision", ""), ""))
        elif phase == "decision_unacked" and _phase_of(txn, bank) == VOTED_YES:
            # It voted yes and has not heard the decision: it holds the money, in doubt.
            _advance(txn, bank, IN_DOUBT)

    def _bank_event(self, txn: _Txn, bank: str, phase: str, f: dict) -> None:
        if phase == "vote":
            _vote(txn, bank, f)
        elif phase == "in_doubt":
            _advance(txn, bank, IN_DOUBT)
        elif phase in ("committed", "aborted"):
            _advance(txn, bank, COMMITTED if phase == "committed" else ABORTED)

    def _finish_latency(self, txn: _Txn, now: float) -> None:
        row = txn.row
        if row.latency_ms is None and row.decision and txn.acked >= {p.bank for p in row.participants}:
            txn.row = replace(row, latency_ms=round((now - row.started_at) * 1000, 1))


def _phase_of(txn: _Txn, bank: str) -> str | None:
    return next((p.phase for p in txn.row.participants if p.bank == bank), None)


def _advance(txn: _Txn, bank: str, phase: str) -> None:
    current = _phase_of(txn, bank)
    if current is None or not phase or _RANK[phase] < _RANK[current]:
        return
    parts = tuple(Participant(p.bank, phase) if p.bank == bank else p for p in txn.row.participants)
    txn.row = replace(txn.row, participants=parts)


def _vote(txn: _Txn, bank: str, f: dict) -> None:
    phase = _VOTE_PHASE.get(f.get("vote", ""))
    if phase is None:
        return
    if phase == VOTED_NO and f.get("reason"):
        txn.no_reasons.add(f["reason"])
    _advance(txn, bank, phase)


def _decide(txn: _Txn, decision: str, reason: str) -> None:
    if decision not in _DONE_PHASE or txn.row.decision:
        return  # a decision is written once and never changes
    if reason and any(r in reason for r in txn.no_reasons):
        reason = f"declined: {reason}"
    elif not reason and decision == "ABORT":
        reason = "presumed abort" if not txn.no_reasons else "declined: " + "; ".join(sorted(txn.no_reasons))
    txn.row = replace(txn.row, decision=decision, reason=reason)
