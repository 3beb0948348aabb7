"""The client pane and the keys of the control room (issue 9: bugs 3, 4, 8 and part of 14).

Driven with Pilot over the fixed SnapshotSource, except one test that needs a real process
killed from outside the control room.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace

import pytest
from textual.pilot import Pilot
from textual.screen import ModalScreen
from textual.widgets import HelpPanel, Input, Select, Static, TabbedContent, Tabs

from app import messages as msg
from app.app import StrifeApp
from app.live_source import LiveSource
from app.source import PayOutcome
from app.widgets.process_panel import ProcessPanel
from backend.common.states import ProcessState
from tests.snapshot_source import SnapshotSource, fixed_clock

SIZE = (120, 40)


pytestmark = pytest.mark.usefixtures("fixed_environment")  # TZ=UTC, no host colours (tests/conftest.py)


def make_app(scenario: str = "idle") -> StrifeApp:
    app = StrifeApp(SnapshotSource(scenario), clock=fixed_clock)
    app.animation_level = "none"
    return app


async def settle(pilot: Pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


def active_tab(app: StrifeApp) -> str:
    return app.query_one(TabbedContent).active


def shown(app: StrifeApp, selector: str) -> str:
    """The text of a one-line Static, "" while it is hidden."""
    line = app.query_one(selector, Static)
    return str(line.render()) if line.display else ""


async def log_in(pilot: Pilot, username: str, password: str) -> None:
    app = pilot.app
    await pilot.press("c")
    await pilot.pause()
    app.query_one("#login-username", Input).value = username
    app.query_one("#login-password", Input).focus()
    app.query_one("#login-password", Input).value = password
    await pilot.press("enter")
    await settle(pilot)


async def log_out(pilot: Pilot) -> None:
    await pilot.click("#logout")
    await settle(pilot)


async def fill_payment(pilot: Pilot, bank: str, account: str, amount: str) -> None:
    app = pilot.app
    app.query_one("#pay-bank", Select).value = bank
    app.query_one("#pay-account", Input).value = account
    app.query_one("#pay-amount", Input).value = amount
    app.query_one("#pay-amount", Input).focus()
    await pilot.pause()


# -------------------------------------------------------------- bug 3 --
async def test_tab_keys_work_from_the_dropdown_focused_after_logging_in():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await log_in(pilot, "alice", "alice-demo-pw")
        assert app.focused is app.query_one("#pay-bank", Select)  # where the bug report started

        await pilot.press("d")
        await pilot.pause()
        assert active_tab(app) == "dashboard"
        assert app.focused is not None and app.query_one("#dashboard") in app.focused.ancestors

        await pilot.press("c")
        await pilot.pause()
        assert active_tab(app) == "client" and app.focused is app.query_one("#pay-bank", Select)
        await pilot.press("l")
        await pilot.pause()
        assert active_tab(app) == "logs"

        await pilot.press("c")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.focused, Tabs), "Esc from a dropdown goes to the tab bar"
        assert active_tab(app) == "client"
        await pilot.press("c")
        await pilot.pause()
        assert app.focused is app.query_one("#pay-bank", Select), "c from the tab bar goes into the Client pane"


async def test_tab_keys_work_from_every_dropdown_and_letters_still_go_into_text_fields():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await log_in(pilot, "alice", "alice-demo-pw")
        for tab, select_id, key, expected in (
            ("client", "#pay-from", "l", "logs"),
            ("client", "#pay-bank", "d", "dashboard"),
            ("logs", "#log-process", "c", "client"),
            ("logs", "#log-level", "d", "dashboard"),
        ):
            app.query_one(TabbedContent).active = tab
            await pilot.pause()
            app.query_one(select_id, Select).focus()
            await pilot.pause()
            await pilot.press(key)
            await pilot.pause()
            assert active_tab(app) == expected, f"{key} from {select_id}"

        await pilot.press("c")
        await pilot.pause()
        field = app.query_one("#pay-account", Input)
        field.focus()
        await pilot.press("d", "l", "c", "q", "question_mark")
        await pilot.pause()
        assert field.value == "dlcq?" and active_tab(app) == "client" and len(app.screen_stack) == 1
        await pilot.press("escape")
        assert isinstance(app.focused, Tabs), "Esc leaves a text field, as before"


# -------------------------------------------------------------- bug 4 --
async def test_q_asks_before_stopping_the_stack_and_n_or_esc_cancel():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for cancel in ("n", "escape"):
            await pilot.press("q")
            await pilot.pause()
            assert isinstance(app.screen, ModalScreen), "q asks first"
            assert "Stop the control room and every process?" in " ".join(
                str(s.render()) for s in app.screen.query(Static)
            )
            await pilot.press(cancel)
            await pilot.pause()
            assert len(app.screen_stack) == 1 and app.is_running and not app.source.stopped
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert app.source.stopped
    assert app.return_code == 0


@pytest.mark.parametrize("key", ["ctrl+c", "ctrl+q"])
async def test_ctrl_c_and_ctrl_q_quit_at_once(key):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(key)
        await pilot.pause()
        assert app.source.stopped and len(app.screen_stack) == 1
    assert app.return_code == 0


async def test_sigterm_quits_at_once_even_while_the_question_is_open():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(50):
            if not app.is_running:
                break
            await asyncio.sleep(0.02)
        assert not app.is_running
    assert app.source.stopped


# -------------------------------------------------------------- bug 8 --
async def test_a_new_payment_clears_the_last_result():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await log_in(pilot, "alice", "alice-demo-pw")
        await fill_payment(pilot, "BankB", "B-2001", "1.00")
        await pilot.press("enter")
        await settle(pilot)
        assert shown(app, "#pay-outcome") == "paid 1.00 to BankB/B-2001"

        answer: asyncio.Future[PayOutcome] = asyncio.get_running_loop().create_future()
        real_pay = app.source.pay

        async def slow_pay(*args, **kwargs) -> PayOutcome:
            await real_pay(*args, **kwargs)
            return await answer

        app.source.pay = slow_pay  # type: ignore[method-assign]
        await fill_payment(pilot, "BankB", "B-2001", "2.00")
        await pilot.press("enter")
        await pilot.pause()
        assert shown(app, "#pay-outcome") == "", "the last payment's result is gone while this one runs"
        answer.set_result(PayOutcome("paid 2.00 to BankB/B-2001"))
        await settle(pilot)
        assert shown(app, "#pay-outcome") == "paid 2.00 to BankB/B-2001"


async def test_logging_in_as_someone_else_clears_the_last_result():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await log_in(pilot, "alice", "alice-demo-pw")
        await fill_payment(pilot, "BankB", "B-2001", "1.00")
        await pilot.press("enter")
        await settle(pilot)
        assert shown(app, "#pay-outcome")
        await log_out(pilot)
        assert shown(app, "#pay-outcome") == "", "logging out clears it"

        await log_in(pilot, "alice", "alice-demo-pw")
        await fill_payment(pilot, "BankB", "Z-1", "1.00")  # no such account
        await pilot.press("enter")
        await settle(pilot)
        assert shown(app, "#pay-error")
        await log_out(pilot)
        await log_in(pilot, "bob", "bob-demo-pw")
        assert shown(app, "#pay-outcome") == "" and shown(app, "#pay-error") == "", "bob sees none of alice's"


# ----------------------------------------------------- bug 14 (parts) --
async def test_zero_and_a_negative_amount_are_the_same_mistake_said_once_in_words():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await log_in(pilot, "alice", "alice-demo-pw")
        app.clear_notifications()  # "Logged in as alice"
        said = {}
        for amount in ("0", "-1", "0.00", "-0.50"):
            await fill_payment(pilot, "BankB", "B-2001", amount)
            await pilot.press("enter")
            await settle(pilot)
            said[amount] = shown(app, "#pay-error")
        assert len(set(said.values())) == 1, said
        words = said["0"]
        assert words and "INVALID_ARGUMENT" not in words and "cents" not in words, words
        assert not app._notifications, "said once, in the form, not again in a toast"

        await fill_payment(pilot, "BankB", "B-2001", "12.345")
        await pilot.press("enter")
        await settle(pilot)
        assert "INVALID_ARGUMENT" not in shown(app, "#pay-error") and "2 decimals" in shown(app, "#pay-error")
        assert not app._notifications


async def test_esc_closes_the_keys_panel():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.action_show_help_panel()
        await pilot.pause()
        assert app.screen.query(HelpPanel)
        await pilot.press("escape")
        await pilot.pause()
        assert not app.screen.query(HelpPanel)


async def test_question_mark_opens_a_help_overlay_listing_every_key_and_esc_closes_it():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, ModalScreen), "? opens the help overlay"
        text = " ".join(str(s.render()) for s in app.screen.query(Static))
        for words in (
            "Dashboard",
            "Client",
            "Logs",
            "Quit",
            "Kill",
            "Freeze",
            "Restart",
            "Retry queue now",
            "Command palette",
        ):
            assert words in text, words
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.screen_stack) == 1
        await pilot.press("question_mark")
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        assert len(app.screen_stack) == 1, "? again closes it too"


async def test_a_process_that_dies_on_its_own_is_notified_and_one_killed_on_purpose_is_not():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        panel = app.query_one(ProcessPanel)
        crashed = tuple(
            replace(p, state=ProcessState.CRASHED, pid=None, exit_code=-9) if p.name == "BankB" else p
            for p in panel.processes
        )
        app.post_message(msg.ProcessesChanged(crashed))
        app.post_message(msg.ProcessesChanged(crashed))  # the same state again: one notification
        await pilot.pause()
        notes = [(n.title, n.message, n.severity) for n in app._notifications]
        assert len(notes) == 1, notes
        title, message, severity = notes[0]
        assert "BankB" in title and severity == "error"
        assert "SIGKILL" in message, message

        app.clear_notifications()
        await app.source.kill("BankC")  # as the k key does: on purpose, OFFLINE, no alarm
        await pilot.pause()
        assert not app._notifications


# ------------------------------------------------------ real processes --
async def test_a_bank_killed_from_outside_is_notified(tmp_path, certs_dir):
    from tests.stack import quick_config

    source = LiveSource(quick_config(tmp_path, certs_dir))
    app = StrifeApp(source)
    try:
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(300):
                states = {p.name: p.state for p in app.query_one(ProcessPanel).processes}
                if states and set(states.values()) == {ProcessState.SERVING}:
                    break
                await pilot.pause(0.1)
            pid = source.sup.procs["BankA"].pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                if any("BankA" in (n.title or "") for n in app._notifications):
                    break
                await pilot.pause(0.1)
            notes = [(n.title, n.message) for n in app._notifications if "BankA" in (n.title or "")]
            assert notes, [(n.title, n.message) for n in app._notifications]
            assert "SIGKILL" in notes[0][1]
    finally:
        source.kill_now()


async def test_killing_the_gateway_asks_first_and_n_keeps_it():
    from app.widgets.confirm import Confirm

    source = SnapshotSource("idle")
    killed: list[str] = []

    async def kill(name: str) -> None:
        killed.append(name)

    source.kill = kill  # type: ignore[method-assign]
    async with StrifeApp(source, clock=fixed_clock).run_test(size=SIZE) as pilot:
        await pilot.app.workers.wait_for_complete()
        table = pilot.app.query_one("#processes DataTable")
        table.focus()
        await pilot.press("home", "k")  # the gateway is the first row
        await pilot.pause()
        assert isinstance(pilot.app.screen, Confirm) and killed == []
        await pilot.press("n")
        await pilot.pause()
        assert not isinstance(pilot.app.screen, Confirm) and killed == []
        await pilot.press("k", "y")
        await pilot.app.workers.wait_for_complete()
        assert killed == ["gateway"]
        await pilot.press("down", "k")  # a bank: no question
        await pilot.app.workers.wait_for_complete()
        assert killed == ["gateway", "BankA"] and not isinstance(pilot.app.screen, Confirm)
