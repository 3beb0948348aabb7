"""The system `strife bench` measures: a throwaway stack of its own, or a running one.

A throwaway stack lives in a temporary directory: fresh certificates, generated
fixtures for M banks (one account per bench user, with a balance no bench run can
exhaust) and users the gateway seeds on first start, so no registration round
trips are needed. Both kinds answer the same questions: who may pay from which
account, how much money there is, and (own stack only) how much memory and CPU
each server process used.
"""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from app.bench.storage import StackStorage
from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import tls
from backend.common.events import Event
from backend.supervisor import Supervisor, stack_specs
from backend.testbed import StackLog, stack_config, write_fixtures

BENCH_BALANCE_CENTS = 1_000_000_000  # 10 million units per account: small payments never run out
START_TIMEOUT_S = 120.0
READ_TIMEOUT_S = 10.0


class OwnStack:
    """Gateway + banks launched by the bench, on free loopback ports, their state in SQLite
    files or (engine "postgres") in databases of an embedded PostgreSQL server of its own."""

    kind = "stack"

    def __init__(
        self,
        root: Path,
        certs_dir: Path,
        banks: int,
        users: int,
        twopc_timeout_s: float,
        balance_cents: int = BENCH_BALANCE_CENTS,
        engine: str = "sqlite",
    ) -> None:
        self.root = root
        banks_path, users_path, self.users = write_fixtures(root / "fixtures", banks, users, balance_cents)
        self.cfg = stack_config(
            root,
            certs_dir=certs_dir,
            bank_fixtures=banks_path,
            user_fixtures=users_path,
            twopc_timeout_s=twopc_timeout_s,
        )
        self.cfg.metrics = True  # for the per-stage breakdown (app/bench/stages.py)
        self.metrics_addresses: dict[str, str] = {}  # process -> where it serves its metrics
        self.names = list(self.cfg.bank_ports)
        self.log = StackLog()
        self.storage = StackStorage(engine, root, self.cfg.data_dir)
        self.sup = Supervisor(stack_specs(self.cfg), on_record=self._record)
        self.gateway = self.cfg.gateway_address
        self.certs_dir = certs_dir

    @property
    def engine(self) -> str:
        return self.storage.engine

    async def start(self) -> None:
        """Start the database server if any (in this, the main, thread: it dies with it), then the stack."""
        self.cfg.databases = self.storage.start(["gateway", *self.names])
        self.sup = Supervisor(stack_specs(self.cfg), on_record=self._record)  # with each process's --db
        await self.sup.start_all(START_TIMEOUT_S)

    def _record(self, record: dict) -> None:
        if record.get("event") == Event.METRICS and isinstance(record.get("address"), str):
            self.metrics_addresses[str(record.get("process"))] = record["address"]
        self.log(record)

    async def close(self) -> None:
        try:
            await self.sup.close()
        finally:
            self.storage.stop()

    def pids(self) -> dict[str, int | None]:
        return {name: p.pid for name, p in self.sup.procs.items()}

    def db_server_pid(self) -> int | None:
        """The PostgreSQL postmaster's pid (its children are the backends); None on SQLite."""
        return self.storage.pid

    def clients(self, count: int) -> list[dict]:
        return [
            {"username": u.username, "password": u.password, "from": [u.bank, u.account_id]} for u in self.users[:count]
        ]

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
        return {
            "scope": f"all accounts of all {len(self.names)} banks (Bank.ListAccounts, operator certificate)",
            "total_cents": total,
            "held_cents": held,
        }


class RunningStack:
    """A stack someone else runs: the bench knows only the gateway and some logins."""

    kind = "target"
    engine = None  # whatever that stack runs on: the bench cannot see it
    metrics_addresses: dict[str, str] = {}  # not ours to know: no per-stage breakdown

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
                    login = await stub.Login(
                        pb.LoginRequest(username=username, password=password), timeout=READ_TIMEOUT_S
                    )
                    answer = await stub.Balance(
                        pb.BalanceRequest(),
                        timeout=READ_TIMEOUT_S,
                        metadata=(("authorization", f"Bearer {login.token}"),),
                    )
                except grpc.aio.AioRpcError as exc:
                    raise RuntimeError(
                        f"cannot log in as {username} at {self.gateway}: {exc.code().name} {exc.details()}"
                    ) from None
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

    def db_server_pid(self) -> int | None:
        return None

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
                answer = await stub.Balance(
                    pb.BalanceRequest(), timeout=READ_TIMEOUT_S, metadata=(("authorization", f"Bearer {login.token}"),)
                )
            total += answer.total_cents
            held += sum(a.balance_cents - a.available_cents for a in answer.accounts if a.reachable)
        return {
            "scope": "the bench users' accounts only (Gateway.Balance); other traffic on the stack changes it",
            "total_cents": total,
            "held_cents": held,
        }


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
        fields = stat[stat.rindex(")") + 2 :].split()
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
            if (
                len(parts) >= 3
                and (str(path) + "/").startswith(parts[1].rstrip("/") + "/")
                and len(parts[1]) > len(best)
            ):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind
