"""The control room driven with Textual's Pilot against real gateway and bank processes."""

from textual.widgets import DataTable, Input, Select

from app.app import StrifeApp
from app.live_source import LiveSource
from app.model import BankStep
from app.widgets.balances_panel import BalancesPanel
from app.widgets.client_summary import ClientSummary
from app.widgets.outbox_panel import OutboxPanel
from app.widgets.process_panel import ProcessPanel
from backend.common.states import Decision, PaymentStatus, ProcessState
from tests.stack import exited

SIZE = (120, 40)


async def until(pilot, condition, timeout_s: float = 20.0, what: str = "condition"):
    for _ in range(int(timeout_s / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"{what} not met within {timeout_s} s")


def states(app) -> dict[str, ProcessState]:
    return {p.name: p.state for p in app.query_one(ProcessPanel).processes}


def balance(app, bank: str, account: str) -> int | None:
    balances = app.query_one(BalancesPanel).balances
    for b in balances.banks if balances else ():
        for a in b.accounts:
            if (a.bank, a.account_id) == (bank, account):
                return a.balance_cents
    return None


def conserved(app) -> bool:
    balances = app.query_one(BalancesPanel).balances
    return balances is not None and balances.conserved


def txn_rows(source: LiveSource):
    return source.timeline.rows()


async def started(pilot):
    await until(pilot, lambda: set(states(pilot.app).values()) == {ProcessState.SERVING}, 30, "every process serving")
    await until(pilot, lambda: balance(pilot.app, "BankB", "B-2001") is not None, 10, "balances shown")


async def log_in(pilot, username: str, password: str):
    await pilot.press("c")
    app = pilot.app
    app.query_one("#login-username", Input).value = username
    app.query_one("#login-password", Input).value = password
    await pilot.click("#login-submit")
    await until(
        pilot,
        lambda: (s := app.query_one(ClientSummary).state) is not None and s.username == username,
        15,
        f"logged in as {username}",
    )


async def pay(pilot, bank: str, account: str, amount: str):
    app = pilot.app
    app.query_one("#pay-bank", Select).value = bank
    app.query_one("#pay-account", Input).value = account
    app.query_one("#pay-amount", Input).value = amount
    before = str(app.query_one("#pay-outcome").render())
    await pilot.click("#pay-submit")
    await until(pilot, lambda: str(app.query_one("#pay-outcome").render()) not in ("", before), 15, "a pay outcome")
    return str(app.query_one("#pay-outcome").render())


async def act_on(pilot, name: str, key: str):
    """Select `name` in the process table with the arrow keys and press `key`."""
    await pilot.press("d")
    app = pilot.app
    table = app.query_one("#processes DataTable", DataTable)
    table.focus()
    names = [p.name for p in app.query_one(ProcessPanel).processes]
    await pilot.press("home")
    for _ in range(names.index(name)):
        await pilot.press("down")
    await pilot.press(key)


async def restart_and_drain(pilot, name: str):
    """Restart `name` with `r`; wait until it serves and the offline queue is empty."""
    app = pilot.app
    await act_on(pilot, name, "r")
    await until(pilot, lambda: states(app)[name] == ProcessState.SERVING, 20, f"{name} serving again")
    await until(pilot, lambda: not app.query_one(OutboxPanel).entries, 30, "the queue drained")


async def committed_rows(pilot, source: LiveSource, count: int):
    await until(
        pilot,
        lambda: [r.decision for r in txn_rows(source)].count(Decision.COMMIT) == count,
        10,
        f"{count} committed row(s) in the 2PC panel",
    )


async def test_log_in_and_pay_from_the_client_pane(live_source):
    app = StrifeApp(live_source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await log_in(pilot, "bob", "bob-demo-pw")
        outcome = await pay(pilot, "BankC", "C-3001", "12.50")
        assert "paid 12.50 to BankC/C-3001" in outcome
        await until(
            pilot,
            lambda: balance(app, "BankB", "B-2001") == 75000 - 1250 and balance(app, "BankC", "C-3001") == 60000 + 1250,
            10,
            "both balances moved",
        )
        rows = txn_rows(live_source)
        assert len(rows) == 1 and rows[0].decision == Decision.COMMIT
        await until(
            pilot,
            lambda: {p.phase for p in txn_rows(live_source)[0].participants} == {BankStep.COMMITTED},
            10,
            "both banks committed in the 2PC row",
        )
        assert conserved(app)
        history = app.query_one(ClientSummary).state.history
        assert [(p.direction, p.amount_cents, p.status) for p in history] == [("sent", 1250, PaymentStatus.SUCCEEDED)]


async def test_bank_offline_aborts_the_next_payment_and_comes_back(live_source):
    app = StrifeApp(live_source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        bankc_pid = live_source.sup.procs["BankC"].pid
        await act_on(pilot, "BankC", "k")
        await until(pilot, lambda: states(app)["BankC"] == ProcessState.OFFLINE, 10, "BankC offline")
        assert exited(bankc_pid)

        await log_in(pilot, "bob", "bob-demo-pw")
        outcome = await pay(pilot, "BankC", "C-3001", "5.00")
        assert outcome.startswith("queued 5.00 to BankC/C-3001")
        await until(
            pilot, lambda: any(r.decision == Decision.ABORT for r in txn_rows(live_source)), 10, "an aborted row"
        )
        aborted = [r for r in txn_rows(live_source) if r.decision == Decision.ABORT][0]
        assert "BankC offline" in aborted.reason
        assert balance(app, "BankB", "B-2001") == 75000  # nothing moved, nothing held
        assert len(app.query_one(OutboxPanel).entries) == 1

        await restart_and_drain(pilot, "BankC")
        await until(pilot, lambda: balance(app, "BankC", "C-3001") == 60000 + 500, 10, "BankC credited once")
        assert balance(app, "BankB", "B-2001") == 75000 - 500
        await committed_rows(pilot, live_source, 1)


async def test_gateway_offline_queues_payments_and_delivers_each_once(live_source):
    app = StrifeApp(live_source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await log_in(pilot, "bob", "bob-demo-pw")
        await act_on(pilot, "gateway", "k")
        assert states(app)["gateway"] == ProcessState.SERVING  # killing the gateway asks first
        await pilot.press("y")
        await until(pilot, lambda: states(app)["gateway"] == ProcessState.OFFLINE, 10, "gateway offline")
        await pilot.press("c")
        for amount in ("1.00", "2.00"):
            outcome = await pay(pilot, "BankA", "A-1001", amount)
            assert outcome.startswith(f"queued {amount} to BankA/A-1001")
        entries = app.query_one(OutboxPanel).entries
        assert sorted(e.amount_cents for e in entries) == [100, 200]

        await restart_and_drain(pilot, "gateway")
        await until(pilot, lambda: balance(app, "BankA", "A-1001") == 100000 + 300, 10, "credited exactly once")
        assert balance(app, "BankB", "B-2001") == 75000 - 300
        await committed_rows(pilot, live_source, 2)
        assert conserved(app)


async def test_quit_leaves_no_child_process(live_source):
    app = StrifeApp(live_source)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        pids = [p.pid for p in live_source.sup.procs.values()]
        assert all(pids)
        await live_source.freeze("BankA")  # even a stopped process must go
        await pilot.press("q", "y")  # q asks first; y stops everything
    for pid in pids:
        assert exited(pid), f"child {pid} still running"


async def test_a_second_control_room_on_the_same_data_directory_refuses_to_start(live_source):
    from backend.common import datadir

    holder = datadir.lock(live_source.cfg.data_dir)  # as if another strife owned it
    try:
        app = StrifeApp(live_source)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.return_code == 1, 10, "the app gave up")
        assert all(p.pid is None for p in live_source.sup.procs.values()), "nothing was launched"
        assert app.return_code == 1
    finally:
        holder.close()
