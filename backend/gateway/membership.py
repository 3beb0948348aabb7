"""The gateway tier's membership: join, heartbeat, list the live replicas, take over the dead.

Each replica registers in the shared store (replica id, address, region, a fresh
incarnation) and heartbeats every HEARTBEAT_S with its in-flight calls. On each beat
it also looks for replicas whose last heartbeat is older than the lease and takes
their work over (Coordinator.take_over: a conditional write, so one survivor wins).

A replica that finds its row gone was taken over while it was silent (frozen, cut
off from the store): it joins again, and its old work is no longer its own. One that
finds another incarnation in its row was replaced by a newer process with its id:
it stops. A replica takes others over only once its own heartbeats have landed for
a whole lease, so after an outage of the store nobody takes over a replica that
simply had no chance to beat yet; and only if the silent one does not answer at its
address as itself either (ListGateways' answered_by: a replica whose heartbeats are
late because the store is slow under load is alive, and taking it over would abort
its payments for nothing; another process now at that address does not count).

Times are the hosts' wall clocks (time.time()): replicas on many hosts need them
in step (NTP), well within the lease.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import faults, jsonlog, tls
from backend.common.db import Database
from backend.common.events import Event
from backend.gateway import store
from backend.gateway.coordinator import Coordinator

HEARTBEAT_S = 1.0
LIVE_S = 3.0  # listed as live while its last heartbeat is this recent
LEASE_S = 5.0  # default: its work is taken over once its last heartbeat is this old
ALIVE_CHECK_S = 1.0  # how long a silent replica's health check may take
MAX_TAKEOVERS = 16  # silent replicas looked at per heartbeat


class Membership:
    def __init__(
        self,
        db: Database,
        coordinator: Coordinator,
        replica_id: str,
        address: str,
        region: str,
        in_flight: Callable[[], int],
        on_replaced: Callable[[], None],
        lease_s: float = LEASE_S,
        certs_dir: Path | None = None,
    ) -> None:
        self.db = db
        self.coordinator = coordinator
        self.replica_id = replica_id
        self.address = address
        self.region = region
        self.in_flight = in_flight
        self.on_replaced = on_replaced
        self.lease_s = lease_s
        self.certs_dir = certs_dir  # to ask a silent replica whether it still answers (None: do not ask)
        self.started_at = time.time()
        self._incarnation = uuid.uuid4().hex
        self._beating_since: float | None = None  # our heartbeats have landed without a gap since then

    def _me(self, now: float) -> store.Replica:
        return store.Replica(self.replica_id, self.address, self.region, self.started_at, now, self.in_flight())

    async def join(self) -> None:
        now = time.time()
        await self.db.write(partial(store.register, replica=self._me(now), incarnation=self._incarnation))
        self._beating_since = now
        jsonlog.emit(Event.JOINED, replica=self.replica_id, address=self.address, region=self.region)

    async def leave(self) -> None:
        await self.db.write(partial(store.leave, replica_id=self.replica_id, incarnation=self._incarnation))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if faults.active("gateway.no_heartbeats"):
                continue
            try:
                await self.beat_once()
            except Exception as exc:  # noqa: BLE001 - the store may be down: keep beating, say why
                self._beating_since = None
                jsonlog.emit(Event.RESEND_ERROR, level="warning", msg=f"heartbeat: {type(exc).__name__}: {exc}")

    async def beat_once(self) -> None:
        now = time.time()
        result = await self.db.write(
            partial(
                store.heartbeat,
                replica_id=self.replica_id,
                incarnation=self._incarnation,
                now=now,
                in_flight=self.in_flight(),
            )
        )
        if result == store.Heartbeat.REPLACED:
            jsonlog.emit(
                Event.REPLACED,
                level="error",
                replica=self.replica_id,
                msg=f"another gateway registered as replica {self.replica_id!r}: stopping "
                "(give each replica its own --replica)",
            )
            self.on_replaced()
            return
        if result == store.Heartbeat.TAKEN_OVER:
            jsonlog.emit(
                Event.TAKEN_OVER,
                level="warning",
                replica=self.replica_id,
                msg="silent past the lease: the tier took this replica's work over; joining again",
            )
            await self.join()
            return
        if self._beating_since is None:
            self._beating_since = now
        if now - self._beating_since >= self.lease_s:
            await self.take_over_dead(now)

    async def take_over_dead(self, now: float) -> int:
        """Take over every replica whose heartbeat is older than the lease; how many were taken."""
        stale_before = now - self.lease_s
        silent = [
            r
            for r in await self.db.read(store.replicas)
            if r.heartbeat_at < stale_before and r.replica_id != self.replica_id
        ][:MAX_TAKEOVERS]
        # asked together, so a heartbeat waits at most ALIVE_CHECK_S for them whatever their number
        answers = await asyncio.gather(*(self._answers(r) for r in silent))
        taken = 0
        for replica, alive in zip(silent, answers, strict=True):
            if not alive and await self.coordinator.take_over(replica.replica_id, stale_before) is not None:
                taken += 1
        return taken

    async def _answers(self, replica: store.Replica) -> bool:
        """Does a replica whose heartbeats stopped still answer, as itself (its beats are only
        late)? Another process now at its address (a replica restarted under a new id) does not
        count. A cleanly stopped one (heartbeat 0) is not asked: it said it left."""
        if self.certs_dir is None or replica.heartbeat_at == 0:
            return False
        channel = tls.secure_channel(replica.address, self.certs_dir, "gateway")
        try:
            async with asyncio.timeout(ALIVE_CHECK_S):
                answer = await pb_grpc.GatewayStub(channel).ListGateways(pb.ListGatewaysRequest())
        except (grpc.aio.AioRpcError, TimeoutError):
            return False
        finally:
            # not awaited here: closing a channel to a frozen peer must not hold up a heartbeat
            closing = asyncio.ensure_future(channel.close())
            closing.add_done_callback(lambda task: task.cancelled() or task.exception())
        return answer.answered_by == replica.replica_id

    async def live(self) -> list[store.Replica]:
        """The replicas whose heartbeat is within LIVE_S, this one with its load of now."""
        now = time.time()
        found = [r for r in await self.db.read(store.replicas) if r.heartbeat_at >= now - LIVE_S]
        return [self._me(now) if r.replica_id == self.replica_id else r for r in found]
