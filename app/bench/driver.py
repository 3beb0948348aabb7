"""A load-driver process of `strife bench`, and the handle the bench keeps on it.

The bench shares the machine with the stack it measures, so the clients run in
several driver processes (`python -m app.bench.driver`), not in the process that
supervises the stack. Each driver owns some of the clients: one mTLS channel and
one login per client. It talks to the bench over stdin/stdout, one JSON object per
line:

  bench -> driver  {"cmd": "setup", gateway, certs, clients: [{username, password, from}], payees, ...}
  driver -> bench  {"ok": "ready", "login_s": ...}
  bench -> driver  {"cmd": "run", "kind": "echo"|"pay", "start_at": <monotonic>, "duration_s" | "count"}
  driver -> bench  {"ok": "done", "kind", "started", "ended", "counts", "codes", "latencies_ms", "cpu_s"}

It exits when its stdin closes. Both sides use CLOCK_MONOTONIC, which is one clock
for every process of the machine, so a phase starts at the same instant everywhere.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field

from backend.common.states import PaymentStatus
from backend.supervisor import close_child

MAX_LATENCY_SAMPLES = 1_000_000  # per driver and phase; a reservoir sample beyond that
MAX_LINE_BYTES = 256 * 1024 * 1024  # a "done" line carries the latencies
SETUP_TIMEOUT_S = 120.0

# How a Pay answer is counted. A refusal that says "payment not made, retry" is an
# abort (the 2PC aborted or the key was busy); anything else unexpected is an error.
ABORT_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"})


# ------------------------------------------------------------- driver side --
@dataclass
class Phase:
    kind: str
    latencies_ms: list[float] = field(default_factory=list)
    seen: int = 0  # latencies offered to the reservoir
    counts: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)

    def record(self, outcome: str, latency_ms: float, code: str = "OK", detail: str = "") -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if code != "OK":
            self.codes[code] = self.codes.get(code, 0) + 1
        if outcome == "error" and len(self.first_errors) < 5:
            self.first_errors.append(f"{code}: {detail}"[:300])
        self.seen += 1
        if len(self.latencies_ms) < MAX_LATENCY_SAMPLES:
            self.latencies_ms.append(latency_ms)
        else:
            slot = random.randrange(self.seen)
            if slot < MAX_LATENCY_SAMPLES:
                self.latencies_ms[slot] = latency_ms


class Driver:
    def __init__(self, setup: dict) -> None:
        self.setup = setup
        self.rpc_timeout_s = float(setup["rpc_timeout_s"])
        self.amount_max_cents = int(setup["amount_max_cents"])
        self.decline_percent = float(setup["decline_percent"])
        self.overdraw_cents = int(setup["overdraw_cents"])
        self.random = random.Random(setup.get("seed", 0))
        self.clients: list[dict] = []

    async def open(self) -> float:
        import grpc
        from grpc_health.v1 import health_pb2_grpc

        from backend.api import strife_pb2 as pb
        from backend.api import strife_pb2_grpc as pb_grpc
        from backend.common import tls

        self.grpc, self.pb = grpc, pb
        started = time.monotonic()
        payees = [tuple(p) for p in self.setup["payees"]]
        for spec in self.setup["clients"]:
            channel = tls.secure_channel(self.setup["gateway"], self.setup["certs"], "client")
            client = {
                "channel": channel,
                "gateway": pb_grpc.GatewayStub(channel),
                "health": health_pb2_grpc.HealthStub(channel),
                "from": tuple(spec["from"]),
                "payees": [p for p in payees if p[0] != spec["from"][0]]
                or [p for p in payees if p != tuple(spec["from"])],
                "username": spec["username"],
                "password": spec["password"],
            }
            if not client["payees"]:
                raise RuntimeError(f"no payee for {spec['username']}: need accounts at two banks")
            self.clients.append(client)

        async def login(client: dict) -> None:
            answer = await client["gateway"].Login(
                pb.LoginRequest(username=client["username"], password=client["password"]), timeout=60
            )
            client["metadata"] = (("authorization", f"Bearer {answer.token}"),)

        await asyncio.gather(*(login(c) for c in self.clients))
        return time.monotonic() - started

    async def close(self) -> None:
        for client in self.clients:
            await client["channel"].close()

    # -- phases --------------------------------------------------------------
    async def run(self, cmd: dict) -> dict:
        kind = cmd["kind"]
        phase = Phase(kind)
        duration_s = cmd.get("duration_s")
        remaining = [int(cmd["count"])] if cmd.get("count") is not None else None
        delay = cmd["start_at"] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        started = time.monotonic()
        deadline = started + duration_s if duration_s is not None else None
        cpu0 = _cpu_s()

        def more() -> bool:
            if remaining is not None:
                if remaining[0] <= 0:
                    return False
                remaining[0] -= 1
                return True
            assert deadline is not None  # a phase runs for a count or for a duration
            return time.monotonic() < deadline

        one = self._echo if kind == "echo" else self._pay
        await asyncio.gather(*(self._client_loop(c, one, phase, more) for c in self.clients))
        ended = time.monotonic()
        return {
            "ok": "done",
            "kind": kind,
            "started": started,
            "ended": ended,
            "cpu_s": _cpu_s() - cpu0,
            "counts": phase.counts,
            "codes": phase.codes,
            "first_errors": phase.first_errors,
            "latencies_ms": phase.latencies_ms,
            "samples_seen": phase.seen,
        }

    async def _client_loop(self, client: dict, one, phase: Phase, more) -> None:
        while more():
            await one(client, phase)

    async def _echo(self, client: dict, phase: Phase) -> None:
        from grpc_health.v1 import health_pb2

        t0 = time.perf_counter()
        try:
            answer = await client["health"].Check(health_pb2.HealthCheckRequest(service=""), timeout=self.rpc_timeout_s)
        except self.grpc.aio.AioRpcError as exc:
            phase.record("error", _ms(t0), exc.code().name, exc.details() or "")
            return
        ok = answer.status == health_pb2.HealthCheckResponse.SERVING
        phase.record("ok" if ok else "error", _ms(t0), "OK" if ok else "NOT_SERVING", "health status")

    async def _pay(self, client: dict, phase: Phase) -> None:
        pb = self.pb
        bank, account = client["payees"][self.random.randrange(len(client["payees"]))]
        if self.decline_percent and self.random.random() * 100 < self.decline_percent:
            amount_cents = self.overdraw_cents
        else:
            amount_cents = self.random.randint(1, self.amount_max_cents)
        request = pb.PayRequest(
            idempotency_key=uuid.uuid4().hex,
            to=pb.AccountRef(bank=bank, account_id=account),
            amount_cents=amount_cents,
            **{"from": pb.AccountRef(bank=client["from"][0], account_id=client["from"][1])},
        )
        t0 = time.perf_counter()
        try:
            answer = await client["gateway"].Pay(request, metadata=client["metadata"], timeout=self.rpc_timeout_s)
        except self.grpc.aio.AioRpcError as exc:
            code = exc.code().name
            elapsed_ms = _ms(t0)
            client_timeout = code == "DEADLINE_EXCEEDED" and elapsed_ms >= self.rpc_timeout_s * 1000 * 0.99
            if code in ABORT_CODES and not client_timeout:
                phase.record("aborted", elapsed_ms, code)
            else:  # our own deadline: the outcome is unknown to this client
                phase.record("error", elapsed_ms, "CLIENT_TIMEOUT" if client_timeout else code, exc.details() or "")
            return
        elapsed_ms = _ms(t0)
        if answer.status == pb.SUCCEEDED:
            phase.record("committed", elapsed_ms)
        elif answer.status == pb.DECLINED:
            phase.record("declined", elapsed_ms, PaymentStatus.DECLINED)
        else:
            phase.record("error", elapsed_ms, pb.PaymentStatus.Name(answer.status), answer.reason)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _serve() -> int:
    loop = asyncio.get_running_loop()

    async def read() -> dict | None:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        return json.loads(line) if line.strip() else None

    def say(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    setup = await read()
    if setup is None:
        return 0
    driver = Driver(setup)
    try:
        try:
            login_s = await asyncio.wait_for(driver.open(), SETUP_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - reported to the bench, which stops
            say({"error": f"driver setup failed: {type(exc).__name__}: {exc}"})
            return 1
        say({"ok": "ready", "login_s": login_s})
        while (cmd := await read()) is not None:
            say(await driver.run(cmd))
        return 0
    finally:
        await driver.close()


# -------------------------------------------------------------- bench side --
class DriverHandle:
    """One driver process, seen from the bench. Always `await close()` it."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self._stderr: list[str] = []
        self._stderr_task: asyncio.Task | None = None

    async def start(self, setup: dict) -> None:
        import os

        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-u",
            "-m",
            "app.bench.driver",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=MAX_LINE_BYTES,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        await self._send(setup)

    async def ready(self) -> dict:
        return await self._answer("ready", SETUP_TIMEOUT_S + 10)

    async def run(self, cmd: dict, timeout_s: float) -> dict:
        await self._send({"cmd": "run", **cmd})
        return await self._answer("done", timeout_s)

    async def _send(self, obj: dict) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        await self.proc.stdin.drain()

    async def _answer(self, expected: str, timeout_s: float) -> dict:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        except TimeoutError:
            raise RuntimeError(f"driver {self.index} gave no answer within {timeout_s:.0f} s") from None
        if not line:
            raise RuntimeError(f"driver {self.index} exited: {self.stderr_tail()}")
        answer = json.loads(line)
        if answer.get("ok") != expected:
            raise RuntimeError(f"driver {self.index}: {answer.get('error') or answer}")
        return answer

    async def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self._stderr = (self._stderr + [line.decode("utf-8", "replace").rstrip()])[-20:]

    def stderr_tail(self) -> str:
        return " | ".join(self._stderr[-5:]) or "no output on stderr"

    async def close(self) -> None:
        """Close stdin (the driver exits), then kill its process group if it lingers."""
        if self.proc is None:
            return
        await close_child(self.proc, 10)
        if self._stderr_task is not None:
            await self._stderr_task


if __name__ == "__main__":
    sys.exit(asyncio.run(_serve()))
