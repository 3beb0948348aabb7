"""`strife bench --scenario history|recovery`: the gateway with a large log behind it.

Both start a throwaway stack (gateway + banks), stop the gateway once it has made
its database, write many payments straight into that database (its SQLite file, or
with --db postgres its PostgreSQL database), and start the gateway again:
  history   N rows of one user's payments (sent and received); time ListPayments
            pages through the real gateway (first page, following pages, a deep
            page) and show the database's query plan of the history queries;
  recovery  N logged transactions, most decided and acknowledged, some PREPARING
            (a crash mid-2PC); time from the gateway's process start to SERVING
            (it aborts every PREPARING one first), then until every abort reached
            its banks.
(`--scenario soak` is an ordinary run with --payments 100000 that reports whether
the gateway's RSS stayed flat; see app/bench.py.)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from app.bench import storage
from app.bench.stack import OwnStack
from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import tls
from backend.common.states import Decision, Outcome
from backend.gateway import store

SEED_CHUNK = 50_000
MAX_SEED_ROWS = 10_000_000
HISTORY_PAGES = 20
HISTORY_PAGE_SIZE = 50
RECOVERY_START_TIMEOUT_S = 600.0
DRAIN_TIMEOUT_S = 300.0
RPC_TIMEOUT_S = 10.0


def _gateway_db(stack: OwnStack) -> storage.Source:
    return stack.storage.source("gateway")


def _row(i: int, user, other, state: Decision, outcome: Outcome | None, now: float, sent: bool) -> tuple:
    payer, payee = (user, other) if sent else (other, user)
    return (
        uuid.uuid4().hex,
        payer.username,
        f"seed-{i}",
        "0" * 64,
        payer.bank,
        payer.account_id,
        payee.bank,
        payee.account_id,
        1 + i % 100,
        state,
        outcome,
        "",
        now - 1e-3 * i,
        None if state == Decision.PREPARING else now,
    )


def seed_payments(source: storage.Source, users: list, rows: int, preparing: int = 0, with_keys: bool = False) -> float:
    """Write `rows` payments of users[0] (every third one received from users[1]);
    the last `preparing` of them PREPARING, the rest committed and acknowledged.
    Returns seconds taken."""
    assert 0 <= preparing <= rows <= MAX_SEED_ROWS
    started = time.monotonic()
    user, other = users[0], users[1]
    now = time.time()
    engine = storage.engine_of(source)
    conn = engine.connect()  # as the gateway opens it (SQLite: WAL, synchronous=FULL)
    try:
        engine.migrate(conn, store.MIGRATIONS if engine.name == "sqlite" else store.PG_MIGRATIONS)
        for start in range(0, rows, SEED_CHUNK):
            batch = []
            for i in range(start, min(rows, start + SEED_CHUNK)):
                in_doubt = i >= rows - preparing
                batch.append(
                    _row(
                        i,
                        user,
                        other,
                        Decision.PREPARING if in_doubt else Decision.COMMIT,
                        None if in_doubt else Outcome.SUCCEEDED,
                        now,
                        sent=i % 3 != 2,
                    )
                )
            engine.begin(conn)
            conn.executemany(
                "INSERT INTO payments (txn_id, username, idem_key, fingerprint, from_bank, from_account, to_bank, "
                "to_account, amount_cents, state, outcome, reason, created_at, decided_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch,
            )
            if with_keys:
                conn.executemany(
                    "INSERT INTO idempotency_keys (username, idem_key, txn_id, created_at) VALUES (?, ?, ?, ?)",
                    [(r[1], r[2], r[0], r[12]) for r in batch],
                )
                conn.executemany(
                    "INSERT INTO participants (txn_id, bank, acked) VALUES (?, ?, ?)",
                    [(r[0], bank, 0 if r[9] == Decision.PREPARING else 1) for r in batch for bank in {r[4], r[6]}],
                )
            conn.commit()
        if engine.name == "postgres":
            conn.execute("ANALYZE payments")  # what autovacuum does soon after a bulk load: fresh planner statistics
    finally:
        conn.close()
        engine.close()
    return time.monotonic() - started


class _Recorder:
    """A connection that remembers the statements run on it (constants of store.py) with their parameters."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements: list[tuple[str, tuple]] = []

    def execute(self, sql: str, params: Any = ()) -> Any:
        self.statements.append((sql, tuple(params)))
        return self.conn.execute(sql, params)


