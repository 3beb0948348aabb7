"""The live source's numbers, its offline queue after a process comes back, start errors,
and the Logs view (issue 9: bugs 5, 6, 7, 11, 13).

The numbers and the Logs view are tested in process (an injected clock, a tiny App);
the queue and the start errors against real processes (tests.stack.quick_config)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.scroll_view import ScrollView

from app import messages as msg
from app.live_source import LiveSource
from app.model import LogRecord
from app.widgets.log_view import LogView
from app.widgets.status_bar import StatusBar
from backend.client.gateway_client import SyncReport
from backend.client.retrier import Retrier
from backend.common.events import Event, Phase
from backend.common.states import Decision, PaymentStatus
from backend.supervisor import StackConfig, Supervisor, stack_specs
from tests.stack import quick_config

T = 1_767_225_600.0  # a whole second


async def eventually(condition, timeout_s: float, what: str = "condition") -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout_s} s")


class FakeClock:
    def __init__(self, now: float = T) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def offline_config(tmp_path: Path) -> StackConfig:
    """A config nothing is started from: the source only folds the lines it is given."""
    return StackConfig(tmp_path / "data", tmp_path / "certs", 1, {"BankA": 2, "BankB": 3})


def twopc(at: float, process: str, phase: Phase, txn: str, **fields) -> dict:
    """A 2PC line as the supervisor hands it over (backend/common/events.py)."""
    return {"time": at, "process": process, "level": "info", "event": Event.TWOPC, "phase": phase, "txn": txn, **fields}


def begin(at: float, txn: str) -> dict:
    return twopc(
        at,
        "gateway",
        Phase.BEGIN,
        txn,
        user="bob",
        amount_cents=100,
        from_bank="BankA",
        from_account="A-1001",
        to_bank="BankB",
        to_account="B-2001",
    )


def decision(at: float, txn: str, decided: str) -> dict:
    return twopc(at, "gateway", Phase.DECISION, txn, decision=decided)


def acked(at: float, txn: str, decided: str, *banks: str) -> dict:
    return twopc(at, "gateway", Phase.ACKED, txn, decision=decided, banks=list(banks))


class StatusApp(App):
    def compose(self) -> ComposeResult:
        yield StatusBar()


async def status_text(stats: msg.StatsChanged, width: int = 160) -> str:
    app = StatusApp()
    async with app.run_test(size=(width, 3)) as pilot:
        app.query_one(StatusBar).stats = stats
        await pilot.pause()
        return str(app.query_one("#status-numbers").render())


# ---------------------------------------------------------------- bug 5 --
async def test_payments_per_second_counts_finished_seconds_not_the_running_one(tmp_path):
    clock = FakeClock()
    source = LiveSource(offline_config(tmp_path), clock=clock)
    for i, txn in enumerate(("t1", "t2", "t3")):
        source._on_record(begin(T + 0.1 * i, txn))
        source._on_record(decision(T + 0.1 * i + 0.012, txn, Decision.COMMIT))

    clock.now = T + 0.6  # the second of the commits is still running: not shown yet
    running = source.stats.message(clock())
    assert sum(running.rate_per_s) == 0

    clock.now = T + 1.3  # just after it ended (with the few ms late lines may take)
    finished = source.stats.message(clock())
    assert finished.rate_per_s[-1] == 3, "the second just finished is the newest bar"
    # The number is a rate over a short rolling window of finished seconds, and says so.
    assert (await status_text(finished)).startswith("0.6 payments/s (last 5 s)")

    clock.now = T + 6.3  # the commits have left the 5-second window, not the sparkline
    later = source.stats.message(clock())
    assert later.rate_per_s[-6] == 3 and sum(later.rate_per_s[-5:]) == 0
    assert (await status_text(later)).startswith("0.0 payments/s")


async def test_the_status_bar_shows_the_mean_of_the_last_five_finished_seconds():
    stats = msg.StatsChanged((9, 9, 9, 2, 3, 1, 0, 4), 12.0, 16.0)
    assert await status_text(stats) == (
        "2.0 payments/s (last 5 s) · p50 12 ms · p99 16 ms (last 100 payments, begin→decision)"
    )
    # Narrower, shorter words for the same numbers; the long form stays in the tooltip.
    assert await status_text(stats, width=80) == "2.0/s (5 s) · p50 12 ms · p99 16 ms (last 100)"


# ---------------------------------------------------------------- bug 6 --
async def test_latency_is_begin_to_decision_and_ignores_a_slow_acknowledgement(tmp_path):
    clock = FakeClock()
    source = LiveSource(offline_config(tmp_path), clock=clock)
    source._on_record(begin(T, "fast"))
    source._on_record(decision(T + 0.012, "fast", Decision.COMMIT))
    source._on_record(acked(T + 0.015, "fast", Decision.COMMIT, "BankA", "BankB"))
    # BankB was frozen: the payment aborted after 10 ms, BankB acknowledged the abort 62 s later.
    source._on_record(begin(T + 1, "frozen"))
    source._on_record(decision(T + 1.010, "frozen", Decision.ABORT))
    source._on_record(acked(T + 1.011, "frozen", Decision.ABORT, "BankA"))
    source._on_record(acked(T + 63, "frozen", Decision.ABORT, "BankB"))

    clock.now = T + 64
    stats = source.stats.message(clock())
    assert stats.p50_ms == pytest.approx(10.0, abs=0.01)
    assert stats.p99_ms == pytest.approx(12.0, abs=0.01)
    text = await status_text(stats)
    assert "p50 10 ms · p99 12 ms (last 100 payments, begin→decision)" in text


async def test_latency_is_over_the_last_hundred_payments(tmp_path):
    clock = FakeClock()
    source = LiveSource(offline_config(tmp_path), clock=clock)
    for i in range(150):  # 50 slow ones (2 s: a 2PC timeout), then 100 quick ones (15 ms)
        txn = f"t{i}"
        source._on_record(begin(T + i, txn))
        source._on_record(
            decision(T + i + (2.0 if i < 50 else 0.015), txn, Decision.ABORT if i < 50 else Decision.COMMIT)
        )
    stats = source.stats.message(T + 200)
    assert stats.p50_ms == pytest.approx(15.0, abs=0.01)
    assert stats.p99_ms == pytest.approx(15.0, abs=0.01)


# ---------------------------------------------------------------- bug 7 --
class FakeClient:
    """What the Retrier uses of a GatewayClient: one queued payment, due in 10 minutes."""

    def __init__(self) -> None:
        self.session = object()
        self.calls: list[bool] = []  # due_only of each sync
        self.queued = ["k1"]
        self.next_retry_at = time.time() + 600

    async def sync(self, due_only: bool = False) -> SyncReport:
        self.calls.append(due_only)
        if not due_only or self.next_retry_at <= time.time():
            self.queued = []
        return SyncReport("bob", remaining=[_Entry(self.next_retry_at) for _ in self.queued])


class _Entry:
    def __init__(self, next_retry_at: float) -> None:
        self.next_retry_at = next_retry_at


async def test_a_wake_for_a_process_back_sends_what_waits_out_its_backoff():
    client = FakeClient()
    retrier = Retrier(client, idle_poll_s=600)  # type: ignore[arg-type]
    async with retrier:
        await eventually(lambda: client.calls, 5)
        retrier.wake()  # a pay or a login: only what is due; nothing is
        await eventually(lambda: len(client.calls) >= 2, 5)
        assert client.queued == ["k1"]
        retrier.wake(all_now=True)  # the gateway is serving again
        await eventually(lambda: not client.queued, 5)
    assert client.calls[-1] is False


def long_backoff(source: LiveSource) -> None:
    """Every failed send waits 10 minutes: only a wake for a process back sends it sooner."""
    assert source.client is not None
    source.client.backoff_base_s = source.client.backoff_cap_s = 600.0
    source.client._rng = lambda: 1.0


async def queued_payment(source: LiveSource, to_bank: str, to_account: str) -> float:
    outcome = await source.pay(to_bank, to_account, "1.00")
    assert outcome.text.startswith(f"queued 1.00 to {to_bank}/{to_account}"), outcome
    assert outcome.queued_key is not None
    assert source.client is not None
    [entry] = source.client.outbox.entries()
    assert entry.next_retry_at > time.time() + 500
    return entry.next_retry_at


@pytest.mark.parametrize(
    ("down", "back", "name", "payee"),
    [("kill", "restart", "gateway", ("BankA", "A-1001")), ("freeze", "thaw", "BankC", ("BankC", "C-3001"))],
    ids=["gateway restarted", "bank thawed"],
)
async def test_a_process_back_drains_the_queue_without_waiting_the_backoff(live_source, down, back, name, payee):
    source = live_source
    posted: list = []
    try:
        await source.start(posted.append)
        await source.login("bob", "bob-demo-pw")
        long_backoff(source)
        await getattr(source, down)(name)
        next_retry_at = await queued_payment(source, *payee)

        await getattr(source, back)(name)
        assert source.client is not None
        await eventually(lambda: not source.client.outbox.entries(), 20, "the queue drained")
        assert time.time() < next_retry_at
        [sent] = source.client.outbox.sent()
        assert sent.status == PaymentStatus.SUCCEEDED
        balance = await source.client.balance()
        assert [a.balance_cents for a in balance.accounts] == [75000 - 100]  # paid once
        # and the control room hears the answer, for the Pay form that shows it queued
        answers = [(m.idempotency_key, m.outcome) for m in posted if isinstance(m, msg.QueuedPaymentAnswered)]
        assert answers == [(sent.idempotency_key, f"paid 1.00 to {payee[0]}/{payee[1]}")]
    finally:
        await source.stop()


# --------------------------------------------------------------- bug 13 --
@pytest.fixture
def taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


async def test_a_bank_on_a_taken_port_says_which_port(tmp_path, certs_dir, taken_port):
    cfg = quick_config(tmp_path, certs_dir)
    cfg.bank_ports["BankA"] = taken_port
    sup = Supervisor([s for s in stack_specs(cfg) if s.name == "BankA"])
    try:
        await sup.start("BankA")
        with pytest.raises(RuntimeError) as failed:
            await sup.wait_serving("BankA", 20)
    finally:
        await sup.close()
    assert str(failed.value) == (
        f"BankA exited while starting: cannot listen on 127.0.0.1:{taken_port}: "
        "the port is in use or not allowed (exit code 2)"
    )


async def test_the_control_room_names_the_taken_port(tmp_path, certs_dir, taken_port):
    cfg = quick_config(tmp_path, certs_dir)
    cfg.bank_ports["BankB"] = taken_port
    source = LiveSource(cfg)
    try:
        with pytest.raises(RuntimeError, match=f"BankB exited while starting: cannot listen on 127.0.0.1:{taken_port}"):
            await source.start(lambda message: None)
    finally:
        await source.stop()


# --------------------------------------------------------------- bug 11 --
class LogsApp(App):
    def compose(self) -> ComposeResult:
        yield LogView()


def record(at: float, process: str = "gateway", **fields) -> LogRecord:
    return LogRecord(time=T + at, process=process, level="info", event="rpc", fields=fields)


def scroller(app: App) -> ScrollView:
    return app.query_one(LogView).query_one(ScrollView)


def on_screen(app: App) -> list[str]:
    """The log rows as drawn."""
    view = scroller(app)
    return [view.render_line(y).text.rstrip() for y in range(view.scrollable_content_region.height)]


async def test_logs_follow_the_newest_line_through_resizes():
    app = LogsApp()
    async with app.run_test(size=(100, 30)) as pilot:
        logs = app.query_one(LogView)
        for i in range(300):
            logs.append(record(i * 0.01, n=i))
        await pilot.pause()
        view = scroller(app)
        assert view.max_scroll_y > 0 and view.scroll_y == view.max_scroll_y
        for i, size in enumerate(((80, 20), (120, 40), (60, 24))):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            assert view.scroll_y == view.max_scroll_y, f"newest line out of view after the resize to {size}"
            assert on_screen(app)[-1].endswith(f"n={299 if i == 0 else (80, 120)[i - 1]}")
            logs.append(record(10 + i, n=size[0]))
            await pilot.pause()
            assert view.scroll_y == view.max_scroll_y, f"newest line out of view at {size}"
            assert f"n={size[0]}" in on_screen(app)[-1]


async def test_logs_stay_where_the_user_scrolled_and_follow_again_at_the_bottom():
    app = LogsApp()
    async with app.run_test(size=(100, 30)) as pilot:
        logs = app.query_one(LogView)
        for i in range(300):
            logs.append(record(i * 0.01, n=i))
        await pilot.pause()
        view = scroller(app)
        view.focus()
        await pilot.press("pageup", "pageup")
        await pilot.pause()
        reading = on_screen(app)[0]
        logs.append(record(10, n=1000))
        await pilot.resize_terminal(120, 30)  # as wide: the same rows
        await pilot.pause()
        assert on_screen(app)[0] == reading and view.scroll_y < view.max_scroll_y
        await pilot.press("end")
        await pilot.pause()
        logs.append(record(11, n=1001))
        await pilot.pause()
        assert "n=1001" in on_screen(app)[-1]


async def test_logs_are_in_time_order_across_processes():
    app = LogsApp()
    async with app.run_test(size=(100, 30)) as pilot:
        logs = app.query_one(LogView)
        logs.append(record(0.000, "gateway", n=1))
        logs.append(record(0.009, "gateway", n=3))
        logs.append(record(0.004, "BankA", n=2))  # printed before n=3, read after it
        logs.append(record(0.009, "BankB", n=4))  # same time as n=3: after it, as it came
        await pilot.pause()
        rows = [row for row in on_screen(app) if row]
        assert [row.rsplit("n=", 1)[1] for row in rows] == ["1", "2", "3", "4"]
        assert [row.split()[1] for row in rows] == ["gateway", "BankA", "gateway", "BankB"]


async def test_long_log_lines_are_shown_in_full():
    app = LogsApp()
    async with app.run_test(size=(60, 20)) as pilot:
        value = "".join(f"{i:03d}-" for i in range(60))  # 240 characters
        app.query_one(LogView).append(record(0, msg=value))
        await pilot.pause()
        rows = [row for row in on_screen(app) if row]
        assert len(rows) > 1
        assert all(len(row) <= scroller(app).scrollable_content_region.width for row in rows)
        shown = "".join(row.strip() for row in rows)
        assert f"msg={value}" in shown


async def test_logs_tab_shows_the_newest_lines_after_a_resize_on_another_tab():
    from app.app import StrifeApp
    from tests.snapshot_source import SnapshotSource, fixed_clock

    app = StrifeApp(SnapshotSource("bank_offline"), clock=fixed_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        logs = app.query_one(LogView)
        for i in range(100):  # more than a screen, after everything the scenario logged
            logs.append(record(i * 0.01, n=i))
        await pilot.press("l")
        await pilot.pause()
        await pilot.press("d")
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.press("l")
        await pilot.pause()
        view = scroller(app)
        assert view.scroll_y == view.max_scroll_y > 0
        assert [row for row in on_screen(app) if row][-1].endswith("n=99")
