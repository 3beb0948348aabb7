"""The control room over a gateway tier: each replica a process row, the LB policy, each
replica's share of the calls and its load, takeovers, and which replica ran each payment.

The first tests use the fixed SnapshotSource (tier scenario) and pure pieces; the last ones
drive a real stack of three replicas with Textual's Pilot."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from app.app import StrifeApp
from app.messages import LogReceived, TierChanged
from app.model import LogRecord, ReplicaLoad, Tier
from app.timeline import Timeline
from app.widgets.confirm import Confirm
from app.widgets.faults_strip import FaultsStrip
from app.widgets.process_panel import ProcessPanel
from app.widgets.txn_panel import TxnPanel
from backend.common.events import Event, Phase
from backend.common.states import Decision, ProcessState
from tests.snapshot_source import NOW, SnapshotSource, fixed_clock

WIDE = (120, 40)

pytestmark = pytest.mark.usefixtures("fixed_environment")


def _2pc(t: float, process: str, phase: Phase, **fields) -> LogRecord:
    return LogRecord(NOW + t, process, "info", Event.TWOPC, {"phase": phase, **fields})


def _begin(t: float, replica: str, txn: str) -> LogRecord:
    return _2pc(
        t,
        replica,
        Phase.BEGIN,
        txn=txn,
        user="alice",
        amount_cents=100,
        from_bank="BankA",
        from_account="A-1001",
        to_bank="BankB",
        to_account="B-2001",
    )


# ----------------------------------------------------------------- timeline --
def test_the_replica_that_began_a_payment_ran_it_and_its_lines_count_as_the_gateways():
    timeline = Timeline()
    row = timeline.apply(_begin(0, "gw-2", "t1"))
    assert row is not None and row.replica == "gw-2" and row.ran_on == "gw-2"
    timeline.apply(_2pc(0.01, "BankA", Phase.VOTE, txn="t1", vote="YES"))
    timeline.apply(_2pc(0.01, "BankB", Phase.VOTE, txn="t1", vote="YES"))
    row = timeline.apply(_2pc(0.02, "gw-2", Phase.DECISION, txn="t1", decision=Decision.COMMIT))
    assert row is not None and row.decision == Decision.COMMIT and not row.taken_over_by
    row = timeline.apply(_2pc(0.03, "gw-2", Phase.ACKED, txn="t1", banks=["BankA", "BankB"], decision="COMMIT"))
    assert row is not None and row.latency_ms == 30.0


def test_a_decision_from_another_replica_is_a_takeover_and_an_answer_to_a_bank_is_not():
    timeline = Timeline()
    timeline.apply(_begin(0, "gw-2", "t1"))
    timeline.apply(_2pc(0.01, "BankA", Phase.VOTE, txn="t1", vote="YES"))
    row = timeline.apply(_2pc(1, "gw-3", Phase.RESOLVED, txn="t1", decision="ABORT"))  # a bank asked gw-3
    assert row is not None and row.taken_over_by == "" and row.decision == Decision.ABORT
    timeline.apply(_begin(2, "gw-2", "t2"))
    row = timeline.apply(_2pc(7, "gw-1", Phase.DECISION, txn="t2", decision="ABORT", reason="taken over"))
    assert row is not None and row.taken_over_by == "gw-1" and row.ran_on == "gw-2→gw-1"
    assert row.decision == Decision.ABORT and row.reason == "taken over"


# -------------------------------------------------------------- call shares --
def _rpc(t: float, process: str, method: str = "Pay", **fields) -> LogRecord:
    return LogRecord(NOW + t, process, "info", Event.RPC, {"method": f"/strife.v1.Gateway/{method}", **fields})


def test_call_shares_count_the_tiers_work_over_the_window_only():
    from app.live_source import CallShares

    shares = CallShares(["gw-1", "gw-2"], window_s=10)
    for t in range(20):  # one call a second on gw-1 for 20 s
        shares.add(_rpc(t, "gw-1"))
    shares.add(_rpc(19, "gw-2"))
    shares.add(_rpc(19, "gw-2", "ListGateways"))  # discovery: not work
    shares.add(_rpc(19, "gw-2", "GetPayment", role="operator"))  # the control room's own polling
    shares.add(LogRecord(NOW + 19, "gw-2", "info", Event.RPC, {"method": "/grpc.health.v1.Health/Check"}))
    shares.add(_rpc(19, "BankA"))  # not a replica
    assert shares.counts(NOW + 19.5) == {"gw-1": 10, "gw-2": 1}
    assert shares.counts(NOW + 40) == {"gw-1": 0, "gw-2": 0}


# ------------------------------------------------------------------- panels --
def make_app(scenario: str = "tier") -> StrifeApp:
    app = StrifeApp(SnapshotSource(scenario), clock=fixed_clock)
    app.animation_level = "none"
    return app


async def settled(pilot: Pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def test_each_replica_is_a_process_row_with_its_share_of_the_calls_and_its_load():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settled(pilot)
        panel = app.query_one(ProcessPanel)
        assert [p.name for p in panel.processes][:3] == ["gw-1", "gw-2", "gw-3"]
        assert "LB round_robin" in str(panel.border_title)
        table = panel.query_one(DataTable)
        assert [str(c.label) for c in table.ordered_columns][:4] == ["Process", "State", "Calls", "Load"]
        assert [str(table.get_cell(name, "Calls")) for name in ("gw-1", "gw-2", "gw-3", "BankA")] == [
            "52%",
            "0%",
            "48%",
            "",
        ]
        assert [str(table.get_cell(name, "Load")) for name in ("gw-1", "gw-2", "gw-3")] == ["1", "-", "0"]


async def test_one_gateway_shows_no_tier_columns():
    app = make_app("idle")
    async with app.run_test(size=WIDE) as pilot:
        await settled(pilot)
        panel = app.query_one(ProcessPanel)
        assert panel.tier is None and str(panel.border_title) == "Processes"
        app.post_message(TierChanged(Tier("pick_first", (ReplicaLoad("gateway"),))))
        await pilot.pause()
        assert panel.tier is None  # one replica: nothing to balance


async def test_the_2pc_rows_say_which_replica_ran_each_payment_and_which_took_one_over():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settled(pilot)
        table = app.query_one(TxnPanel).table
        assert [str(c.label) for c in table.ordered_columns][:2] == ["Txn", "Gw"]
        assert str(table.get_cell("b6e39d0f4a", "replica")) == "gw-2→gw-1"
        assert str(table.get_cell("2d7c81f5e9", "replica")) == "gw-3"


async def test_a_takeover_is_a_notification_and_a_faults_strip_line():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settled(pilot)
        assert ("gw-1 took over gw-2", "warning") in [(n.title, n.severity) for n in app._notifications]
        strip = app.query_one(FaultsStrip)
        assert strip.display and "gw-2 killed" in str(strip.render()) and "→ gw-1 took over" in str(strip.render())
        await pilot.press("2", "r")  # restart gw-2: back, its takeover is over
        await settled(pilot)
        assert not strip.display


async def test_killing_a_replica_asks_first_only_when_it_is_the_last_one_serving():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await settled(pilot)
        await pilot.press("3", "k")  # gw-3: gw-1 still serves
        await settled(pilot)
        assert not isinstance(app.screen, Confirm)
        states = {p.name: p.state for p in app.query_one(ProcessPanel).processes}
        assert states["gw-3"] == ProcessState.OFFLINE
        await pilot.press("1", "k")  # gw-1, the last replica serving: asks
        await settled(pilot)
        assert isinstance(app.screen, Confirm)


# ------------------------------------------------------------- a real tier --
LEASE_S = 3.0  # the replicas' lease: a killed one is taken over this long after its last heartbeat


@pytest.fixture
def tier_source(tmp_path, certs_dir):
    from app.live_source import LiveSource
    from tests.stack import quick_config

    pytest.importorskip("backend.client.balancer", reason="the control room balances over the tier with it")

    source = LiveSource(quick_config(tmp_path, certs_dir, gateways=3, lease_s=LEASE_S), lb="round_robin")
    yield source
    source.kill_now()


async def test_kill_a_replica_from_the_ui_traffic_goes_on_and_the_takeover_shows(tier_source):
    import time

    from tests.stack import exited
    from tests.test_control_room_live import started, states, until

    source = tier_source
    app = StrifeApp(source)
    takeovers: list[LogRecord] = []

    def hook(message) -> None:
        if isinstance(message, LogReceived) and message.record.event == Event.TAKEOVER:
            takeovers.append(message.record)

    async with app.run_test(size=WIDE, message_hook=hook) as pilot:
        await started(pilot)
        panel = app.query_one(ProcessPanel)
        assert [p.name for p in panel.processes] == ["gw-1", "gw-2", "gw-3", "BankA", "BankB", "BankC"]
        await until(pilot, lambda: panel.tier is not None, 5, "the tier shown")
        assert panel.tier is not None and panel.tier.policy == "round_robin"
        assert "LB round_robin" in str(panel.border_title)

        await pilot.press("t", "t")  # simulated traffic, 10 payments/s, balanced over the replicas
        await until(
            pilot,
            lambda: panel.tier is not None and all(r.calls > 0 for r in panel.tier.replicas),
            30,
            "calls answered by every replica",
        )
        await until(
            pilot, lambda: len({r.replica for r in source.timeline.rows()}) == 3, 30, "payments run on every replica"
        )
        assert {r.replica for r in source.timeline.rows()} == {"gw-1", "gw-2", "gw-3"}

        gw2_pid = source.sup.procs["gw-2"].pid
        killed_at = time.time()
        await pilot.press("2", "k")  # another replica serves: no question asked
        await until(pilot, lambda: states(app)["gw-2"] == ProcessState.OFFLINE, 10, "gw-2 offline")
        offline_at = time.time()  # gw-2 can have begun nothing since
        assert exited(gw2_pid)
        table = panel.query_one(DataTable)
        assert str(table.get_cell("gw-2", "State")) == "offline"

        succeeded = source.traffic.succeeded
        await until(pilot, lambda: source.traffic.succeeded >= succeeded + 20, 30, "20 more traffic payments")
        after = [r for r in source.timeline.rows() if r.started_at > offline_at]
        assert after and {r.replica for r in after} <= {"gw-1", "gw-3"}
        assert all(r.decision == Decision.COMMIT for r in after if r.latency_ms is not None)

        def takeover_toast() -> str | None:
            return next((n.title for n in app._notifications if n.title.endswith("took over gw-2")), None)

        await until(pilot, lambda: takeover_toast() is not None, 15, "the takeover of gw-2")
        survivor = str(takeover_toast()).split()[0]
        assert survivor in ("gw-1", "gw-3")
        assert [(r.process, r.fields.get("replica")) for r in takeovers] == [(survivor, "gw-2")]
        # Its lease ran out after the kill: how long after depends on how late its last heartbeat
        # landed (they are writes to the store, late under load on 2 cores).
        assert takeovers[0].time >= killed_at
        strip = app.query_one(FaultsStrip)
        assert f"→ {survivor} took over" in str(strip.render())

        await pilot.press("2", "r")
        await until(pilot, lambda: states(app)["gw-2"] == ProcessState.SERVING, 20, "gw-2 serving again")
        assert not strip.display
        await source.set_traffic(0)


def test_discovery_calls_are_hidden_in_the_logs_with_the_control_rooms_own_polling():
    from app.widgets.log_view import is_own_call

    assert is_own_call(_rpc(0, "gw-1", "ListGateways", role="client"))
    assert not is_own_call(_rpc(0, "gw-1", "Pay", user="alice"))
