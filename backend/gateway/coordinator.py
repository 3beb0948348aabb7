"""Two-phase commit across banks, with a durable decision log.

Log lines per payment (event "2pc"): begin (prepares go out to every participant
now), decision, acked (the banks that acknowledged it); a vote only when a bank
gave none (timeout, offline) - banks log their own YES and NO.

Order of events for one payment (each arrow waits for the previous step):
  claim key + log PREPARING (written; its commit to disk overlaps the prepares) ->
  Prepare at every participant bank, in parallel, under one deadline -> the claim
  on disk -> log COMMIT or ABORT (on disk) -> send the
  decision; unacknowledged decisions are re-sent in the background until each
  bank acknowledges. A bank that asks about a transaction gets the logged
  decision, or ABORT logged on the spot (presumed abort).
The payer is answered at the commit point (COMMIT on disk), while the commits go
out; its next balance read waits for them (settle). An abort is answered after
the banks that voted released their holds, so a retry never meets them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

import grpc

from backend.api import strife_pb2 as pb
from backend.common import faults, jsonlog, loops, metrics
from backend.common.db import Conn, Database, Row
from backend.common.errors import (
    Aborted,
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    NotFound,
    Unavailable,
)
from backend.common.events import Event, Phase, TwoPc, Vote
from backend.common.states import Decision, Outcome
from backend.gateway import store
from backend.gateway.banks import Banks
from backend.gateway.breaker import Breakers

DECISION_SEND_TIMEOUT_S = 2.0
RESEND_INTERVAL_S = 0.5
RESEND_BATCH = 500
MAX_PENDING_ACKS = 100_000
# A transaction PREPARING this long that this process is not paying lost its payer: a write
# cut off by the database's death (its commit may have landed although we were told it
# failed), or a decision that could not be written. Nobody else ends it when no bank voted
# YES (none will ask), and its key answers "in progress" until then: presume abort. Longer
# than any payment takes: the 2PC timeout plus slow motion's pauses (at most 3 x 2 s).
ORPHAN_AFTER_S = 15.0
SWEEP_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Result:
    row: Row  # the payment as recorded
    replayed: bool


class Answer(StrEnum):
    """How a bank answered a Prepare."""

    VOTED = "voted"  # YES, or NO with a refusal
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True)
class BankVote:
    bank: str
    answer: Answer
    yes: bool = False
    refusal: int = pb.REFUSAL_UNSPECIFIED  # a pb.Refusal, when the bank voted NO
    reason: str = ""


class Coordinator:
    def __init__(
        self,
        db: Database,
        banks: Banks,
        timeout_s: float,
        orphan_after_s: float = ORPHAN_AFTER_S,
        replica_id: str = "gateway",
        breakers: Breakers | None = None,
    ) -> None:
        self.db = db
        self.breakers = breakers  # None: no circuit breakers
        self.replica_id = replica_id  # the owner of the payments this process runs (gateway tier)
        self.banks = banks
        self.timeout_s = timeout_s
        self.orphan_after_s = orphan_after_s
        self._running: set[str] = set()  # the transactions this process is paying now
        self._committing: dict[str, set[asyncio.Task]] = {}  # payer -> its commits being sent (settle())
        self._wake = asyncio.Event()
        self._acks: list[tuple[str, str]] = []  # (txn_id, bank) acknowledged, not yet on disk
        self._acks_writing = False
        self.slow_motion_s = 0.0  # demo only (service.DemoService): a pause between the phases of a payment

    # -------------------------------------------------------------- pay --
    async def pay(self, fields: store.PaymentFields, vote_timeout_s: float | None = None) -> Result:
        """Run one payment to its end; the banks get `vote_timeout_s` (at most the 2PC
        timeout) to vote. Shielded: a caller that hangs up (deadline, cancel) must not
        leave a claimed key or a PREPARING transaction behind. Raises a DomainError
        when the payment was refused or did not happen."""
        timeout_s = self.timeout_s if vote_timeout_s is None else min(vote_timeout_s, self.timeout_s)
        task = asyncio.ensure_future(self._pay(fields, timeout_s))
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _pay(self, fields: store.PaymentFields, vote_timeout_s: float) -> Result:
        txn_id = uuid.uuid4().hex
        self._running.add(txn_id)  # not an orphan while this runs, whatever its age (sweep_once)
        try:
            return await self._run(txn_id, fields, vote_timeout_s)
        finally:
            self._running.discard(txn_id)

    async def _run(self, txn_id: str, fields: store.PaymentFields, vote_timeout_s: float) -> Result:
        banks = sorted({fields.from_bank, fields.to_bank})
        refused = self.breakers.refuse(banks) if self.breakers is not None else None
        on_disk: asyncio.Future | None = None  # the claim's durable result, while it is not yet known
        if refused is not None:
            # A bank's breaker is open: nothing goes to it, and a free key stays free. A key
            # that already means something still answers what it means.
            claim = await self.db.read(lambda c: store.existing_claim(c, fields))
            if claim is None:
                bank, retry_after_s = refused
                _PAID["breaker_open"].inc()
                raise Unavailable(
                    f"payment not made: {bank} is failing (its circuit breaker is open); "
                    f"retry in {retry_after_s:.1f} s with the same idempotency key",
                    reason=pb.Errors.BREAKER_OPEN,
                    retry_after_s=retry_after_s,
                )
        else:
            started = time.perf_counter()
            claim, on_disk = await self._claim(fields, txn_id)
            _PHASE["claim"].observe(time.perf_counter() - started)
            if claim.kind != store.ClaimKind.NEW and self.breakers is not None:
                self.breakers.release(banks)
        if claim.kind != store.ClaimKind.NEW:
            return _existing(claim, fields)

        TwoPc(
            Phase.BEGIN,
            txn_id,
            user=fields.username,
            key=fields.idem_key,
            amount_cents=fields.amount_cents,
            from_bank=fields.from_bank,
            from_account=fields.from_account,
            to_bank=fields.to_bank,
            to_account=fields.to_account,
        ).emit()
        await self._slow_motion()
        started = time.perf_counter()
        votes = await self._prepare_all(txn_id, _legs(fields), vote_timeout_s)
        _PHASE["prepare"].observe(time.perf_counter() - started)
        if self.breakers is not None:
            for v in votes:
                self.breakers.record(v.bank, v.answer == Answer.VOTED, v.reason or v.answer)
        faults.crash("gateway.crash_before_claim_on_disk")
        if on_disk is not None:
            recorded = await self._recorded(on_disk, txn_id, banks)
            if recorded.kind != store.ClaimKind.NEW:
                return _existing(recorded, fields)
        faults.crash("gateway.crash_before_decision")
        await self._slow_motion()
        decision, outcome, reason = decide(votes)
        started = time.perf_counter()
        row = await self.db.write(lambda c: store.decide(c, txn_id, decision, outcome, reason))
        _PHASE["decide"].observe(time.perf_counter() - started)
        decision = Decision(row["state"])
        TwoPc(Phase.DECISION, txn_id, decision=decision, reason=row["reason"] or None).emit()
        if decision == Decision.COMMIT:
            faults.crash("gateway.crash_after_commit_record")
        await self._slow_motion()
        answered = {v.bank for v in votes if v.answer == Answer.VOTED}
        if decision == Decision.COMMIT:
            # The commit point: the decision is on disk, so the banks' commits are guaranteed
            # (re-sent until acknowledged, and a bank in doubt asks). The payer has the answer
            # now; its next balance read waits for them (settle()).
            self._commit_later(fields.username, txn_id, banks)
        else:
            # Wait for the banks that voted (an abort must release their holds before a
            # retry); one that never answered may be hung: tell it in the background.
            now = [b for b in banks if b in answered]
            later = [b for b in banks if b not in answered]
            if later:
                task = asyncio.ensure_future(self._send_decision(txn_id, decision, later))
                task.add_done_callback(_retrieve)
            if now:
                started = time.perf_counter()
                await self._send_decision(txn_id, decision, now)
                _PHASE["send"].observe(time.perf_counter() - started)
        _PAID[row["outcome"]].inc()
        if row["outcome"] == Outcome.RETRYABLE:
            raise not_made(votes, row["reason"])
        return Result(row, replayed=False)

    def _commit_later(self, username: str, txn_id: str, banks: list[str]) -> None:
        """Send a recorded COMMIT in the background, kept per payer until the banks answered."""
        task = asyncio.ensure_future(self._send_commit(txn_id, banks))
        sending = self._committing.setdefault(username, set())
        sending.add(task)

        def done(task: asyncio.Task) -> None:
            _retrieve(task)
            sending.discard(task)
            if not sending and self._committing.get(username) is sending:
                del self._committing[username]

        task.add_done_callback(done)

    async def _send_commit(self, txn_id: str, banks: list[str]) -> None:
        started = time.perf_counter()
        await self._send_decision(txn_id, Decision.COMMIT, banks)
        _PHASE["send"].observe(time.perf_counter() - started)

    @property
    def committing(self) -> int:
        """Commits answered to their payers and still being sent to the banks from here."""
        return sum(len(tasks) for tasks in self._committing.values())

    async def settle(self, username: str) -> None:
        """Read-your-writes for a payer: wait (at most DECISION_SEND_TIMEOUT_S) until the banks
        have the commits of `username`'s payments answered so far: those this replica is
        sending, and those recorded by other replicas (a tier) that no bank acknowledged yet,
        sent again from here (a bank answers a decision it has idempotently)."""
        here: list[asyncio.Future] = list(self._committing.get(username, ()))
        elsewhere = await self.db.read(
            partial(store.unacked_commits_of, username=username, owner=self.replica_id, limit=RESEND_BATCH)
        )
        sent = [self.banks.batches(bank).decide(txn_id, True) for txn_id, bank in elsewhere if bank in self.banks]
        if here or sent:
            self.banks.hurry_decisions()  # lingering commits (banks.DECISION_LINGER_S) leave now
            await asyncio.wait([*here, *sent], timeout=DECISION_SEND_TIMEOUT_S)
        for future in sent:  # their acknowledgements are recorded by whoever owns them
            if future.done():
                future.exception()
            else:
                future.cancel()

    async def _claim(self, fields: store.PaymentFields, txn_id: str) -> tuple[store.Claim, asyncio.Future | None]:
        """Claim the key. A NEW claim is answered as soon as its write ran, before its commit,
        with the future of the recorded result: the prepares need not wait for the disk
        (presumed abort: a transaction nobody recorded is aborted for any bank that asks, and
        the decision, written after the claim, waits for it). Any other answer comes only once
        on disk."""
        executed, on_disk = await self.db.write_early(lambda c: store.claim(c, fields, txn_id, self.replica_id))
        on_disk.add_done_callback(_retrieve)
        claim = await executed
        if claim.kind == store.ClaimKind.NEW:
            return claim, on_disk
        return await on_disk, None

    async def _recorded(self, on_disk: asyncio.Future, txn_id: str, banks: list[str]) -> store.Claim:
        """The claim as it reached the disk. Not ours after all (its batch failed, or ran again
        and found the key taken): the prepares sent for it are aborted at once, as presumed
        abort would answer a bank that asked, and the caller answers what the key means."""
        try:
            recorded = await on_disk
        except Exception:
            await self._abandon(txn_id, banks)
            raise
        if recorded.kind != store.ClaimKind.NEW:
            await self._abandon(txn_id, banks)
        return recorded

    async def _abandon(self, txn_id: str, banks: list[str]) -> None:
        reason = "its claim was not recorded: presumed abort"
        TwoPc(Phase.DECISION, txn_id, decision=Decision.ABORT, reason=reason).emit()
        await self._send_decision(txn_id, Decision.ABORT, banks)

    async def _slow_motion(self) -> None:
        """A demo's pause between phases. Nothing waits on it but this payment: the
        prepared holds stay on disk and a bank that asks meanwhile gets presumed abort."""
        if self.slow_motion_s:
            await asyncio.sleep(self.slow_motion_s)

    async def _prepare_all(
        self, txn_id: str, legs: dict[str, list[tuple[str, int]]], timeout_s: float
    ) -> list[BankVote]:
        """Prepare at every participant in parallel under one deadline. The bank
        batchers hand back futures, so waiting costs no task per bank."""
        alone = len(self._running) <= 1
        futures = {
            bank: self.banks.batches(bank).prepare(
                pb.PrepareRequest(txn_id=txn_id, legs=[pb.Leg(account_id=a, delta_cents=d) for a, d in bank_legs]),
                alone,
            )
            for bank, bank_legs in legs.items()
        }
        await asyncio.wait(futures.values(), timeout=timeout_s)
        return [_vote(txn_id, bank, future) for bank, future in futures.items()]

    # -------------------------------------------------------- decisions --
    async def _send_decision(self, txn_id: str, decision: Decision, banks: list[str]) -> None:
        """Send the decision and wait for the banks (so the caller sees balances that
        include it, and a retry never meets a hold that is being released). Recording
        the acknowledgements is not waited for: at worst a decision is sent twice."""
        commit = decision == Decision.COMMIT
        futures = {bank: self.banks.batches(bank).decide(txn_id, commit) for bank in banks}
        await asyncio.wait(futures.values(), timeout=DECISION_SEND_TIMEOUT_S)
        acked = [bank for bank, future in futures.items() if _acked(txn_id, decision, bank, future)]
        if acked:
            TwoPc(Phase.ACKED, txn_id, banks=acked, decision=decision).emit()
            if commit:
                faults.crash("gateway.crash_after_first_commit")
            self._record_acks(txn_id, acked)
        if len(acked) < len(banks):
            self._wake.set()

    async def _send_one(self, txn_id: str, decision: Decision, bank: str) -> bool:
        future = self.banks.batches(bank).decide(txn_id, decision == Decision.COMMIT)
        await asyncio.wait((future,), timeout=DECISION_SEND_TIMEOUT_S)
        if not _acked(txn_id, decision, bank, future):
            return False
        TwoPc(Phase.ACKED, txn_id, banks=[bank], decision=decision).emit()
        return True

    def _record_acks(self, txn_id: str, banks: list[str]) -> None:
        """Mark acknowledgements on disk in the background, many payments per write."""
        if len(self._acks) + len(banks) > MAX_PENDING_ACKS:
            return  # the decision is simply re-sent later; banks answer it idempotently
        self._acks.extend((txn_id, bank) for bank in banks)
        if not self._acks_writing:
            self._acks_writing = True
            task = asyncio.ensure_future(self._write_acks())
            task.add_done_callback(_retrieve)

    async def _write_acks(self) -> None:
        try:
            while self._acks:
                acks, self._acks = self._acks[:RESEND_BATCH], self._acks[RESEND_BATCH:]
                await self.db.write(partial(store.ack_pairs, pairs=acks))
        finally:
            self._acks_writing = False

    async def resend_forever(self) -> None:
        """Re-send logged decisions until every bank has acknowledged them."""
        while True:
            try:
                await self.resend_once()
            except Exception as exc:  # noqa: BLE001 - keep going, say why
                jsonlog.emit(Event.RESEND_ERROR, level="warning", msg=f"{type(exc).__name__}: {exc}")
            try:
                await asyncio.wait_for(self._wake.wait(), RESEND_INTERVAL_S)
            except TimeoutError:
                pass
            self._wake.clear()

    async def resend_once(self) -> int:
        """One round: per bank, one decision alone (is the bank up?), then the rest
        together, so they share calls to the bank and writes of the acks."""
        pending = await self.db.read(lambda c: store.unacked(c, self.replica_id, RESEND_BATCH))
        by_bank: dict[str, list[tuple[str, Decision]]] = {}
        for txn_id, bank, decision in pending:
            if bank in self.banks:
                by_bank.setdefault(bank, []).append((txn_id, decision))
        sent = 0
        for bank, items in by_bank.items():
            if not await self._send_one(*items[0], bank):
                continue  # down: one warning a round, not one per decision
            acked = [(items[0][0], bank)]
            futures = [(t, d, self.banks.batches(bank).decide(t, d == Decision.COMMIT)) for t, d in items[1:]]
            if futures:
                await asyncio.wait([f for _, _, f in futures], timeout=DECISION_SEND_TIMEOUT_S)
            for txn_id, decision, future in futures:
                if _acked(txn_id, decision, bank, future):
                    TwoPc(Phase.ACKED, txn_id, banks=[bank], decision=decision).emit()
                    acked.append((txn_id, bank))
            await self.db.write(partial(store.ack_pairs, pairs=acked))
            sent += len(acked)
        return sent

    # ---------------------------------------------------------- recovery --
    async def recover(self) -> int:
        """At start: abort every transaction this replica's previous run left PREPARING
        (RESEND_BATCH to a write: 1,000 of them took 4 s one write each)."""
        txn_ids = await self.db.read(partial(store.preparing, owner=self.replica_id))
        reason = "gateway restarted during 2PC"
        for start in range(0, len(txn_ids), RESEND_BATCH):
            chunk = txn_ids[start : start + RESEND_BATCH]
            await self.db.write(partial(_abort_all, txn_ids=chunk, reason=reason))
            for txn_id in chunk:
                TwoPc(Phase.DECISION, txn_id, decision=Decision.ABORT, reason=reason).emit()
        if txn_ids:
            self._wake.set()
        return len(txn_ids)

    async def sweep_forever(self) -> None:
        """Presume abort for orphaned transactions (ORPHAN_AFTER_S), every SWEEP_INTERVAL_S."""
        await loops.every(SWEEP_INTERVAL_S, self.sweep_once, "sweep")

    async def sweep_once(self) -> int:
        """Abort (conditionally: a decision recorded meanwhile stands) every transaction
        PREPARING for longer than orphan_after_s that this process is not paying; the
        resend loop then tells its banks. Returns how many were aborted."""
        cutoff = time.time() - self.orphan_after_s
        found = await self.db.read(
            partial(store.preparing_since, owner=self.replica_id, before=cutoff, limit=RESEND_BATCH)
        )
        orphans = [t for t in found if t not in self._running]
        if not orphans:
            return 0
        reason = "its payment was cut off (the gateway lost its database): presumed abort"
        await self.db.write(partial(_abort_all, txn_ids=orphans, reason=reason))
        for txn_id in orphans:
            TwoPc(Phase.DECISION, txn_id, decision=Decision.ABORT, reason=reason).emit()
        self._wake.set()
        return len(orphans)

    async def take_over(self, dead: str, stale_before: float) -> int | None:
        """Take over the work of replica `dead` (heartbeat older than `stale_before`):
        abort its PREPARING transactions (presumed abort: conditional, so a decision it
        recorded meanwhile stands) and re-send its unacknowledged decisions from here.
        None if it came back or another survivor took over first; else how many
        transactions were taken."""

        def write(conn: Conn) -> tuple[list[tuple[str, str]], list[str]] | None:
            taken = store.take_over(conn, dead, self.replica_id, stale_before)
            if taken is None:
                return None
            preparing = [t for t, state in taken if state == Decision.PREPARING]
            _abort_all(conn, preparing, f"replica {dead} stopped during 2PC: taken over by {self.replica_id}")
            return taken, preparing

        result = await self.db.write(write)
        if result is None:
            return None
        taken, aborted = result
        reason = f"replica {dead} stopped during 2PC: taken over by {self.replica_id}"
        for txn_id in aborted:
            TwoPc(Phase.DECISION, txn_id, decision=Decision.ABORT, reason=reason).emit()
        jsonlog.emit(
            Event.TAKEOVER,
            level="warning",
            replica=dead,
            msg=f"took over replica {dead}: {len(aborted)} aborted (were PREPARING), "
            f"{len(taken) - len(aborted)} decisions to re-send",
        )
        if taken:
            self._wake.set()
        return len(taken)

    async def resolve(self, txn_id: str) -> Decision:
        decision = await self.db.write(lambda c: store.presume_abort(c, txn_id, "in doubt at a bank: presumed abort"))
        TwoPc(Phase.RESOLVED, txn_id, decision=decision).emit()
        return decision


# The instruments' children, looked up once (backend/common/metrics.py).
_PHASE = {phase: metrics.TWOPC_PHASE_SECONDS.labels(phase) for phase in ("claim", "prepare", "decide", "send")}
_PAID = {
    Outcome.SUCCEEDED: metrics.PAYMENTS.labels("succeeded"),
    Outcome.DECLINED: metrics.PAYMENTS.labels("declined"),
    Outcome.RETRYABLE: metrics.PAYMENTS.labels("not_made"),
    store.ClaimKind.REPLAY: metrics.PAYMENTS.labels("replayed"),
    store.ClaimKind.CONFLICT: metrics.PAYMENTS.labels("key_conflict"),
    store.ClaimKind.IN_FLIGHT: metrics.PAYMENTS.labels("key_in_flight"),
    "breaker_open": metrics.PAYMENTS.labels("breaker_open"),
}


def _existing(claim: store.Claim, fields: store.PaymentFields) -> Result:
    """What a key that already means something answers: its payment replayed, or a refusal."""
    _PAID[claim.kind].inc()
    if claim.kind == store.ClaimKind.CONFLICT:
        assert claim.row is not None
        raise FailedPrecondition(
            f"idempotency_key {fields.idem_key!r} was already used for a different payment "
            f"(payment {claim.row['txn_id']}); use a new key for a new payment"
        )
    if claim.kind == store.ClaimKind.IN_FLIGHT:
        raise Aborted(f"a payment with idempotency_key {fields.idem_key!r} is still in progress; retry shortly")
    assert claim.kind == store.ClaimKind.REPLAY and claim.row is not None, claim.kind
    jsonlog.emit(Event.IDEMPOTENT_REPLAY, user=fields.username, txn=claim.row["txn_id"])
    return Result(claim.row, replayed=True)


def _abort_all(conn: Conn, txn_ids: list[str], reason: str) -> None:
    for txn_id in txn_ids:
        store.decide(conn, txn_id, Decision.ABORT, Outcome.RETRYABLE, reason)


def _retrieve(task: asyncio.Future) -> None:
    """Mark the outcome of a future nobody may await (a payment whose caller left, a commit
    sent in the background) as seen: it is logged anyway."""
    if not task.cancelled():
        task.exception()


def _vote(txn_id: str, bank: str, future: asyncio.Future) -> BankVote:
    """What a bank's prepare future says. Banks log their own YES and NO; the
    gateway logs only a vote it never got."""
    if not future.done():
        future.cancel()  # not sent yet: it will not be; sent: its answer is ignored
        code = grpc.StatusCode.DEADLINE_EXCEEDED
    elif future.exception() is None:
        vote = future.result()
        return BankVote(bank, Answer.VOTED, vote.vote == pb.YES, vote.refusal, vote.reason)
    else:
        exc = future.exception()
        code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.UNKNOWN
    answer = {grpc.StatusCode.UNAVAILABLE: Answer.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED: Answer.TIMEOUT}.get(
        code, Answer.ERROR
    )
    reason = {Answer.UNAVAILABLE: f"{bank} offline", Answer.TIMEOUT: f"{bank} timed out"}.get(
        answer, f"{bank} error {code.name}"
    )
    TwoPc(Phase.VOTE, txn_id, bank=bank, vote=Vote.NONE, code=code.name, reason=reason).emit("warning")
    return BankVote(bank, answer, reason=reason)


def _acked(txn_id: str, decision: Decision, bank: str, future: asyncio.Future) -> bool:
    """Whether a bank's decision future holds its acknowledgement; log why not."""
    if not future.done():
        future.cancel()
        code = "DEADLINE_EXCEEDED"
    elif future.exception() is not None:
        exc = future.exception()
        code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "UNKNOWN"
    elif not future.result().ok:  # the bank's ledger contradicts the decision: never expected, say it loudly
        TwoPc(Phase.DECISION_REFUSED, txn_id, bank=bank, decision=decision, msg=future.result().error).emit("error")
        return False
    else:
        return True
    TwoPc(Phase.DECISION_UNACKED, txn_id, bank=bank, decision=decision, code=code).emit("warning")
    return False


