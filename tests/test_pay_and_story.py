"""Pay and watch on one screen, and a payment's story (issue 9, "The demo experience"; bug 14's
retries grouped). Driven with Pilot over the fixed SnapshotSource: no processes, no real clock.

The Dashboard's Pay form (p), pay again (.), a burst (b) all go through the source's pay; Enter
on a 2PC row opens that payment's story (its phases with their times, who said what, its log
lines, the other attempts under its key); Esc closes it.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static, TabbedContent

from app import messages as msg
from app.app import BURST_AMOUNT, BURST_COUNT, StrifeApp
from app.model import LogRecord
from app.source import PayOutcome
from app.timeline import Timeline
from app.widgets.pay_form import PayForm
from app.widgets.payment_story import PaymentStory
from app.widgets.txn_panel import TxnPanel
from backend.common.events import Event, Phase, Vote
from backend.common.states import Decision
from tests.snapshot_source import NOW
from tests.test_snapshots import every_size, make_app, settle

pytestmark = pytest.mark.usefixtures("fixed_environment")  # TZ=UTC, no host colours (tests/conftest.py)

WIDE = (120, 40)
SMALL = (80, 24)
Call = tuple[str, str, str, str | None, str | None]


def record_payments(app: StrifeApp) -> list[Call]:
    """Every call of the source's pay, as (to_bank, to_account, amount_text, from_bank, from_account)."""
    calls: list[Call] = []
    real_pay = app.source.pay

    async def pay(to_bank, to_account, amount_text, from_bank=None, from_account=None) -> PayOutcome:
        calls.append((to_bank, to_account, amount_text, from_bank, from_account))
        return await real_pay(to_bank, to_account, amount_text, from_bank, from_account)

    app.source.pay = pay  # type: ignore[method-assign]
    return calls


