"""A real stack for tests: bank and gateway processes on free loopback ports,
real certificates, real SQLite files in a temporary directory, or real databases on
the session's embedded PostgreSQL server (when the test runs with the both_engines
fixture's "postgres" parameter: tests/conftest.py sets `engine` and `pg_server`)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import certs, fixtures, jsonlog, tls
from backend.common.errors import CLIENT_CODES
from backend.common.events import Event, Phase
from backend.common.states import LedgerState
from backend.supervisor import StackConfig, Supervisor, db_environment, stack_specs
from backend.testbed import stack_config

# What a server may answer: the documented codes, and CANCELLED when the caller hung up.
SEEN_BY_CLIENTS = {c.name for c in CLIENT_CODES - {grpc.StatusCode.INTERNAL}} | {"CANCELLED"}
DEMO_PASSWORDS = {u["username"]: u["password"] for u in fixtures.users()}

ENGINES = ("sqlite", "postgres")
engine = "sqlite"  # the storage engine of the stacks made now (tests/conftest.py: both_engines)
pg_server = None  # the session's backend.common.embedded_pg.EmbeddedPostgres, once a test asked for it
_databases = itertools.count(1)


def engine_databases(names: list[str]) -> dict[str, str]:
    """--db of each process of a new stack: nothing (SQLite files) or fresh PostgreSQL databases."""
    if engine == "sqlite":
        return {}
    assert pg_server is not None, "the postgres engine needs the pg_server fixture"
    n = next(_databases)
    return {name: pg_server.create_database(f"t{n}_{name.lower()}") for name in names}


@dataclass
class Stack:
    cfg: StackConfig
    sup: Supervisor
    records: list[dict] = field(default_factory=list)
    _channels: list[grpc.aio.Channel] = field(default_factory=list)
    _bank_stubs: dict[tuple[str, str], pb_grpc.BankStub] = field(default_factory=dict)
    _gateway_stubs: dict[tuple[str, str], pb_grpc.GatewayStub] = field(default_factory=dict)

    def channel(self, target: str, role: str) -> grpc.aio.Channel:
        ch = tls.secure_channel(target, self.cfg.certs_dir, role)
        self._channels.append(ch)
        return ch

    def gateway(self, role: str = "client", replica: str | None = None) -> pb_grpc.GatewayStub:
        """A stub on the gateway (its first replica, or the replica named)."""
        address = self.cfg.gateway_address
        if replica is not None:
            address = f"{self.cfg.host}:{self.cfg.gateway_replicas[replica]}"
        return pb_grpc.GatewayStub(self.channel(address, role))

    def bank(self, name: str, role: str = "operator") -> pb_grpc.BankStub:
        """A stub on one cached channel per (bank, role), so polling opens no new connections."""
        if (name, role) not in self._bank_stubs:
            self._bank_stubs[name, role] = pb_grpc.BankStub(self.channel(self.cfg.bank_address(name), role))
        return self._bank_stubs[name, role]

    async def login(
        self, username: str, password: str | None = None, replica: str | None = None
    ) -> tuple[pb_grpc.GatewayStub, tuple]:
        """A gateway stub (on the replica named, or the first) and the metadata that authenticates `username`."""
        gw = self.gateway(replica=replica)
        answer = await gw.Login(
            pb.LoginRequest(username=username, password=password or DEMO_PASSWORDS[username]), timeout=10
        )
        return gw, (("authorization", f"Bearer {answer.token}"),)

    async def commits_sent(self, timeout_s: float = 3.0) -> None:
        """Wait (at most timeout_s) until no gateway replica that answers is still sending
        commits it already answered to their payers (the gateway replies at the commit
        point): then a bank's ledger shows every payment a client saw succeed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for replica in self.cfg.gateway_replicas:
            if (replica, "operator") not in self._gateway_stubs:
                self._gateway_stubs[replica, "operator"] = self.gateway("operator", replica=replica)
            stub = self._gateway_stubs[replica, "operator"]
            while loop.time() < deadline:
                try:  # wait_for_ready: a channel still reconnecting to a restarted replica is no answer
                    answer = await stub.ListGateways(pb.ListGatewaysRequest(), timeout=0.5, wait_for_ready=True)
                except grpc.aio.AioRpcError:
                    break  # down or frozen: it sends nothing now
                me = [g for g in answer.gateways if g.replica_id == answer.answered_by]
                if not me or me[0].committing == 0:
                    break
                await asyncio.sleep(0.01)

    async def ledgers(self, *names: str) -> dict[str, pb.ListAccountsResponse]:
        """Every bank's accounts (or only those of the banks named), once the gateway has sent
        the commits it answered."""
        await self.commits_sent()
        return {
            name: await self.bank(name).ListAccounts(pb.ListAccountsRequest(), timeout=5)
            for name in (names or self.cfg.bank_ports)
        }

    async def total_cents(self) -> int:
        return sum(ledger.total_cents for ledger in (await self.ledgers()).values())

    async def transactions(self, bank: str) -> list[pb.Transaction]:
        await self.commits_sent()
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

    async def seen(self, match, timeout_s: float = 10.0) -> list[dict]:
        """The log records for which match(record) is true, once there is at least one.
        Processes buffer their log lines for a few ms, so poll rather than look once."""

        async def found():
            return [r for r in self.records if match(r)]

        return await eventually(found, timeout_s=timeout_s, interval_s=0.02)

    async def logs_caught_up(self) -> None:
        """Give the processes' log buffers time to reach `records` (for absence checks)."""
        await asyncio.sleep(getattr(jsonlog, "FLUSH_S", 0.0) * 5 + 0.02)

    def set_env(self, name: str, env: dict[str, str]) -> None:
        """Replace the extra environment of process `name` for its next (re)start,
        e.g. to bring it back without the fault point that made it exit (its database's
        password, which travels in the environment, stays)."""
        self.sup.procs[name].spec.env = {**db_environment(self.cfg.databases.get(name)), **env}

    async def txn_states(self, *banks: str) -> dict[str, dict[str, LedgerState]]:
        """{txn_id: {bank: state}} over every bank's ledger (or those named)."""
        states: dict[str, dict[str, LedgerState]] = {}
        for bank in banks or self.cfg.bank_ports:
            for t in await self.transactions(bank):
                states.setdefault(t.txn_id, {})[bank] = LedgerState(pb.TxnState.Name(t.state))
        return states

    def begun(self) -> dict[str, dict]:
        """The gateway's `2pc begin` records by transaction id (banks, accounts, amount)."""
        return {
            r["txn"]: r
            for r in self.log_lines("gateway")
            if r.get("event") == Event.TWOPC and r.get("phase") == Phase.BEGIN
        }

    async def settled(self) -> bool:
        """True once no bank holds money or has a transaction in PREPARED."""
        ledgers = await self.ledgers()
        if any(ledger.held_cents for ledger in ledgers.values()):
            return False
        return all(LedgerState.PREPARED not in s.values() for s in (await self.txn_states()).values())

    async def assert_atomic(self) -> dict[str, dict[str, LedgerState]]:
        """Every transaction the gateway began is COMMITTED at both of its banks or at
        neither; nothing is PREPARED and nothing is held. Returns txn_states()."""
        states = await self.txn_states()
        for txn, rec in self.begun().items():
            banks = {rec["from_bank"], rec["to_bank"]}
            seen = {b: states.get(txn, {}).get(b, "ABSENT") for b in banks}
            committed = {b for b, s in seen.items() if s == LedgerState.COMMITTED}
            assert committed in (set(), banks), f"txn {txn} split across banks: {seen}"
            assert LedgerState.PREPARED not in seen.values(), f"txn {txn} still in doubt: {seen}"
        for txn, per_bank in states.items():
            assert LedgerState.PREPARED not in per_bank.values(), f"txn {txn} still in doubt: {per_bank}"
        ledgers = await self.ledgers()
        assert {b: ledger.held_cents for b, ledger in ledgers.items()} == {b: 0 for b in ledgers}
        return states

    async def balances(self) -> dict[tuple[str, str], int]:
        """{(bank, account): balance_cents} of every account at every bank."""
        return {
            (bank, a.account_id): a.balance_cents
            for bank, ledger in (await self.ledgers()).items()
            for a in ledger.accounts
        }

    async def close(self) -> None:
        """Stop everything, then fail if any server answered a call with a status code
        no client may see (UNKNOWN, INTERNAL: an exception nobody expected, a bug)."""
        for ch in self._channels:
            await ch.close()
        await self.sup.close()
        answered = {r.get("code") for r in self.records if r.get("event") == Event.RPC}
        bugs = [r for r in self.records if r.get("event") == Event.INTERNAL_ERROR]
        assert not bugs and answered <= SEEN_BY_CLIENTS, (answered - SEEN_BY_CLIENTS, bugs[:3])


