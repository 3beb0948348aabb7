"""The nemesis of `strife chaos`: a seeded schedule of faults, and its execution.

`plan()` turns a seed into a list of faults (when, what, on whom, for how long)
with random.Random(seed) alone, so `--seed` replays the same schedule. Faults on
different targets overlap; faults on one target never do (a per-target lock).

Kinds:
  kill_bank     SIGKILL a bank, restart it after hold_s
  freeze_bank   SIGSTOP a bank for hold_s (longer than the 2PC timeout), then SIGCONT
  kill_gateway  SIGKILL the gateway (with --gateways N, a replica), restart it after hold_s
  freeze_gateway (--gateways N > 1 only) SIGSTOP a replica past its lease (the tier takes its
                work over), then SIGCONT: it must find its writes refused and rejoin
  kill_client   SIGKILL a client worker (its queued payments stay in its outbox), restart it
  kill_db       (--db postgres only) SIGKILL the PostgreSQL server and its backends, start
                it again after hold_s on the same files (crash recovery). The gateway and
                the banks are not restarted: they answer UNAVAILABLE meanwhile and reconnect.
                A server process that another fault restarts while the database is down
                waits for it first (a start without its database refuses to run), and
                one whose start the database's death cut short is started again.

The database server can only be started from the main thread (it dies with that
thread), so its restart runs on the event loop's thread and holds the loop for the
crash recovery (a fraction of a second here); the faults are timed on the loop, the
servers are separate processes and keep running meanwhile.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

from backend.common.states import ProcessState

KINDS = {  # kind: (weight, min hold s, max hold s)
    "kill_bank": (3, 0.3, 3.0),
    "freeze_bank": (3, 1.5, 4.0),
    "kill_gateway": (2, 0.3, 2.5),
    "kill_client": (2, 0.2, 2.0),
}
DB_KINDS = {"kill_db": (3, 0.5, 3.0)}  # planned only when the stack runs on a database server
TIER_KINDS = {"freeze_gateway": (2, 2.5, 4.5)}  # planned only with several gateway replicas (lease 2 s)
DB_TARGET = "postgres"
FOLLOW_UP = 0.6  # how often a gateway kill also kills a client while it is down
GAP_S = (0.5, 3.0)  # between the starts of two faults
FIRST_AT_S = (1.0, 2.5)
MAX_FAULTS = 10_000
RESTART_TIMEOUT_S = 60.0
MAX_RESTARTS_AFTER_DB_KILL = 3


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str
    target: str
    hold_s: float


@dataclass
class Done:
    fault: Fault
    applied: bool = False
    note: str = ""
    queued: int | None = None  # kill_client: payments waiting in its outbox when it was killed


def plan(
    seed: int,
    duration_s: float,
    banks: list[str],
    clients: list[str],
    db: bool = False,
    gateways: tuple[str, ...] = ("gateway",),
) -> list[Fault]:
    """The fault schedule of a run: a function of its arguments only. `db`: the stack's state is on
    a database server the nemesis may kill (kill_db); `gateways`: the replicas of the tier (more
    than one adds freeze_gateway); with neither a seed plans what it always did."""
    rng = random.Random(seed)
    table = {**KINDS, **(DB_KINDS if db else {}), **(TIER_KINDS if len(gateways) > 1 else {})}
    kinds = list(table)
    weights = [table[k][0] for k in kinds]
    targets = {
        "kill_bank": banks,
        "freeze_bank": banks,
        "kill_gateway": list(gateways),
        "freeze_gateway": list(gateways),
        "kill_client": clients,
        "kill_db": [DB_TARGET],
    }
    busy_until: dict[str, float] = {}
    out: list[Fault] = []
    t = rng.uniform(*FIRST_AT_S)
    while t < duration_s - 1.0 and len(out) < MAX_FAULTS:
        kind = rng.choices(kinds, weights)[0]
        _, lo, hi = table[kind]
        hold = round(rng.uniform(lo, hi), 2)
        target = rng.choice(targets[kind])
        gap = rng.uniform(*GAP_S)
        follow = rng.random() < FOLLOW_UP and clients
        victim = rng.choice(clients) if clients else ""
        client_hold = round(rng.uniform(*KINDS["kill_client"][1:]), 2)
        if busy_until.get(target, 0.0) <= t and targets[kind]:
            hold = min(hold, max(0.1, duration_s - t))
            out.append(Fault(round(t, 2), kind, target, hold))
            busy_until[target] = t + hold + 1.0  # restarts take a moment
            # While the gateway is down clients queue payments: kill one of them then, too.
            at = t + hold + 0.2  # the gateway is still starting up then
            if kind == "kill_gateway" and follow and busy_until.get(victim, 0.0) <= at < duration_s - 1.0:
                out.append(Fault(round(at, 2), "kill_client", victim, client_hold))
                busy_until[victim] = at + client_hold + 1.0
        t += gap
    return sorted(out, key=lambda f: f.at_s)


class Nemesis:
    """Runs a plan against a Supervisor (gateway + banks), the client workers and, when given,
    the database server (`db`: app.bench.storage.StackStorage on postgres: kill(), restart(), pid)."""

    def __init__(
        self,
        sup,
        workers: dict,
        faults: list[Fault],
        on_event: Callable[[str], None] | None = None,
        db=None,
        tier: bool = False,
    ) -> None:
        self.sup = sup
        self.tier = tier  # several gateway replicas: freeze_gateway is a fault too
        self.workers = workers  # username -> WorkerHandle
        self.faults = faults
        self.db = db
        self.done: list[Done] = []
        self.errors: list[str] = []
        self.db_restart_s: list[float] = []  # how long each restart of the database server took
        self.on_event = on_event or (lambda msg: None)
        self._locks: dict[str, asyncio.Lock] = {}
        self._db_up = asyncio.Event()
        self._db_up.set()
        self._db_kills = 0  # a start that saw this change may have failed for want of its database

    async def run(self, duration_s: float) -> None:
        """Inject the planned faults for duration_s, each healed after its hold."""
        started = time.monotonic()
        tasks = [asyncio.create_task(self._one(f, started, duration_s)) for f in self.faults]
        try:
            await asyncio.sleep(max(0.0, duration_s - (time.monotonic() - started)))
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, fault: Fault, started: float, duration_s: float) -> None:
        await asyncio.sleep(max(0.0, started + fault.at_s - time.monotonic()))
        lock = self._locks.setdefault(fault.target, asyncio.Lock())
        async with lock:
            if time.monotonic() - started > duration_s:
                return  # its target was busy until the end of the run
            record = Done(fault)
            self.done.append(record)
            try:
                await self._apply(record)
                await asyncio.sleep(fault.hold_s)
            finally:
                await self._heal(fault)

    async def _apply(self, record: Done) -> None:
        f = record.fault
        if f.kind in ("kill_bank", "kill_gateway"):
            if self.sup.procs[f.target].state not in (ProcessState.SERVING, ProcessState.FROZEN, ProcessState.STARTING):
                record.note = f"already {self.sup.procs[f.target].state}"
                return
            await self.sup.kill(f.target)
        elif f.kind in ("freeze_bank", "freeze_gateway"):
            if self.sup.procs[f.target].state != ProcessState.SERVING:
                record.note = f"not serving ({self.sup.procs[f.target].state})"
                return
            await self.sup.freeze(f.target)
        elif f.kind == "kill_client":
            worker = self.workers[f.target]
            record.queued = queued_in(worker.profile / "outbox.sqlite")
            await worker.kill()
        elif f.kind == "kill_db":
            if self.db is None or self.db.pid is None:
                record.note = "no database server running"
                return
            self._db_up.clear()  # before the kill: nobody starts a server process on a dead database
            self._db_kills += 1
            self.db.kill()
        record.applied = True
        self.on_event(
            f"{f.at_s:7.2f}s {f.kind} {f.target} for {f.hold_s:.2f}s"
            + (f" ({record.queued} queued)" if record.queued is not None else "")
        )

    async def _heal(self, fault: Fault) -> None:
        try:
            if fault.kind == "kill_client":
                await self.workers[fault.target].start()
            elif fault.kind == "kill_db":
                self._restart_db()
            else:
                await self._heal_process(fault.target)
        except Exception as exc:  # noqa: BLE001 - keep the campaign going; heal_all tries again
            self.errors.append(f"heal {fault.kind} {fault.target}: {type(exc).__name__}: {exc}"[:300])

    def _restart_db(self) -> None:
        """Start the database server again if it is down (main thread: see the module docstring)."""
        if self.db is not None and self.db.pid is None:
            t = time.monotonic()
            self.db.restart()
            self.db_restart_s.append(time.monotonic() - t)
        self._db_up.set()

    async def _heal_process(self, name: str) -> None:
        p = self.sup.procs[name]
        if p.state == ProcessState.FROZEN:
            await self.sup.thaw(name)
            await self.sup.wait_serving(name, RESTART_TIMEOUT_S)
            return
        for attempt in range(1 + MAX_RESTARTS_AFTER_DB_KILL):
            # A start already under way began before we looked: the database may have died under it.
            kills = -1 if p.state == ProcessState.STARTING and self.db is not None else self._db_kills
            if p.state not in (ProcessState.SERVING, ProcessState.STARTING):
                await asyncio.wait_for(self._db_up.wait(), RESTART_TIMEOUT_S)  # it needs its database to start
                await self.sup.start(name)
            try:
                await self.sup.wait_serving(name, RESTART_TIMEOUT_S)
                return
            except RuntimeError:
                if self._db_kills == kills or attempt == MAX_RESTARTS_AFTER_DB_KILL:
                    raise  # it failed on its own: that is for the report

    async def heal_all(self) -> None:
        """Restart the database server; thaw, restart and wait for every server process; restart every dead worker."""
        try:
            self._restart_db()
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"heal {DB_TARGET}: {type(exc).__name__}: {exc}"[:300])
        for name in self.sup.procs:
            try:
                await self._heal_process(name)
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"heal {name}: {type(exc).__name__}: {exc}"[:300])
        for worker in self.workers.values():
            await worker.start()

    def counts(self) -> dict[str, int]:
        applied = Counter(d.fault.kind for d in self.done if d.applied)
        kinds = KINDS | (DB_KINDS if self.db is not None else {}) | (TIER_KINDS if self.tier else {})
        out = {kind: applied.get(kind, 0) for kind in kinds}
        out["kill_client with payments queued"] = sum(1 for d in self.done if d.applied and d.queued)
        out["planned but not applied"] = len(self.faults) - sum(1 for d in self.done if d.applied)
        return out

    def to_json(self) -> list[dict]:
        return [{**asdict(d.fault), "applied": d.applied, "note": d.note, "queued": d.queued} for d in self.done]


def queued_in(outbox_path) -> int | None:
    try:
        conn = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True, timeout=2)
        try:
            return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return None
