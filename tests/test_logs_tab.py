"""The Logs tab: a colour per process, the control room's own calls hidden by default,
`/` search, the f follow toggle (app/widgets/log_view.py)."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Checkbox, Input, Tabs

from app.format import short_id
from app.model import LogRecord
from app.widgets.log_view import BANK_STYLES, FOLLOWING, GATEWAY_STYLE, PAUSED, LogLines, LogView, process_style
from tests.test_snapshots import make_app, settle

pytestmark = pytest.mark.usefixtures("fixed_environment")

T = 1_767_225_600.0


class LogsApp(App):
    def compose(self) -> ComposeResult:
        yield LogView()


def rpc(at: float, process: str = "gateway", **fields) -> LogRecord:
    return LogRecord(time=T + at, process=process, level="info", event="rpc", fields=fields)


def shown(app: App) -> list[str]:
    """Every log line the view holds (not only the rows on screen), as plain text."""
    return [text.plain for text in app.query_one(LogLines).texts]


def on_screen(app: App) -> list[str]:
    view = app.query_one(LogLines)
    return [view.render_line(y).text.rstrip() for y in range(view.scrollable_content_region.height)]


def test_each_process_has_its_own_stable_colour():
    names = ["gateway", "BankA", "BankB", "BankC", "BankD"]
    styles = [process_style(n) for n in names]
    assert len(set(styles)) == len(names)
    assert styles[0] == GATEWAY_STYLE and styles[1:] == list(BANK_STYLES[:4])
    assert process_style("Bank01") == BANK_STYLES[0] and process_style("Bank02") == BANK_STYLES[1]
    assert process_style("elsewhere") == process_style("elsewhere") in BANK_STYLES


async def test_the_process_column_has_the_process_colour():
    app = LogsApp()
    async with app.run_test(size=(100, 20)) as pilot:
        logs = app.query_one(LogView)
        for i, name in enumerate(("gateway", "BankA", "BankB")):
            logs.append(rpc(i, name, n=i))
        await pilot.pause()
        for text, name in zip(app.query_one(LogLines).texts, ("gateway", "BankA", "BankB"), strict=True):
            column = [span.style for span in text.spans if text.plain[span.start : span.end].strip() == name]
            assert column == [process_style(name)], text.plain


async def test_the_control_rooms_own_calls_are_hidden_until_the_switch_is_ticked():
    app = LogsApp()
    async with app.run_test(size=(120, 30)) as pilot:
        logs = app.query_one(LogView)
        logs.append(rpc(0, method="/strife.Gateway/Pay", user="alice", role="client", code="OK", n="pay"))
        logs.append(rpc(1, "BankA", method="/strife.v1.Bank/ListAccounts", role="operator", code="OK", n="list"))
        logs.append(rpc(2, method="/strife.Gateway/Balance", role="operator", code="OK", n="balance"))
        logs.append(rpc(3, method="/strife.v1.Demo/SetSlowMotion", role="operator", code="OK", n="slow"))
        logs.append(rpc(4, "BankB", method="/strife.v1.Bank/PrepareBatch", role="gateway", code="OK", n="prepare"))
        await pilot.pause()
        assert [line.rsplit("n=", 1)[1] for line in shown(app)] == ["pay", "slow", "prepare"]

        checkbox = app.query_one("#log-own", Checkbox)
        assert "control room's own calls" in str(checkbox.label) and not checkbox.value
        checkbox.focus()
        await pilot.press("space")
        await pilot.pause()
        assert [line.rsplit("n=", 1)[1] for line in shown(app)] == ["pay", "list", "balance", "slow", "prepare"]

        await pilot.press("space")
        await pilot.pause()
        assert [line.rsplit("n=", 1)[1] for line in shown(app)] == ["pay", "slow", "prepare"]


async def test_health_probes_are_the_control_rooms_own_calls_too():
    app = LogsApp()
    async with app.run_test(size=(120, 30)) as pilot:
        logs = app.query_one(LogView)
        probe = LogRecord(T, "BankA", "debug", "rpc", {"method": "/grpc.health.v1.Health/Check", "code": "OK"})
        logs.append(probe)
        app.query_one("#log-level").value = "all"  # "all, with health probes"
        await pilot.pause()
        assert shown(app) == []
        app.query_one("#log-own", Checkbox).value = True
        await pilot.pause()
        assert len(shown(app)) == 1 and "Check" in shown(app)[0]


async def test_slash_searches_case_insensitively_and_esc_clears_and_closes():
    app = LogsApp()
    async with app.run_test(size=(100, 30)) as pilot:
        logs = app.query_one(LogView)
        for i in range(300):
            logs.append(rpc(i * 0.01, ("gateway", "BankA", "BankB")[i % 3], n=i))
        await pilot.pause()
        app.query_one(LogLines).focus()
        field = app.query_one("#log-search", Input)
        assert not app.query_one("#log-search-row").display
        await pilot.press("slash")
        await pilot.pause()
        assert app.focused is field and logs.searching
        await pilot.press(*"bAnKa")
        await pilot.pause()
        assert len(shown(app)) == 100 and all(" BankA " in line for line in shown(app))
        view = app.query_one(LogLines)
        assert view.scroll_y == view.max_scroll_y > 0, "the newest matching line in view"
        assert on_screen(app)[-1].endswith("n=298")
        logs.append(rpc(10, "BankA", n=1000))
        logs.append(rpc(11, "BankB", n=1001))  # no match: not shown
        await pilot.pause()
        assert on_screen(app)[-1].endswith("n=1000") and view.scroll_y == view.max_scroll_y
        assert not any("n=1001" in line for line in shown(app))

        await pilot.press("escape")
        await pilot.pause()
        assert not logs.searching and field.value == "" and len(shown(app)) == 302
        assert app.focused is view and on_screen(app)[-1].endswith("n=1001")


async def test_enter_keeps_the_search_and_esc_from_the_lines_clears_it():
    app = LogsApp()
    async with app.run_test(size=(100, 30)) as pilot:
        logs = app.query_one(LogView)
        for i in range(20):
            logs.append(rpc(i, n=i))
        await pilot.pause()
        app.query_one(LogLines).focus()
        await pilot.press("slash", "n", "=", "1", "3", "enter")
        await pilot.pause()
        assert app.focused is app.query_one(LogLines) and logs.searching
        assert [line.rsplit("n=", 1)[1] for line in shown(app)] == ["13"]
        await pilot.press("f")  # a key for the lines again, not typed into the search
        await pilot.pause()
        assert app.query_one("#log-search", Input).value == "n=13" and logs.border_subtitle == PAUSED
        await pilot.press("escape")
        await pilot.pause()
        assert not logs.searching and len(shown(app)) == 20


async def test_f_pauses_and_resumes_following():
    app = LogsApp()
    async with app.run_test(size=(100, 30)) as pilot:
        logs = app.query_one(LogView)
        for i in range(100):
            logs.append(rpc(i * 0.01, n=i))
        await pilot.pause()
        view = app.query_one(LogLines)
        view.focus()
        assert logs.border_subtitle == FOLLOWING and "following" in FOLLOWING
        await pilot.press("f")
        await pilot.pause()
        assert not logs.following and logs.border_subtitle == PAUSED and "paused: f follows again" in PAUSED
        at = view.scroll_y
        reading = on_screen(app)
        for i in range(100, 110):
            logs.append(rpc(i * 0.01, n=i))
        await pilot.pause()
        assert view.scroll_y == at < view.max_scroll_y and on_screen(app) == reading, "paused: stays put"
        await pilot.press("end")  # at the bottom, still paused: only f follows again
        logs.append(rpc(5, n=500))
        await pilot.pause()
        assert view.scroll_y < view.max_scroll_y and logs.border_subtitle == PAUSED

        await pilot.press("f")
        await pilot.pause()
        assert logs.following and logs.border_subtitle == FOLLOWING
        assert view.scroll_y == view.max_scroll_y and on_screen(app)[-1].endswith("n=500")
        logs.append(rpc(6, n=600))
        await pilot.pause()
        assert on_screen(app)[-1].endswith("n=600")


async def test_a_scroll_up_says_paused_and_f_follows_again():
    app = LogsApp()
    async with app.run_test(size=(100, 30)) as pilot:
        logs = app.query_one(LogView)
        for i in range(100):
            logs.append(rpc(i * 0.01, n=i))
        await pilot.pause()
        view = app.query_one(LogLines)
        view.focus()
        await pilot.press("pageup")
        await pilot.pause()
        assert not logs.following and logs.border_subtitle == PAUSED
        await pilot.press("f")
        await pilot.pause()
        assert logs.following and view.scroll_y == view.max_scroll_y and logs.border_subtitle == FOLLOWING


async def test_logs_tab_of_the_app_searches_and_esc_does_not_leave_the_tab():
    app = make_app("bank_offline")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("l")
        await pilot.pause()
        everything = len(shown(app))
        await pilot.press("slash", *"killed")
        await pilot.pause()
        assert len(shown(app)) == 1 and "killed by the control room" in shown(app)[0]
        await pilot.press("escape")
        await pilot.pause()
        assert len(shown(app)) == everything and isinstance(app.focused, LogLines)
        await pilot.press("escape")  # with the search closed, Esc goes to the tab bar as before
        await pilot.pause()
        assert isinstance(app.focused, Tabs)


async def test_L_on_a_2pc_row_shows_only_that_payments_lines_and_esc_shows_all():
    from app.widgets.txn_panel import TxnPanel

    app = make_app("bank_offline")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.query_one(TxnPanel).table
        table.focus()
        await pilot.press("end")
        txn = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        everything = len(app.query_one(LogView)._records)
        await pilot.press("L")
        await pilot.pause()
        assert app.query_one("TabbedContent").active == "logs"
        lines = shown(app)
        short = f"txn={short_id(txn)}"
        assert lines and all(short in line for line in lines), lines  # each line names the transaction
        assert len(lines) < everything
        await pilot.press("escape")
        await pilot.pause()
        assert len(shown(app)) > len(lines) and any(short not in line for line in shown(app))


async def test_l_in_a_payments_story_opens_its_lines_in_the_logs_tab():
    from app.widgets.payment_story import PaymentStory
    from app.widgets.txn_panel import TxnPanel

    app = make_app("bank_offline")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.query_one(TxnPanel).table
        table.focus()
        await pilot.press("home", "enter")
        await pilot.pause()
        assert isinstance(app.screen, PaymentStory)
        txn = app.screen.txn_id
        await pilot.press("l")
        await pilot.pause()
        assert not isinstance(app.screen, PaymentStory)
        assert app.query_one("TabbedContent").active == "logs"
        assert app.query_one(LogView).payment_txns == {txn}
        assert shown(app) and all(f"txn={short_id(txn)}" in line for line in shown(app))
