"""`strife bench --scenario breaker`: what a dead bank costs the payments that touch it, with the
gateway's circuit breakers and without (--no-breakers: each waits for the 2PC timeout).

Each mode runs its own throwaway stack: --clients clients pay random payees (at 3 banks)
for --duration seconds; a third of the way in, the last bank is killed (or, with
--bank-fault freeze, frozen: its calls then hang until the 2PC timeout) and stays down.
The latency of payments touching it is counted from 2 s after the kill (the breaker has
opened by then), apart from those that do not touch it.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc

from app.bench.paying import logins, pay_for, percentile
from app.bench.stack import OwnStack

SETTLE_S = 2.0  # after the kill, before payments touching the dead bank are counted
TWOPC_TIMEOUT_S = 2.0


async def breaker(args: argparse.Namespace, root: Path, certs_dir: Path, say: Callable[[str], None]) -> dict:
    modes = {}
    for mode, flags in (("breakers", []), ("no_breakers", ["--no-breakers"])):
        modes[mode] = await _run(args, root / mode, certs_dir, flags, say)
        say(f"{mode}: p99 of payments touching the dead bank {modes[mode]['dead_bank_p99_ms']} ms")
    return {
        "scenario": "breaker",
        "breaker": {
            **modes,
            "breaker_open_p99_ms": modes["breakers"]["dead_bank_p99_ms"],
            "no_breaker_p99_ms": modes["no_breakers"]["dead_bank_p99_ms"],
            "target_p99_ms": 20,
        },
        "ok": True,
    }


async def _run(args, root: Path, certs_dir: Path, flags: list[str], say) -> dict:
    stack = OwnStack(root, certs_dir, 3, args.clients, TWOPC_TIMEOUT_S, engine=args.db)
    stack.cfg.gateway_args = flags
    channels: list[grpc.aio.Channel] = []
    try:
        await stack.start()
        sessions = await logins(stack, stack.users[: args.clients], channels)
        dead = stack.names[-1]
        kill_at_s = args.duration / 3

        async def kill_later() -> None:
            await asyncio.sleep(kill_at_s)
            await (stack.sup.freeze if args.bank_fault == "freeze" else stack.sup.kill)(dead)

        killer = asyncio.ensure_future(kill_later())
        results = await pay_for(sessions, stack.users, args.duration, args.seed)
        await killer
    finally:
        for channel in channels:
            await channel.close()
        await stack.close()
    after = [r for r in results if r.started_s >= kill_at_s + SETTLE_S]
    touching = [r for r in after if dead in r.banks]
    others = [r for r in after if dead not in r.banks]
    reasons: dict[str, int] = {}
    for r in touching:
        reasons[r.reason or r.code] = reasons.get(r.reason or r.code, 0) + 1
    window_s = max(0.001, args.duration - kill_at_s - SETTLE_S)
    return {
        "flags": flags,
        "bank_fault": args.bank_fault,
        "dead_bank": dead,
        "dead_bank_payments": len(touching),
        "dead_bank_p50_ms": percentile([r.latency_ms for r in touching], 0.50),
        "dead_bank_p99_ms": percentile([r.latency_ms for r in touching], 0.99),
        "dead_bank_answers": reasons,
        "other_payments_per_s": round(sum(1 for r in others if r.code == "OK") / window_s, 1),
        "other_p99_ms": percentile([r.latency_ms for r in others], 0.99),
    }
