"""Ask the coordinator about transactions this bank voted YES on and heard nothing of.

A participant that voted YES never decides alone (presumed abort happens at the
coordinator). Every `interval_s` the resolver takes the prepared transactions
older than `in_doubt_after_s` and asks the gateway's Coordinator service, at any
live replica of the gateway tier (backend/common/discovery.py): every replica
answers from the shared 2PC log.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

import grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.bank import ledger
from backend.common import jsonlog
from backend.common.db import Database
from backend.common.discovery import Directory
from backend.common.events import Event, Phase, TwoPc

RESOLVE_DEADLINE_S = 2.0


class Resolver:
    def __init__(self, db: Database, gateways: Directory, in_doubt_after_s: float, interval_s: float = 1.0):
        self.db = db
        self.gateways = gateways
        self.in_doubt_after_s = in_doubt_after_s
        self.interval_s = interval_s

    async def run(self) -> None:
        while True:
            try:
                await self.resolve_once()
            except Exception as exc:  # noqa: BLE001 - keep resolving; say what went wrong
                jsonlog.emit(Event.RESOLVE_ERROR, level="warning", msg=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.interval_s)

    async def resolve_once(self) -> int:
        cutoff = time.time() - self.in_doubt_after_s
        txn_ids = await self.db.read(lambda c: ledger.in_doubt(c, cutoff))
        if not txn_ids:
            return 0
        if self.gateways.due():
            await self.gateways.refresh()
        resolved = 0
        for txn_id in txn_ids:
            TwoPc(Phase.IN_DOUBT, txn_id).emit()
            answer, code = await self._ask(txn_id)
            if answer is None:
                TwoPc(Phase.RESOLVE_FAILED, txn_id, code=code).emit("warning")
                await self.gateways.refresh()
                return resolved  # no replica answered; try again next round
            if answer.decision == pb.COMMIT:
                await self.db.write(partial(ledger.commit, txn_id=txn_id))
                TwoPc(Phase.COMMITTED, txn_id, reason="resolved with coordinator").emit()
            elif answer.decision == pb.ABORT:
                await self.db.write(partial(ledger.abort, txn_id=txn_id))
                TwoPc(Phase.ABORTED, txn_id, reason="resolved with coordinator").emit()
            resolved += 1
        return resolved

    async def _ask(self, txn_id: str) -> tuple[pb.ResolveResponse | None, str]:
        """The decision from the first replica that answers, or (None, the last error code)."""
        code = "UNAVAILABLE"
        for address in self.gateways.addresses():
            try:
                stub = pb_grpc.CoordinatorStub(self.gateways.channel(address))
                return await stub.ResolveTransaction(pb.ResolveRequest(txn_id=txn_id), timeout=RESOLVE_DEADLINE_S), ""
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
        return None, code