def fault_env(*points: str) -> dict[str, str]:
    """Environment that switches on the named test-only fault points (backend/common/faults.py)."""
    return {"STRIFE_TEST_MODE": "1", "STRIFE_FAULTS": ",".join(points)}


def pay_request(
    to_bank: str,
    to_account: str,
    amount_cents: int,
    key: str | None = None,
    from_bank: str = "",
    from_account: str = "",
) -> pb.PayRequest:
    return pb.PayRequest(
        idempotency_key=key or str(uuid.uuid4()),
        to=pb.AccountRef(bank=to_bank, account_id=to_account),
        amount_cents=amount_cents,
        **{"from": pb.AccountRef(bank=from_bank, account_id=from_account)},
    )


def make_certs(root: Path) -> Path:
    return certs.ensure_certs(root / "certs", ["gateway", *fixtures.bank_names()])


def quick_config(tmp: Path, certs_dir: Path, **overrides) -> StackConfig:
    """The demo fixtures' gateway and banks on free ports, with short 2PC timeouts, on the
    current engine's storage."""
    cfg = stack_config(tmp, certs_dir=certs_dir, **{"twopc_timeout_s": 1.0, "in_doubt_after_s": 2.0, **overrides})
    if "databases" not in overrides:
        cfg.databases = engine_databases(["gateway", *cfg.bank_ports])
    return cfg