async def wait(pilot: Pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def log_in_as_alice(pilot: Pilot) -> None:
    app = pilot.app
    await pilot.press("c")
    await pilot.pause()
    app.query_one("#login-username", Input).value = "alice"
    app.query_one("#login-password", Input).value = "alice-demo-pw"
    app.query_one("#login-password", Input).focus()
    await pilot.press("enter")
    await wait(pilot)


async def pay_from_the_dashboard(pilot: Pilot, bank: str, account: str, amount: str) -> None:
    """p, then fill the Dashboard's Pay form and press Enter, as a presenter does."""
    app = pilot.app
    await pilot.press("p")
    await pilot.pause()
    assert app.query_one(TabbedContent).active == "dashboard"
    assert app.focused is app.query_one("#quick-bank", Select), "p focuses the first field to fill"
    app.query_one("#quick-bank", Select).value = bank
    app.query_one("#quick-account", Input).value = account
    app.query_one("#quick-amount", Input).focus()
    app.query_one("#quick-amount", Input).value = amount
    await pilot.press("enter")
    await wait(pilot)


def shown(app: StrifeApp, selector: str) -> str:
    line = app.query_one(selector, Static)
    return str(line.render()) if line.display else ""


def story_text(app: StrifeApp) -> str:
    """The title and every shown line of the story overlay."""
    assert isinstance(app.screen, PaymentStory)
    title = str(app.screen.query_one(VerticalScroll).border_title)
    return "\n".join([title, *(str(s.render()) for s in app.screen.query(Static) if s.display)])


async def open_story(pilot: Pilot, row: int) -> None:
    table = pilot.app.query_one(TxnPanel).table
    table.focus()
    table.move_cursor(row=row, animate=False)
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()


# --------------------------------------------------- pay and watch --
async def test_paying_from_the_dashboard_goes_through_the_sources_pay():
    app = make_app("idle")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await log_in_as_alice(pilot)
        calls = record_payments(app)
        assert app.query_one("#quick-pay", PayForm).border_title == "Pay as alice (p)", "the logged-in line"
        await pay_from_the_dashboard(pilot, "BankB", "B-2001", "12.50")
        assert calls == [("BankB", "B-2001", "12.50", "BankA", "A-1001")]
        assert shown(app, "#quick-outcome") == "paid 12.50 to BankB/B-2001"
        assert shown(app, "#pay-outcome") == "", "the Client tab's form did not ask"
        assert app.focused is app.query_one(TxnPanel).table, "after paying, the 2PC view has the keys"
        assert app.query_one(TabbedContent).active == "dashboard"


async def test_pay_again_sends_the_same_payee_and_amount_as_a_new_payment():
    app = make_app("idle")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await log_in_as_alice(pilot)
        await pilot.press("d")
        calls = record_payments(app)
        await pilot.press("full_stop")
        await wait(pilot)
        assert calls == [], "nothing to pay again yet"
        assert any("pay once first" in str(n.message) for n in app._notifications)

        await pay_from_the_dashboard(pilot, "BankB", "B-2001", "3.25")
        await pilot.press("full_stop")
        await wait(pilot)
        await pilot.press("full_stop")
        await wait(pilot)
        assert calls == [("BankB", "B-2001", "3.25", "BankA", "A-1001")] * 3
        assert shown(app, "#quick-outcome") == "paid 3.25 to BankB/B-2001"


async def test_a_burst_sends_n_small_payments_to_the_last_payee():
    app = make_app("idle")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await log_in_as_alice(pilot)
        calls = record_payments(app)
        await pay_from_the_dashboard(pilot, "BankC", "C-3001", "40.00")
        await pilot.press("b")
        await wait(pilot)
        assert calls[1:] == [("BankC", "C-3001", BURST_AMOUNT, "BankA", "A-1001")] * BURST_COUNT
        assert shown(app, "#quick-outcome") == f"burst of {BURST_COUNT} × {BURST_AMOUNT} to BankC/C-3001: 10 paid"
        await pilot.press("full_stop")  # a burst is not what `.` pays again
        await wait(pilot)
        assert calls[-1] == ("BankC", "C-3001", "40.00", "BankA", "A-1001")


async def test_p_from_another_tab_opens_the_dashboard_on_its_pay_form_and_the_client_tab_still_pays():
    app = make_app("idle")
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await log_in_as_alice(pilot)
        calls = record_payments(app)
        app.query_one("#pay-bank", Select).value = "BankB"
        app.query_one("#pay-account", Input).value = "B-2002"
        app.query_one("#pay-amount", Input).value = "1.00"
        app.query_one("#pay-amount", Input).focus()
        await pilot.press("enter")
        await wait(pilot)
        assert calls == [("BankB", "B-2002", "1.00", "BankA", "A-1001")]
        assert shown(app, "#pay-outcome") == "paid 1.00 to BankB/B-2002" and shown(app, "#quick-outcome") == ""

        await pilot.press("escape", "l")
        await pilot.pause()
        await pilot.press("p")
        await pilot.pause()
        await pilot.pause()
        assert app.query_one(TabbedContent).active == "dashboard"
        assert app.focused is app.query_one("#quick-bank", Select)
        form = app.query_one("#quick-pay", PayForm)
        assert form.region.height > 0 and app.screen.find_widget(form) is not None, "in view at 80x24"
        await pilot.press("full_stop")  # from a dropdown too; the Client tab's payment counts
        await wait(pilot)
        assert calls[-1] == ("BankB", "B-2002", "1.00", "BankA", "A-1001")


# ------------------------------------------------------- the story --
async def test_enter_on_a_2pc_row_tells_its_story_and_esc_closes_it():
    app = make_app("idle")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        table = app.query_one(TxnPanel).table
        assert [r.key.value for r in table.ordered_rows][1] == "9b41e2d6aa"
        await open_story(pilot, 1)
        assert isinstance(app.screen, PaymentStory) and app.screen.txn_id == "9b41e2d6aa"
        text = story_text(app)
        for said in (
            "Payment 9b41e2d6aa",
            "+0.0 ms  gateway  began BankA/A-1003 → BankC/C-3001; prepare sent to BankA, BankC",
            "+4.0 ms  BankA    voted NO: insufficient funds",
            "+5.0 ms  BankC    voted YES",
            "+7.0 ms  gateway  decided ABORT: insufficient funds",
            "+11.0 ms  gateway  BankA acknowledged ABORT",
            "+13.0 ms  gateway  BankC acknowledged ABORT",
            "Log lines of this transaction (7)",
            "rpc Pay erin OK 14.2 ms",
        ):
            assert said in text, said
        assert "3f2a91" not in text, "only this transaction's lines"
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.screen_stack) == 1 and app.focused is table


async def test_a_story_open_during_the_payment_is_told_as_it_happens():
    app = make_app("mid_2pc")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await open_story(pilot, app.query_one(TxnPanel).table.row_count - 1)
        assert "voting…" in story_text(app) and "decided" not in story_text(app)
        t = NOW - 0.5
        feed(
            app,
            [
                two_pc(t + 0.9, "BankB", Phase.VOTE, "e81f0c9b27", vote=Vote.YES),
                two_pc(t + 1.7, "gateway", Phase.DECISION, "e81f0c9b27", decision=Decision.COMMIT),
            ],
            Timeline(),  # the rows do not matter here: the story's steps come from the lines
        )
        await pilot.pause()
        text = story_text(app)
        assert "+900.0 ms  BankB    voted YES" in text and "+1.70 s  gateway  decided COMMIT" in text


def two_pc(t: float, process: str, phase: Phase, txn: str, **fields) -> LogRecord:
    return LogRecord(t, process, "info", Event.TWOPC, {"phase": phase, "txn": txn, **fields})


def feed(app: StrifeApp, records: Iterable[LogRecord], timeline: Timeline) -> None:
    """As a source does: each line, and the row it changed."""
    for record in records:
        app.post_message(msg.LogReceived(record))
        if (row := timeline.apply(record)) is not None:
            app.post_message(msg.TxnChanged(row))


