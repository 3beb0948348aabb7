"""Fold the 2PC events of every process's log into one TxnRow per payment.

Pure: no clock, no I/O. The live source feeds it every LogRecord and posts a
TxnChanged for each row it returns. The fields of a 2PC record are read as a
backend.common.events.TwoPc; they come from the gateway replicas (process "gateway",
or "gw-1", "gw-2", ... in a tier) and from each bank (process = the bank's name). A
line about a payment is its bank's when its process is one of the payment's banks,
else a gateway replica's: no list of replicas is needed (one may join later). The
replica that says begin ran the payment; another replica that decides it or re-sends
its decision took it over (its own replica's lease ran out). Per payment the gateway says begin
(prepares go to every participant), decision and acked (with the list of banks),
and a vote only for a bank that gave none; each bank says its own vote and
committed/aborted. Lines from different processes may arrive in any order, so a
participant's step only moves forward (see _RANK).

A retry of a payment (the client sends it again under the same idempotency key
after a retryable abort) is a new transaction: its row says which attempt it is.
`Stories` keeps what the story of a payment (Enter on a 2PC row) is told from.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace

from app.model import BankStep, LogRecord, Participant, Story, StoryStep, Tone, TxnRow
from backend.common.events import Event, Phase, TwoPc, Vote
from backend.common.states import Decision

DEFAULT_MAX_ROWS = 200
MAX_LINES_PER_TXN = 60  # a payment's story keeps its newest lines (a bank down for long logs many resends)

# A later line never moves a participant back: a bank's own vote beats the
# gateway's "no answer" (the bank did prepare; its answer came too late), and a
# bank that has committed or aborted is no longer in doubt.
_RANK = {
    BankStep.PREPARE_SENT: 1,
    BankStep.NO_ANSWER: 2,
    BankStep.VOTED_YES: 3,
    BankStep.VOTED_NO: 3,
    BankStep.IN_DOUBT: 4,
    BankStep.COMMITTED: 5,
    BankStep.ABORTED: 5,
}
_VOTE_STEP = {Vote.YES: BankStep.VOTED_YES, Vote.NO: BankStep.VOTED_NO, Vote.NONE: BankStep.NO_ANSWER}
_DONE_STEP = {Decision.COMMIT: BankStep.COMMITTED, Decision.ABORT: BankStep.ABORTED}


@dataclass
class _Txn:
    row: TxnRow
    no_reasons: set[str] = field(default_factory=set)  # why banks voted NO: a decline, not an outage
    acked: set[str] = field(default_factory=set)  # banks that acknowledged the decision


class Timeline:
    """The most recent `max_rows` payments, oldest evicted first."""

    def __init__(self, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        assert max_rows > 0
        self.max_rows = max_rows
        self._txns: OrderedDict[str, _Txn] = OrderedDict()
        # (user, idempotency key) -> attempts seen, for the most recent max_rows payments.
        # Counted since this control room started watching.
        self._attempts: OrderedDict[tuple[str, str], int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._txns)

    def rows(self) -> list[TxnRow]:
        """Oldest first."""
        return [t.row for t in self._txns.values()]

    def apply(self, record: LogRecord) -> TxnRow | None:
        """Fold one record in; return the row it changed, or None (not a 2PC event,
        an unknown transaction, or nothing new)."""
        event = TwoPc.read(record.fields) if record.event == Event.TWOPC else None
        if event is None:
            return None
        if event.phase == Phase.BEGIN:  # only a gateway replica begins a payment
            return self._begin(event, record.time, record.process)
        txn = self._txns.get(event.txn)
        if txn is None:
            return None  # began before we were watching, or long evicted
        before = txn.row
        if is_bank_line(txn.row, record.process):
            _bank_event(txn, record.process, event)
        else:
            _gateway_event(txn, record.process, event)
        _finish_latency(txn, record.time)
        return txn.row if txn.row != before else None

    def _begin(self, event: TwoPc, at: float, replica: str) -> TxnRow | None:
        if event.txn in self._txns:
            return None
        from_bank, to_bank = event.from_bank or "?", event.to_bank or "?"
        user, key = event.user or "", event.key or ""
        attempt = 1
        if key:
            attempt = self._attempts.pop((user, key), 0) + 1
            self._attempts[(user, key)] = attempt  # the newest last
            while len(self._attempts) > self.max_rows:
                self._attempts.popitem(last=False)
        row = TxnRow(
            txn_id=event.txn,
            payer=f"{from_bank}/{event.from_account or '?'}",
            payee=f"{to_bank}/{event.to_account or '?'}",
            amount_cents=int(event.amount_cents or 0),
            # The gateway sends every prepare right after "begin" (it logs no line per prepare);
            # payer first, no duplicate for a payment inside one bank.
            participants=tuple(
                Participant(bank, BankStep.PREPARE_SENT) for bank in dict.fromkeys([from_bank, to_bank])
            ),
            started_at=at,
            user=user,
            key=key,
            attempt=attempt,
            replica=replica,
        )
        self._txns[event.txn] = _Txn(row)
        while len(self._txns) > self.max_rows:
            self._txns.popitem(last=False)
        return row


# ------------------------------------------------------------------ events --
# What only the replica running a payment says: from another replica, it took the payment over.
# (Any replica may answer a bank's ResolveTransaction: "resolved" is no takeover.)
_OWNER_PHASES = (Phase.DECISION, Phase.ACKED, Phase.DECISION_UNACKED)


def is_bank_line(row: TxnRow, process: str) -> bool:
    """Whether `process` is one of the payment's banks (else it is a gateway replica)."""
    return any(p.bank == process for p in row.participants)


def _gateway_event(txn: _Txn, replica: str, event: TwoPc) -> None:
    bank = event.bank or ""
    row = txn.row
    if event.phase in _OWNER_PHASES and replica != row.replica and not row.taken_over_by:
        txn.row = replace(row, taken_over_by=replica)
    if event.phase == Phase.VOTE:
        _vote(txn, bank, event)
    elif event.phase in (Phase.DECISION, Phase.RESOLVED):
        _decide(txn, event.decision, event.reason or "")
    elif event.phase == Phase.ACKED:  # one line for every bank that acknowledged ("banks"), or one ("bank")
        for acked in event.banks or [bank]:
            txn.acked.add(acked)
            if event.decision in _DONE_STEP:
                _advance(txn, acked, _DONE_STEP[event.decision])
    elif event.phase == Phase.DECISION_UNACKED and _step_of(txn, bank) == BankStep.VOTED_YES:
        # It voted yes and has not heard the decision: it holds the money, in doubt.
        _advance(txn, bank, BankStep.IN_DOUBT)


def _bank_event(txn: _Txn, bank: str, event: TwoPc) -> None:
    if event.phase == Phase.VOTE:
        _vote(txn, bank, event)
    elif event.phase == Phase.IN_DOUBT:
        _advance(txn, bank, BankStep.IN_DOUBT)
    elif event.phase == Phase.COMMITTED:
        _advance(txn, bank, BankStep.COMMITTED)
    elif event.phase == Phase.ABORTED:
        _advance(txn, bank, BankStep.ABORTED)


def _finish_latency(txn: _Txn, now: float) -> None:
    row = txn.row
    decided = row.decision != Decision.PREPARING
    if row.latency_ms is None and decided and txn.acked >= {p.bank for p in row.participants}:
        txn.row = replace(row, latency_ms=round((now - row.started_at) * 1000, 1))


def _step_of(txn: _Txn, bank: str) -> BankStep | None:
    return next((p.phase for p in txn.row.participants if p.bank == bank), None)


def _advance(txn: _Txn, bank: str, step: BankStep) -> None:
    current = _step_of(txn, bank)
    if current is None or _RANK[step] < _RANK[current]:
        return
    parts = tuple(Participant(p.bank, step) if p.bank == bank else p for p in txn.row.participants)
    txn.row = replace(txn.row, participants=parts)


def _vote(txn: _Txn, bank: str, event: TwoPc) -> None:
    if event.vote is None:
        return
    step = _VOTE_STEP[event.vote]
    if step == BankStep.VOTED_NO and event.reason:
        txn.no_reasons.add(event.reason)
    _advance(txn, bank, step)


def _decide(txn: _Txn, decision: Decision | None, reason: str) -> None:
    if decision not in _DONE_STEP or txn.row.decision != Decision.PREPARING:
        return  # a decision is written once and never changes
    if reason and any(r in reason for r in txn.no_reasons):
        reason = f"declined: {reason}"
    elif not reason and decision == Decision.ABORT:
        reason = "presumed abort" if not txn.no_reasons else "declined: " + "; ".join(sorted(txn.no_reasons))
    txn.row = replace(txn.row, decision=decision, reason=reason)


