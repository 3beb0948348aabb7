"""`strife up`: the whole stack, headless, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from app.cli import stack_db
from backend.common import certs, datadir, fixtures, limits
from backend.common.errors import InvalidInput
from backend.common.events import Event
from backend.common.states import ProcessState
from backend.supervisor import StackConfig, Supervisor, stack_specs

MAX_HELD_LINES = 100  # error lines kept while the stack starts
MAX_GATEWAYS = 9  # replicas of the gateway tier one command starts (the control room's keys 1-9 pick them)


def add_stack_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by `strife up` and the control room."""
    p.add_argument(
        "--data-dir", type=Path, default=Path(".strife"), help="runtime state: ledgers, gateway log (default .strife/)"
    )
    p.add_argument(
        "--certs", type=Path, default=Path("certs"), help="certificate directory, made if missing (default certs/)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=50060,
        help="gateway port; more gateway replicas take the next ports, then the banks (default 50060)",
    )
    p.add_argument(
        "--gateways",
        type=int,
        default=1,
        metavar="N",
        help=f"gateway replicas on one shared store, gw-1 to gw-N (1 to {MAX_GATEWAYS}; default 1: one process, "
        "'gateway')",
    )
    p.add_argument(
        "--regions",
        default="",
        metavar="R1,R2,...",
        help="each replica's region, one per replica in order (default 'local' for all): clients with --region "
        "prefer their own",
    )
    p.add_argument(
        "--banks", type=int, default=0, metavar="N", help="run only the first N banks of the fixture file (default all)"
    )
    p.add_argument(
        "--fixtures", type=Path, default=fixtures.DEFAULT_BANKS, help="bank fixture file (default fixtures/banks.json)"
    )
    p.add_argument(
        "--users", type=Path, default=fixtures.DEFAULT_USERS, help="demo users fixture (default fixtures/users.json)"
    )
    p.add_argument("--twopc-timeout", type=float, default=2.0, metavar="SECONDS", help="2PC vote deadline (default 2)")
    stack_db.add_argument(p)


def stack_config(args: argparse.Namespace) -> StackConfig:
    names = fixtures.bank_names(args.fixtures)
    if args.banks:
        if not 1 <= args.banks <= len(names):
            raise SystemExit(f"--banks must be 1 to {len(names)} (banks in {args.fixtures})")
        names = names[: args.banks]
    gateways = getattr(args, "gateways", 1)
    if not 1 <= gateways <= MAX_GATEWAYS:
        raise SystemExit(f"--gateways must be 1 to {MAX_GATEWAYS}")
    certs.ensure_certs(args.certs, ["gateway", *names])
    cfg = StackConfig(
        data_dir=args.data_dir.resolve(),
        certs_dir=args.certs.resolve(),
        gateway_port=args.port,
        more_gateway_ports=[args.port + i for i in range(1, gateways)],
        bank_ports={name: args.port + gateways + i for i, name in enumerate(names)},
        twopc_timeout_s=args.twopc_timeout,
        bank_fixtures=args.fixtures.resolve(),
        user_fixtures=args.users.resolve(),
    )
    cfg.regions = regions(getattr(args, "regions", ""), list(cfg.gateway_replicas))
    return cfg


def regions(value: str, replicas: list[str]) -> dict[str, str]:
    """--regions eu,us,us -> {"gw-1": "eu", "gw-2": "us", "gw-3": "us"}: one per replica, in order."""
    if not value:
        return {}
    given = [part.strip() for part in value.split(",")]
    if len(given) != len(replicas):
        raise SystemExit(f"--regions: give one region per replica ({len(replicas)}), got {len(given)}")
    for region in given:
        try:
            limits.region(region)
        except InvalidInput as exc:
            raise SystemExit(f"--regions: {exc}") from None
    return dict(zip(replicas, given, strict=True))


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_stack_arguments(p)
    p.add_argument(
        "--no-metrics", action="store_true", help="no Prometheus metrics (by default each process serves them)"
    )
    p.add_argument("--verbose", "-v", action="store_true", help="print every JSON log line of every process")


async def _up(args: argparse.Namespace) -> int:
    cfg = stack_config(args)
    cfg.metrics = not args.no_metrics  # each process on a free port, printed when it says where
    try:
        database = stack_db.StackDatabase(args.db, cfg.data_dir)
    except stack_db.StackDbError as exc:
        print(f"strife up: {exc}", file=sys.stderr)
        return 1
    try:
        lock = datadir.lock(cfg.data_dir)
    except datadir.DataDirBusy as exc:
        print(f"strife up: {exc}", file=sys.stderr)
        return 1
    announced: set[str] = set()
    # Until the stack is up, error lines wait here: a process that refuses to start says why
    # in its log line, on its stderr and in its exit; the one line printed is the supervisor's.
    held: list[str] | None = []

    def say_error(text: str) -> None:
        if held is None:
            print(text, file=sys.stderr, flush=True)
        elif len(held) < MAX_HELD_LINES:
            held.append(text)

    def on_record(record: dict) -> None:
        if args.verbose:
            print(json.dumps(record), flush=True)
        elif record.get("event") == Event.METRICS:
            print(f"{record.get('process'):<8} metrics at http://{record.get('address')}/metrics", flush=True)
        elif record.get("level") == "error":
            say_error(f"{record.get('process')}: {record.get('msg') or record.get('event')}")

    tier = len(cfg.gateway_replicas) > 1 or bool(cfg.regions)  # a replica's line says its region

    def on_change(p) -> None:
        if p.state == ProcessState.SERVING and p.spec.name not in announced:
            announced.add(p.spec.name)
            region = ""
            if tier and p.spec.name in cfg.gateway_replicas:
                region = f", region {cfg.regions.get(p.spec.name, 'local')}"
            print(f"{p.spec.name:<8} serving on {cfg.host}:{p.spec.port} (pid {p.pid}){region}", flush=True)
        elif p.state == ProcessState.CRASHED:
            say_error(f"{p.spec.name:<8} exited with code {p.exit_code}")

    sup: Supervisor | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        # The embedded server starts here, in the main thread (it dies with the thread that started it).
        cfg.databases = database.open(["gateway", *cfg.bank_ports])
        if database.owned:
            name = stack_db.SERVER_NAME
            print(f"{name:<8} serving on {cfg.host}:{database.port} (pid {database.pid})", flush=True)
        sup = Supervisor(stack_specs(cfg), on_record, on_change)
        await sup.start_all()
        for line in held or ():
            print(line, file=sys.stderr, flush=True)
        held = None
        on = f" on {where}" if (where := database.describe()) else ""
        if tier:
            replicas = ",".join(cfg.gateway_addresses)
            print(f"gateway tier: {len(cfg.gateway_replicas)} replicas; clients: --gateway {replicas}", flush=True)
        print(f"stack up{on}; data in {cfg.data_dir}; Ctrl-C stops it", flush=True)
        await stop.wait()
        print("stopping…", flush=True)
        return 0
    except (RuntimeError, stack_db.StackDbError) as exc:
        print(f"strife up: {exc}", file=sys.stderr)
        return 1
    finally:
        if sup is not None:
            await sup.close()
        database.stop_server()
        lock.close()


def main(args: argparse.Namespace) -> None:
    sys.exit(asyncio.run(_up(args)))