def _legs(fields: store.PaymentFields) -> dict[str, list[tuple[str, int]]]:
    legs: dict[str, list[tuple[str, int]]] = {}
    legs.setdefault(fields.from_bank, []).append((fields.from_account, -fields.amount_cents))
    legs.setdefault(fields.to_bank, []).append((fields.to_account, fields.amount_cents))
    return legs


def decide(votes: list[BankVote]) -> tuple[Decision, Outcome, str]:
    """(decision, outcome, reason) from the votes: COMMIT only if every bank said YES;
    DECLINED when a bank refused for want of funds (final), unless an account does
    not exist at all (that is the client's mistake, NOT_FOUND); else RETRYABLE."""
    if all(v.yes for v in votes):
        return Decision.COMMIT, Outcome.SUCCEEDED, ""
    refused = [v for v in votes if v.answer == Answer.VOTED and not v.yes]
    unknown = [v for v in refused if v.refusal == pb.UNKNOWN_ACCOUNT]
    if unknown:
        return Decision.ABORT, Outcome.RETRYABLE, "; ".join(v.reason for v in unknown)
    if any(v.refusal == pb.INSUFFICIENT_FUNDS for v in refused):
        return Decision.ABORT, Outcome.DECLINED, "insufficient funds"
    failed = refused or [v for v in votes if not v.yes]
    return Decision.ABORT, Outcome.RETRYABLE, "; ".join(v.reason for v in failed)


def not_made(votes: list[BankVote], reason: str) -> DomainError:
    """What a client is told of a payment aborted without a final outcome."""
    if any(v.refusal == pb.UNKNOWN_ACCOUNT for v in votes):
        return NotFound(f"payment not made: {reason}")
    answers = {v.answer for v in votes if not v.yes}
    if answers == {Answer.TIMEOUT}:
        return DeadlineExceeded(f"payment not made: {reason}; retry with the same idempotency key")
    return Unavailable(f"payment not made: {reason}; retry with the same idempotency key")