async def start_stack(
    tmp: Path, certs_dir: Path, proc_env: dict[str, dict[str, str]] | None = None, **overrides
) -> Stack:
    """Start gateway + banks. `overrides` set StackConfig fields (env applies to every
    process); `proc_env` adds environment to single processes, e.g.
    {"BankB": {"STRIFE_TEST_MODE": "1", "STRIFE_FAULTS": "bank.crash_after_yes"}}."""
    cfg = quick_config(tmp, certs_dir, **overrides)
    records: list[dict] = []
    specs = stack_specs(cfg)
    for spec in specs:
        spec.env.update((proc_env or {}).get(spec.name, {}))
    sup = Supervisor(specs, on_record=records.append)
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


def exited(pid: int) -> bool:
    """True once process `pid` is gone (or a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def processes_naming(text: str) -> list[int]:
    """The pids of live processes whose command line contains `text` (a run's directory:
    what a test checks is gone, the database server included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmdline and not exited(int(entry.name)):
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class Details:
    """What a refusal's google.rpc status details say (backend/common/status_details.py)."""

    reason: str  # ErrorInfo.reason
    domain: str
    retry_after_s: float | None  # RetryInfo, if any
    fields: tuple[str, ...]  # BadRequest field violations, if any


def details_of(exc: grpc.aio.AioRpcError) -> Details:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(exc)
    assert status is not None, f"no status details on {exc.code().name}: {exc.details()}"
    reason, domain, retry, fields = "", "", None, ()
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain = info.reason, info.domain
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            delay = error_details_pb2.RetryInfo()
            detail.Unpack(delay)
            retry = delay.retry_delay.seconds + delay.retry_delay.nanos / 1e9
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = tuple(v.field for v in bad.field_violations)
    return Details(reason, domain, retry, fields)


async def refusal(call) -> tuple[grpc.StatusCode, Details]:
    """The status code and details of a call that must be refused."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), details_of(exc)
    raise AssertionError("the call was not refused")
