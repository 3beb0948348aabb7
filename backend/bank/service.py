"""The Bank gRPC service: 2PC participant and read-only views for the operator.

Handlers raise DomainError subclasses (backend/common/errors.py); the logging
interceptor turns them into status codes.
"""

from __future__ import annotations

import asyncio

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.bank import ledger
from backend.common import faults, jsonlog, limits
from backend.common.db import Database
from backend.common.errors import DeadlineExceeded, DomainError, InvalidInput, NotFound
from backend.common.events import Event, Phase, TwoPc, Vote
from backend.common.interceptors import CALL, Refused, bug, note, role_rules, serve_message

ROLE_RULES = role_rules(pb.DESCRIPTOR.services_by_name["Bank"])
# Batches of one stream served at once; the next message waits for room (the gateway sends
# one prepare batch and one decide batch at a time, and gives up on a batch after its timeout).
MAX_STREAM_BATCHES = 16
_METHODS = {"prepare": "/strife.v1.Bank/PrepareBatch", "decide": "/strife.v1.Bank/DecideBatch"}
_STREAM = "/strife.v1.Bank/Batches"


def _parse_prepare(request: pb.PrepareRequest) -> tuple[str, list[tuple[str, int]]]:
    """(txn_id, legs) of a well-formed prepare; raises InvalidInput otherwise."""
    txn_id = limits.txn_id(request.txn_id)
    if not 1 <= len(request.legs) <= limits.MAX_LEGS:
        raise InvalidInput(f"a transaction has 1 to {limits.MAX_LEGS} legs", field="legs")
    legs = []
    for leg in request.legs:
        limits.account(leg.account_id, "legs.account_id")
        if leg.delta_cents == 0 or abs(leg.delta_cents) > limits.MAX_AMOUNT_CENTS:
            raise InvalidInput(f"bad delta_cents {leg.delta_cents}", field="legs.delta_cents")
        legs.append((leg.account_id, leg.delta_cents))
    if len({a for a, _ in legs}) != len(legs):
        raise InvalidInput("each account may appear in one leg only", field="legs")
    return txn_id, legs


def _parse_decision(item: pb.DecisionItem) -> tuple[str, bool]:
    """(txn_id, commit?) of a well-formed decision; raises InvalidInput otherwise."""
    txn_id = limits.txn_id(item.txn_id)
    if item.decision not in (pb.COMMIT, pb.ABORT):
        raise InvalidInput(f"transaction {txn_id}: decision must be COMMIT or ABORT", field="decision")
    return txn_id, item.decision == pb.COMMIT


def _batch_size(count: int, what: str, least: int = 1) -> None:
    if not least <= count <= limits.MAX_BATCH:
        raise InvalidInput(f"a batch has {least} to {limits.MAX_BATCH} {what}", field=what)


def _parse_decisions(items, allow_none: bool) -> list[tuple[str, bool]]:
    _batch_size(len(items), "decisions", least=0 if allow_none else 1)
    return [_parse_decision(item) for item in items]


async def _slow_commits(items: list[tuple[str, bool]]) -> None:
    """Fault point bank.slow_commits: commits wait SLOW_COMMIT_S before they are applied."""
    if faults.active("bank.slow_commits") and any(commit for _, commit in items):
        await asyncio.sleep(faults.SLOW_COMMIT_S)


def _apply_decisions(conn, items: list[tuple[str, bool]]) -> list[bool | ledger.LedgerError]:
    """Each decision of a batch; a refused one (LedgerError) is returned, so the rest of the
    batch still applies. No savepoint is needed: ledger.commit and ledger.abort refuse
    before they write anything."""
    outcomes: list[bool | ledger.LedgerError] = []
    for txn_id, commit in items:
        try:
            outcomes.append((ledger.commit if commit else ledger.abort)(conn, txn_id))
        except ledger.LedgerError as exc:
            outcomes.append(exc)
    return outcomes