# ------------------------------------------------------------------ stories --
class Stories:
    """What a payment's story is told from, for the most recent `max_txns` transactions: the
    newest row of each (the app gets them as TxnChanged) and the log lines that name it (at
    most `max_lines` each, the newest kept). Oldest transactions are forgotten first."""

    def __init__(self, max_txns: int = DEFAULT_MAX_ROWS, max_lines: int = MAX_LINES_PER_TXN) -> None:
        assert max_txns > 0 and max_lines > 0
        self.max_txns = max_txns
        self.max_lines = max_lines
        self._rows: OrderedDict[str, TxnRow] = OrderedDict()
        # Lines come before their row (the begin line makes it) and may name a transaction we
        # never get a row for: indexed on their own, bounded the same way.
        self._lines: OrderedDict[str, deque[LogRecord]] = OrderedDict()
        self._dropped: dict[str, int] = {}

    def add_row(self, row: TxnRow) -> None:
        self._rows[row.txn_id] = row
        self._rows.move_to_end(row.txn_id)
        while len(self._rows) > self.max_txns:
            self._rows.popitem(last=False)

    def add_record(self, record: LogRecord) -> None:
        txn = record.fields.get("txn")
        if not isinstance(txn, str) or not txn:
            return
        lines = self._lines.get(txn)
        if lines is None:
            lines = self._lines[txn] = deque(maxlen=self.max_lines)
            while len(self._lines) > self.max_txns:
                old, _ = self._lines.popitem(last=False)
                self._dropped.pop(old, None)
        if len(lines) == self.max_lines:
            self._dropped[txn] = self._dropped.get(txn, 0) + 1
        lines.append(record)

    def story(self, txn_id: str) -> Story | None:
        """The story of `txn_id`, or None if it is not among the recent transactions."""
        row = self._rows.get(txn_id)
        if row is None:
            return None
        lines = tuple(sorted(self._lines.get(txn_id, ()), key=lambda r: r.time))
        attempts = tuple(r for r in self._rows.values() if r.payment == row.payment) if row.key else (row,)
        return Story(
            row=row,
            steps=story_steps(row, lines),
            lines=lines,
            attempts=tuple(sorted(attempts, key=lambda r: r.attempt)),
            lines_dropped=self._dropped.get(txn_id, 0),
        )


def story_steps(row: TxnRow, lines: tuple[LogRecord, ...]) -> tuple[StoryStep, ...]:
    """Each 2PC line of a payment in words, with its time since the gateway began it."""
    steps = []
    for record in lines:
        event = TwoPc.read(record.fields) if record.event == Event.TWOPC else None
        if event is None or event.txn != row.txn_id:
            continue
        said = _said(event, not is_bank_line(row, record.process), row)
        if said is not None:
            what, tone = said
            steps.append(StoryStep(round((record.time - row.started_at) * 1000, 1), record.process, what, tone))
    return tuple(steps)


_DECISION_TONE = {Decision.COMMIT: Tone.GOOD, Decision.ABORT: Tone.BAD}


def _said(event: TwoPc, by_gateway: bool, row: TxnRow) -> tuple[str, Tone] | None:
    """What one 2PC line says, in words, and how it reads."""
    why = f": {event.reason}" if event.reason else ""
    code = f" ({event.code})" if event.code else ""
    decision = event.decision.value if event.decision else "the decision"
    tone = _DECISION_TONE.get(event.decision, Tone.PLAIN) if event.decision else Tone.PLAIN
    phase = event.phase
    if phase == Phase.BEGIN:
        banks = ", ".join(p.bank for p in row.participants)
        return f"began {row.payer} → {row.payee}; prepare sent to {banks}", Tone.PLAIN
    if phase == Phase.VOTE and event.vote is not None:
        vote_tone = Tone.GOOD if event.vote == Vote.YES else Tone.BAD
        if not by_gateway:
            return f"voted {event.vote.value}{why}", vote_tone
        if event.vote == Vote.NONE:
            return f"no vote from {event.bank}{code}{why}", Tone.BAD
        return f"heard {event.vote.value} from {event.bank}{why}", vote_tone
    if phase == Phase.DECISION:
        return f"decided {decision}{why}", tone
    if phase == Phase.ACKED:
        return f"{', '.join(event.banks or [event.bank or '?'])} acknowledged {decision}", tone
    if phase == Phase.DECISION_UNACKED:
        return f"{event.bank} has not acknowledged {decision}{code}: sent again later", Tone.DOUBT
    if phase == Phase.DECISION_REFUSED:
        return f"{event.bank} refused {decision}: {event.msg or 'its ledger disagrees'}", Tone.BAD
    if phase == Phase.RESOLVED:
        return f"told an asking bank: {decision}", tone
    if phase == Phase.COMMITTED:
        return "committed: money moved", Tone.GOOD
    if phase == Phase.ABORTED:
        return "aborted: hold released", Tone.BAD
    if phase == Phase.IN_DOUBT:
        return "in doubt: voted YES, no decision heard; asking the gateway", Tone.DOUBT
    if phase == Phase.RESOLVE_FAILED:
        return f"could not ask the gateway{code}{why}", Tone.DOUBT
    return None
