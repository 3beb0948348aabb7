"""Pay from one of your accounts to any account at any bank."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Input, Label, Select, Static

from backend.common.limits import InvalidInput
from backend.common.money import parse_cents


class AmountValidator(Validator):
    """Marks the amount field red while it is not an amount like 12.50."""

    def validate(self, value: str) -> ValidationResult:
        try:
            parse_cents(value)
        except InvalidInput as exc:
            return self.failure(str(exc))
        return self.success()


class PayForm(Vertical):
    from_accounts: reactive[tuple[str, ...]] = reactive(tuple, init=False)  # "BankA/A-1001"
    banks: reactive[tuple[str, ...]] = reactive(tuple, init=False)
    error: reactive[str] = reactive("", init=False)
    outcome: reactive[str] = reactive("", init=False)
    busy: reactive[bool] = reactive(False, init=False)

    @dataclass
    class PayRequested(Message):
        to_bank: str
        to_account: str
        amount_text: str
        from_bank: str | None
        from_account: str | None

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Pay"
        self.border_subtitle = "enter pays"

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label("From", classes="field-label")
            yield Select([], prompt="log in first", id="pay-from", compact=True)
        with Horizontal(classes="row"):
            yield Label("To", classes="field-label")
            yield Select([], prompt="bank", id="pay-bank", compact=True)
            yield Input(placeholder="account, e.g. B-2001", id="pay-account", max_length=64, compact=True)
        with Horizontal(classes="row"):
            yield Label("Amount", classes="field-label")
            yield Input(
                placeholder="e.g. 12.50",
                id="pay-amount",
                max_length=20,
                compact=True,
                validators=[AmountValidator()],
                validate_on=["changed"],
            )
        with Horizontal(classes="row"):
            yield Label("", classes="field-label")
            yield Button("Pay", variant="success", id="pay-submit", compact=True)
        yield Static("", id="pay-error", classes="error", markup=False)
        yield Static("", id="pay-outcome", markup=False)

    def on_mount(self) -> None:
        self.query_one("#pay-error").display = False
        self.query_one("#pay-outcome").display = False

    def watch_from_accounts(self, accounts: tuple[str, ...]) -> None:
        select = self.query_one("#pay-from", Select)
        select.set_options((a, a) for a in accounts)
        if accounts:
            select.value = accounts[0]

    def watch_banks(self, banks: tuple[str, ...]) -> None:
        select = self.query_one("#pay-bank", Select)
        value = select.value
        select.set_options((b, b) for b in banks)
        if value in banks:
            select.value = value

    def watch_error(self, error: str) -> None:
        self._show("#pay-error", error)
        if error:
            self.outcome = ""

    def watch_outcome(self, outcome: str) -> None:
        self._show("#pay-outcome", outcome)
        if outcome:
            self.error = ""

    def watch_busy(self, busy: bool) -> None:
        button = self.query_one("#pay-submit", Button)
        button.disabled = busy
        button.label = "Paying…" if busy else "Pay"

    def _show(self, selector: str, text: str) -> None:
        line = self.query_one(selector, Static)
        line.update(text)
        line.display = bool(text)

    @on(Input.Submitted)
    @on(Button.Pressed, "#pay-submit")
    def _pay(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        if self.busy:
            return
        source = self.query_one("#pay-from", Select).selection  # "BankA/A-1001", None when logged out
        bank = self.query_one("#pay-bank", Select).selection
        from_bank, _, from_account = str(source or "").partition("/")
        self.post_message(
            self.PayRequested(
                to_bank=str(bank or ""),
                to_account=self.query_one("#pay-account", Input).value.strip(),
                amount_text=self.query_one("#pay-amount", Input).value,
                from_bank=from_bank or None,
                from_account=from_account or None,
            )
        )
