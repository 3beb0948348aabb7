"""Finding the gateway tier: ListGateways from any replica we know, refreshed.

A Directory starts from seed addresses (any replicas of the tier, "host:port,host:port")
and keeps the live replicas the last answer listed. It asks the replicas it knows
first, then the seeds, so a tier that grew or lost replicas since the start is
followed, and one that lost every replica it listed is found again from the seeds.
Banks use it to send ResolveTransaction to any live replica; clients to balance
their calls over the tier.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import tls

LIST_TIMEOUT_S = 1.0
REFRESH_S = 2.0  # a directory is refreshed at most this often (due())
MAX_REPLICAS = 256  # of one answer, kept


@dataclass(frozen=True)
class Replica:
    """A live replica of the gateway tier, as ListGateways lists it."""

    replica_id: str
    address: str
    region: str
    in_flight: int  # calls it was serving at its last heartbeat
    started_at: float = 0.0
    heartbeat_at: float = 0.0

    @classmethod
    def of(cls, r: pb.GatewayReplica) -> Replica:
        return cls(r.replica_id, r.address, r.region, r.in_flight, r.started_at_ms / 1000, r.heartbeat_at_ms / 1000)

    def to_json(self) -> dict:
        return asdict(self)


def parse_seeds(value: str) -> list[str]:
    """'127.0.0.1:50060, 127.0.0.1:50070' -> ['127.0.0.1:50060', '127.0.0.1:50070'] (each once)."""
    seeds: list[str] = []
    for part in value.split(","):
        address = part.strip()
        if not address:
            continue
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT, got {address[:80]!r}")
        if address not in seeds:
            seeds.append(address)
    if not seeds:
        raise ValueError("no gateway address given")
    return seeds


class Directory:
    """The live replicas of the gateway tier as last seen. Use inside a running event loop."""

    def __init__(self, seeds: list[str], certs_dir: Path, role: str, refresh_s: float = REFRESH_S) -> None:
        self.seeds = list(seeds)
        self.certs_dir = Path(certs_dir)
        self.role = role
        self.refresh_s = refresh_s
        self.replicas: list[Replica] = []  # from the last answer; empty until one came
        self.refreshed_at = 0.0  # time.monotonic() of the last answer
        self._channels: dict[str, grpc.aio.Channel] = {}

    def addresses(self) -> list[str]:
        """Where to call: the live replicas' addresses, or the seeds before any answer."""
        return [r.address for r in self.replicas] or list(self.seeds)

    def due(self) -> bool:
        return time.monotonic() - self.refreshed_at >= self.refresh_s

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = tls.secure_channel(address, self.certs_dir, self.role)
        return channel

    async def refresh(self) -> bool:
        """Ask the replicas we know, then the seeds, until one answers; False if none did."""
        for address in dict.fromkeys([*self.addresses(), *self.seeds]):
            try:
                answer = await pb_grpc.GatewayStub(self.channel(address)).ListGateways(
                    pb.ListGatewaysRequest(), timeout=LIST_TIMEOUT_S
                )
            except grpc.aio.AioRpcError:
                continue
            self.replicas = [Replica.of(r) for r in answer.gateways[:MAX_REPLICAS]]
            self.refreshed_at = time.monotonic()
            await self._drop_unused()
            return True
        return False

    async def _drop_unused(self) -> None:
        keep = {*self.addresses(), *self.seeds}
        for address in [a for a in self._channels if a not in keep]:
            await self._channels.pop(address).close()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
