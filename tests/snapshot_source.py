"""A fixed, fake ControlSource for snapshot tests and for looking at the UI by hand.

No processes, no network, no real clock: every scenario posts the same messages.
The 2PC rows come from app.timeline folding fixed log lines, as in the live source.

    python -m tests.snapshot_source [idle|mid_2pc|bank_offline|gateway_offline|money_lost|tier]

`tier` is a gateway tier of three replicas (gw-1..gw-3, round_robin): gw-2 was killed in the
middle of a payment and gw-1 took its work over after the lease.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace

from textual.message import Message

from app import messages as msg
from app.model import (
    AccountRow,
    Balances,
    BankBalances,
    ClientState,
    HistoryRow,
    LogRecord,
    ProcessInfo,
    QueuedPayment,
    ReplicaLoad,
    Tier,
)
from app.source import ClientError, ControlSource, PayOutcome
from app.timeline import Timeline
from backend.common.events import Event, Phase, Vote
from backend.common.limits import InvalidInput
from backend.common.money import format_cents, parse_cents
from backend.common.states import Decision, PaymentStatus, ProcessState

NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
SCENARIOS = ("idle", "mid_2pc", "bank_offline", "gateway_offline", "money_lost", "tier")
EXPECTED_TOTAL_CENTS = 370_000
PASSWORDS = {"alice": "alice-demo-pw", "bob": "bob-demo-pw"}

ACCOUNTS = {  # after the payments of `_history`
    "BankA": [("A-1001", "alice", 98_750), ("A-1002", "dave", 48_000), ("A-1003", "erin", 25_000)],
    "BankB": [("B-2001", "bob", 68_750), ("B-2002", "frank", 42_000)],
    "BankC": [("C-3001", "carol", 60_000), ("C-3002", "alice", 27_500)],
}
PORTS = {"gateway": 50050, "BankA": 50051, "BankB": 50052, "BankC": 50053}
REPLICAS = ("gw-1", "gw-2", "gw-3")  # the tier scenario's gateway replicas
TIER_PORTS = {"gw-1": 50050, "gw-2": 50051, "gw-3": 50052, "BankA": 50053, "BankB": 50054, "BankC": 50055}
LB_POLICY = "round_robin"
TAKEOVER_REASON = "replica gw-2 stopped during 2PC: taken over by gw-1"
# What the operator did, as a line in the Logs tab. No process emits it (the supervisor logs
# nothing when it kills a child); it stays so the snapshots show an error line.
KILLED_EVENT = "stopped"


def fixed_clock() -> float:
    return NOW


def _log(t: float, process: str, event: str, level: str = "info", **fields) -> LogRecord:
    """Like backend.common.jsonlog.emit: a field set to None is left out."""
    fields = {k: v for k, v in fields.items() if v is not None}
    return LogRecord(time=NOW + t, process=process, level=level, event=event, fields=fields)


def _2pc(t: float, process: str, phase: Phase, level: str = "info", **fields) -> LogRecord:
    return _log(t, process, Event.TWOPC, level, phase=phase, **fields)


def _payment(
    t: float,
    txn: str,
    user: str,
    payer: str,
    payee: str,
    cents: int,
    *,
    stop_after: str = "",
    vote_b: Vote = Vote.YES,
    no_reason: str = "",
    b_down_after_vote: bool = False,
    gateway: str = "gateway",
) -> list[LogRecord]:
    """The log lines of one payment run by `gateway` (a replica's name in a tier): the payer
    bank votes yes unless `no_reason`; the payee bank votes `vote_b`; `stop_after` cuts the
    story short (mid-2PC)."""
    (bank_a, acct_a), (bank_b, acct_b) = payer.split("/"), payee.split("/")
    lines = [
        _2pc(
            t,
            gateway,
            Phase.BEGIN,
            txn=txn,
            user=user,
            amount_cents=cents,
            from_bank=bank_a,
            from_account=acct_a,
            to_bank=bank_b,
            to_account=acct_b,
        ),
        _2pc(t + 0.004, bank_a, Phase.VOTE, txn=txn, vote=Vote.NO if no_reason else Vote.YES, reason=no_reason or None),
    ]
    if stop_after == "payer_vote":
        return lines
    if vote_b == Vote.NONE:
        lines.append(
            _2pc(
                t + 0.006,
                gateway,
                Phase.VOTE,
                "warning",
                txn=txn,
                bank=bank_b,
                vote=Vote.NONE,
                code="UNAVAILABLE",
                reason=f"{bank_b} offline",
            )
        )
        decision, reason = Decision.ABORT, f"{bank_b} offline"
    else:
        lines.append(_2pc(t + 0.005, bank_b, Phase.VOTE, txn=txn, vote=Vote.YES))
        decision, reason = (Decision.ABORT, no_reason) if no_reason else (Decision.COMMIT, "")
    lines.append(_2pc(t + 0.007, gateway, Phase.DECISION, txn=txn, decision=decision, reason=reason or None))
    lines.append(_2pc(t + 0.011, gateway, Phase.ACKED, txn=txn, bank=bank_a, decision=decision))
    if vote_b == Vote.NONE or b_down_after_vote:
        lines.append(
            _2pc(
                t + 0.012,
                gateway,
                Phase.DECISION_UNACKED,
                "warning",
                txn=txn,
                bank=bank_b,
                decision=decision,
                code="UNAVAILABLE",
            )
        )
    else:
        lines.append(_2pc(t + 0.013, gateway, Phase.ACKED, txn=txn, bank=bank_b, decision=decision))
    code = "OK" if decision == Decision.COMMIT or no_reason else "UNAVAILABLE"
    lines.append(
        _log(
            t + 0.014,
            gateway,
            Event.RPC,
            "info" if code == "OK" else "warning",
            method="/strife.Gateway/Pay",
            user=user,
            code=code,
            ms=14.2,
            txn=txn,
        )
    )
    return lines


def _startup() -> list[LogRecord]:
    lines = [
        _log(-754 + i * 0.2, name, Event.SERVING, address=f"127.0.0.1:{port}")
        for i, (name, port) in enumerate(PORTS.items())
    ]
    lines.append(_log(-700, "gateway", Event.RPC, method="/strife.Gateway/Login", user="alice", code="OK", ms=3.1))
    return lines


def _history() -> list[LogRecord]:
    return [
        *_payment(-600, "3f2a91c07d", "alice", "BankA/A-1001", "BankB/B-2001", 1_250),
        *_payment(-420, "9b41e2d6aa", "erin", "BankA/A-1003", "BankC/C-3001", 40_000, no_reason="insufficient funds"),
        *_payment(-300, "c70d55e1f2", "bob", "BankB/B-2001", "BankC/C-3002", 7_500),
        *_payment(-120, "51be08c3d4", "dave", "BankA/A-1002", "BankB/B-2002", 2_000),
    ]


def _kind(name: str) -> str:
    return "gateway" if name == "gateway" or name in REPLICAS else "bank"


def _processes(down: str = "", ports: dict[str, int] = PORTS) -> tuple[ProcessInfo, ...]:
    return tuple(
        ProcessInfo(
            name, _kind(name), ProcessState.OFFLINE, port, restarts=0, exit_code=-9 if name in REPLICAS else None
        )
        if name == down
        else ProcessInfo(
            name,
            _kind(name),
            ProcessState.SERVING,
            port,
            pid=4101 + i,
            started_at=NOW - 754,
            health="SERVING",
            restarts=1 if name == "BankC" else 0,
        )
        for i, (name, port) in enumerate(ports.items())
    )


def _tier_records() -> list[LogRecord]:
    """Three replicas: payments spread over them; gw-2 killed while it ran one, which gw-1
    aborts when it takes gw-2's work over (5 s later, the lease); then gw-3 pays one."""
    lines = [
        _log(-754 + i * 0.2, name, Event.SERVING, address=f"127.0.0.1:{port}")
        for i, (name, port) in enumerate(TIER_PORTS.items())
    ]
    lines += [
        _log(-753 + i * 0.2, name, Event.JOINED, replica=name, address=f"127.0.0.1:{TIER_PORTS[name]}", region="local")
        for i, name in enumerate(REPLICAS)
    ]
    lines.append(_log(-700, "gw-1", Event.RPC, method="/strife.Gateway/Login", user="alice", code="OK", ms=3.1))
    lines += _payment(-600, "3f2a91c07d", "alice", "BankA/A-1001", "BankB/B-2001", 1_250, gateway="gw-1")
    lines += _payment(
        -420,
        "9b41e2d6aa",
        "erin",
        "BankA/A-1003",
        "BankC/C-3001",
        40_000,
        no_reason="insufficient funds",
        gateway="gw-2",
    )
    lines += _payment(-300, "c70d55e1f2", "bob", "BankB/B-2001", "BankC/C-3002", 7_500, gateway="gw-3")
    lines += _payment(-120, "51be08c3d4", "dave", "BankA/A-1002", "BankB/B-2002", 2_000, gateway="gw-1")
    # gw-2 began a payment and was killed before its decision: A-1001's hold waits for the takeover.
    lines += _payment(
        -41, "b6e39d0f4a", "alice", "BankA/A-1001", "BankB/B-2001", 900, stop_after="payer_vote", gateway="gw-2"
    )
    lines.append(_log(-40.9, "gw-2", KILLED_EVENT, "error", msg="killed by the control room (SIGKILL)"))
    taken = dict(txn="b6e39d0f4a", decision=Decision.ABORT)
    lines += [
        _2pc(-35, "gw-1", Phase.DECISION, reason=TAKEOVER_REASON, **taken),
        _log(
            -35,
            "gw-1",
            Event.TAKEOVER,
            "warning",
            replica="gw-2",
            msg="took over replica gw-2: 1 aborted (were PREPARING), 0 decisions to re-send",
        ),
        _2pc(-34.99, "BankA", Phase.ABORTED, txn="b6e39d0f4a"),
        _2pc(-34.98, "BankB", Phase.ABORTED, txn="b6e39d0f4a"),
        _2pc(-34.98, "gw-1", Phase.ACKED, banks=["BankA", "BankB"], **taken),
    ]
    lines += _payment(-5, "2d7c81f5e9", "bob", "BankB/B-2001", "BankA/A-1002", 1_500, gateway="gw-3")
    return lines


def tier() -> Tier:
    """What the Processes panel shows of the tier: calls answered over the last 10 s, load now."""
    return Tier(
        LB_POLICY,
        (
            ReplicaLoad("gw-1", "local", 14, 1),
            ReplicaLoad("gw-2", "local", 0, None),
            ReplicaLoad("gw-3", "local", 13, 0),
        ),
    )


def _balances(
    unreachable: str = "", held: dict[str, int] | None = None, moved: dict[str, int] | None = None
) -> Balances:
    held, moved = held or {}, moved or {}
    banks = []
    for bank, rows in ACCOUNTS.items():
        if bank == unreachable:
            banks.append(BankBalances(bank, reachable=False))
            continue
        accounts = tuple(
            AccountRow(bank, acct, owner, cents + moved.get(acct, 0), cents + moved.get(acct, 0) - held.get(acct, 0))
            for acct, owner, cents in rows
        )
        banks.append(
            BankBalances(
                bank,
                True,
                accounts,
                sum(a.balance_cents for a in accounts),
                sum(held.get(a.account_id, 0) for a in accounts),
            )
        )
    return Balances(tuple(banks), EXPECTED_TOTAL_CENTS)


def _rates(tail: tuple[int, ...] = ()) -> tuple[int, ...]:
    base = (0, 1, 3, 2, 5, 8, 6, 4, 7, 9, 12, 10, 8, 11, 14, 9, 7, 6, 8, 10, 12, 9, 6, 4)
    return (base + tail)[-30:]


def _alice(history: tuple[HistoryRow, ...] = ()) -> ClientState:
    return ClientState(
        "alice",
        (
            AccountRow("BankA", "A-1001", "alice", 98_750, 98_750),
            AccountRow("BankC", "C-3002", "alice", 27_500, 27_500),
        ),
        history,
    )


ALICE_HISTORY = (
    HistoryRow("3f2a91c07d", "sent", "BankB/B-2001", 1_250, PaymentStatus.SUCCEEDED, "", NOW - 600),
    HistoryRow("c70d55e1f2", "received", "BankB/B-2001", 7_500, PaymentStatus.SUCCEEDED, "", NOW - 300),
)


class SnapshotSource(ControlSource):
    def __init__(self, scenario: str = "idle") -> None:
        assert scenario in SCENARIOS, scenario
        self.scenario = scenario
        self._post: Callable[[Message], None] = lambda message: None
        self._processes: tuple[ProcessInfo, ...] = ()
        self._client = ClientState(None)
        self.stopped = False
        self.traffic_per_s = 0.0

    async def start(self, post: Callable[[Message], None]) -> None:
        self._post = post
        records, processes, balances, outbox, rates = self._scenario()
        self._processes = processes
        post(msg.ProcessesChanged(processes))
        if self.scenario == "tier":
            post(msg.TierChanged(tier()))
        timeline = Timeline()
        for record in records:
            post(msg.LogReceived(record))
            if (row := timeline.apply(record)) is not None:
                post(msg.TxnChanged(row))
        post(msg.BalancesChanged(balances))
        post(msg.OutboxChanged(outbox))
        post(msg.ClientChanged(self._client))
        post(msg.StatsChanged(rates, 12.0, 41.0))

    def _scenario(self):
        records = _startup() + _history()
        if self.scenario == "mid_2pc":
            records += _payment(
                -0.5, "e81f0c9b27", "alice", "BankA/A-1001", "BankB/B-2001", 25_000, stop_after="payer_vote"
            )
            return records, _processes(), _balances(held={"A-1001": 25_000}), (), _rates((7, 9))
        if self.scenario == "bank_offline":
            records += _payment(-40, "d2c4a8e610", "dave", "BankA/A-1002", "BankB/B-2001", 500, b_down_after_vote=True)
            records.append(_log(-39, "BankB", KILLED_EVENT, "error", msg="killed by the control room (SIGKILL)"))
            records += _payment(-5, "7aa3f9015c", "alice", "BankA/A-1001", "BankB/B-2002", 3_000, vote_b=Vote.NONE)
            return (
                records,
                _processes(down="BankB"),
                _balances(unreachable="BankB", moved={"A-1002": -500}),
                (),
                _rates((6, 2, 0, 0)),
            )
        if self.scenario == "gateway_offline":
            self._client = _alice(ALICE_HISTORY)
            outbox = (
                QueuedPayment(
                    "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5",
                    "alice",
                    "BankB/B-2001",
                    1_000,
                    3,
                    NOW + 4,
                    "gateway offline",
                    NOW - 50,
                    "UNAVAILABLE",
                ),
                QueuedPayment(
                    "5e6f7081-92a3-4b4c-9d5e-6f708192a3b4",
                    "alice",
                    "BankC/C-3001",
                    4_200,
                    1,
                    NOW + 1,
                    "gateway offline",
                    NOW - 12,
                    "UNAVAILABLE",
                ),
                QueuedPayment(
                    "a1b2c3d4-e5f6-4071-8293-a4b5c6d7e8f9",
                    "alice",
                    "BankB/B-2002",
                    725,
                    5,
                    NOW + 16,
                    "no answer in 2s",
                    NOW - 90,
                    "DEADLINE_EXCEEDED",
                ),
            )
            records.append(_log(-95, "gateway", KILLED_EVENT, "error", msg="killed by the control room (SIGKILL)"))
            return records, _processes(down="gateway"), _balances(), outbox, _rates((3, 0, 0, 0, 0, 0))
        if self.scenario == "money_lost":  # what the conservation line is there to catch
            return records, _processes(), _balances(moved={"A-1001": -100}), (), _rates()
        if self.scenario == "tier":
            moved = {"A-1002": 1_500, "B-2001": -1_500}
            return _tier_records(), _processes("gw-2", TIER_PORTS), _balances(moved=moved), (), _rates((9, 8))
        return records, _processes(), _balances(), (), _rates()

    async def stop(self) -> None:
        self.stopped = True

    # -- fault toggles: just change the state shown -------------------------
    def _set_state(self, name: str, **changes) -> None:
        if name not in {p.name for p in self._processes}:
            raise ClientError("NOT_FOUND", f"no process named {name}")
        self._processes = tuple(replace(p, **changes) if p.name == name else p for p in self._processes)
        self._post(msg.ProcessesChanged(self._processes))

    async def kill(self, name: str) -> None:
        self._set_state(name, state=ProcessState.OFFLINE, pid=None, started_at=None, health="UNKNOWN")

    async def freeze(self, name: str) -> None:
        self._set_state(name, state=ProcessState.FROZEN, health="UNKNOWN")

    async def thaw(self, name: str) -> None:
        self._set_state(name, state=ProcessState.SERVING, health="SERVING")

    async def restart(self, name: str) -> None:
        restarts = next(p.restarts for p in self._processes if p.name == name)
        self._set_state(
            name,
            state=ProcessState.SERVING,
            pid=5000 + restarts,
            started_at=NOW,
            health="SERVING",
            restarts=restarts + 1,
        )

    # -- the embedded client ---------------------------------------------
    async def register(self, username: str, password: str, bank: str, account_id: str) -> None:
        raise ClientError("ALREADY_EXISTS", f"username {username!r} is taken")

    async def login(self, username: str, password: str) -> None:
        if PASSWORDS.get(username) != password:
            raise ClientError("UNAUTHENTICATED", "wrong username or password")
        self._client = _alice(ALICE_HISTORY) if username == "alice" else ClientState(username)
        self._post(msg.ClientChanged(self._client))

    async def logout(self) -> None:
        self._client = ClientState(None)
        self._post(msg.ClientChanged(self._client))

    async def pay(
        self,
        to_bank: str,
        to_account: str,
        amount_text: str,
        from_bank: str | None = None,
        from_account: str | None = None,
    ) -> PayOutcome:
        if self._client.username is None:
            raise ClientError("UNAUTHENTICATED", "log in first")
        try:
            cents = parse_cents(amount_text)
        except InvalidInput as exc:
            raise ClientError("INVALID_ARGUMENT", str(exc)) from None
        if to_bank not in ACCOUNTS or to_account not in {a for a, _, _ in ACCOUNTS[to_bank]}:
            raise ClientError("NOT_FOUND", f"no account {to_bank}/{to_account}")
        return PayOutcome(f"paid {format_cents(cents)} to {to_bank}/{to_account}")

    async def refresh_client(self) -> None:
        self._post(msg.ClientChanged(self._client))

    async def sync_outbox(self) -> None:
        """Nothing to send: the fake gateway never comes back."""

    async def set_slow_motion(self, pause_ms: int) -> None:
        self.slow_motion_ms = pause_ms
        self._post(msg.SlowMotionChanged(pause_ms))

    async def set_traffic(self, per_s: float) -> None:
        self.traffic_per_s = per_s
        self._post(msg.TrafficChanged(per_s, 0, 0, 0, 0))


if __name__ == "__main__":
    from app.app import StrifeApp

    StrifeApp(SnapshotSource(sys.argv[1] if len(sys.argv) > 1 else "idle"), clock=fixed_clock).run()