def attempt(t: float, txn: str, *, commits: bool) -> list[LogRecord]:
    """One attempt of alice's payment under key k-1: BankB offline (abort), or a commit."""
    begin = two_pc(
        t,
        "gateway",
        Phase.BEGIN,
        txn,
        user="alice",
        key="k-1",
        amount_cents=500,
        from_bank="BankA",
        from_account="A-1001",
        to_bank="BankB",
        to_account="B-2001",
    )
    votes = [two_pc(t + 0.004, "BankA", Phase.VOTE, txn, vote=Vote.YES)]
    if commits:
        votes.append(two_pc(t + 0.005, "BankB", Phase.VOTE, txn, vote=Vote.YES))
        decision, reason = Decision.COMMIT, None
    else:
        votes.append(
            two_pc(t + 0.006, "gateway", Phase.VOTE, txn, bank="BankB", vote=Vote.NONE, reason="BankB offline")
        )
        decision, reason = Decision.ABORT, "BankB offline"
    return [
        begin,
        *votes,
        two_pc(t + 0.007, "gateway", Phase.DECISION, txn, decision=decision, reason=reason),
        two_pc(t + 0.011, "gateway", Phase.ACKED, txn, banks=["BankA", "BankB"], decision=decision),
    ]


async def test_retries_of_one_payment_are_one_row_and_its_story_lists_every_attempt():
    """Bug 14: every retry of one payment (same user and key, a new txn id) was a red row of its own."""
    app = make_app("idle")
    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        table = app.query_one(TxnPanel).table
        before = table.row_count
        timeline = Timeline()
        feed(app, attempt(NOW + 1, "a1aaaaaaaa", commits=False), timeline)
        await pilot.pause()
        assert table.row_count == before + 1
        feed(
            app, attempt(NOW + 5, "a2bbbbbbbb", commits=False) + attempt(NOW + 9, "a3cccccccc", commits=True), timeline
        )
        await pilot.pause()
        keys = [r.key.value for r in table.ordered_rows]
        assert table.row_count == before + 1 and keys[-1] == "a3cccccccc", "one row: the newest attempt"
        assert "(attempt 3)" in str(table.get_cell_at((table.row_count - 1, 5)))
        assert str(table.get_cell_at((table.row_count - 1, 5))).startswith(Decision.COMMIT)

        feed(app, [two_pc(NOW + 12, "BankB", Phase.ABORTED, "a2bbbbbbbb")], timeline)  # a late line of attempt 2
        await pilot.pause()
        assert [r.key.value for r in table.ordered_rows] == keys

        await open_story(pilot, table.row_count - 1)
        text = story_text(app)
        assert "idempotency key k-1 · attempt 3" in text
        assert " 1  a1aaaa  00:00:01.000  ABORT BankB offline" in text
        assert " 2  a2bbbb  00:00:05.000  ABORT BankB offline" in text
        assert " 3  a3cccc  00:00:09.000  COMMIT   ← this one" in text


# -------------------------------------------------------- snapshot --
@every_size
def test_snapshot_a_payment_story(snap_compare, size):
    """The story of a payment aborted because BankB was offline (its payee got no prepare answer)."""

    async def open_the_newest_story(pilot: Pilot) -> None:
        await settle(pilot)
        await open_story(pilot, pilot.app.query_one(TxnPanel).table.row_count - 1)
        await settle(pilot)

    assert snap_compare(make_app("bank_offline"), terminal_size=size, run_before=open_the_newest_story)


async def test_the_first_payment_of_a_fresh_control_room_shows_at_once():
    """Seen live: the first row comes with cells wider than the headers, went in by a rebuild
    and stayed hidden behind "No payments yet" until a second payment."""

    class Panel(App):
        def compose(self) -> ComposeResult:
            yield TxnPanel()

    app = Panel()
    async with app.run_test(size=WIDE) as pilot:
        panel = app.query_one(TxnPanel)
        assert not panel.table.display
        row = Timeline().apply(attempt(NOW, "f1rst00000", commits=True)[0])
        assert row is not None
        panel.upsert(row)
        await pilot.pause()
        assert panel.table.display and panel.table.row_count == 1
        assert not panel.query_one(".empty-hint").display


async def test_a_queued_payment_s_answer_replaces_queued_in_the_pay_form():
    """The Pay form said "queued"; when the offline queue delivers that payment, the form says
    what came of it (and a later payment's result is never overwritten by it)."""
    app = make_app("idle")
    queued = PayOutcome("queued 5.00 to BankB/B-2001 (UNAVAILABLE): retrying with the same key", "key-1")

    async def pay_queued(*args) -> PayOutcome:
        return queued

    async with app.run_test(size=WIDE) as pilot:
        await settle(pilot)
        await log_in_as_alice(pilot)
        app.source.pay = pay_queued  # type: ignore[method-assign]
        await pay_from_the_dashboard(pilot, "BankB", "B-2001", "5.00")
        form = app.query_one("#quick-pay", PayForm)
        assert form.outcome == queued.text
        app.post_message(msg.QueuedPaymentAnswered("key-other", "paid 1.00 to BankC/C-3001"))
        await wait(pilot)
        assert form.outcome == queued.text  # not this form's payment
        app.post_message(msg.QueuedPaymentAnswered("key-1", "paid 5.00 to BankB/B-2001"))
        await wait(pilot)
        assert form.outcome == "paid 5.00 to BankB/B-2001 (sent from the offline queue)"
        assert "paid 5.00 to BankB/B-2001" in [n.message for n in app._notifications]
