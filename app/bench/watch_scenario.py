"""`strife bench --scenario watchers`: do idle WatchPayments streams slow payments down?

One throwaway stack: --clients clients pay for --duration seconds with no stream open;
then --watchers streams are opened (4 per user, by users who do not pay, so they stay
idle) and the same clients pay for --duration seconds again.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import grpc

from app.bench.paying import logins, pay_for, percentile
from app.bench.stack import OwnStack
from backend.api import strife_pb2 as pb

STREAMS_PER_USER = 4  # the gateway's bound (backend/gateway/watchers.py)


async def watchers(args: argparse.Namespace, root: Path, certs_dir: Path, say: Callable[[str], None]) -> dict:
    watching_users = -(-args.watchers // STREAMS_PER_USER)
    stack = OwnStack(root, certs_dir, args.banks, args.clients + watching_users, 2.0, engine=args.db)
    channels: list[grpc.aio.Channel] = []
    streams: list = []
    try:
        await stack.start()
        payers = await logins(stack, stack.users[: args.clients], channels)
        payees = stack.users[: args.clients]
        without = await pay_for(payers, payees, args.duration, args.seed)
        say(f"without streams: {_rate(without, args.duration)} payments/s")
        watchers_ = await logins(stack, stack.users[args.clients :], channels)
        for i in range(args.watchers):
            stub, metadata, _ = watchers_[i // STREAMS_PER_USER]
            streams.append(stub.WatchPayments(pb.WatchPaymentsRequest(), metadata=metadata))
        for call in streams:  # each stream is open and idle (it would have ended with an error otherwise)
            if call.done():
                raise RuntimeError(f"a watch stream ended: {await call.code()}")
        with_streams = await pay_for(payers, payees, args.duration, args.seed + 1)
        say(f"with {len(streams)} idle streams: {_rate(with_streams, args.duration)} payments/s")
        still_open = sum(1 for call in streams if not call.done())
    finally:
        for call in streams:
            call.cancel()
        for channel in channels:
            await channel.close()
        await stack.close()
    return {
        "scenario": "watchers",
        "watchers": {
            "idle_streams": args.watchers,
            "still_open_at_end": still_open,
            "without": _summary(without, args.duration),
            "with": _summary(with_streams, args.duration),
        },
        "ok": still_open == args.watchers,
    }


def _rate(results, duration_s: float) -> float:
    return round(sum(1 for r in results if r.code == "OK") / duration_s, 1)


def _summary(results, duration_s: float) -> dict:
    return {
        "payments_per_s": _rate(results, duration_s),
        "p50_ms": percentile([r.latency_ms for r in results], 0.50),
        "p99_ms": percentile([r.latency_ms for r in results], 0.99),
        "errors": sum(1 for r in results if r.code != "OK"),
    }
