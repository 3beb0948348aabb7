"""One long-lived mTLS channel per bank, with the gateway's certificate."""

from __future__ import annotations

from pathlib import Path

import grpc

from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import limits, tls


def parse_bank_flag(value: str) -> tuple[str, str]:
    """'BankA=127.0.0.1:50061' -> ('BankA', '127.0.0.1:50061')."""
    name, sep, address = value.partition("=")
    if not sep or not address:
        raise ValueError(f"--bank takes NAME=HOST:PORT, got {value!r}")
    return limits.bank(name), address


class Banks:
    def __init__(self, addresses: dict[str, str], certs_dir: Path) -> None:
        self.addresses = dict(addresses)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, pb_grpc.BankStub] = {}
        self._certs_dir = certs_dir

    def open(self) -> None:
        """Create the channels; call inside the running event loop."""
        for name, address in self.addresses.items():
            self._channels[name] = tls.secure_channel(address, self._certs_dir, "gateway")
            self._stubs[name] = pb_grpc.BankStub(self._channels[name])

    def __contains__(self, name: str) -> bool:
        return name in self._stubs

    def stub(self, name: str) -> pb_grpc.BankStub:
        return self._stubs[name]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
