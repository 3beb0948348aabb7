"""Enter on a 2PC row: that payment's story, on an overlay.

Each phase with its time since the gateway began the payment (begin, each bank's vote,
the decision, the acknowledgements, in-doubt and resolution), which process said it, the
other attempts under the same idempotency key, and every log line that names the
transaction. The app assigns `story` again while the overlay is open, so a payment in
slow motion is told as it happens. Esc closes it.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Static

from app.format import clock_time, short_id
from app.model import Story, StoryStep, Tone, TxnRow
from app.widgets.log_view import format_record
from backend.common.money import format_cents
from backend.common.states import Decision

BOX_WIDTH = 100
TONE_STYLE = {Tone.PLAIN: "", Tone.GOOD: "green", Tone.BAD: "red", Tone.DOUBT: "bold yellow"}
DECISION_STYLE = {Decision.COMMIT: "bold green", Decision.ABORT: "bold red", Decision.PREPARING: "yellow"}


class PaymentStory(ModalScreen[str | None]):
    """The story of one transaction; Esc (or Enter, or q) closes it."""

    DEFAULT_CSS = """
    PaymentStory { align: center middle; }
    PaymentStory > VerticalScroll {
        width: BOX_WIDTH;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        padding: 0 1;
        border: round $accent;
        border-title-color: $text;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
        background: $surface;
    }
    PaymentStory .story-section { height: auto; margin-top: 1; }
    PaymentStory #story-head { margin-top: 0; }
    """.replace("BOX_WIDTH", str(BOX_WIDTH))

    BINDINGS = [
        Binding("escape,enter,q", "close", "Close story"),
        Binding("l", "logs", "In Logs", tooltip="Close, and show only this payment's lines in the Logs tab"),
    ]

    story: reactive[Story | None] = reactive(None, init=False)

    def __init__(self, story: Story) -> None:
        super().__init__()
        self.set_reactive(PaymentStory.story, story)

    @property
    def txn_id(self) -> str:
        assert self.story is not None
        return self.story.row.txn_id

    def compose(self) -> ComposeResult:
        with VerticalScroll(can_focus=True) as scroll:
            scroll.border_subtitle = "esc closes · l its lines in Logs · ↑↓ scroll"
            yield Static(id="story-head", classes="story-section")
            yield Static(id="story-phases", classes="story-section")
            yield Static(id="story-attempts", classes="story-section")
            yield Static(id="story-lines", classes="story-section", markup=False)

    def on_mount(self) -> None:
        self._render_story()
        self.query_one(VerticalScroll).focus()

    def watch_story(self) -> None:
        if self.is_mounted:
            self._render_story()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_logs(self) -> None:
        self.dismiss(self.txn_id)  # the app opens the Logs tab on it

    def _render_story(self) -> None:
        story = self.story
        if story is None:
            return
        row = story.row
        self.query_one(VerticalScroll).border_title = f"Payment {row.txn_id}" + (f" · {row.user}" if row.user else "")
        self.query_one("#story-head", Static).update(_head(row))
        self.query_one("#story-phases", Static).update(_phases(story.steps))
        attempts = self.query_one("#story-attempts", Static)
        attempts.display = len(story.attempts) > 1
        attempts.update(_attempts(story.attempts, row))
        self.query_one("#story-lines", Static).update(_lines(story))


def _head(row: TxnRow) -> Text:
    text = Text.assemble(
        (format_cents(row.amount_cents), "bold"), f"  {row.payer} → {row.payee}   ", _decision(row.decision)
    )
    if row.reason:
        text.append(f" {row.reason}", style=DECISION_STYLE.get(row.decision, "").replace("bold ", ""))
    if row.latency_ms is not None:
        text.append(f"   {row.latency_ms:.0f} ms begin → last acknowledgement", style="dim")
    if row.in_doubt:
        text.append("   ⚠ IN DOUBT", style="bold black on yellow")
    text.append(f"\nbegan {clock_time(row.started_at)}", style="dim")
    if row.key:
        text.append(f" · idempotency key {row.key} · attempt {row.attempt}", style="dim")
    return text


def _decision(decision: Decision) -> Text:
    word = "voting…" if decision == Decision.PREPARING else decision.value
    return Text(word, style=DECISION_STYLE.get(decision, ""))


def _phases(steps: tuple[StoryStep, ...]) -> Text:
    text = Text("Phases", style="bold")
    text.append("   time since begin · who said it · what", style="dim")
    if not steps:
        text.append("\n  no 2PC line of this payment seen yet", style="dim")
    who_width = max((len(s.process) for s in steps), default=7)
    for step in steps:
        text.append("\n  ")
        text.append(_after(step.after_ms).rjust(10), style="dim")
        text.append(f"  {step.process:<{who_width}}  ", style="bold")
        text.append(step.what, style=TONE_STYLE[step.tone])
    return text


def _after(ms: float) -> str:
    """'+4.0 ms', '+1.25 s': milliseconds while they read well, seconds after."""
    return f"+{ms:.1f} ms" if ms < 1000 else f"+{ms / 1000:.2f} s"


def _attempts(attempts: tuple[TxnRow, ...], current: TxnRow) -> Text:
    text = Text("Attempts under this idempotency key", style="bold")
    text.append("   a retry is a new transaction; one of them at most commits", style="dim")
    for attempt in attempts:
        text.append(f"\n  {attempt.attempt:>2}  {short_id(attempt.txn_id)}  {clock_time(attempt.started_at)}  ")
        text.append_text(_decision(attempt.decision))
        if attempt.reason:
            text.append(f" {attempt.reason}")
        if attempt.txn_id == current.txn_id:
            text.append("   ← this one", style="bold")
    return text


def _lines(story: Story) -> Text:
    text = Text(f"Log lines of this transaction ({len(story.lines)})", style="bold")
    if story.lines_dropped:
        text.append(f"   {story.lines_dropped} older lines not kept", style="dim")
    for record in story.lines:
        text.append("\n")
        text.append_text(format_record(record))
    return text
