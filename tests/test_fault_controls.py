"""Faults in one key and as buttons, against real processes: a number picks a process,
k/f/r or the buttons below the table act on it, and the strip above the footer shows the
faults in force on every tab."""

from __future__ import annotations

from textual.widgets import Button, DataTable, TabbedContent

from app.app import StrifeApp
from app.widgets.faults_strip import FaultsStrip
from app.widgets.process_panel import ProcessPanel
from backend.common.states import ProcessState
from tests.test_control_room_live import started, states, until


def selected(app) -> str:
    table = app.query_one("#processes DataTable", DataTable)
    return app.query_one(ProcessPanel).processes[table.cursor_row].name


def button_labels(app) -> list[str]:
    return [str(b.label) for b in app.query_one(ProcessPanel).query(Button)]


async def test_number_keys_pick_a_process_and_buttons_and_keys_act_on_it(live_source):
    app = StrifeApp(live_source)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        names = [p.name for p in app.query_one(ProcessPanel).processes]
        strip = app.query_one(FaultsStrip)
        assert not strip.display  # nothing is wrong yet

        # 3 from another tab: back on the Dashboard, the third process selected, the table focused
        await pilot.press("l", "3")
        await pilot.pause()
        assert app.query_one(TabbedContent).active == "dashboard"
        assert selected(app) == names[2]
        assert app.focused is app.query_one("#processes DataTable")
        assert button_labels(app) == [f"Kill {names[2]}", f"Freeze {names[2]}", f"Restart {names[2]}"]

        await pilot.press("k")
        await until(pilot, lambda: states(app)[names[2]] == ProcessState.OFFLINE, 10, "killed by k")
        await pilot.pause()
        assert strip.display and strip.faults == [f"{names[2]} killed"]

        # the strip stays on other tabs, where the faults still hold
        await pilot.press("c")
        await pilot.pause()
        assert strip.display and strip.region.height == 1

        # 4 (after Esc: in the login field a digit is typed) then the Freeze button, pressed
        # with the mouse; its label turns into Thaw
        await pilot.press("escape", "4")
        await pilot.pause()
        await pilot.click("#process-freeze")
        await until(pilot, lambda: states(app)[names[3]] == ProcessState.FROZEN, 10, "frozen by the button")
        await pilot.pause()
        assert strip.faults == [f"{names[2]} killed", f"{names[3]} frozen"]
        assert button_labels(app)[1] == f"Thaw {names[3]}"

        # Tab + Enter on Thaw, then the Restart button of the killed one
        thaw = app.query_one("#process-freeze", Button)
        thaw.focus()
        await until(pilot, lambda: not thaw.has_class("-active"), 2, "the click's press effect over")
        await pilot.press("enter")
        await until(pilot, lambda: states(app)[names[3]] == ProcessState.SERVING, 10, "thawed by Enter")
        await pilot.press("3")
        await pilot.pause()
        await pilot.click("#process-restart")
        await until(pilot, lambda: states(app)[names[2]] == ProcessState.SERVING, 20, "restarted by the button")
        await pilot.pause()
        assert strip.faults == []  # no process fault; a bank's breaker may stay open until a payment probes it
        assert not strip.display or "breaker" in str(strip.render())

        # a number past the last process says so and changes nothing
        await pilot.press("9")
        await pilot.pause()
        assert selected(app) == names[2]
        assert app._notifications and "There is no process 9" in list(app._notifications)[-1].message