def _decision_results(items: list[tuple[str, bool]], outcomes: list) -> list[pb.DecisionResult]:
    """The answers to applied decisions, and their log lines."""
    results = []
    for (txn_id, commit), outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, ledger.LedgerError):
            jsonlog.emit(Event.LEDGER_REFUSED, level="error", txn=txn_id, msg=str(outcome))
            results.append(pb.DecisionResult(ok=False, error=str(outcome)))
        else:
            if outcome:
                TwoPc(Phase.COMMITTED if commit else Phase.ABORTED, txn_id).emit()
            results.append(pb.DecisionResult(ok=True))
    return results


class BankService(pb_grpc.BankServicer):
    def __init__(self, name: str, db: Database) -> None:
        self.name = name
        self.db = db

    async def PrepareBatch(self, request: pb.PrepareBatchRequest, context) -> pb.PrepareBatchResponse:
        _batch_size(len(request.prepares), "prepares")
        parsed = [_parse_prepare(p) for p in request.prepares]
        if len({txn_id for txn_id, _ in parsed}) != len(parsed):
            raise InvalidInput("a transaction appears twice in the batch", field="prepares")
        decisions = _parse_decisions(request.decisions, allow_none=True)
        note(txns=len(parsed))
        if decisions:
            note(decisions=len(decisions))
        await _slow_commits(decisions)

        def write(conn) -> tuple[list, list[ledger.Vote]]:
            # The decisions first: a commit or an abort can only free funds for the prepares.
            return _apply_decisions(conn, decisions), [ledger.prepare(conn, txn_id, legs) for txn_id, legs in parsed]

        # One write for the whole call (one future, one wake-up, one commit), not one per transaction.
        outcomes, votes = await self.db.write(write)
        results = _decision_results(decisions, outcomes)
        for (txn_id, _), vote in zip(parsed, votes, strict=True):
            TwoPc(Phase.VOTE, txn_id, vote=Vote.YES if vote.yes else Vote.NO, reason=vote.reason or None).emit()
        if any(vote.yes for vote in votes):
            faults.crash("bank.crash_after_yes")
            if faults.active("bank.hang_after_yes"):
                await asyncio.Event().wait()  # never answer
        return pb.PrepareBatchResponse(votes=[_vote_message(v) for v in votes], results=results)

    async def DecideBatch(self, request: pb.DecideBatchRequest, context) -> pb.DecideBatchResponse:
        items = _parse_decisions(request.decisions, allow_none=False)
        note(txns=len(items))
        await _slow_commits(items)
        outcomes = await self.db.write(lambda c: _apply_decisions(c, items))
        return pb.DecideBatchResponse(results=_decision_results(items, outcomes))

    async def Batches(self, requests, context) -> None:
        """PrepareBatch and DecideBatch as messages of one stream, each served as its own call
        would be (log line, latency, errors: backend/common/interceptors.serve_message) and
        answered with its id as soon as it is done, in any order."""
        facts = {"role": CALL.get({}).get("role")}
        room = asyncio.Semaphore(MAX_STREAM_BATCHES)
        writing = asyncio.Lock()  # one write at a time on a stream
        serving: set[asyncio.Task] = set()

        answered = 0

        async def serve(batch: pb.BankBatch) -> None:
            nonlocal answered
            try:
                answer = await self._answer(batch, facts)  # its own errors are its answer
                try:
                    async with writing:
                        await context.write(answer)
                except Exception:  # noqa: BLE001 - the stream ended: nobody waits for the answer
                    return
                answered += 1
            except Exception as exc:  # noqa: BLE001 - a bug building an answer: say it; the gateway times the batch out
                bug(_STREAM, exc)
            finally:
                room.release()

        try:
            async for batch in requests:
                await room.acquire()
                task = asyncio.create_task(serve(batch))
                serving.add(task)
                task.add_done_callback(serving.discard)
            if serving:  # the gateway is done writing: end once every batch is answered
                await asyncio.wait(set(serving))
        except DomainError:  # a message that does not parse: the stream ends with its code
            raise
        except Exception as exc:  # noqa: BLE001 - gRPC's reading ended: this server stops, or the stream broke
            note(ended=type(exc).__name__)
        finally:
            for task in serving:
                task.cancel()
            note(batches=answered)

    async def _answer(self, batch: pb.BankBatch, facts: dict) -> pb.BankBatchAnswer:
        kind = batch.WhichOneof("batch")
        if kind is None:
            outcome: object = Refused(InvalidInput.code, "a batch holds a prepare or a decide")
        else:
            handle = self.PrepareBatch if kind == "prepare" else self.DecideBatch

            async def within_timeout():
                timeout_s = limits.batch_timeout_s(batch.timeout_ms)
                try:
                    async with asyncio.timeout(timeout_s):
                        return await handle(getattr(batch, kind), None)
                except TimeoutError:
                    raise DeadlineExceeded(f"{self.name} gave up on a batch after {timeout_s} s") from None

            outcome = await serve_message(_METHODS[kind], within_timeout, **facts)
        if isinstance(outcome, Refused):
            refused = pb.BatchRefused(code=outcome.code.value[0], message=outcome.message)
            return pb.BankBatchAnswer(id=batch.id, refused=refused)
        if isinstance(outcome, pb.PrepareBatchResponse):
            return pb.BankBatchAnswer(id=batch.id, prepare=outcome)
        assert isinstance(outcome, pb.DecideBatchResponse), outcome
        return pb.BankBatchAnswer(id=batch.id, decide=outcome)

    async def _account(self, account_id: str):
        limits.account(account_id)
        return await self.db.read(lambda c: ledger.account(c, account_id))

    async def ValidateAccount(self, request, context) -> pb.ValidateAccountResponse:
        row = await self._account(request.account_id)
        if row is None:
            return pb.ValidateAccountResponse(exists=False)
        return pb.ValidateAccountResponse(exists=True, owner=row["owner"])

    async def Balance(self, request, context) -> pb.BankBalanceResponse:
        row = await self._account(request.account_id)
        if row is None:
            raise NotFound(f"no account {request.account_id} at {self.name}")
        return _balance(row)

    async def ListAccounts(self, request, context) -> pb.ListAccountsResponse:
        rows, seeded_total = await self.db.read(ledger.overview)
        return pb.ListAccountsResponse(
            bank=self.name,
            accounts=[_balance(r) for r in rows],
            total_cents=sum(r["balance_cents"] for r in rows),
            held_cents=sum(r["held_cents"] for r in rows),
            seeded_total_cents=seeded_total,
        )

    async def ListTransactions(self, request, context) -> pb.ListTransactionsResponse:
        size = limits.page_size(request.page_size, default=100, maximum=1000)
        after = request.page_token
        rows = await self.db.read(lambda c: ledger.transactions(c, after, size))
        return pb.ListTransactionsResponse(
            transactions=[
                pb.Transaction(
                    txn_id=r["txn_id"],
                    state=r["state"],
                    reason=r["reason"],
                    legs=[pb.Leg(account_id=leg["account_id"], delta_cents=leg["delta_cents"]) for leg in legs],
                )
                for r, legs in rows
            ],
            next_page_token=rows[-1][0]["txn_id"] if len(rows) == size else "",
        )


def _vote_message(vote: ledger.Vote) -> pb.PrepareResponse:
    if vote.yes:
        return pb.PrepareResponse(vote=pb.YES)
    assert vote.refusal is not None
    return pb.PrepareResponse(vote=pb.NO, reason=vote.reason, refusal=vote.refusal.value)


def _balance(row) -> pb.BankBalanceResponse:
    return pb.BankBalanceResponse(
        account_id=row["account_id"],
        owner=row["owner"],
        balance_cents=row["balance_cents"],
        available_cents=row["balance_cents"] - row["held_cents"],
    )
