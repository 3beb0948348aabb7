"""A client worker process of `strife chaos`, and the handle the campaign keeps on it.

One worker = one user with its own profile directory (session + durable outbox),
using the client library as a real client would: every payment is written to the
outbox before it is sent, resent under the same key by a Retrier after retryable
failures. The nemesis SIGKILLs workers with payments still queued; a restarted
worker (same profile, next incarnation) picks its outbox up again.

  python -m app.chaos.worker '<setup json>'

stdin: a line "drain" stops new payments and sends the outbox until it is empty
(bounded), then the worker prints {"event": "drained", "remaining": n}. The worker
exits when its stdin closes. It keeps its own journal (chaos-journal.jsonl in the
profile) of every key it queued and every same-key replay it tried, so the checker
knows the whole universe of keys even across SIGKILLs.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

from backend.common.states import PaymentStatus
from backend.supervisor import close_child, killpg

JOURNAL_FILE = "chaos-journal.jsonl"
LOGIN_TRIES = 120
DRAIN_POLL_S = 0.3
EXIT_GRACE_S = 5.0
REPLAY_TIMEOUT_S = 10.0
BACKOFF_CAP_S = 2.0  # a chaos run is short: resend soon after the gateway is back


# ------------------------------------------------------------- worker side --
class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.queued = 0
        if path.exists():
            self.queued = sum(1 for line in path.read_text().splitlines() if line.startswith('{"q"'))
        self._file = open(path, "a", buffering=1)

    def write(self, obj: dict) -> None:
        self._file.write(json.dumps(obj, separators=(",", ":")) + "\n")

    def deliveries(self, report) -> None:
        for d in report.deliveries:
            if not d.final and d.error is not None:
                self.write({"retry": d.idempotency_key, "code": d.error.code})


def _say(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Worker:
    def __init__(self, setup: dict) -> None:
        from backend.client import GatewayClient

        self.setup = setup
        self.username = setup["username"]
        self.from_bank, self.from_account = setup["from"]
        self.payees = [tuple(p) for p in setup["payees"] if p[0] != self.from_bank]
        self.random = random.Random(setup["seed"])
        self.client = GatewayClient(
            setup["gateway"],
            setup["certs"],
            setup["profile"],
            backoff_cap_s=BACKOFF_CAP_S,
            lb=setup.get("lb", "pick_first"),
        )
        self.journal = Journal(Path(setup["profile"]) / JOURNAL_FILE)
        self.draining = asyncio.Event()

    async def login(self) -> None:
        from backend.client import ClientError

        for _ in range(LOGIN_TRIES):
            session = self.client.session
            if session is not None and not session.expired:
                return
            try:
                await self.client.login(self.username, self.setup["password"])
                return
            except ClientError as exc:
                if not exc.retryable:
                    raise
                await asyncio.sleep(0.5)
        raise RuntimeError(f"{self.username} could not log in")

    async def run(self) -> None:
        from backend.client import Retrier

        await self.login()
        _say({"event": "started", "queued_before": self.journal.queued})
        async with Retrier(self.client, on_round=self.journal.deliveries, idle_poll_s=1.0) as retrier:
            while not self.draining.is_set() and self.journal.queued < self.setup["max_payments"]:
                await self.one_payment(retrier)
            await self.draining.wait()
            remaining = await self.drain(float(self.setup["drain_timeout_s"]))
        _say({"event": "drained", "remaining": remaining})

    async def one_payment(self, retrier) -> None:
        from backend.client import ClientError

        rng = self.random  # draw every value each round, so the sequence does not depend on outcomes
        to_bank, to_account = rng.choice(self.payees)
        overdraw = rng.random() < self.setup["decline_fraction"]
        amount_cents = (
            self.setup["overdraw_cents"] + rng.randint(0, 999)
            if overdraw
            else rng.randint(1, self.setup["amount_max_cents"])
        )
        replay, conflict, pause_s = rng.random(), rng.random(), rng.uniform(0, self.setup["pause_max_s"])
        entry = await asyncio.to_thread(
            self.client.outbox.add, self.username, to_bank, to_account, amount_cents, self.from_bank, self.from_account
        )
        self.journal.queued += 1
        self.journal.write({"q": entry.idempotency_key, "amount_cents": amount_cents, "overdraw": overdraw})
        try:
            delivery = await self.client.resend(entry.idempotency_key)
        except ClientError as exc:  # the Retrier finished it first (NOT_FOUND), or no session
            self.journal.write({"note": entry.idempotency_key, "code": exc.code})
        else:
            if not delivery.final:
                assert delivery.error is not None  # a queued delivery says why
                self.journal.write({"retry": delivery.idempotency_key, "code": delivery.error.code})
                retrier.wake()
            elif delivery.status in (PaymentStatus.SUCCEEDED, PaymentStatus.DECLINED):
                if replay < self.setup["replay_fraction"]:
                    await self.replay(delivery)
                if conflict < self.setup["conflict_fraction"]:
                    await self.conflict(delivery)
        await asyncio.sleep(pause_s)

    def _request(self, d, amount_cents: int):
        from backend.api import strife_pb2 as pb

        return pb.PayRequest(
            idempotency_key=d.idempotency_key,
            amount_cents=amount_cents,
            to=pb.AccountRef(bank=d.to_bank, account_id=d.to_account),
            **{"from": pb.AccountRef(bank=d.from_bank, account_id=d.from_account)},
        )

    async def _pay_again(self, request) -> tuple[PaymentStatus | str, str]:
        """(the payment's status, its id), or (the failed call's status code name, "")."""
        import grpc

        from backend.client import payment_status

        session = self.client.require_session()
        try:
            p = await self.client.stub.Pay(request, timeout=REPLAY_TIMEOUT_S, metadata=session.metadata)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, ""
        return payment_status(p.status), p.payment_id

    async def replay(self, d) -> None:
        """Send the same key and request again: the same answer must come back."""
        from backend.client import RETRYABLE_CODES

        status, payment_id = await self._pay_again(self._request(d, d.amount_cents))
        if status in RETRYABLE_CODES:
            self.journal.write({"replay_skipped": d.idempotency_key, "code": status})
            return
        self.journal.write(
            {
                "replay": d.idempotency_key,
                "first": [d.status, d.payment_id],
                "again": [status, payment_id],
                "same": (status, payment_id) == (d.status, d.payment_id),
            }
        )

    async def conflict(self, d) -> None:
        """The same key with a different amount must be refused (FAILED_PRECONDITION)."""
        from backend.client import RETRYABLE_CODES

        status, _ = await self._pay_again(self._request(d, d.amount_cents + 1))
        if status in RETRYABLE_CODES:
            return
        self.journal.write(
            {"conflict": d.idempotency_key, "code": "OK" if isinstance(status, PaymentStatus) else status}
        )

    async def drain(self, timeout_s: float) -> int:
        """Send the outbox until it is empty or timeout_s passed; return what is left."""
        from backend.client import ClientError

        deadline = time.monotonic() + timeout_s
        while True:
            left = await asyncio.to_thread(self.client.outbox.count, self.username)
            if left == 0 or time.monotonic() > deadline:
                return left
            try:
                await self.login()
                report = await self.client.sync()
                self.journal.deliveries(report)
            except ClientError:
                pass
            await asyncio.sleep(DRAIN_POLL_S)


async def _serve(setup: dict) -> int:
    loop = asyncio.get_running_loop()
    worker = Worker(setup)
    quit_ = asyncio.Event()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "drain":
                loop.call_soon_threadsafe(worker.draining.set)
        loop.call_soon_threadsafe(quit_.set)
        # Whatever happens to the loop, do not outlive the parent by more than a moment.
        timer = threading.Timer(EXIT_GRACE_S, lambda: os._exit(0))
        timer.daemon = True
        timer.start()

    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    loop.add_signal_handler(signal.SIGTERM, quit_.set)
    task = asyncio.create_task(worker.run())
    quitting = asyncio.create_task(quit_.wait())
    try:
        await asyncio.wait({task, quitting}, return_when=asyncio.FIRST_COMPLETED)
        if task.done() and task.exception() is not None:
            _say({"event": "error", "msg": f"{type(task.exception()).__name__}: {task.exception()}"[:500]})
            return 1
        await quit_.wait()
        return 0
    finally:
        for t in (task, quitting):
            t.cancel()
        await asyncio.gather(task, quitting, return_exceptions=True)
        await worker.client.close()


# -------------------------------------------------------------- chaos side --
class WorkerHandle:
    """One client worker seen from the campaign: start, SIGKILL, restart, drain, close."""

    def __init__(self, index: int, setup: dict) -> None:
        self.index = index
        self.setup = setup
        self.username = setup["username"]
        self.profile = Path(setup["profile"])
        self.incarnation = 0
        self.kills = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[dict] = []
        self._reader: asyncio.Task | None = None
        self._drained = asyncio.Event()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        if self.alive:
            return
        setup = {**self.setup, "seed": f"{self.setup['seed']}/{self.index}/{self.incarnation}"}
        self.incarnation += 1
        self._drained = asyncio.Event()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-u",
            "-m",
            "app.chaos.worker",
            json.dumps(setup),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = asyncio.create_task(self._read(self.proc))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "output", "msg": line.decode("utf-8", "replace").rstrip()[:500]}
            if len(self.events) < 200:
                self.events.append(event)
            if event.get("event") == "drained":
                self._drained.set()
        await proc.wait()
        self._drained.set()  # wake a drain waiter: it checks whether the worker said so

    async def kill(self) -> None:
        if not self.alive:
            return
        assert self.proc is not None
        self.kills += 1
        killpg(self.proc.pid)
        await self.proc.wait()
        if self._reader is not None:
            await self._reader

    async def drain(self, timeout_s: float) -> bool:
        """Ask for a drain; True once the worker said its outbox is empty."""
        if not self.alive:
            await self.start()
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"drain\n")
        await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            return False
        last = next((e for e in reversed(self.events) if e.get("event") == "drained"), None)
        return last is not None and last.get("remaining") == 0

    async def close(self) -> None:
        """Close stdin (the worker exits), then kill its process group if it lingers."""
        if self.proc is None:
            return
        await close_child(self.proc, EXIT_GRACE_S + 2)
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    def kill_now(self) -> None:
        """Synchronous last resort for error paths."""
        if self.alive:
            assert self.proc is not None
            killpg(self.proc.pid)

    def errors(self) -> list[str]:
        return [e.get("msg", "") for e in self.events if e.get("event") in ("error", "output")][:5]


if __name__ == "__main__":
    sys.exit(asyncio.run(_serve(json.loads(sys.argv[1]))))
