"""Ask the coordinator about transactions this bank voted YES on and heard nothing of.

A participant that voted YES never decides alone (presumed abort happens at the
coordinator). Every `interval_s` the resolver takes the prepared transactions
older than `in_doubt_after_s` and asks the gateway's Coordinator service.
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
from backend.common.events import Event, Phase, TwoPc

RESOLVE_DEADLINE_S = 2.0


class Resolver:
    def __init__(self, db: Database, channel: grpc.aio.Channel, in_doubt_after_s: float, interval_s: float = 1.0):
        self.db = db
        self.stub = pb_grpc.CoordinatorStub(channel)
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
        resolved = 0
        for txn_id in txn_ids:
            TwoPc(Phase.IN_DOUBT, txn_id).emit()
            try:
                answer = await self.stub.ResolveTransaction(
                    pb.ResolveRequest(txn_id=txn_id), timeout=RESOLVE_DEADLINE_S
                )
            except grpc.aio.AioRpcError as exc:
                TwoPc(Phase.RESOLVE_FAILED, txn_id, code=exc.code().name).emit("warning")
                return resolved  # the coordinator is unreachable; try again next round
            if answer.decision == pb.COMMIT:
                await self.db.write(partial(ledger.commit, txn_id=txn_id))
                TwoPc(Phase.COMMITTED, txn_id, reason="resolved with coordinator").emit()
            elif answer.decision == pb.ABORT:
                await self.db.write(partial(ledger.abort, txn_id=txn_id))
                TwoPc(Phase.ABORTED, txn_id, reason="resolved with coordinator").emit()
            resolved += 1
        return resolved
