"""The system `strife bench` measures: a throwaway stack of its own, or a running one.

A throwaway stack lives in a temporary directory: fresh certificates, generated
fixtures for M banks (one account per bench user, with a balance no bench run can
exhaust) and users the gateway seeds on first start, so no registration round
trips are needed. Both kinds answer the same questions: who may pay from which
account, how much money there is, and (own stack only) how much memory and CPU
each server process used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import certs, tls
from backend.supervisor import StackConfig, Supervisor, free_ports, stack_specs

BENCH_BALANCE_CENTS = 1_000_000_000   # 10 million units per account: small payments never run out
MAX_BANKS = 64
MAX_USERS = 4096
START_TIMEOUT_S = 120.0
READ_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class BenchUser:
    username: str
    password: str
    bank: str
    account_id: str


def bank_names(count: int) -> list[str]:
    return [f"Bank{i + 1:02d}" for i in range(count)]


def write_fixtures(directory: Path, banks: int, users: int, balance_cents: int) -> tuple[Path, Path, list[BenchUser]]:
    """banks.json and users.json for `banks` banks and `users` users, one account each, round-robin."""
    assert 2 <= banks <= MAX_BANKS and 1 <= users <= MAX_USERS, (banks, users)
    names = bank_names(banks)
    people = [
        BenchUser(f"bench{i:04d}", f"bench-pw-{i:04d}", names[i % banks], f"{names[i % banks]}-{i:06d}")
        for i in range(users)
    ]
    banks_doc = {"banks": [
        {"name": name, "accounts": [
            {"id": u.account_id, "owner": u.username, "balance_cents": balance_cents} for u in people if u.bank == name
        ]}
        for name in names
    ]}
    users_doc = {"users": [
        {"username": u.username, "password": u.password, "accounts": [[u.bank, u.account_id]]} for u in people
    ]}
    directory.mkdir(parents=True, exist_ok=True)
    banks_path, users_path = directory / "banks.json", directory / "users.json"
    banks_path.write_text(json.dumps(banks_doc))
    users_path.write_text(json.dumps(users_doc))
    return banks_path, users_path, people


@dataclass
class StackLog:
    """What the stack's processes said: counted, and the first errors kept (bounded)."""
    lines: int = 0
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)

    def __call__(self, record: dict) -> None:
        self.lines += 1
        if record.get("level") == "error":
            self.errors += 1
            if len(self.first_errors) < 5:
                self.first_errors.append(f"{record.get('process')}: {record.get('msg') or record.get('event')}"[:300])


class OwnStack:
    """Gateway + banks launched by the bench, on free loopback ports."""

    kind = "stack"

    def __init__(self, root: Path, certs_dir: Path, banks: int, users: int, twopc_timeout_s: float,
                 balance_cents: int = BENCH_BALANCE_CENTS) -> None:
        self.root = root
        self.names = bank_names(banks)
        certs.ensure_certs(certs_dir, ["gateway", *self.names])
        banks_path, users_path, self.users = write_fixtures(root / "fixtures", banks, users, balance_cents)
        ports = free_ports(1 + banks)
        self.cfg = StackConfig(
            data_dir=root / "data", certs_dir=certs_dir, gateway_port=ports[0],
            bank_ports=dict(zip(self.names, ports[1:])), twopc_timeout_s=twopc_timeout_s,
            bank_fixtures=banks_path, user_fixtures=users_path,
        )
        self.log = StackLog()
        self.sup = Supervisor(stack_specs(self.cfg), on_record=self.log)
        self.gateway = self.cfg.gateway_address
        self.certs_dir = certs_dir

    async def start(self) -> None:
        await self.sup.start_all(START_TIMEOUT_S)

    async def close(self) -> None:
        await self.sup.close()

    def pids(self) -> dict[str, int | None]:
        return {name: p.pid for name, p in self.sup.procs.items()}

    def clients(self, count: int) -> list[dict]:
        return [{"username": u.username, "password": u.password, "from": [u.bank, u.account_id]}
                for u in self.users[:count]]

    def payees(self) -> list[list[str]]:
        return [[u.bank, u.account_id] for u in self.users]

    async def money(self) -> dict:
        """Sum of balances and of holds over every bank, read with the operator certificate."""
        total = held = 0
        for name in self.names:
            async with tls.secure_channel(self.cfg.bank_address(name), self.certs_dir, "operator") as channel:
                answer = await pb_grpc.BankStub(channel).ListAccounts(pb.ListAccountsRequest(), timeout=READ_TIMEOUT_S)
            total += answer.total_cents
            held += answer.held_cents
        return {"scope": f"all accounts of all {len(self.names)} banks (Bank.ListAccounts, operator certificate)",
                "total_cents": total, "held_cents": held}


