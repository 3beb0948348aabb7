"""`strife bank`: run one bank server."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from backend.api import strife_pb2_grpc as pb_grpc
from backend.bank import ledger
from backend.bank.resolver import Resolver
from backend.bank.service import ROLE_RULES, BankService
from backend.common import certs, faults, fixtures, jsonlog
from backend.common.discovery import Directory, parse_seeds
from backend.common.events import Event
from backend.common.interceptors import LoggingInterceptor, RoleInterceptor
from backend.common.serve import add_db_argument, add_metrics_arguments, open_database, run, run_server


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", required=True, help="bank name, e.g. BankA (its accounts come from the fixture file)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, required=True, help="port to listen on")
    p.add_argument("--data-dir", type=Path, default=Path(".strife"), help="where the ledger lives (default .strife/)")
    add_db_argument(p)
    add_metrics_arguments(p)
    p.add_argument("--certs", type=Path, default=Path("certs"), help="certificate directory (default certs/)")
    p.add_argument(
        "--fixtures", type=Path, default=fixtures.DEFAULT_BANKS, help="bank fixture file, read on first start"
    )
    p.add_argument(
        "--gateway",
        default="",
        metavar="HOST:PORT[,HOST:PORT…]",
        help="any replicas of the gateway tier, asked about in-doubt transactions (the rest are found from them)",
    )
    p.add_argument(
        "--in-doubt-after",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="ask the coordinator about a YES vote not decided after this long (default 5)",
    )
    p.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes (set by supervisors)")


async def serve(args: argparse.Namespace) -> None:
    name = certs.check_name(args.name)
    jsonlog.configure(name)
    try:
        seeds = parse_seeds(args.gateway) if args.gateway else []
    except ValueError as exc:
        raise SystemExit(f"bank: --gateway: {exc}") from None
    db = open_database(
        name,
        args.db,
        Path(args.data_dir) / f"bank-{name}.sqlite",
        ledger.MIGRATIONS,
        ledger.PG_MIGRATIONS,
        args.encryption_key_file,
    )
    accounts = fixtures.bank_accounts(args.fixtures, name)
    if await db.write(lambda c: ledger.seed(c, accounts)):
        jsonlog.emit(Event.SEEDED, msg=f"{len(accounts)} accounts from {args.fixtures}")
    tasks: list[asyncio.Task] = []
    gateways = None

    def add(server) -> None:
        pb_grpc.add_BankServicer_to_server(BankService(name, db), server)

    async def started() -> None:
        nonlocal gateways
        if seeds:
            gateways = Directory(seeds, args.certs, "bank")
            tasks.append(asyncio.create_task(Resolver(db, gateways, args.in_doubt_after).run()))

    async def stopping() -> None:
        for t in tasks:
            t.cancel()
        if gateways is not None:
            await gateways.close()
        db.close()

    if faults.active("bank.slow_start"):
        await asyncio.sleep(faults.SLOW_START_S)
    await run_server(
        name=name,
        host=args.host,
        port=args.port,
        certs_dir=args.certs,
        add_services=add,
        services=("Bank",),
        interceptors=[LoggingInterceptor(), RoleInterceptor(ROLE_RULES)],
        on_started=started,
        on_stopping=stopping,
        watch_stdin=args.watch_stdin,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )


def main(args: argparse.Namespace) -> None:
    run(serve(args))
