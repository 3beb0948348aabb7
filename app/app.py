"""The control room: one screen of panels over a ControlSource.

The source posts messages (app/messages.py); this app routes each one to the
widgets that show it. Widgets post requests (kill a process, pay, ...); the app
runs them against the source in workers and reports the result. Widgets never
talk to each other or to the source.

The Dashboard has its own Pay form beside the 2PC view (p focuses it; `.` pays the last
payment again, b sends a burst), and Enter on a 2PC row tells that payment's story from
the log lines the app has seen (app.timeline.Stories).
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial, wraps
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Footer, HelpPanel, Input, TabbedContent, TabPane, Tabs
from textual.worker import Worker, WorkerState

from app import messages as msg
from app.format import short_id
from app.model import ProcessInfo
from app.source import ClientError, ControlSource, PayOutcome
from app.timeline import Stories
from app.widgets.balances_panel import BalancesPanel
from app.widgets.client_summary import ClientSummary
from app.widgets.confirm import Confirm
from app.widgets.faults_strip import FaultsStrip
from app.widgets.graphs_panel import GraphsPanel
from app.widgets.help_screen import HelpScreen, Section
from app.widgets.log_view import LogView
from app.widgets.login_form import LoginForm
from app.widgets.outbox_panel import OutboxPanel
from app.widgets.pay_form import PayForm
from app.widgets.payment_story import PaymentStory
from app.widgets.process_panel import ProcessPanel
from app.widgets.status_bar import StatusBar
from app.widgets.txn_panel import TxnPanel
from backend.common.events import Event
from backend.common.states import ProcessState

TICK_S = 1.0
SLOW_MOTION_MS = 800  # per phase: prepare, vote and commit each stay on screen this long
NARROW_COLUMNS = 110  # below this the Dashboard's panels stack (app/strife.tcss: Screen.-narrow)
TRAFFIC_RATES = (0.0, 2.0, 10.0)  # payments/s that t cycles through
BURST_COUNT = 10  # payments in one burst (b), sent at once
BURST_AMOUNT = "1.00"  # each, to the last payee
MAX_QUEUED_SHOWN = 64  # queued payments whose Pay form waits for their answer (the oldest forgotten)
ACTION_DONE = {"kill": "taken offline", "freeze": "frozen", "thaw": "thawed", "restart": "restarted"}

ESC_HELP = "Leave a text field or dropdown for the tab bar; close the Keys panel"

ShowHandler = Callable[["StrifeApp", Any], None]


@dataclass(frozen=True)
class Payment:
    """What to pay, as a form asks for it; sent again as a new payment by `.` and b."""

    to_bank: str
    to_account: str
    amount_text: str
    from_bank: str | None
    from_account: str | None

    @classmethod
    def of(cls, request: PayForm.PayRequested) -> Payment:
        return cls(request.to_bank, request.to_account, request.amount_text, request.from_bank, request.from_account)

    @property
    def payee(self) -> str:
        return f"{self.to_bank}/{self.to_account}"


def shows(message_type: type[Message]) -> Callable[[ShowHandler], ShowHandler]:
    """Bind a handler to what the source reports, behind the one guard: a message still
    queued when the app begins to stop is dropped (its widgets may be gone already)."""

    def bind(show: ShowHandler) -> ShowHandler:
        @wraps(show)
        def while_running(app: StrifeApp, message: Any) -> None:
            if app.is_running:
                show(app, message)

        return on(message_type)(while_running)

    return bind


class StrifeApp(App):
    CSS_PATH = "strife.tcss"
    TITLE = "Strife control room"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_COLUMNS, "-wide")]
    # The tab keys are plain (not priority) bindings: a text field keeps its typed letters,
    # every other widget lets them through. Tooltips are what the help overlay (?) says.
    BINDINGS = [
        Binding("q", "request_quit", "Quit", tooltip="Quit: asks first, then stops every process"),
        Binding("ctrl+c,ctrl+q", "quit", "Quit at once", show=False, priority=True),
        Binding(
            "d",
            "show_tab('dashboard')",
            "Dashboard",
            show=False,
            tooltip="Dashboard tab (under 110 columns, d on it goes back to the 2PC view)",
        ),
        Binding("c", "show_tab('client')", "Client", show=False, tooltip="Client tab: log in and pay"),
        Binding("l", "show_tab('logs')", "Logs", show=False, tooltip="Logs tab"),
        Binding("g", "show_tab('graphs')", "Graphs", show=False, tooltip="Graphs tab: the last 60 s"),
        Binding("question_mark", "help", "Keys", key_display="?", tooltip="This list of keys"),
        # Not in the footer (at 80 columns it would cut the others): the Pay panel's title says p.
        Binding(
            "p", "quick_pay", "Pay", show=False, tooltip="Pay from the Dashboard: its Pay form, beside the 2PC view"
        ),
        Binding(
            "full_stop",
            "pay_again",
            "Pay again",
            key_display=".",
            show=False,
            tooltip="Pay the last payment again: same payee and amount, a new idempotency key (a new payment)",
        ),
        Binding(
            "b",
            "burst",
            "Burst",
            show=False,
            tooltip=f"A burst: {BURST_COUNT} payments of {BURST_AMOUNT} to the last payee, all at once",
        ),
        Binding(  # not in the footer either (it would cut "m Slow motion" at 80 columns): ? lists it
            "t",
            "traffic",
            "Traffic",
            show=False,
            tooltip="Simulated traffic: off -> "
            + " -> ".join(f"{rate:g}/s" for rate in TRAFFIC_RATES[1:])
            + " -> off (the demo users pay each other through the real gateway)",
        ),
        Binding(
            "m",
            "slow_motion",
            "Slow motion",
            tooltip=f"Slow motion on/off: the gateway pauses {SLOW_MOTION_MS} ms between a payment's phases",
        ),
        Binding(  # the help lists 1-9 once, on this one; 2-9 have no words of their own
            "1",
            "pick_process(1)",
            "Process 1",
            key_display="1-9",
            show=False,
            tooltip="Pick the process in that row of Processes (on the Dashboard); then k, f or r",
        ),
        *(Binding(str(n), f"pick_process({n})", "", show=False) for n in range(2, 10)),
        # Two bindings on one key: the first whose check_action allows it runs.
        Binding("escape", "leave_field", "Leave field", tooltip=ESC_HELP),
        Binding("escape", "escape", "Tab bar", show=False, tooltip=ESC_HELP),
    ]

    def __init__(self, source: ControlSource, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.source = source
        self.clock = clock
        self.theme = "textual-dark"
        self._processes: tuple[ProcessInfo, ...] = ()
        self._source_stopped = False
        self._slow_motion_ms = 0
        self._traffic_per_s = 0.0
        self.stories = Stories()  # what Enter on a 2PC row tells
        self._last_payment: Payment | None = None  # what `.` pays again and b bursts to
        self._focus_on_tab: Callable[[], object] | None = None  # instead of the first widget, once
        self._queued_shown: dict[str, tuple[PayForm, str]] = {}  # key -> the form showing it queued, and what

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with TabbedContent(initial="dashboard"):
            with TabPane("Dashboard (d)", id="dashboard"):
                with VerticalScroll(id="dashboard-scroll", can_focus=False):
                    with Horizontal(id="top"):
                        yield ProcessPanel(id="processes")
                        yield BalancesPanel(id="balances")
                    yield TxnPanel(id="txns")
                    with Horizontal(id="bottom"):
                        yield PayForm(quick=True, id="quick-pay")
                        yield OutboxPanel(id="outbox")
            with TabPane("Client (c)", id="client"):
                with Horizontal(id="client-pane"):
                    with VerticalScroll(id="client-forms", can_focus=False):
                        yield LoginForm(id="login")
                        yield PayForm(id="pay")
                    yield ClientSummary(id="client-summary")
            with TabPane("Logs (l)", id="logs"):
                yield LogView(id="log-view")
            with TabPane("Graphs (g)", id="graphs"):
                yield GraphsPanel(id="graphs-panel")
        yield FaultsStrip(id="faults")
        yield Footer()

    # ------------------------------------------------------------ lifecycle --
    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self.exit)
        self._tick()
        self.set_interval(TICK_S, self._tick)
        self.call_after_refresh(self._start_dashboard)
        self.query_one("#quick-pay", PayForm).border_subtitle = f". again · b {BURST_COUNT} at once"
        self._start_source()

    async def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await self._stop_source()

    async def action_quit(self) -> None:
        """Stop every process and quit, without asking (Ctrl+C, Ctrl+Q, the palette)."""
        await self._stop_source()
        self.exit()

    def action_request_quit(self) -> None:
        """q: one key must not stop the whole stack by accident; ask first."""
        if isinstance(self.screen, Confirm):
            return

        async def answered(stop: bool | None) -> None:
            if stop:
                await self.action_quit()

        self.push_screen(
            Confirm(
                "Quit",
                "Stop the control room and every process?",
                "The gateway and every bank stop with it.",
                "Stop everything",
            ),
            answered,
        )

    async def _stop_source(self) -> None:
        if not self._source_stopped:
            self._source_stopped = True
            await self.source.stop()

    @work(group="source", exit_on_error=False)
    async def _start_source(self) -> None:
        try:
            await self.source.start(self._from_source)
        except Exception as exc:  # noqa: BLE001 - shown to the user as the reason we quit
            await self._stop_source()
            self.exit(return_code=1, message=f"strife could not start: {exc}")

    def _from_source(self, message: Message) -> None:
        """What the source reports, until the source is stopped."""
        if not self._source_stopped:
            self.post_message(message)

    def _tick(self) -> None:
        if self._source_stopped or not self.is_running:
            return  # closing: the panels are being taken down
        now = self.clock()
        # query, not query_one: a tick that fires while the app closes finds no widgets
        for panel in self.query(ProcessPanel):
            panel.now = now
        for queue in self.query(OutboxPanel):
            queue.now = now
        for summary in self.query(ClientSummary):
            summary.now = now
        for graphs in self.query(GraphsPanel):
            graphs.now = now
        for strip in self.query(FaultsStrip):
            strip.now = now

    def action_show_tab(self, tab: str) -> None:
        tabbed = self.query_one(TabbedContent)
        if tabbed.active != tab:
            # Take focus out of the old pane first. Hiding a pane moves its focus to a visible
            # sibling of the focused widget, which is in the same hidden pane (a dropdown's
            # neighbour field), and TabbedContent then switches back to that pane: d pressed
            # on the Pay form's bank dropdown did nothing (Textual issue #4955).
            self.screen.set_focus(None)
            tabbed.active = tab  # TabActivated then focuses the new pane
        elif self.focused is None or tabbed.active_pane not in self.focused.ancestors:
            self._focus_first(tabbed.active_pane)  # on the tab bar: the key goes into its pane
        elif tab == "dashboard" and self.size.width < NARROW_COLUMNS:
            self._start_dashboard()  # d again, stacked panels: back to the 2PC view from a process

    def action_leave_field(self) -> None:
        """From a text field to the tab bar, where the one-letter keys work again."""
        self.action_escape()

    def action_escape(self) -> None:
        """Esc outside a text field: close the Keys panel if it is open, else go to the tab bar."""
        if self.screen.query(HelpPanel):
            self.action_hide_help_panel()
        else:
            self.query_one(Tabs).focus()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_sections()))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("quick_pay", "pay_again", "burst", "pick_process"):
            return not isinstance(self.screen, ModalScreen)  # not from under a story or the help
        if action == "leave_field":
            return isinstance(self.focused, Input)
        if action == "escape":
            return not isinstance(self.focused, Input)
        return True

    def help_sections(self) -> list[Section]:
        """Every key: the app's, then each panel's (read from their BINDINGS, so a key added
        to a panel is listed without touching this), then what keys do inside fields."""
        anywhere = _describe(self.BINDINGS, self) + [
            (self.get_key_display(Binding(self.COMMAND_PALETTE_BINDING, "")), "Command palette: every action by name"),
            ("tab / shift+tab", "Next / previous panel or field"),
        ]
        sections: list[Section] = [("Anywhere", anywhere)]
        seen: set[type] = set()
        for widget in self.screen.query("*"):
            for cls in type(widget).__mro__:
                if cls in seen or not cls.__module__.startswith("app.") or not vars(cls).get("BINDINGS"):
                    continue
                seen.add(cls)
                sections.append((_panel_title(widget), _describe(vars(cls)["BINDINGS"], self)))
        sections.append(  # LogView reads these keys itself (on_key): they are not bindings
            (
                "Logs tab",
                [
                    ("/", "Search the lines (case does not matter); esc clears the search"),
                    ("f", "Pause / resume following the newest line"),
                ],
            )
        )
        sections.append(
            (
                "In a text field",
                [("letters", "Are typed, not taken as keys"), ("enter", "Log in / pay"), ("esc", "Leave the field")],
            )
        )
        return sections

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        """Keys go to the tab just opened: focus its first field or table."""
        self.call_after_refresh(self._focus_first, event.pane)

    def _start_dashboard(self) -> None:
        """Focus the Processes table; or, where the panels stack below each other (under
        NARROW_COLUMNS), the 2PC view, scrolled to the top, as the audience watches it:
        Processes is then above it, a shift+tab or a scroll away."""
        if self.size.width >= NARROW_COLUMNS:
            self.query_one("#processes DataTable").focus()
            return
        self.query_one("#txns DataTable").focus(scroll_visible=False)
        txns = self.query_one(TxnPanel)
        self.query_one("#dashboard-scroll", VerticalScroll).scroll_to_widget(txns, top=True, animate=False)

    def _focus_first(self, pane: TabPane | None) -> None:
        target: Widget | None
        if pane is None:
            return
        if self._focus_on_tab is not None:  # p from another tab: the Pay form, not the first table
            focus, self._focus_on_tab = self._focus_on_tab, None
            focus()
            return
        if pane.id == "dashboard":
            self._start_dashboard()
            return
        if pane.id == "client":  # a field to type in, never the Log out button
            logged_in = self.query_one(LoginForm).username is not None
            target = self.query_one("#pay-bank" if logged_in else "#login-username")
        else:
            target = next((w for w in self.screen.focus_chain if pane in w.ancestors), None)
        if target is not None:
            target.focus()

    # ------------------------------------------------- from the source --
    @shows(msg.ProcessesChanged)
    def _show_processes(self, message: msg.ProcessesChanged) -> None:
        before = {p.name: p.state for p in self._processes}
        for p in message.processes:
            if p.state == ProcessState.CRASHED and before.get(p.name, ProcessState.CRASHED) != ProcessState.CRASHED:
                self.notify(
                    f"{_exit_reason(p.exit_code)}, not by the control room. "
                    f"Press {self._number(p.name)}, then r, to start it again.",
                    title=f"{p.name} crashed",
                    severity="error",
                    timeout=10,
                )
        self._processes = message.processes
        self.query_one(ProcessPanel).processes = message.processes
        self.query_one(FaultsStrip).processes = message.processes
        self.query_one(LogView).processes = tuple(p.name for p in message.processes)

    @shows(msg.TierChanged)
    def _show_tier(self, message: msg.TierChanged) -> None:
        """Shown with more than one replica: one gateway is no tier to balance over."""
        tier = message.tier
        self.query_one(ProcessPanel).tier = tier if len(tier.replicas) > 1 else None

    @shows(msg.LogReceived)
    def _show_log(self, message: msg.LogReceived) -> None:
        record = message.record
        if record.event == Event.TAKEOVER:
            dead = str(record.fields.get("replica", "?"))
            self.query_one(FaultsStrip).taken_over(dead, record.process)
            self.notify(
                str(record.fields.get("msg") or f"took over replica {dead}"),
                title=f"{record.process} took over {dead}",
                severity="warning",
                timeout=10,
            )
        elif record.event == Event.BREAKER:
            self._show_breaker(record)
        elif record.event == Event.TAKEN_OVER:
            self.notify(
                "It was silent past its lease and its work was taken over; it joined the tier again.",
                title=f"{record.process} is back",
            )
        self.query_one(LogView).append(message.record)
        self.stories.add_record(message.record)
        story = self._open_story()
        if story is not None and message.record.fields.get("txn") == story.txn_id:
            story.story = self.stories.story(story.txn_id)

    def _show_breaker(self, record) -> None:
        """A replica's circuit breaker for a bank changed: the faults strip shows the worst state
        over the replicas; opening and closing again are notified."""
        strip = self.query_one(FaultsStrip)
        bank, state = str(record.fields.get("bank", "?")), str(record.fields.get("state", ""))
        before = strip.breaker_state(bank)
        strip.breaker(record.process, bank, state)
        after = strip.breaker_state(bank)
        if after == before:
            return
        if after == "open":
            self.notify(
                f"{record.fields.get('msg') or 'failing'}; payments touching {bank} are refused at once "
                "until a probe gets through",
                title=f"{bank}: circuit breaker open",
                severity="warning",
                timeout=8,
            )
        elif after == "closed":
            self.notify(f"payments to and from {bank} flow again", title=f"{bank}: circuit breaker closed")

    @shows(msg.TxnChanged)
    def _show_txn(self, message: msg.TxnChanged) -> None:
        self.query_one(TxnPanel).upsert(message.row)
        self.query_one(GraphsPanel).record_txn(message.row, self.clock())
        self.stories.add_row(message.row)
        story = self._open_story()
        if story is not None and story.story is not None and story.story.row.payment == message.row.payment:
            story.story = self.stories.story(story.txn_id)  # this payment, or another attempt of it

    def _open_story(self) -> PaymentStory | None:
        return self.screen if isinstance(self.screen, PaymentStory) else None

    @shows(msg.BalancesChanged)
    def _show_balances(self, message: msg.BalancesChanged) -> None:
        self.query_one(BalancesPanel).balances = message.balances
        self.query_one(GraphsPanel).record_balances(message.balances, self.clock())
        banks = tuple(b.bank for b in message.balances.banks)
        for form in self.query(PayForm):
            form.banks = banks
        self.query_one(LoginForm).banks = banks

    @shows(msg.OutboxChanged)
    def _show_outbox(self, message: msg.OutboxChanged) -> None:
        self.query_one(OutboxPanel).entries = message.entries

    @shows(msg.QueuedPaymentAnswered)
    def _show_queued_answer(self, message: msg.QueuedPaymentAnswered) -> None:
        """A queued payment went through (or was refused for good): say so, and where a Pay
        form still shows it as queued, show its answer there instead."""
        form, queued_text = self._queued_shown.pop(message.idempotency_key, (None, ""))
        if form is not None and form.outcome == queued_text:
            form.outcome = f"{message.outcome} (sent from the offline queue)"
        self.notify(message.outcome, title="Queued payment answered")

    @shows(msg.ClientChanged)
    def _show_client(self, message: msg.ClientChanged) -> None:
        state = message.state
        if state.username != self.query_one(LoginForm).username:
            self._last_payment = None  # `.` and b never pay as someone else
            for form in self.query(PayForm):
                form.clear_result()  # the last user's payment is not this user's
        self.query_one(ClientSummary).state = state
        self.query_one(LoginForm).username = state.username
        for form in self.query(PayForm):
            form.username = state.username
            form.from_accounts = tuple(f"{a.bank}/{a.account_id}" for a in state.accounts)

    @shows(msg.StatsChanged)
    def _show_stats(self, message: msg.StatsChanged) -> None:
        self.query_one(StatusBar).stats = message
        self.query_one(GraphsPanel).record_stats(message, self.clock())

    @shows(msg.TrafficChanged)
    def _show_traffic(self, message: msg.TrafficChanged) -> None:
        if message.per_s != self._traffic_per_s:
            on = f"Traffic: {message.per_s:g} payments/s from the demo users"
            self.notify(on if message.per_s else "Traffic off")
        self._traffic_per_s = message.per_s
        self.query_one(StatusBar).traffic = message

    @shows(msg.SlowMotionChanged)
    def _show_slow_motion(self, message: msg.SlowMotionChanged) -> None:
        if message.pause_ms != self._slow_motion_ms:
            on = f"Slow motion: the gateway pauses {message.pause_ms} ms between phases"
            self.notify(on if message.pause_ms else "Slow motion off: payments at full speed")
        self._slow_motion_ms = message.pause_ms
        self.query_one(StatusBar).slow_motion_ms = message.pause_ms

    # ------------------------------------------------ from the widgets --
    def on_process_panel_action_requested(self, message: ProcessPanel.ActionRequested) -> None:
        self.request_process_action(message.action, message.process)

    def request_process_action(self, action: str, name: str) -> None:
        """Do it; killing the gateway (every client's way in) asks first: the one gateway, or
        the last replica of the tier still serving (another serving replica takes its calls)."""
        gateways = [p for p in self._processes if p.kind == "gateway"]
        others = any(p.state == ProcessState.SERVING for p in gateways if p.name != name)
        if action != "kill" or name not in {p.name for p in gateways} or others:
            self.run_process_action(action, name)
            return

        def answered(kill: bool | None) -> None:
            if kill:
                self.run_process_action("kill", name)

        what = "the gateway" if len(gateways) == 1 else f"{name}, the last gateway replica serving"
        self.push_screen(
            Confirm(
                f"Kill {'the gateway' if len(gateways) == 1 else name}",
                f"Take {what} offline (SIGKILL)?",
                "Payments in flight abort; new ones wait in the offline queue until you restart it (r).",
                f"Kill {'the gateway' if len(gateways) == 1 else name}",
            ),
            answered,
        )

    def on_outbox_panel_sync_requested(self) -> None:
        self.sync_outbox()

    def on_login_form_login_requested(self, message: LoginForm.LoginRequested) -> None:
        self.client_call(
            f"Logged in as {message.username}",
            "#pay-bank",
            self.source.login,
            message.username,
            message.password,
            refresh=True,
        )

    def on_login_form_register_requested(self, message: LoginForm.RegisterRequested) -> None:
        self.client_call(
            f"Registered {message.username}: now log in",
            "#login-password",
            self.source.register,
            message.username,
            message.password,
            message.bank,
            message.account_id,
        )

    def on_login_form_logout_requested(self) -> None:
        self.client_call("Logged out", "#login-username", self.source.logout)

    def on_pay_form_pay_requested(self, message: PayForm.PayRequested) -> None:
        form = message.form or self.query_one("#pay", PayForm)
        self.pay(Payment.of(message), form)
        if form.quick:  # watch it go: the 2PC table, where `.`, b and Enter work at once
            self.query_one(TxnPanel).table.focus()

    def on_txn_panel_story_requested(self, message: TxnPanel.StoryRequested) -> None:
        story = self.stories.story(message.txn_id)
        if story is None:
            self.notify(f"No story kept for {message.txn_id}: it is older than the last {self.stories.max_txns}")
            return
        self.push_screen(PaymentStory(story), self._logs_of)

    def on_txn_panel_logs_requested(self, message: TxnPanel.LogsRequested) -> None:
        self._logs_of(message.txn_id)

    def _logs_of(self, txn_id: str | None) -> None:
        """The Logs tab, showing only the lines of `txn_id`'s payment: every attempt of it."""
        if txn_id is None:
            return
        story = self.stories.story(txn_id)
        attempts = story.attempts if story is not None else ()
        txn_ids = {txn_id, *(a.txn_id for a in attempts)}
        what = f"payment {short_id(txn_id)}"
        if len(txn_ids) > 1:
            what += f" and its other {len(txn_ids) - 1} attempt{'s' if len(txn_ids) > 2 else ''}"
        self.query_one(LogView).only_payment(txn_ids, what)
        self.action_show_tab("logs")

    # ------------------------------------------------------ quick keys --
    def action_pick_process(self, number: int) -> None:
        """1-9: that row of Processes, selected and focused, so k, f and r act on it."""
        panel = self.query_one(ProcessPanel)
        if number > len(panel.processes):
            self.notify(f"There is no process {number}: Processes lists {len(panel.processes)}", title="Pick")
            return
        tabbed = self.query_one(TabbedContent)
        if tabbed.active == "dashboard":
            panel.pick(number - 1)
            return
        self.screen.set_focus(None)  # see action_show_tab
        self._focus_on_tab = partial(panel.pick, number - 1)
        tabbed.active = "dashboard"

    def _number(self, name: str) -> str:
        """The key that picks process `name`."""
        names = [p.name for p in self._processes]
        return str(names.index(name) + 1) if name in names[:9] else "its number"

    def action_quick_pay(self) -> None:
        """p: the Dashboard's Pay form, its first field still to fill."""
        form = self.query_one("#quick-pay", PayForm)
        tabbed = self.query_one(TabbedContent)
        if tabbed.active == "dashboard":
            form.focus_first_empty()
            return
        self.screen.set_focus(None)  # see action_show_tab
        self._focus_on_tab = form.focus_first_empty
        tabbed.active = "dashboard"

    def action_log_in(self) -> None:
        """The palette's Log in: the Client tab, on its user name field (on Pay if logged in)."""
        self.action_show_tab("client")

    def action_pay_again(self) -> None:
        """`.`: the last payment again, as a new payment (the source gives it a new key)."""
        if self._last_payment is None:
            self.notify("Nothing to pay again yet: pay once first (p)", title="Pay again")
            return
        self.pay(self._last_payment, self.query_one("#quick-pay", PayForm))

    def action_burst(self) -> None:
        if self._last_payment is None:
            self.notify("A burst goes to the last payee: pay once first (p)", title="Burst")
            return
        last = self._last_payment
        burst = Payment(last.to_bank, last.to_account, BURST_AMOUNT, last.from_bank, last.from_account)
        self.pay_burst(burst, BURST_COUNT)

    # -------------------------------------------------------- workers --
    # Every worker is started with exit_on_error=False: an error it does not handle
    # itself reaches _worker_failed, which shows it; it never takes the app down.
    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """The one place an unexpected error of any worker goes: the log and a toast."""
        error = event.worker.error
        if event.state != WorkerState.ERROR or error is None:
            return
        self.log.error(f"worker {event.worker.name} failed", error)
        self.notify(f"{type(error).__name__}: {error}", title=f"{event.worker.name} failed (a bug)", severity="error")

    @work(group="process-actions", exit_on_error=False)
    async def run_process_action(self, action: str, name: str) -> None:
        try:
            await getattr(self.source, action)(name)
        except ClientError as exc:
            self.notify(str(exc), title=f"{action} {name} failed ({exc.code})", severity="error")
            return
        self.notify(f"{name} {ACTION_DONE[action]}")

    @work(group="client", exclusive=True, exit_on_error=False)
    async def client_call(
        self, done: str, focus_next: str, call: Callable[..., Awaitable[None]], *args: str, refresh: bool = False
    ) -> None:
        """Log in, register or log out; on success say `done`, focus `focus_next` and
        (when `refresh`) fetch the balance and history."""
        form = self.query_one(LoginForm)
        try:
            await call(*args)
        except ClientError as exc:
            form.error = f"{exc.code}: {exc}"
            self.notify(str(exc), title=exc.code, severity="error")
            return
        form.error = ""
        self.notify(done)
        self.call_after_refresh(self.query_one(focus_next).focus)
        if refresh:
            await self._refresh_client()

    @work(group="pay", exit_on_error=False)
    async def pay(self, payment: Payment, form: PayForm) -> None:
        """One payment; its result is shown in `form`, the form that asked (or the Dashboard's)."""
        form.busy = True
        try:
            outcome = await self._send(payment)
        except ClientError as exc:
            if exc.code == "INVALID_ARGUMENT":  # a mistake in the form: said once, there, in words
                form.error = _sentence(str(exc))
                return
            form.error = f"✗ {exc.code}: {exc}"
            self.notify(str(exc), title=f"Payment not made ({exc.code})", severity="error")
            return
        finally:
            form.busy = False
        form.outcome = outcome.text
        if outcome.queued_key is not None:  # its final answer replaces this (_show_queued_answer)
            self._queued_shown[outcome.queued_key] = (form, outcome.text)
            while len(self._queued_shown) > MAX_QUEUED_SHOWN:
                del self._queued_shown[next(iter(self._queued_shown))]
        self.notify(outcome.text, title="Payment")
        await self._refresh_client()

    @work(group="pay", exit_on_error=False)
    async def pay_burst(self, payment: Payment, count: int) -> None:
        """`count` payments of one amount to one payee, sent at once: the 2PC view fills."""
        assert 0 < count <= BURST_COUNT
        form = self.query_one("#quick-pay", PayForm)
        form.busy = True
        try:
            sends = (self._send(payment, remember=False) for _ in range(count))
            results = await asyncio.gather(*sends, return_exceptions=True)
        finally:
            form.busy = False
        said: dict[str, int] = {}
        for result in results:
            if isinstance(result, ClientError):
                word = f"failed ({result.code})"
            elif isinstance(result, BaseException):
                raise result  # not an answer of the source: a bug, shown by _worker_failed
            else:
                word = result.word
            said[word] = said.get(word, 0) + 1
        summary = f"burst of {count} × {payment.amount_text} to {payment.payee}: " + ", ".join(
            f"{n} {word}" for word, n in said.items()
        )
        form.outcome = summary
        self.notify(summary, title="Burst", severity="information" if said.get("paid") == count else "warning")
        await self._refresh_client()

    async def _send(self, payment: Payment, remember: bool = True) -> PayOutcome:
        """Through the source, like every payment. With `remember`, once the source took it
        (paid, declined or queued), it is what `.` pays again and b bursts to."""
        outcome = await self.source.pay(
            payment.to_bank, payment.to_account, payment.amount_text, payment.from_bank, payment.from_account
        )
        if remember:
            self._last_payment = payment
        return outcome

    async def _refresh_client(self) -> None:
        try:
            await self.source.refresh_client()
        except ClientError as exc:
            self.notify(str(exc), title=f"Balance not refreshed ({exc.code})", severity="warning")

    def action_traffic(self) -> None:
        following = TRAFFIC_RATES[(TRAFFIC_RATES.index(self._traffic_per_s) + 1) % len(TRAFFIC_RATES)]
        self.set_traffic(following if self._traffic_per_s in TRAFFIC_RATES else 0.0)

    @work(group="traffic", exclusive=True, exit_on_error=False)
    async def set_traffic(self, per_s: float) -> None:
        try:
            await self.source.set_traffic(per_s)
        except ClientError as exc:
            self.notify(exc.message, title=f"Traffic not changed ({exc.code})", severity="error")

    def action_slow_motion(self) -> None:
        self.set_slow_motion(0 if self._slow_motion_ms else SLOW_MOTION_MS)

    @work(group="slow-motion", exclusive=True, exit_on_error=False)
    async def set_slow_motion(self, pause_ms: int) -> None:
        try:
            await self.source.set_slow_motion(pause_ms)
        except ClientError as exc:
            self.notify(exc.message, title=f"Slow motion not changed ({exc.code})", severity="error")

    @work(group="sync", exit_on_error=False)
    async def sync_outbox(self) -> None:
        try:
            await self.source.sync_outbox()
        except ClientError as exc:
            self.notify(str(exc), title=f"Retry failed ({exc.code})", severity="error")

    # -------------------------------------------------- command palette --
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for p in self._processes:
            run = partial(self.request_process_action, name=p.name)
            yield SystemCommand(f"Kill {p.name}", f"Take {p.name} offline with SIGKILL", partial(run, "kill"))
            if p.state == ProcessState.FROZEN:
                yield SystemCommand(f"Thaw {p.name}", f"SIGCONT {p.name}", partial(run, "thaw"))
            else:
                yield SystemCommand(
                    f"Freeze {p.name}", f"SIGSTOP {p.name}: up but answering nothing", partial(run, "freeze")
                )
            yield SystemCommand(f"Restart {p.name}", f"Start {p.name} again", partial(run, "restart"))
        yield SystemCommand("Retry offline queue", "Send the queued payments now", self.sync_outbox)
        yield SystemCommand("Pay", "The Dashboard's Pay form (p)", self.action_quick_pay)
        yield SystemCommand("Pay again", "The last payment again, as a new payment (.)", self.action_pay_again)
        yield SystemCommand(
            "Burst of payments", f"{BURST_COUNT} payments of {BURST_AMOUNT} to the last payee (b)", self.action_burst
        )
        for rate in TRAFFIC_RATES:
            name = f"Traffic: {rate:g} payments/s" if rate else "Traffic: off"
            yield SystemCommand(name, "Simulated clients through the real gateway (t)", partial(self.set_traffic, rate))
        for tab, key, what in (
            ("Dashboard", "d", "Processes, balances, the 2PC view, Pay and the offline queue"),
            ("Client", "c", "Log in, register, pay; balance and history"),
            ("Logs", "l", "Every process's JSON lines, in time order"),
            ("Graphs", "g", "The last 60 s as graphs"),
        ):
            yield SystemCommand(f"{tab} tab", f"{what} ({key})", partial(self.action_show_tab, tab.lower()))
        yield SystemCommand("Log in", "The Client tab's login form (c)", self.action_log_in)
        yield SystemCommand(
            "Slow motion on/off", f"The gateway pauses {SLOW_MOTION_MS} ms between phases", self.action_slow_motion
        )


def _describe(bindings: Iterable[Any], app: App) -> list[tuple[str, str]]:
    """(keys, what they do) of `bindings`, one line per explanation; keys that do the same joined."""
    lines: dict[str, list[str]] = {}
    for binding in Binding.make_bindings(bindings):
        what = binding.tooltip or binding.description
        if what:
            lines.setdefault(what, []).append(app.get_key_display(binding))
    return [(" / ".join(dict.fromkeys(keys)), what) for what, keys in lines.items()]


def _panel_title(widget: Widget) -> str:
    """The title of the panel `widget` is in, without details: "Offline queue (3)", "Logs: every ..."
    -> the name."""
    titled = next((w for w in widget.ancestors_with_self if isinstance(w, Widget) and w.border_title), widget)
    title = str(titled.border_title or type(widget).__name__)
    return re.sub(r"\s*\(\d+\)$", "", title.split(":")[0])


def _exit_reason(exit_code: int | None) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it)."""
    if exit_code is None:
        return "Stopped"
    if exit_code < 0:
        try:
            return f"Killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"Killed by signal {-exit_code}"
    return f"Exited with code {exit_code}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