class RunningStack:
    """A stack someone else runs: the bench knows only the gateway and some logins."""

    kind = "target"

    def __init__(self, gateway: str, certs_dir: Path, logins: list[tuple[str, str]]) -> None:
        self.gateway = gateway
        self.certs_dir = certs_dir
        self.logins = logins
        self.accounts: dict[str, list[tuple[str, str]]] = {}
        self.log = StackLog()

    async def start(self) -> None:
        """Log in as each user once and learn the accounts it holds."""
        for username, password in dict(self.logins).items():
            async with tls.secure_channel(self.gateway, self.certs_dir, "client") as channel:
                stub = pb_grpc.GatewayStub(channel)
                try:
                    login = await stub.Login(pb.LoginRequest(username=username, password=password), timeout=READ_TIMEOUT_S)
                    answer = await stub.Balance(pb.BalanceRequest(), timeout=READ_TIMEOUT_S,
                                                metadata=(("authorization", f"Bearer {login.token}"),))
                except grpc.aio.AioRpcError as exc:
                    raise RuntimeError(f"cannot log in as {username} at {self.gateway}: {exc.code().name} {exc.details()}") from None
            self.accounts[username] = [(a.account.bank, a.account.account_id) for a in answer.accounts if a.reachable]
            if not self.accounts[username]:
                raise RuntimeError(f"user {username} holds no reachable account")
        banks = {bank for accounts in self.accounts.values() for bank, _ in accounts}
        if len(banks) < 2:
            raise RuntimeError("give users whose accounts are at two banks or more: payments go between banks")

    async def close(self) -> None:
        pass

    def pids(self) -> dict[str, int | None]:
        return {}

    def clients(self, count: int) -> list[dict]:
        """Clients take the given logins round-robin and pay from each user's first account."""
        out = []
        for i in range(count):
            username, password = self.logins[i % len(self.logins)]
            out.append({"username": username, "password": password, "from": list(self.accounts[username][0])})
        return out

    def payees(self) -> list[list[str]]:
        return [list(a) for accounts in self.accounts.values() for a in accounts]

    async def money(self) -> dict:
        total = held = 0
        for username, password in dict(self.logins).items():  # a user given twice counts once
            async with tls.secure_channel(self.gateway, self.certs_dir, "client") as channel:
                stub = pb_grpc.GatewayStub(channel)
                login = await stub.Login(pb.LoginRequest(username=username, password=password), timeout=READ_TIMEOUT_S)
                answer = await stub.Balance(pb.BalanceRequest(), timeout=READ_TIMEOUT_S,
                                            metadata=(("authorization", f"Bearer {login.token}"),))
            total += answer.total_cents
            held += sum(a.balance_cents - a.available_cents for a in answer.accounts if a.reachable)
        return {"scope": "the bench users' accounts only (Gateway.Balance); other traffic on the stack changes it",
                "total_cents": total, "held_cents": held}


# ------------------------------------------------------------------ probes --
def _status_kib(pid: int | None, field_name: str) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss_kib(pid: int | None) -> int | None:
    """VmHWM (peak resident set) of a live process, in KiB; None if unknown."""
    return _status_kib(pid, "VmHWM")


def rss_kib(pid: int | None) -> int | None:
    """VmRSS (resident set now) of a live process, in KiB; None if unknown."""
    return _status_kib(pid, "VmRSS")


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a live process so far."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def host_busy_cpu_seconds() -> float | None:
    """CPU seconds every process of the machine has used (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding `path` (fsync on tmpfs costs nothing: say so)."""
    path = Path(path).resolve()
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and (str(path) + "/").startswith(parts[1].rstrip("/") + "/") and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind
