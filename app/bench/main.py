"""`strife bench`: how many durable two-phase-commit payments a second, at what latency.

One run: start a throwaway stack (or use a running one with --gateway), start the
driver processes and log every client in, then measure, with the same clients over
the same mTLS channels:
  1. the echo ceiling: bare unary health checks for --echo-duration seconds;
  2. payments between accounts at different banks for --duration seconds or
     --payments N in all.
Then check that money was conserved, read the peak RSS of every server process,
and print a Rich table (or --json). --sweep repeats the run over a grid of
clients x banks, each cell on a fresh stack.

A benchmark, not a test: the exit code says only whether the run was clean (no
errors, money conserved), never whether it was fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from app.bench import plot as bench_plot
from app.bench import report as bench_report
from app.bench import stages as bench_stages
from app.bench import storage as bench_storage
from app.bench.cpu import CpuWatch
from app.bench.driver import DriverHandle
from app.bench.stack import (
    BENCH_BALANCE_CENTS,
    OwnStack,
    RunningStack,
    filesystem_of,
    peak_rss_kib,
    rss_kib,
)
from backend.testbed import MAX_BANKS, MAX_USERS

QUIESCE_TIMEOUT_S = 15.0
MAX_CLIENTS = MAX_USERS
MAX_DRIVERS = 32
RSS_SAMPLE_INTERVAL_S = 1.0
MAX_RSS_SAMPLES = 100_000
SOAK_PAYMENTS = 100_000
SOAK_MAX_RSS_GROWTH_PCT = 20.0  # the target: after the first tenth of the run
START_DELAY_S = 0.3  # drivers get the "go" for a phase this long before it starts, so all start together


def _csv_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _login(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError(f"--user takes NAME:PASSWORD, got {text!r}")
    return name, password


def add_arguments(p: argparse.ArgumentParser) -> None:
    load = p.add_argument_group("load")
    load.add_argument("--clients", type=int, default=16, metavar="K", help="concurrent clients (default 16)")
    load.add_argument(
        "--banks", type=int, default=3, metavar="M", help="banks in the throwaway stack, 2 or more (default 3)"
    )
    load.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long to send payments (default 10; 5 per cell with --sweep)",
    )
    load.add_argument(
        "--payments", type=int, default=0, metavar="N", help="send N payments in all instead of a duration"
    )
    load.add_argument(
        "--drivers", type=int, default=2, metavar="D", help="load-driver processes sharing the clients (default 2)"
    )
    load.add_argument(
        "--echo-duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long to measure the echo ceiling; 0 skips it (default 3, at most --duration)",
    )
    load.add_argument(
        "--amount-max-cents",
        type=int,
        default=100,
        metavar="CENTS",
        help="payments are 1..CENTS cents, far below every balance (default 100)",
    )
    load.add_argument(
        "--decline-percent",
        type=float,
        default=0.0,
        metavar="P",
        help="this percentage of payments overdraws on purpose and must be declined (default 0)",
    )
    load.add_argument(
        "--twopc-timeout", type=float, default=2.0, metavar="SECONDS", help="the stack's 2PC vote deadline (default 2)"
    )
    load.add_argument(
        "--rpc-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a client's deadline for one call; hitting it counts as an error (default 10)",
    )
    load.add_argument("--seed", type=int, default=1, help="random seed of the drivers (default 1)")
    bench_storage.add_argument(load, "the throwaway stack (every cell's with --sweep)")
    scen = p.add_argument_group("scenarios (see app/bench/scenarios.py)")
    scen.add_argument(
        "--scenario",
        choices=("payments", "soak", "history", "recovery", "breaker", "watchers", "tier", "failover"),
        default="payments",
        help="payments: the run above (default); soak: --payments 100000 (unless given) and "
        "whether the gateway's RSS stays flat; history: time ListPayments pages of one user "
        "with --history-rows payments; recovery: time a gateway restart with --recovery-txns "
        "logged transactions; breaker: kill a bank a third of the way in and time the payments "
        "that touch it, with circuit breakers and without; watchers: payments/s without and with "
        "--watchers idle WatchPayments streams; tier: --gateways replicas balanced with --lb, each "
        "one's share; failover: the same, with gw-2 killed a third of the way in (gap, retries, "
        "lost or doubled payments)",
    )
    scen.add_argument(
        "--gateways", type=int, default=1, metavar="N", help="gateway replicas of --scenario tier|failover (default 1)"
    )
    scen.add_argument(
        "--lb",
        choices=("pick_first", "round_robin", "least_load"),
        default="round_robin",
        help="how --scenario tier|failover clients balance over the replicas (default round_robin)",
    )
    scen.add_argument(
        "--bank-fault",
        choices=("kill", "freeze"),
        default="kill",
        help="--scenario breaker: kill the bank (calls fail at once) or freeze it (calls hang) (default kill)",
    )
    scen.add_argument(
        "--watchers", type=int, default=1000, metavar="N", help="idle streams of --scenario watchers (default 1000)"
    )
    scen.add_argument(
        "--history-rows",
        type=int,
        default=1_000_000,
        metavar="N",
        help="payments of the history user (default 1000000)",
    )
    scen.add_argument(
        "--recovery-txns", type=int, default=100_000, metavar="N", help="logged transactions (default 100000)"
    )
    scen.add_argument(
        "--recovery-preparing",
        type=int,
        default=1_000,
        metavar="N",
        help="of them, left PREPARING as by a crash mid-2PC (default 1000)",
    )
    sweep = p.add_argument_group("sweep")
    sweep.add_argument(
        "--sweep", action="store_true", help="run the grid --sweep-clients x --sweep-banks, each cell on a fresh stack"
    )
    sweep.add_argument(
        "--sweep-clients", type=_csv_ints, default=[1, 16, 64, 128], metavar="LIST", help="default 1,16,64,128"
    )
    sweep.add_argument("--sweep-banks", type=_csv_ints, default=[3, 12], metavar="LIST", help="default 3,12")
    target = p.add_argument_group("a running stack instead of a throwaway one")
    target.add_argument(
        "--gateway", default="", metavar="HOST:PORT", help="bench this gateway; needs --certs and --user"
    )
    target.add_argument(
        "--certs", type=Path, default=None, metavar="DIR", help="certificate directory of that stack (role-client)"
    )
    target.add_argument(
        "--user",
        type=_login,
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help="a login the clients use, round-robin; repeat (accounts at two banks or more in all)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    out.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE.svg",
        help="with --sweep: also draw payments/s and p99 latency against clients, a line per bank count, "
        "into this SVG file (the name must end in .svg), and show the same charts after the tables "
        "(with --json: the file only, stdout stays JSON)",
    )
    out.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where throwaway stacks live (default: a new temporary directory, removed at the end)",
    )


def _check(args: argparse.Namespace) -> None:
    def bad(msg: str) -> None:  # one line and exit code 2, as argparse does for a bad command line
        print(f"strife bench: {msg}", file=sys.stderr)
        raise SystemExit(2)

    if args.scenario == "soak" and not args.payments:
        args.payments = SOAK_PAYMENTS
    if args.scenario in ("tier", "failover") and not 1 <= args.gateways <= 9:
        bad("--gateways must be 1 to 9")
    if args.scenario in ("history", "recovery", "breaker", "watchers", "tier", "failover"):
        if args.sweep or args.gateway:
            bad(f"--scenario {args.scenario} starts its own stack; it does not take --sweep or --gateway")
        if not 2 <= args.history_rows <= 10_000_000 or not 1 <= args.recovery_txns <= 10_000_000:
            bad("--history-rows must be 2 to 10000000 and --recovery-txns 1 to 10000000")
        if args.recovery_preparing < 0:
            bad("--recovery-preparing must not be negative")
    if args.duration is None:
        args.duration = 5.0 if args.sweep else 10.0
    if args.echo_duration is None:
        args.echo_duration = min(3.0, args.duration)
    if not 1 <= args.clients <= MAX_CLIENTS:
        bad(f"--clients must be 1 to {MAX_CLIENTS}")
    if not 1 <= args.drivers <= MAX_DRIVERS:
        bad(f"--drivers must be 1 to {MAX_DRIVERS}")
    if args.duration <= 0 or args.payments < 0 or args.echo_duration < 0:
        bad("--duration must be positive; --payments and --echo-duration not negative")
    if not 1 <= args.amount_max_cents <= 1_000_000:
        bad("--amount-max-cents must be 1 to 1000000")
    if not 0 <= args.decline_percent <= 100:
        bad("--decline-percent must be 0 to 100")
    for banks in [args.banks, *(args.sweep_banks if args.sweep else [])]:
        if not 2 <= banks <= MAX_BANKS:
            bad(f"banks must be 2 to {MAX_BANKS}: payments go between banks")
    for clients in args.sweep_clients if args.sweep else []:
        if not 1 <= clients <= MAX_CLIENTS:
            bad(f"--sweep-clients values must be 1 to {MAX_CLIENTS}")
    if args.plot is not None:
        if not args.sweep:
            bad("--plot draws the sweep: it needs --sweep")
        if len(set(args.sweep_banks)) > bench_plot.MAX_LINES:
            bad(f"--plot draws a line per bank count: at most {bench_plot.MAX_LINES} in --sweep-banks")
        if why := bench_plot.check_path(args.plot):
            bad(why)  # now, not after a sweep of minutes
    if args.gateway:
        if args.sweep:
            bad("--sweep starts its own stacks; it does not take --gateway")
        if args.db != "sqlite":
            bad("--db chooses the storage of the throwaway stack; a running stack (--gateway) keeps its own")
        if args.certs is None or not args.user:
            bad("--gateway needs --certs DIR and at least one --user NAME:PASSWORD")


def _split(total: int, parts: list[int]) -> list[int]:
    """Share `total` payments among drivers in proportion to their clients."""
    weight = sum(parts)
    shares = [total * p // weight for p in parts]
    for i in range(total - sum(shares)):
        shares[i % len(shares)] += 1
    return shares


async def _phase(
    drivers: list[DriverHandle],
    kind: str,
    duration_s: float | None,
    count: int,
    per_driver_clients: list[int],
    rpc_timeout_s: float,
) -> dict:
    start_at = time.monotonic() + START_DELAY_S
    if count:
        shares = _split(count, per_driver_clients)
        timeout_s = 120 + min(86_400, count * rpc_timeout_s / max(1, min(per_driver_clients)))
        cmds = [{"kind": kind, "start_at": start_at, "count": n} for n in shares]
    else:
        assert duration_s is not None  # a phase runs for a count or for a duration
        timeout_s = START_DELAY_S + duration_s + rpc_timeout_s + 120
        cmds = [{"kind": kind, "start_at": start_at, "duration_s": duration_s} for _ in drivers]
    answers = await asyncio.gather(*(d.run(c, timeout_s) for d, c in zip(drivers, cmds, strict=True)))
    return bench_report.merge_phase(answers)


async def _sample_rss(pids: dict[str, int | None], out: list) -> None:
    """VmRSS of every server process once a second, from the start of the payment phase."""
    started = time.monotonic()
    while len(out) < MAX_RSS_SAMPLES:
        out.append((time.monotonic() - started, {name: rss_kib(pid) for name, pid in pids.items()}))
        await asyncio.sleep(RSS_SAMPLE_INTERVAL_S)


def _rss_growth(samples: list[tuple[float, dict]]) -> dict:
    """RSS once a tenth of the payment phase is over, at its end, and the growth between (memory flat?)."""
    if len(samples) < 3:
        return {}
    span = samples[-1][0]
    early = next(s for t, s in samples if t >= span / 10)
    late = samples[-1][1]
    return {
        name: {
            "after_first_tenth_kib": early[name],
            "end_kib": late[name],
            "growth_pct": round(100 * (late[name] - early[name]) / early[name], 1)
            if early[name] and late[name]
            else None,
        }
        for name in late
    }


async def _quiet_money(stack) -> dict:
    """Money once no hold is left (every decided payment delivered), or after a bounded wait."""
    deadline = time.monotonic() + QUIESCE_TIMEOUT_S
    while True:
        money = await stack.money()
        if money["held_cents"] == 0 or time.monotonic() > deadline:
            return money
        await asyncio.sleep(0.2)


async def run_once(args: argparse.Namespace, clients: int, banks: int, root: Path, certs_dir: Path, say) -> dict:
    stack: RunningStack | OwnStack
    if args.gateway:
        stack = RunningStack(args.gateway, args.certs, args.user)
        certs_dir = args.certs
    else:
        say(f"starting a stack on {args.db}: gateway + {banks} banks, {max(clients, banks)} users, in {root}")
        stack = OwnStack(root, certs_dir, banks, max(clients, banks), args.twopc_timeout, engine=args.db)
    n_drivers = min(args.drivers, clients)
    drivers = [DriverHandle(i) for i in range(n_drivers)]
    try:
        await stack.start()
        money_before = await stack.money()
        specs, payees = stack.clients(clients), stack.payees()
        groups = [specs[i::n_drivers] for i in range(n_drivers)]
        setup = {
            "cmd": "setup",
            "gateway": stack.gateway,
            "certs": str(certs_dir),
            "payees": payees,
            "rpc_timeout_s": args.rpc_timeout,
            "amount_max_cents": args.amount_max_cents,
            "decline_percent": args.decline_percent,
            "overdraw_cents": _overdraw_cents(args),
        }
        await asyncio.gather(
            *(
                d.start({**setup, "clients": g, "seed": args.seed * 1000 + d.index})
                for d, g in zip(drivers, groups, strict=True)
            )
        )
        say(f"{n_drivers} drivers logging in {clients} clients")
        await asyncio.gather(*(d.ready() for d in drivers))
        sizes = [len(g) for g in groups]
        echo = None
        if args.echo_duration > 0:
            say(f"echo ceiling for {args.echo_duration:g} s")
            echo = await _phase(drivers, "echo", args.echo_duration, 0, sizes, args.rpc_timeout)
            echo["method"] = "grpc.health.v1.Health/Check"
            echo["per_s"] = round(echo["counts"].get("ok", 0) / echo["elapsed_s"], 1) if echo["elapsed_s"] else None
        say(f"payments: {args.payments or f'{args.duration:g} s'}")
        pids = stack.pids()
        watch = CpuWatch(pids, stack.db_server_pid())
        stages_before = await bench_stages.scrape(stack.metrics_addresses)
        rss_samples: list[tuple[float, dict]] = []
        sampler = asyncio.create_task(_sample_rss(pids, rss_samples))
        try:
            pay = await _phase(
                drivers, "pay", None if args.payments else args.duration, args.payments, sizes, args.rpc_timeout
            )
        finally:
            sampler.cancel()
        used_s, cpu_pct = watch.stop("bench (supervisor, log reader)", {"drivers": pay["driver_cpu_s"]})
        stages_after = await bench_stages.scrape(stack.metrics_addresses)
        pay["committed_per_s"] = (
            round(pay["counts"].get("committed", 0) / pay["elapsed_s"], 1) if pay["elapsed_s"] else None
        )
        pay["attempted"] = sum(pay["counts"].values())
        committed = pay["counts"].get("committed", 0)
        cpu_ms_per_payment = {name: round(1000 * s / committed, 3) for name, s in used_s.items()} if committed else {}
        stages = bench_stages.breakdown(stages_before, stages_after, pay["attempted"], pay["latency_ms"])
        money_after = await _quiet_money(stack)
        rss = {name: peak_rss_kib(pid) for name, pid in pids.items()}
    finally:
        await asyncio.gather(*(d.close() for d in drivers), return_exceptions=True)
        await stack.close()
    errors = pay["counts"].get("error", 0) + (echo["counts"].get("error", 0) if echo else 0)
    conserved = money_before["total_cents"] == money_after["total_cents"] and money_after["held_cents"] == 0
    ratio = None
    if echo and echo["per_s"] and pay["committed_per_s"] is not None:
        ratio = round(pay["committed_per_s"] / echo["per_s"], 3)
    return {
        "mode": stack.kind,
        "engine": stack.engine,
        "db_server": {"pid_tree": "postmaster + children", "version": stack.storage.server_version}
        if isinstance(stack, OwnStack) and stack.engine == "postgres"
        else None,
        "config": {
            "clients": clients,
            "banks": banks if not args.gateway else None,
            "drivers": n_drivers,
            "duration_s": None if args.payments else args.duration,
            "payments": args.payments or None,
            "echo_duration_s": args.echo_duration,
            "amount_max_cents": args.amount_max_cents,
            "decline_percent": args.decline_percent,
            "twopc_timeout_s": args.twopc_timeout,
            "rpc_timeout_s": args.rpc_timeout,
            "gateway": stack.gateway,
        },
        "payments": pay,
        "echo": echo,
        "ratio_payments_to_echo": ratio,
        "money": {
            "scope": money_after["scope"],
            "before_cents": money_before["total_cents"],
            "after_cents": money_after["total_cents"],
            "held_after_cents": money_after["held_cents"],
            "conserved": conserved,
        },
        "peak_rss_kib": rss,
        "rss_growth": _rss_growth(rss_samples),
        "cpu_pct_of_core": cpu_pct,
        "cpu_ms_per_committed_payment": cpu_ms_per_payment,
        "stages": stages,
        "stack_log": {"lines": stack.log.lines, "errors": stack.log.errors, "first_errors": stack.log.first_errors},
        "ok": errors == 0 and conserved,
    }


def _overdraw_cents(args: argparse.Namespace) -> int:
    return BENCH_BALANCE_CENTS + 1  # more than any bench account holds, within the per-payment limit


async def _bench(args: argparse.Namespace, console: Console) -> int:
    def say(msg: str) -> None:
        console.log(msg) if not args.json else print(f"bench: {msg}", file=sys.stderr, flush=True)

    base = args.work_dir
    made = base is None
    if made:
        base = Path(tempfile.mkdtemp(prefix="strife-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    certs_dir = base / "certs"
    doc: dict[str, Any] = {
        "command": shlex.join(["strife", *sys.argv[1:]]),
        "engine": None if args.gateway else args.db,  # a running stack's storage is not ours to know
        "versions": bench_report.versions(),
        "host": {"cpus": os.cpu_count(), "data_fs": filesystem_of(base)},
    }
    try:
        if args.scenario in ("history", "recovery"):
            from app.bench import scenarios as bench_scenarios

            run = bench_scenarios.history if args.scenario == "history" else bench_scenarios.recovery
            doc.update(await run(args, base / "run", certs_dir, say))
        elif args.scenario == "breaker":
            from app.bench.breaker_scenario import breaker

            doc.update(await breaker(args, base / "run", certs_dir, say))
        elif args.scenario in ("tier", "failover"):
            from app.bench.tier_scenario import tier

            doc.update(await tier(args, base / "run", certs_dir, say))
        elif args.scenario == "watchers":
            from app.bench.watch_scenario import watchers

            doc.update(await watchers(args, base / "run", certs_dir, say))
        elif args.sweep:
            cells = []
            for banks in args.sweep_banks:
                for clients in args.sweep_clients:
                    root = base / f"cell-b{banks}-c{clients}"
                    try:
                        cells.append(await run_once(args, clients, banks, root, certs_dir, say))
                    except RuntimeError as exc:
                        cells.append({"config": {"banks": banks, "clients": clients}, "failed": str(exc), "ok": False})
                    finally:
                        shutil.rmtree(root, ignore_errors=True)
                    say(
                        f"cell banks={banks} clients={clients}: "
                        f"{cells[-1].get('payments', {}).get('committed_per_s', 'failed')} payments/s"
                    )
            doc["sweep"] = {
                "duration_s": None if args.payments else args.duration,
                "payments": args.payments or None,
                "cells": cells,
            }
            doc["ok"] = all(c["ok"] for c in cells)
        else:
            doc.update(await run_once(args, args.clients, args.banks, base / "run", certs_dir, say))
            if args.scenario == "soak":
                growth = (doc.get("rss_growth") or {}).get("gateway") or {}
                pct = growth.get("growth_pct")
                doc["soak"] = {
                    "payments": args.payments,
                    "gateway_rss_growth_pct": pct,
                    "limit_pct": SOAK_MAX_RSS_GROWTH_PCT,
                    "rss_flat": pct is not None and pct < SOAK_MAX_RSS_GROWTH_PCT,
                }
    finally:
        if made:
            shutil.rmtree(base, ignore_errors=True)
    servers = [doc.get("db_server"), *(c.get("db_server") for c in doc.get("sweep", {}).get("cells", []))]
    if version := next((s["version"] for s in servers if s and s.get("version")), None):
        doc["versions"]["postgresql"] = version
    plot_error = None
    if args.plot is not None and "sweep" in doc:
        try:
            bench_plot.write_svg(doc, args.plot)
            say(f"charts written to {args.plot}")
        except OSError as exc:  # the directory went away during the sweep, the disk is full...
            plot_error = f"could not write --plot {args.plot}: {exc}"
    if args.json:
        print(json.dumps(doc, indent=2))
    elif args.scenario in ("breaker", "watchers", "tier", "failover"):
        console.print_json(json.dumps(doc[args.scenario]))
        bench_report.print_footer(console, doc)
    elif args.scenario in ("history", "recovery"):
        console.print(bench_report.scenario_table(doc))
        bench_report.print_footer(console, doc)
    else:
        console.print(bench_report.sweep_table(doc["sweep"]["cells"]) if args.sweep else bench_report.run_table(doc))
        if not args.sweep and doc.get("stages"):
            console.print(bench_report.stages_table(doc["stages"]))
        if args.plot is not None and plot_error is None:
            console.print(bench_plot.title(doc))
            console.print(Text.from_ansi(bench_plot.terminal_chart(doc, console.width)))
        if "soak" in doc:
            soak = doc["soak"]
            console.print(
                f"soak: gateway RSS grew {soak['gateway_rss_growth_pct']}% after the first tenth of "
                f"{soak['payments']:,} payments (flat means < {soak['limit_pct']:g}%): "
                f"{'flat' if soak['rss_flat'] else 'NOT flat'}"
            )
        bench_report.print_footer(console, doc)
        if not doc["ok"]:
            console.print("[bold red]not clean: errors, or money not conserved (see above)[/]")
    if plot_error:
        print(f"strife bench: {plot_error}", file=sys.stderr)
        return 2
    return 0 if doc["ok"] else 1


async def _main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await _bench(args, Console())
    except RuntimeError as exc:
        print(f"strife bench: {exc}", file=sys.stderr)
        return 2


def main(args: argparse.Namespace) -> None:
    _check(args)
    try:
        sys.exit(asyncio.run(_main(args)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("strife bench: interrupted; every process it started is stopped", file=sys.stderr)
        sys.exit(130)
