"""The Bank gRPC service: 2PC participant and read-only views for the operator."""

from __future__ import annotations

import asyncio

import grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.bank import ledger
from backend.common import faults, jsonlog, limits
from backend.common.db import Database
from backend.common.events import Event, Phase, TwoPc, Vote
from backend.common.interceptors import note

WRITE_ROLES = frozenset({"gateway"})
READ_ROLES = frozenset({"gateway", "operator"})
_BANK = "/strife.v1.Bank/"
ROLE_RULES = {
    _BANK + "Prepare": WRITE_ROLES,
    _BANK + "Commit": WRITE_ROLES,
    _BANK + "Abort": WRITE_ROLES,
    _BANK + "PrepareBatch": WRITE_ROLES,
    _BANK + "DecideBatch": WRITE_ROLES,
    _BANK + "ValidateAccount": READ_ROLES,
    _BANK + "Balance": READ_ROLES,
    _BANK + "ListAccounts": READ_ROLES,
    _BANK + "ListTransactions": READ_ROLES,
}


async def _check(context: grpc.aio.ServicerContext, check, value):
    try:
        return check(value)
    except limits.InvalidInput as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))


MAX_BATCH = 256


def _parse_prepare(request: pb.PrepareRequest) -> tuple[str, list[tuple[str, int]]]:
    """(txn_id, legs) of a well-formed prepare; raises InvalidInput otherwise."""
    txn_id = limits.txn_id(request.txn_id)
    if not 1 <= len(request.legs) <= limits.MAX_LEGS:
        raise limits.InvalidInput(f"a transaction has 1 to {limits.MAX_LEGS} legs")
    legs = []
    for leg in request.legs:
        limits.account(leg.account_id)
        if leg.delta_cents == 0 or abs(leg.delta_cents) > limits.MAX_AMOUNT_CENTS:
            raise limits.InvalidInput(f"bad delta_cents {leg.delta_cents}")
        legs.append((leg.account_id, leg.delta_cents))
    if len({a for a, _ in legs}) != len(legs):
        raise limits.InvalidInput("each account may appear in one leg only")
    return txn_id, legs


def _apply_decision(conn, txn_id: str, commit: bool) -> bool | ledger.LedgerError:
    """One decision of a batch, in its own savepoint: a refused one (LedgerError) is
    rolled back alone and returned, so the rest of the batch still applies."""
    conn.execute("SAVEPOINT decision")
    try:
        changed = (ledger.commit if commit else ledger.abort)(conn, txn_id)
    except ledger.LedgerError as exc:
        conn.execute("ROLLBACK TO decision")
        conn.execute("RELEASE decision")
        return exc
    conn.execute("RELEASE decision")
    return changed


