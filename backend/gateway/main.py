"""`strife gateway`: run the payment gateway and 2PC coordinator."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import fixtures, jsonlog, limits
from backend.common.db import Database
from backend.common.events import Event
from backend.common.interceptors import LoggingInterceptor, RoleInterceptor
from backend.common.serve import add_db_argument, add_metrics_arguments, open_database, run, run_server
from backend.gateway import passwords, store
from backend.gateway.auth import AuthenticationInterceptor
from backend.gateway.banks import Banks, parse_bank_flag
from backend.gateway.breaker import BreakerConfig, Breakers
from backend.gateway.coordinator import ORPHAN_AFTER_S, Coordinator
from backend.gateway.links import LinkCache
from backend.gateway.membership import LEASE_S, Membership
from backend.gateway.service import ROLE_RULES, CoordinatorService, DemoService, GatewayService
from backend.gateway.sessions import SessionCache
from backend.gateway.watchers import Watchers


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, required=True, help="port to listen on")
    p.add_argument(
        "--data-dir", type=Path, default=Path(".strife"), help="where the gateway's database lives (default .strife/)"
    )
    add_db_argument(p)
    add_metrics_arguments(p)
    p.add_argument("--certs", type=Path, default=Path("certs"), help="certificate directory (default certs/)")
    p.add_argument(
        "--bank",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        required=True,
        help="a bank the gateway coordinates; repeat for each bank",
    )
    p.add_argument(
        "--twopc-timeout",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="deadline for all banks to vote on a payment (default 2)",
    )
    p.add_argument(
        "--orphan-after",
        type=float,
        default=ORPHAN_AFTER_S,
        metavar="SECONDS",
        help=f"presume abort for a payment left PREPARING this long by a cut-off write (default {ORPHAN_AFTER_S:g})",
    )
    p.add_argument(
        "--token-ttl", type=float, default=3600.0, metavar="SECONDS", help="how long a login token lives (default 3600)"
    )
    p.add_argument(
        "--replica",
        default="gateway",
        metavar="ID",
        help="this replica's id in the gateway tier, unique among the replicas sharing --db: a process started "
        "with the id of a running one takes its place, and the older one stops (default 'gateway')",
    )
    p.add_argument("--region", default="local", help="the region clients prefer this replica from (default 'local')")
    p.add_argument(
        "--advertise", default="", metavar="HOST:PORT", help="the address clients are told to call (default HOST:PORT)"
    )
    p.add_argument(
        "--lease",
        type=float,
        default=LEASE_S,
        metavar="SECONDS",
        help=f"take over a replica whose last heartbeat is this old (default {LEASE_S:g})",
    )
    defaults = BreakerConfig()
    p.add_argument(
        "--breaker-failures",
        type=int,
        default=defaults.failures,
        metavar="N",
        help=f"a bank's circuit breaker opens after N failed calls in a row (default {defaults.failures})",
    )
    p.add_argument(
        "--breaker-failure-rate",
        type=float,
        default=defaults.failure_rate,
        metavar="SHARE",
        help=f"... or when this share of the calls in the window failed (default {defaults.failure_rate:g})",
    )
    p.add_argument(
        "--breaker-window",
        type=float,
        default=defaults.window_s,
        metavar="SECONDS",
        help=f"the window of that share, counted once it holds {defaults.min_calls} calls "
        f"(default {defaults.window_s:g})",
    )
    p.add_argument(
        "--breaker-cooldown",
        type=float,
        default=defaults.cooldown_s,
        metavar="SECONDS",
        help=f"an open breaker lets one payment probe the bank after this long, doubled after each failed "
        f"probe (default {defaults.cooldown_s:g})",
    )
    p.add_argument("--no-breakers", action="store_true", help="no circuit breakers: every payment tries its banks")
    p.add_argument("--users", type=Path, default=fixtures.DEFAULT_USERS, help="demo users fixture, read on first start")
    p.add_argument(
        "--demo", action="store_true", help="obey the control room's demo switches (slow motion); never in production"
    )
    p.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes (set by supervisors)")


async def _seed_users(db: Database, path: Path) -> None:
    if await db.read(store.is_seeded):
        return
    users = fixtures.users(path)
    hashed = [(u, await asyncio.to_thread(passwords.hash_password, u["password"])) for u in users]

    def seed(conn) -> None:
        if store.is_seeded(conn):  # another replica of the tier seeded it meanwhile
            return
        for user, digest in hashed:
            # if_missing: replicas starting together seed at once (PostgreSQL lets both see "not seeded")
            store.add_user(conn, user["username"], digest, [tuple(a) for a in user["accounts"]], if_missing=True)
        store.mark_seeded(conn)

    await db.write(seed)
    jsonlog.emit(Event.SEEDED, msg=f"{len(users)} demo users from {path}")


async def serve(args: argparse.Namespace) -> None:
    try:
        replica_id = limits.replica_id(args.replica)
        region = limits.region(args.region)
        addresses = dict(parse_bank_flag(v) for v in args.bank)
    except ValueError as exc:
        raise SystemExit(f"gateway: {exc}") from None
    jsonlog.configure(replica_id)
    db = open_database(
        "gateway",
        args.db,
        Path(args.data_dir) / "gateway.sqlite",
        store.MIGRATIONS,
        store.PG_MIGRATIONS,
        args.encryption_key_file,
    )
    await _seed_users(db, args.users)
    banks = Banks(addresses, args.certs, args.twopc_timeout)
    banks.open()
    breakers = None
    if not args.no_breakers:
        breakers = Breakers(list(addresses), breaker_config(args))
    coordinator = Coordinator(db, banks, args.twopc_timeout, args.orphan_after, replica_id, breakers)
    logging = LoggingInterceptor()
    membership = Membership(
        db,
        coordinator,
        replica_id,
        args.advertise or f"{args.host}:{args.port}",
        region,
        in_flight=lambda: logging.in_flight,
        on_replaced=lambda: os.kill(os.getpid(), signal.SIGTERM),
        lease_s=args.lease,
        certs_dir=args.certs,
    )
    await membership.join()
    aborted = await coordinator.recover()
    if aborted:
        jsonlog.emit(Event.RECOVERED, msg=f"aborted {aborted} transactions left PREPARING by the previous run")
    tasks: list[asyncio.Task] = []
    sessions, links = SessionCache(db), LinkCache(db)
    watchers = Watchers(db)

    def add(server) -> None:
        pb_grpc.add_GatewayServicer_to_server(
            GatewayService(db, banks, coordinator, args.token_ttl, sessions, links, membership, watchers), server
        )
        pb_grpc.add_CoordinatorServicer_to_server(CoordinatorService(coordinator), server)
        pb_grpc.add_DemoServicer_to_server(DemoService(coordinator, args.demo), server)

    async def started() -> None:
        tasks.append(asyncio.create_task(coordinator.resend_forever()))
        tasks.append(asyncio.create_task(coordinator.sweep_forever()))
        tasks.append(asyncio.create_task(membership.run()))
        tasks.append(asyncio.create_task(watchers.run()))
        tasks.append(asyncio.create_task(sessions.recheck_forever()))
        if breakers is not None:
            tasks.append(asyncio.create_task(breakers.watch_health(banks.channels)))

    async def stopping() -> None:
        for t in tasks:
            t.cancel()
        try:
            await membership.leave()
        except Exception as exc:  # noqa: BLE001 - the store may be gone: the lease runs out instead
            jsonlog.emit(Event.RESEND_ERROR, level="warning", msg=f"leaving the tier: {type(exc).__name__}: {exc}")
        await banks.close()
        db.close()

    await run_server(
        name="gateway",
        host=args.host,
        port=args.port,
        certs_dir=args.certs,
        add_services=add,
        services=("Gateway", "Coordinator", "Demo"),
        interceptors=[
            logging,
            RoleInterceptor(ROLE_RULES),
            AuthenticationInterceptor(sessions),
        ],
        on_started=started,
        on_stopping=stopping,
        watch_stdin=args.watch_stdin,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )


def breaker_config(args: argparse.Namespace) -> BreakerConfig:
    config = BreakerConfig(
        failures=args.breaker_failures,
        failure_rate=args.breaker_failure_rate,
        window_s=args.breaker_window,
        cooldown_s=args.breaker_cooldown,
    )
    if config.failures < 1 or not 0 < config.failure_rate <= 1 or config.window_s <= 0 or config.cooldown_s <= 0:
        raise SystemExit(
            "gateway: --breaker-failures must be at least 1, --breaker-failure-rate in (0, 1], "
            "--breaker-window and --breaker-cooldown above 0"
        )
    return config


def main(args: argparse.Namespace) -> None:
    run(serve(args))
