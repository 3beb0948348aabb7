"""Client-side load balancing over the gateway tier: no balancer process to fail.

A Balancer starts from seed addresses (any replicas), learns the live ones from
ListGateways (backend/common/discovery.py) and refreshes them every REFRESH_S, so a
replica added later gets calls and a dead one stops getting them, without a restart.

Policies (POLICIES):
- pick_first, round_robin: gRPC's own, over one channel whose target lists the live
  replicas, with health-checked subchannels (the standard health service). When the
  live set changes, new calls go to a new channel; the old one is closed later.
- least_load: ours, one channel per replica: power of two choices on the calls this
  client has outstanding at each, plus the in-flight calls the replica last reported.
  A frozen replica keeps its calls outstanding, so it stops being picked.
Region: with `region`, only the live replicas of that region are used while one of
them is healthy; the others are the fallback (priority + fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from pathlib import Path

import grpc

from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import tls
from backend.common.discovery import REFRESH_S, Directory, Replica

POLICIES = ("pick_first", "round_robin", "least_load")
RETIRED_CHANNEL_CLOSE_S = 30.0  # an old channel's calls (a Pay takes at most 15 s) end before it is closed
_BAD_STATES = (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)


def _service_config(policy: str) -> str:
    return json.dumps(
        {
            "loadBalancingConfig": [{policy: {}}],
            "healthCheckConfig": {"serviceName": ""},
            **READS_RETRIED,
        }
    )


# The gateway's idempotent reads, retried by gRPC on UNAVAILABLE within their deadline (a Pay is
# not: the client library sends it again itself, under its key, after deciding it may).
READS_RETRIED = tls.retry_policy("strife.v1.Gateway", ["Balance", "ListPayments", "GetPayment", "ListGateways"])


class Balancer:
    """Use inside a running event loop: `await start()`, then `pick()` per call, `await close()`."""

    def __init__(
        self,
        seeds: list[str],
        certs_dir: Path,
        role: str = "client",
        policy: str = "pick_first",
        region: str | None = None,
        refresh_s: float = REFRESH_S,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown load-balancing policy {policy!r}: use one of {', '.join(POLICIES)}")
        self.policy = policy
        self.region = region
        self.certs_dir = Path(certs_dir)
        self.role = role
        self.directory = Directory(seeds, self.certs_dir, role, refresh_s)
        self._rng = rng
        self._outstanding: dict[str, int] = {}  # least_load: calls this client has at each address
        self._targets: tuple[str, ...] = ()  # the addresses the current channel (or picks) cover
        self._channel: grpc.aio.Channel | None = None  # pick_first / round_robin
        self._stub: pb_grpc.GatewayStub | None = None
        self._refresher: asyncio.Task | None = None
        self._retired: set[asyncio.Task] = set()
        self.last_address = ""  # least_load: where the last pick went ("" for gRPC's own policies)

    async def start(self) -> None:
        await self.directory.refresh()  # no replica answering yet is fine: the seeds stand in
        self._retarget()
        self._refresher = asyncio.create_task(self._refresh_forever())

    async def close(self) -> None:
        for task in [self._refresher, *self._retired]:
            if task is not None:
                task.cancel()
        if self._channel is not None:
            await self._channel.close()
        await self.directory.close()

    # ------------------------------------------------------------ picking --
    def pick(self) -> tuple[pb_grpc.GatewayStub, Callable[[], None]]:
        """A stub to call now, and what to call when the call ended."""
        if self.policy != "least_load":
            self._fall_back_if_down()
            assert self._stub is not None, "start() first"
            return self._stub, no_op
        address = self._least_loaded()
        self.last_address = address
        self._outstanding[address] = self._outstanding.get(address, 0) + 1

        def done() -> None:
            self._outstanding[address] = max(0, self._outstanding.get(address, 0) - 1)

        return pb_grpc.GatewayStub(self.directory.channel(address)), done

    @property
    def channel(self) -> grpc.aio.Channel | None:
        """The channel of gRPC's policies (None for least_load)."""
        return self._channel

    def _candidates(self) -> list[Replica]:
        """The live replicas to use: the client's region first, while one of them is healthy."""
        live = self.directory.replicas
        if self.region is not None:
            local = [r for r in live if r.region == self.region]
            if any(self._healthy(r.address) for r in local):
                return local
        return live

    def _healthy(self, address: str) -> bool:
        if self.policy != "least_load":
            return True  # gRPC's policies health-check their subchannels themselves
        state = self.directory.channel(address).get_state(try_to_connect=True)
        return state not in _BAD_STATES

    def _least_loaded(self) -> str:
        replicas = self._candidates()
        healthy = [r for r in replicas if self._healthy(r.address)] or replicas
        if not healthy:
            return self.directory.seeds[int(self._rng() * len(self.directory.seeds))]
        if len(healthy) == 1:
            return healthy[0].address
        first = int(self._rng() * len(healthy))
        second = int(self._rng() * (len(healthy) - 1))
        second += second >= first
        a, b = healthy[first], healthy[second]
        return a.address if self._load(a) <= self._load(b) else b.address

    def _load(self, replica: Replica) -> int:
        return self._outstanding.get(replica.address, 0) + replica.in_flight

    # ----------------------------------------------------------- the tier --
    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.directory.refresh_s)
            with contextlib.suppress(Exception):  # no replica answered: keep what we know
                await self.directory.refresh()
            self._retarget()

    def _fall_back_if_down(self) -> None:
        """gRPC's policies see only the addresses they were given: if the whole preferred
        region is down, move to the others now rather than at the next refresh."""
        if self._channel is not None and self._channel.get_state() in _BAD_STATES and self.region is not None:
            self._retarget(preferred_down=True)

    def _retarget(self, preferred_down: bool = False) -> None:
        """Point new calls at the current live set (for gRPC's policies: a new channel)."""
        replicas = self._candidates()
        if preferred_down:
            replicas = [r for r in self.directory.replicas if r.region != self.region] or replicas
        targets = tuple(sorted(r.address for r in replicas)) or tuple(self.directory.seeds)
        if self.policy == "least_load" or targets == self._targets:
            self._targets = targets
            return
        old, self._targets = self._channel, targets
        options = [
            *tls.CHANNEL_OPTIONS,
            ("grpc.service_config", _service_config(self.policy)),
            # one certificate name for every replica: our server certificates all hold 127.0.0.1 / localhost
            ("grpc.ssl_target_name_override", targets[0].rpartition(":")[0]),
        ]
        self._channel = grpc.aio.secure_channel(
            "ipv4:" + ",".join(targets), tls.channel_credentials(self.certs_dir, self.role), options=options
        )
        self._stub = pb_grpc.GatewayStub(self._channel)
        if old is not None:
            task = asyncio.get_running_loop().create_task(_close_later(old))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)


async def _close_later(channel: grpc.aio.Channel) -> None:
    await asyncio.sleep(RETIRED_CHANNEL_CLOSE_S)
    await channel.close()


def no_op() -> None:
    """What a pick that counts nothing gives to call when its call ended."""
