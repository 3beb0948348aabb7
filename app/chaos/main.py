"""`strife chaos`: a Jepsen-style fault campaign on a throwaway stack.

It starts its own stack on loopback (gateway + N banks, separate processes, temp
dir, 2PC timeout ~1 s, in-doubt after ~2 s) and, for --duration seconds, runs
--clients client worker processes (app/chaos/worker.py) making random payments
between accounts at different banks (some that must be declined, some replayed
under the same key) while the nemesis (app/chaos/nemesis.py) kills, freezes and
restarts banks, the gateway and the clients on a schedule drawn from --seed.
Then it heals everything, waits (bounded) for the outboxes to drain and the
in-doubt transactions to resolve, asks the gateway again with every recorded key,
stops the stack and checks the invariants from the banks' own ledgers and the
clients' records (app/chaos/check.py). Exit code 0 only if every invariant holds.

With --db postgres the gateway and the banks keep their state in databases of an
embedded PostgreSQL server the campaign starts in its directory, the nemesis may
also SIGKILL that server (kill_db), and the checker reads the same facts from
those databases (app/bench/storage.py).

Every process it starts is stopped on every path: the servers by the Supervisor,
the workers by closing their stdin and killing their process groups, the database
server by stop() in a `finally` (and it dies with this process in any case).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from app.bench import storage as stack_storage
from app.chaos import check as chaos_check
from app.chaos import nemesis as chaos_nemesis
from app.chaos.report import Outcome, render
from app.chaos.worker import WorkerHandle
from backend.common.states import Decision, LedgerState
from backend.supervisor import Supervisor, stack_specs
from backend.testbed import StackLog, bank_names, stable_ports, stack_config, write_fixtures

TIER_LEASE_S = 2.0  # --gateways N > 1: a frozen replica is taken over after this

START_BALANCE_CENTS = 20_000  # per account: small, so ordinary payments get declined too
AMOUNT_MAX_CENTS = 5_000
DECLINE_FRACTION = 0.08  # payments of more than all the money there is: must be DECLINED
REPLAY_FRACTION = 0.15  # after a final answer, send the same key and request again
CONFLICT_FRACTION = 0.03  # ... or the same key with a different amount (must be refused)
PAUSE_MAX_S = 0.3  # between two payments of one client
MAX_PAYMENTS_PER_CLIENT = 900  # the outbox keeps the last 1000 answers: all must stay checkable
START_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 60.0
REPLAY_TRIES = 5
REPLAY_CONCURRENCY = 16
LIMITS = {"duration": (1.0, 3600.0), "clients": (1, 32), "banks": (3, 16)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--seed", type=int, default=None, help="replay the schedule of this seed (default: a fresh one, printed)"
    )
    p.add_argument(
        "--duration",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds of payments and faults, before healing and checking (default 60)",
    )
    p.add_argument("--clients", type=int, default=4, metavar="N", help="client worker processes (default 4)")
    p.add_argument("--banks", type=int, default=3, metavar="N", help="banks, at least 3 (default 3)")
    p.add_argument(
        "--gateways",
        type=int,
        default=1,
        metavar="N",
        help="gateway replicas, 1 to 9 (default 1); with more, clients balance over them (round_robin), "
        "replicas are killed and frozen past their lease (2 s) too",
    )
    p.add_argument("--twopc-timeout", type=float, default=1.0, metavar="SECONDS", help="2PC vote deadline (default 1)")
    p.add_argument(
        "--in-doubt-after",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="a bank asks the gateway about a YES vote this old (default 2)",
    )
    stack_storage.add_argument(p, "the gateway and the banks (postgres adds the kill_db fault)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (it is kept anyway on FAIL)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print faults as they happen")


def main(args: argparse.Namespace) -> None:
    for name, (lo, hi) in LIMITS.items():
        value = getattr(args, name)
        if not lo <= value <= hi:
            sys.exit(f"strife chaos: --{name} must be between {lo:g} and {hi:g}")
    try:
        outcome = asyncio.run(_main(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit("strife chaos: interrupted; every process it started is stopped, its files are in /tmp/strife-chaos-*")
    render(outcome, Console(), as_json=args.json)
    sys.exit(0 if outcome.ok else 1)


async def _main(args: argparse.Namespace) -> Outcome:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, task.cancel)
    return await run(args)


class Campaign:
    def __init__(
        self, args: argparse.Namespace, seed: int, root: Path, console: Console, storage: stack_storage.StackStorage
    ) -> None:
        self.args = args
        self.storage = storage
        self.seed = seed
        self.root = root
        self.console = console
        if not 1 <= args.gateways <= 9:
            raise SystemExit("strife chaos: --gateways must be 1 to 9")
        self.names = bank_names(args.banks)
        # One account per client (round-robin over the banks), and at least one per bank.
        # Money circulates among the clients' accounts: a sink account would soon drain
        # them and turn every payment into a decline.
        users = max(args.clients, args.banks)
        banks_path, users_path, self.people = write_fixtures(root / "fixtures", args.banks, users, START_BALANCE_CENTS)
        self.cfg = stack_config(
            root,
            bank_fixtures=banks_path,
            user_fixtures=users_path,
            pick_ports=stable_ports,
            twopc_timeout_s=args.twopc_timeout,
            in_doubt_after_s=args.in_doubt_after,
            gateways=args.gateways,
            lease_s=TIER_LEASE_S if args.gateways > 1 else None,
        )
        storage.data_dir = self.cfg.data_dir
        self.cfg.databases = storage.start(["gateway", *self.names])  # the server, if any: main thread
        self.certs_dir = self.cfg.certs_dir
        self.log = StackLog()
        self.sup = Supervisor(stack_specs(self.cfg), on_record=self.log)
        total = START_BALANCE_CENTS * len(self.people)
        payees = [[u.bank, u.account_id] for u in self.people]
        self.workers: dict[str, WorkerHandle] = {}
        for i, u in enumerate(self.people[: args.clients]):
            setup = {
                "gateway": ",".join(self.cfg.gateway_addresses),
                "lb": "round_robin" if args.gateways > 1 else "pick_first",
                "certs": str(self.certs_dir),
                "profile": str(root / "clients" / u.username),
                "username": u.username,
                "password": u.password,
                "from": [u.bank, u.account_id],
                "payees": payees,
                "seed": seed,
                "max_payments": MAX_PAYMENTS_PER_CLIENT,
                "drain_timeout_s": DRAIN_TIMEOUT_S,
                "decline_fraction": DECLINE_FRACTION,
                "overdraw_cents": total + 1,
                "amount_max_cents": AMOUNT_MAX_CENTS,
                "replay_fraction": REPLAY_FRACTION,
                "conflict_fraction": CONFLICT_FRACTION,
                "pause_max_s": PAUSE_MAX_S,
            }
            self.workers[u.username] = WorkerHandle(i, setup)
        self.nemesis = chaos_nemesis.Nemesis(
            self.sup,
            self.workers,
            chaos_nemesis.plan(
                seed,
                args.duration,
                self.names,
                list(self.workers),
                db=storage.engine == "postgres",
                gateways=tuple(self.cfg.gateway_replicas),
            ),
            on_event=self._progress,
            db=storage if storage.engine == "postgres" else None,
            tier=args.gateways > 1,
        )

    def _progress(self, msg: str) -> None:
        if not self.args.quiet and not self.args.json:
            self.console.print(f"[dim]{msg}[/]")

    @property
    def start_balances(self) -> dict[tuple[str, str], int]:
        return {(u.bank, u.account_id): START_BALANCE_CENTS for u in self.people}

    async def drive(self, outcome: Outcome) -> list[chaos_check.Again]:
        """Start, run the load and the faults, heal, drain, settle, ask again."""
        await self.sup.start_all(START_TIMEOUT_S)
        for w in self.workers.values():
            await w.start()
        self._progress(
            f"stack up in {self.root}; {len(self.workers)} clients; "
            f"{len(self.nemesis.faults)} faults planned over {self.args.duration:g} s"
        )
        await self.nemesis.run(self.args.duration)

        t = time.monotonic()
        await self.nemesis.heal_all()
        outcome.problems += self.nemesis.errors
        outcome.phases["heal"] = time.monotonic() - t

        t = time.monotonic()
        drained = await asyncio.gather(*(w.drain(DRAIN_TIMEOUT_S + 10) for w in self.workers.values()))
        outcome.phases["drain"] = time.monotonic() - t
        for w, ok in zip(self.workers.values(), drained, strict=True):
            if not ok:
                outcome.problems.append(f"client {w.username} did not drain its outbox: {w.errors() or 'no output'}")

        t = time.monotonic()
        left = await self.settle(SETTLE_TIMEOUT_S)
        outcome.phases["settle"] = time.monotonic() - t
        if left:
            outcome.problems.append(f"not settled after {SETTLE_TIMEOUT_S:.0f} s: {left}")

        t = time.monotonic()
        again = await self.ask_again()
        outcome.phases["ask again"] = time.monotonic() - t
        return again

    # ------------------------------------------------------------ settle --
    def _unsettled(self) -> str:
        """'' when no bank holds money or has a PREPARED txn and the gateway has nothing pending."""
        parts = []
        for name in self.names:
            prepared, held = _scalars(
                self.storage.source(name),
                "SELECT (SELECT COUNT(*) FROM txns WHERE state = ?), "
                "(SELECT COALESCE(SUM(held_cents), 0) FROM accounts)",
                (LedgerState.PREPARED,),
            )
            if prepared or held:
                parts.append(f"{name}: {prepared} prepared, {held} cents held")
        preparing, unacked = _scalars(
            self.storage.source("gateway"),
            "SELECT (SELECT COUNT(*) FROM payments WHERE state = ?), "
            "(SELECT COUNT(*) FROM participants WHERE acked = 0)",
            (Decision.PREPARING,),
        )
        if preparing or unacked:
            parts.append(f"gateway: {preparing} preparing, {unacked} decisions unacknowledged")
        return "; ".join(parts)

    async def settle(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                left = await asyncio.to_thread(self._unsettled)
            except stack_storage.read_errors() as exc:
                left = f"cannot read: {exc}"
            if not left or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.5)

    # --------------------------------------------------------- ask again --
    async def ask_again(self) -> list[chaos_check.Again]:
        """Invariant 6: resend every recorded key with its request; collect the answers."""
        from backend.api import strife_pb2 as pb
        from backend.api import strife_pb2_grpc as pb_grpc
        from backend.common import tls

        out: list[chaos_check.Again] = []
        gate = asyncio.Semaphore(REPLAY_CONCURRENCY)
        passwords = {u.username: u.password for u in self.people}
        for username, w in self.workers.items():
            record = await asyncio.to_thread(chaos_check.load_client, username, w.profile)
            async with tls.secure_channel(self.cfg.gateway_address, self.certs_dir, "client") as channel:
                stub = pb_grpc.GatewayStub(channel)
                login = await stub.Login(pb.LoginRequest(username=username, password=passwords[username]), timeout=15)
                metadata = (("authorization", f"Bearer {login.token}"),)
                # A REJECTED answer saved nothing at the gateway: asking again could pay. Only final outcomes.
                rows = [s for s in record.sent if s["status"] in chaos_check.FINAL_OUTCOMES]
                out += await asyncio.gather(*(_ask_once(stub, metadata, username, s, gate) for s in rows))
        return out

    # ------------------------------------------------------------- close --
    async def close(self) -> None:
        try:
            await asyncio.gather(*(w.close() for w in self.workers.values()), return_exceptions=True)
            await self.sup.close()
        finally:
            for w in self.workers.values():
                w.kill_now()
            self.sup.kill_all_now()

    def snapshot(self) -> chaos_check.Snapshot:
        self.storage.restart()  # if a failure left the database server down: the checker reads it
        return chaos_check.load(
            self.start_balances,
            {name: self.storage.source(name) for name in self.names},
            self.storage.source("gateway"),
            {username: w.profile for username, w in self.workers.items()},
        )


async def _ask_once(stub, metadata, username: str, sent: dict, gate: asyncio.Semaphore) -> chaos_check.Again:
    """Send one recorded payment again under its key (a few tries, `gate` bounding how many at once)."""
    import grpc

    from backend.api import strife_pb2 as pb
    from backend.client import payment_status

    request = pb.PayRequest(
        idempotency_key=sent["idem_key"],
        amount_cents=sent["amount_cents"],
        to=pb.AccountRef(bank=sent["to_bank"], account_id=sent["to_account"]),
        **{"from": pb.AccountRef(bank=sent["from_bank"], account_id=sent["from_account"])},
    )
    code = "UNKNOWN"
    async with gate:
        for attempt in range(REPLAY_TRIES):
            try:
                p = await stub.Pay(request, timeout=10, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            return chaos_check.Again(username, sent["idem_key"], payment_status(p.status), p.payment_id)
    return chaos_check.Again(username, sent["idem_key"], code, "")


def _scalars(source: stack_storage.Source, sql: str, params: tuple = ()) -> tuple:
    with stack_storage.reading(source) as conn:
        return tuple(conn.execute(sql, params).fetchone())


async def run(args: argparse.Namespace) -> Outcome:
    started = time.monotonic()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    outcome = Outcome(
        seed=seed,
        duration_s=args.duration,
        command=f"strife chaos --seed {seed} --duration {args.duration:g} --clients {args.clients} --banks {args.banks}"
        + (f" --gateways {args.gateways}" if args.gateways > 1 else "")
        + (f" --db {args.db}" if args.db != "sqlite" else ""),
        engine=args.db,
    )
    console = Console(stderr=True)
    root = Path(tempfile.mkdtemp(prefix="strife-chaos-"))
    outcome.data_dir = str(root)
    if not args.json:
        console.print(f"[bold]strife chaos[/] seed [bold cyan]{seed}[/] in {root}")
    campaign = None
    again: list[chaos_check.Again] = []
    storage = stack_storage.StackStorage(args.db, root, root / "data")
    try:
        try:
            campaign = Campaign(args, seed, root, console, storage)
            again = await campaign.drive(outcome)
        except Exception as exc:  # noqa: BLE001 - report it; still check what the files say
            outcome.problems.append(f"the campaign stopped early: {type(exc).__name__}: {exc}"[:500])
        finally:
            if campaign is not None:
                await campaign.close()
        if campaign is not None:
            outcome.faults = campaign.nemesis.counts()
            if campaign.nemesis.db_restart_s:
                outcome.phases["longest database restart"] = max(campaign.nemesis.db_restart_s)
            if campaign.log.errors:
                console.print(
                    f"[dim]{campaign.log.errors} error lines from the servers, first: {campaign.log.first_errors}[/]"
                )
            try:
                snap = campaign.snapshot()
                outcome.tally = chaos_check.tally(snap)
                outcome.verdicts = chaos_check.check(snap, again)
            except stack_storage.read_errors() as exc:
                outcome.problems.append(f"cannot read the ledgers: {exc}")
    finally:
        storage.stop()
    outcome.wall_s = time.monotonic() - started
    outcome.kept = args.keep or not outcome.ok
    if not outcome.kept:
        shutil.rmtree(root, ignore_errors=True)
    return outcome
