"""A real stack for tests: bank and gateway processes on free loopback ports,
real certificates, real SQLite files in a temporary directory."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import certs, fixtures, tls
from backend.supervisor import StackConfig, Supervisor, free_ports, stack_specs

DEMO_PASSWORDS = {u["username"]: u["password"] for u in fixtures.users()}


@dataclass
class Stack:
    cfg: StackConfig
    sup: Supervisor
    records: list[dict] = field(default_factory=list)
    _channels: list[grpc.aio.Channel] = field(default_factory=list)

    def channel(self, target: str, role: str) -> grpc.aio.Channel:
        ch = tls.secure_channel(target, self.cfg.certs_dir, role)
        self._channels.append(ch)
        return ch

    def gateway(self, role: str = "client") -> pb_grpc.GatewayStub:
        return pb_grpc.GatewayStub(self.channel(self.cfg.gateway_address, role))

    def bank(self, name: str, role: str = "operator") -> pb_grpc.BankStub:
        return pb_grpc.BankStub(self.channel(self.cfg.bank_address(name), role))

    async def login(self, username: str, password: str | None = None) -> tuple[pb_grpc.GatewayStub, tuple]:
        """A gateway stub and the metadata that authenticates `username`."""
        gw = self.gateway()
        answer = await gw.Login(
            pb.LoginRequest(username=username, password=password or DEMO_PASSWORDS[username]), timeout=10
        )
        return gw, (("authorization", f"Bearer {answer.token}"),)

    async def ledgers(self) -> dict[str, pb.ListAccountsResponse]:
        return {
            name: await self.bank(name).ListAccounts(pb.ListAccountsRequest(), timeout=5)
            for name in self.cfg.bank_ports
        }

    async def total_cents(self) -> int:
        return sum(l.total_cents for l in (await self.ledgers()).values())

    async def transactions(self, bank: str) -> list[pb.Transaction]:
        out, token = [], ""
        while True:
            page = await self.bank(bank).ListTransactions(
                pb.ListTransactionsRequest(page_size=1000, page_token=token), timeout=5
            )
            out += page.transactions
            token = page.next_page_token
            if not token:
                return out

    def log_lines(self, process: str | None = None) -> list[dict]:
        return [r for r in self.records if process is None or r.get("process") == process]

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()
        await self.sup.close()


def make_certs(root: Path) -> Path:
    return certs.ensure_certs(root / "certs", ["gateway", *fixtures.bank_names()])


async def start_stack(tmp: Path, certs_dir: Path, **overrides) -> Stack:
    ports = free_ports(1 + len(fixtures.bank_names()))
    cfg = StackConfig(
        data_dir=tmp / "data",
        certs_dir=certs_dir,
        gateway_port=ports[0],
        bank_ports={n: p for n, p in zip(fixtures.bank_names(), ports[1:])},
        twopc_timeout_s=1.0,
        in_doubt_after_s=2.0,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    records: list[dict] = []
    sup = Supervisor(stack_specs(cfg), on_record=records.append)
    stack = Stack(cfg, sup, records)
    try:
        await sup.start_all()
    except BaseException:
        await sup.close()
        raise
    return stack


async def eventually(check, timeout_s: float = 15.0, interval_s: float = 0.1):
    """Await `check()` until it returns a truthy value; fail after timeout_s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last value {last!r})")