class BankService(pb_grpc.BankServicer):
    def __init__(self, name: str, db: Database) -> None:
        self.name = name
        self.db = db

    async def _vote(self, txn_id: str, legs: list[tuple[str, int]]) -> pb.PrepareResponse:
        vote = await self.db.write(lambda c: ledger.prepare(c, txn_id, legs))
        _log_vote(txn_id, vote)
        if vote.yes:
            faults.crash("bank.crash_after_yes")
            if faults.active("bank.hang_after_yes"):
                await asyncio.Event().wait()  # never answer
        return pb.PrepareResponse(vote=pb.YES if vote.yes else pb.NO, reason=vote.reason)

    async def _decide(self, txn_id: str, commit: bool) -> None:
        """Apply the coordinator's decision; raises LedgerError if it contradicts this ledger."""
        try:
            changed = await self.db.write(lambda c: (ledger.commit if commit else ledger.abort)(c, txn_id))
        except ledger.LedgerError as exc:
            jsonlog.emit(Event.LEDGER_REFUSED, level="error", txn=txn_id, msg=str(exc))
            raise
        if changed:
            TwoPc(Phase.COMMITTED if commit else Phase.ABORTED, txn_id).emit()

    async def Prepare(self, request: pb.PrepareRequest, context) -> pb.PrepareResponse:
        txn_id, legs = await _check(context, _parse_prepare, request)
        note(txn=txn_id)
        return await self._vote(txn_id, legs)

    async def PrepareBatch(self, request: pb.PrepareBatchRequest, context) -> pb.PrepareBatchResponse:
        if not 1 <= len(request.prepares) <= MAX_BATCH:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"a batch has 1 to {MAX_BATCH} transactions")
        parsed = [await _check(context, _parse_prepare, p) for p in request.prepares]
        if len({txn_id for txn_id, _ in parsed}) != len(parsed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a transaction appears twice in the batch")
        note(txns=len(parsed))
        # One write for the whole batch (one future, one wake-up), not one per transaction.
        votes = await self.db.write(lambda c: [ledger.prepare(c, txn_id, legs) for txn_id, legs in parsed])
        for (txn_id, _), vote in zip(parsed, votes):
            _log_vote(txn_id, vote)
        if any(vote.yes for vote in votes):
            faults.crash("bank.crash_after_yes")
            if faults.active("bank.hang_after_yes"):
                await asyncio.Event().wait()  # never answer
        return pb.PrepareBatchResponse(
            votes=[pb.PrepareResponse(vote=pb.YES if v.yes else pb.NO, reason=v.reason) for v in votes]
        )

    async def _decide_rpc(self, request: pb.DecisionRequest, context, commit: bool) -> pb.DecisionResponse:
        txn_id = await _check(context, limits.txn_id, request.txn_id)
        note(txn=txn_id)
        try:
            await self._decide(txn_id, commit)
        except ledger.LedgerError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        return pb.DecisionResponse()

    async def Commit(self, request: pb.DecisionRequest, context) -> pb.DecisionResponse:
        return await self._decide_rpc(request, context, commit=True)

    async def Abort(self, request: pb.DecisionRequest, context) -> pb.DecisionResponse:
        return await self._decide_rpc(request, context, commit=False)

    async def DecideBatch(self, request: pb.DecideBatchRequest, context) -> pb.DecideBatchResponse:
        if not 1 <= len(request.decisions) <= MAX_BATCH:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"a batch has 1 to {MAX_BATCH} decisions")
        items = []
        for item in request.decisions:
            txn_id = await _check(context, limits.txn_id, item.txn_id)
            if item.decision not in (pb.COMMIT, pb.ABORT):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"transaction {txn_id}: decision must be COMMIT or ABORT")
            items.append((txn_id, item.decision == pb.COMMIT))
        note(txns=len(items))
        outcomes = await self.db.write(lambda c: [_apply_decision(c, t, commit) for t, commit in items])
        results = []
        for (txn_id, commit), outcome in zip(items, outcomes):
            if isinstance(outcome, ledger.LedgerError):
                jsonlog.emit(Event.LEDGER_REFUSED, level="error", txn=txn_id, msg=str(outcome))
                results.append(pb.DecisionResult(ok=False, error=str(outcome)))
            else:
                if outcome:
                    TwoPc(Phase.COMMITTED if commit else Phase.ABORTED, txn_id).emit()
                results.append(pb.DecisionResult(ok=True))
        return pb.DecideBatchResponse(results=results)

    async def _account(self, context, account_id: str):
        await _check(context, limits.account, account_id)
        row = await self.db.read(lambda c: ledger.account(c, account_id))
        return row

    async def ValidateAccount(self, request, context) -> pb.ValidateAccountResponse:
        row = await self._account(context, request.account_id)
        if row is None:
            return pb.ValidateAccountResponse(exists=False)
        return pb.ValidateAccountResponse(exists=True, owner=row["owner"])

    async def Balance(self, request, context) -> pb.BankBalanceResponse:
        row = await self._account(context, request.account_id)
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no account {request.account_id} at {self.name}")
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
        try:
            size = limits.page_size(request.page_size, default=100, maximum=1000)
        except limits.InvalidInput as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        after = request.page_token
        rows = await self.db.read(lambda c: ledger.transactions(c, after, size))
        return pb.ListTransactionsResponse(
            transactions=[
                pb.Transaction(
                    txn_id=r["txn_id"],
                    state=pb.TxnState.Value(r["state"]),
                    reason=r["reason"],
                    legs=[pb.Leg(account_id=l["account_id"], delta_cents=l["delta_cents"]) for l in legs],
                )
                for r, legs in rows
            ],
            next_page_token=rows[-1][0]["txn_id"] if len(rows) == size else "",
        )


def _log_vote(txn_id: str, vote: ledger.Vote) -> None:
    TwoPc(Phase.VOTE, txn_id, vote=Vote.YES if vote.yes else Vote.NO, reason=vote.reason or None).emit()


def _balance(row) -> pb.BankBalanceResponse:
    return pb.BankBalanceResponse(
        account_id=row["account_id"],
        owner=row["owner"],
        balance_cents=row["balance_cents"],
        available_cents=row["balance_cents"] - row["held_cents"],
    )
