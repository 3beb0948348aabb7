"""One long-lived mTLS channel per bank, with the gateway's certificate, and the
batchers that carry the 2PC traffic to it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import limits, tls
from backend.gateway.bank_stream import BankStream
from backend.gateway.batcher import Batcher

DECIDE_CALL_TIMEOUT_S = 2.0
# Commits go out after their payers were answered: one that finds the bank's decision
# batcher idle waits this long for others, or for a PrepareBatch to the bank to ride on,
# so a bank gets fewer, fuller calls.
DECISION_LINGER_S = 0.020
# A prepare that finds its bank's batcher idle while other payments are under way waits this
# long for theirs: fewer, fuller PrepareBatch calls (each costs the gateway and the bank about
# as much CPU as a small batch). A payment alone never waits.
PREPARE_LINGER_S = 0.002
# The bank's reads are idempotent: gRPC retries them on UNAVAILABLE within their deadline.
# Prepare and decide batches are not retried here (the coordinator decides what a failure means).
READS_RETRIED = tls.retry_policy("strife.v1.Bank", ["Balance", "ValidateAccount", "ListAccounts", "ListTransactions"])


def parse_bank_flag(value: str) -> tuple[str, str]:
    """'BankA=127.0.0.1:50061' -> ('BankA', '127.0.0.1:50061')."""
    name, sep, address = value.partition("=")
    if not sep or not address:
        raise ValueError(f"--bank takes NAME=HOST:PORT, got {value!r}")
    return limits.bank(name), address


class BankBatches:
    """Prepares and decisions for one bank, batched (see backend/gateway/batcher.py), and
    sent as messages of one stream (backend/gateway/bank_stream.py)."""

    def __init__(self, stream: BankStream, prepare_timeout_s: float) -> None:
        self.stream = stream
        self.prepare_timeout_s = prepare_timeout_s
        self._prepares: Batcher[pb.PrepareRequest, pb.PrepareResponse] = Batcher(
            self._prepare_batch, "prepare", linger_s=PREPARE_LINGER_S
        )
        self._decisions: Batcher[pb.DecisionItem, pb.DecisionResult] = Batcher(
            self._decide_batch, "decide", linger_s=DECISION_LINGER_S
        )

    async def _prepare_batch(self, items: list[pb.PrepareRequest]) -> list[pb.PrepareResponse]:
        """The prepares, and the decisions waiting for this bank riding along: one call and
        one write at the bank instead of two. A ridden decision gets what the call got (its
        result, or the call's failure: then it is sent again like any unacknowledged one)."""
        riders = self._decisions.take()
        started = time.perf_counter()
        try:
            request = pb.PrepareBatchRequest(prepares=items, decisions=[item for item, _ in riders])
            answer = await self.stream.prepare(request, self.prepare_timeout_s)
        except BaseException as exc:
            self._decisions.settle(riders, exc, started)
            raise
        self._decisions.settle(riders, answer.results, started)
        return list(answer.votes)

    async def _decide_batch(self, items: list[pb.DecisionItem]) -> list[pb.DecisionResult]:
        answer = await self.stream.decide(pb.DecideBatchRequest(decisions=items), DECIDE_CALL_TIMEOUT_S)
        return list(answer.results)

    def prepare(self, request: pb.PrepareRequest, alone: bool) -> asyncio.Future:
        """A future of the bank's PrepareResponse (or of the call's error). Unless it is the
        only payment under way (`alone`), a prepare that finds the batcher idle lingers for company."""
        return self._prepares.submit_nowait(request, urgent=alone)

    def hurry(self) -> None:
        """Send the decisions lingering here now (someone waits for them: settle())."""
        self._decisions.leave_now()

    def decide(self, txn_id: str, commit: bool) -> asyncio.Future:
        """A future of the bank's DecisionResult (or of the call's error). A commit may linger
        (its payer has its answer already); an abort leaves at once (its payer waits for it)."""
        item = pb.DecisionItem(txn_id=txn_id, decision=pb.COMMIT if commit else pb.ABORT)
        return self._decisions.submit_nowait(item, urgent=not commit)


class Banks:
    def __init__(self, addresses: dict[str, str], certs_dir: Path, prepare_timeout_s: float) -> None:
        self.addresses = dict(addresses)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, pb_grpc.BankStub] = {}
        self._batches: dict[str, BankBatches] = {}
        self._certs_dir = certs_dir
        self._prepare_timeout_s = prepare_timeout_s

    def open(self) -> None:
        """Create the channels; call inside the running event loop."""
        for name, address in self.addresses.items():
            self._channels[name] = tls.secure_channel(address, self._certs_dir, "gateway", READS_RETRIED)
            self._stubs[name] = pb_grpc.BankStub(self._channels[name])
            self._batches[name] = BankBatches(BankStream(self._stubs[name], name), self._prepare_timeout_s)

    def hurry_decisions(self) -> None:
        for batches in self._batches.values():
            batches.hurry()

    def batches(self, name: str) -> BankBatches:
        return self._batches[name]

    def __contains__(self, name: str) -> bool:
        return name in self._stubs

    def stub(self, name: str) -> pb_grpc.BankStub:
        return self._stubs[name]

    @property
    def channels(self) -> dict[str, grpc.aio.Channel]:
        return dict(self._channels)

    async def close(self) -> None:
        for batches in self._batches.values():
            batches.stream.close()
        for channel in self._channels.values():
            await channel.close()
