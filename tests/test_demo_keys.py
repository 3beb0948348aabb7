"""The presenter's keys over the fixed data source: t cycles simulated traffic and the
status bar says what it did; g opens the graphs."""

from __future__ import annotations

from textual.widgets import TabbedContent

from app.app import TRAFFIC_RATES, StrifeApp
from app.messages import TrafficChanged
from app.widgets.graphs_panel import GraphRow, GraphsPanel
from app.widgets.process_panel import ProcessPanel
from app.widgets.status_bar import StatusBar, traffic_text
from app.widgets.txn_panel import TxnPanel
from tests.snapshot_source import SnapshotSource, fixed_clock


async def test_t_cycles_traffic_and_the_status_bar_says_so():
    source = SnapshotSource("idle")
    async with StrifeApp(source, clock=fixed_clock).run_test(size=(120, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        label = pilot.app.query_one(StatusBar).query_one("#status-traffic")
        seen = []
        for _ in TRAFFIC_RATES:
            await pilot.press("t")
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            seen.append((source.traffic_per_s, label.display))
        assert seen == [(2.0, True), (10.0, True), (0.0, False)]
        assert [n.message for n in pilot.app._notifications][-3:] == [
            "Traffic: 2 payments/s from the demo users",
            "Traffic: 10 payments/s from the demo users",
            "Traffic off",
        ]


def test_traffic_text_says_what_is_not_zero():
    assert traffic_text(TrafficChanged(10.0, 120, 118, 1, 1)) == "traffic 10/s: 118 ok, 1 declined, 1 queued"
    assert traffic_text(TrafficChanged(2.0, 3, 3, 0, 0)) == "traffic 2/s: 3 ok"
    assert traffic_text(TrafficChanged(0.0, 9, 7, 0, 2)) == "traffic off: 2 queued"
    assert traffic_text(TrafficChanged(0.0, 9, 9, 0, 0)) == ""


async def test_g_opens_the_graphs_and_the_app_feeds_them():
    async with StrifeApp(SnapshotSource("bank_offline"), clock=fixed_clock).run_test(size=(120, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("g")
        await pilot.pause()
        assert pilot.app.query_one(TabbedContent).active == "graphs"
        graphs = pilot.app.query_one(GraphsPanel)
        assert graphs.now == fixed_clock()
        # the fixed source's balances reached the panel: a row per bank, its total shown
        totals = {
            str(row.name_label.content): row.value_text for row in graphs.query(GraphRow) if row.has_class("bank")
        }
        assert totals["BankA"] == "1,712.50" and totals["BankB"] == "unreachable", totals


async def test_the_graphs_window_never_moves_back():
    async with StrifeApp(SnapshotSource("idle"), clock=fixed_clock).run_test(size=(120, 40)) as pilot:
        graphs = pilot.app.query_one(GraphsPanel)
        graphs.now = fixed_clock() + 66
        graphs.now = fixed_clock()  # the app's tick with a clock that stepped back
        assert graphs.now == fixed_clock() + 66


async def test_at_80_columns_the_dashboard_opens_on_the_2pc_view():
    async with StrifeApp(SnapshotSource("idle"), clock=fixed_clock).run_test(size=(80, 24)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        txns = pilot.app.query_one(TxnPanel)
        assert pilot.app.focused is not None and txns in pilot.app.focused.ancestors
        screen = pilot.app.screen.region
        assert screen.contains_region(txns.region), (txns.region, screen)  # in view, not below the fold
        await pilot.press("l", "d")  # and again when coming back to the Dashboard
        await pilot.pause()
        assert pilot.app.focused is not None and txns in pilot.app.focused.ancestors


async def test_at_120_columns_the_dashboard_opens_on_the_processes():
    async with StrifeApp(SnapshotSource("idle"), clock=fixed_clock).run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert pilot.app.focused is not None and pilot.app.query_one(ProcessPanel) in pilot.app.focused.ancestors


async def test_every_demo_action_is_in_the_command_palette():
    async with StrifeApp(SnapshotSource("idle"), clock=fixed_clock).run_test(size=(120, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        titles = {c.title for c in pilot.app.get_system_commands(pilot.app.screen)}
        wanted = {"Pay", "Pay again", "Burst of payments", "Log in", "Slow motion on/off", "Retry offline queue"}
        wanted |= {f"{tab} tab" for tab in ("Dashboard", "Client", "Logs", "Graphs")}
        wanted |= {"Traffic: off", "Traffic: 2 payments/s", "Traffic: 10 payments/s"}
        wanted |= {f"{action} {name}" for action in ("Kill", "Freeze", "Restart") for name in ("gateway", "BankA")}
        assert wanted <= titles, wanted - titles
        log_in = next(c for c in pilot.app.get_system_commands(pilot.app.screen) if c.title == "Log in")
        log_in.callback()
        await pilot.pause()
        assert pilot.app.query_one(TabbedContent).active == "client"
        assert pilot.app.focused is pilot.app.query_one("#login-username")


async def test_at_80_columns_d_goes_back_to_the_2pc_view_after_picking_a_process():
    async with StrifeApp(SnapshotSource("idle"), clock=fixed_clock).run_test(size=(80, 24)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("3")  # Processes, scrolled into view and focused
        await pilot.pause()
        processes = pilot.app.query_one(ProcessPanel)
        assert pilot.app.focused is not None and processes in pilot.app.focused.ancestors
        await pilot.press("d")
        await pilot.pause()
        txns = pilot.app.query_one(TxnPanel)
        assert pilot.app.focused is not None and txns in pilot.app.focused.ancestors
        assert pilot.app.screen.region.contains_region(txns.region), txns.region