def history_plan(source: storage.Source, username: str) -> list[str]:
    """The database's plan for the statements store.history runs (captured, then EXPLAINed
    with the same parameters): SQLite's EXPLAIN QUERY PLAN steps, or PostgreSQL's EXPLAIN lines."""
    sqlite = isinstance(source, Path)
    with storage.reading(source) as conn:
        recorder = _Recorder(conn)
        store.history(recorder, username, 2**62, HISTORY_PAGE_SIZE)
        plan = []
        for sql, params in recorder.statements:
            if sql.lstrip().upper().startswith("SELECT"):
                if sqlite:
                    plan += [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
                else:
                    plan += [r[0] for r in conn.execute("EXPLAIN " + sql, params)]
        return plan


def full_scan(step: str) -> bool:
    """A plan step that reads a whole table (SQLite: SCAN; PostgreSQL: Seq Scan)."""
    return step.startswith("SCAN") or "Seq Scan" in step


async def _restart_gateway(stack: OwnStack, seed) -> tuple[float, float]:
    """Stop the gateway, run seed(), start it again; (seed seconds, process start to SERVING seconds)."""
    await stack.sup.stop("gateway")
    seed_s = await asyncio.to_thread(seed)
    started = time.monotonic()
    await stack.sup.start("gateway")
    await stack.sup.wait_serving("gateway", RECOVERY_START_TIMEOUT_S)
    return seed_s, time.monotonic() - started


def _summary(values_ms: list[float]) -> dict:
    ordered = sorted(values_ms)
    return {"pages": len(ordered), "p50_ms": round(ordered[len(ordered) // 2], 2), "max_ms": round(ordered[-1], 2)}


async def history(args, root: Path, certs_dir: Path, say) -> dict:
    rows = args.history_rows
    stack = OwnStack(root, certs_dir, args.banks, max(2, args.banks), args.twopc_timeout, engine=args.db)
    user = stack.users[0]
    try:
        await stack.start()
        say(f"seeding {rows:,} payments of {user.username} into the gateway's database")
        seed_s, start_s = await _restart_gateway(stack, lambda: seed_payments(_gateway_db(stack), stack.users, rows))
        plan = history_plan(_gateway_db(stack), user.username)
        async with tls.secure_channel(stack.gateway, certs_dir, "client") as channel:
            gw = pb_grpc.GatewayStub(channel)
            login = await gw.Login(pb.LoginRequest(username=user.username, password=user.password), timeout=60)
            md = (("authorization", f"Bearer {login.token}"),)

            async def page(token: str) -> tuple[float, pb.ListPaymentsResponse]:
                t0 = time.perf_counter()
                answer = await gw.ListPayments(
                    pb.ListPaymentsRequest(page_size=HISTORY_PAGE_SIZE, page_token=token),
                    metadata=md,
                    timeout=RPC_TIMEOUT_S,
                )
                return (time.perf_counter() - t0) * 1000, answer

            say(f"timing {HISTORY_PAGES} pages from the newest, and {HISTORY_PAGES} deep ones")
            first_ms, answer = await page("")
            following, full = [], len(answer.payments) == min(HISTORY_PAGE_SIZE, rows)
            for _ in range(HISTORY_PAGES - 1):
                if not answer.next_page_token:
                    break
                ms, answer = await page(answer.next_page_token)
                following.append(ms)
                full = full and len(answer.payments) > 0
            deep = []
            for k in range(HISTORY_PAGES):  # tokens spread over the whole log
                ms, _ = await page(str(1 + (rows * (k + 1)) // (HISTORY_PAGES + 1)))
                deep.append(ms)
    finally:
        await stack.close()
    uses_index = bool(plan) and not any(full_scan(step) for step in plan)
    return {
        "scenario": "history",
        "engine": stack.engine,
        "db_server": _db_server(stack),
        "rows": rows,
        "user": user.username,
        "seed_s": round(seed_s, 1),
        "gateway_start_s": round(start_s, 2),
        "page_size": HISTORY_PAGE_SIZE,
        "first_page_ms": round(first_ms, 2),
        "next_pages": _summary(following or [first_ms]),
        "deep_pages": _summary(deep),
        "query_plan": plan,
        "plan_uses_indexes": uses_index,
        "ok": full and uses_index,
    }


def _db_server(stack: OwnStack) -> dict | None:
    return {"version": stack.storage.server_version} if stack.engine == "postgres" else None


def _unacked(source: storage.Source) -> int:
    with storage.reading(source) as conn:
        return int(conn.execute("SELECT count(*) FROM participants WHERE acked = 0").fetchone()[0])


def _states(source: storage.Source) -> dict[str, int]:
    with storage.reading(source) as conn:
        return {r[0]: int(r[1]) for r in conn.execute("SELECT state, count(*) FROM payments GROUP BY state")}


async def recovery(args, root: Path, certs_dir: Path, say) -> dict:
    txns, preparing = args.recovery_txns, min(args.recovery_preparing, args.recovery_txns)
    stack = OwnStack(root, certs_dir, args.banks, max(2, args.banks), args.twopc_timeout, engine=args.db)
    try:
        await stack.start()
        db_path = _gateway_db(stack)  # known once the stack (and its database server) started
        say(f"seeding {txns:,} logged transactions ({preparing:,} PREPARING) into the gateway's database")
        seed_s, start_s = await _restart_gateway(
            stack, lambda: seed_payments(db_path, stack.users, txns, preparing=preparing, with_keys=True)
        )
        say(f"gateway serving {start_s:.2f} s after its process started; waiting for the aborts to reach the banks")
        started = time.monotonic()
        while (left := await asyncio.to_thread(_unacked, db_path)) and time.monotonic() - started < DRAIN_TIMEOUT_S:
            await asyncio.sleep(0.1)
        drain_s = time.monotonic() - started
        states = await asyncio.to_thread(_states, db_path)
        money = await stack.money()
    finally:
        await stack.close()
    return {
        "scenario": "recovery",
        "engine": stack.engine,
        "db_server": _db_server(stack),
        "logged_txns": txns,
        "preparing_before": preparing,
        "seed_s": round(seed_s, 1),
        "start_to_serving_s": round(start_s, 2),
        "aborts_delivered_s": round(drain_s, 2),
        "unacked_after": left,
        "states_after": states,
        "held_after_cents": money["held_cents"],
        "ok": states.get(Decision.PREPARING, 0) == 0 and left == 0,
    }
