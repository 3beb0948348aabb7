"""Pay from one of your accounts to any account at any bank."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Input, Label, Select, Static

from backend.common.limits import MAX_AMOUNT_CENTS, InvalidInput
from backend.common.money import format_cents, parse_cents

_NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$")
NOT_A_NUMBER = "Type the amount in digits, e.g. 12.50"


def amount_problem(text: str) -> str | None:
    """What is wrong with an amount as typed, in words, or None when it is one.

    One mistake, one wording: 0, 0.00, -1 and -0.50 all say the amount must be more than 0.
    parse_cents stays the judge of what is accepted; this only says why not."""
    text = text.strip()
    if not text:
        return "Enter an amount, e.g. 12.50"
    if not _NUMBER_RE.match(text):
        return NOT_A_NUMBER
    value = Decimal(text)
    if value <= 0:
        return "The amount must be more than 0"
    exponent = value.as_tuple().exponent  # an int: the regex lets only digits through
    if isinstance(exponent, int) and exponent < -2:
        return "At most 2 decimals: amounts are in whole cents"
    if value * 100 > MAX_AMOUNT_CENTS:
        return f"At most {format_cents(MAX_AMOUNT_CENTS)} in one payment"
    try:
        parse_cents(text)
    except InvalidInput:
        return NOT_A_NUMBER  # a form parse_cents refuses that the checks above let through ("+5")
    return None


class AmountValidator(Validator):
    """Marks the amount field red while it is not an amount like 12.50."""

    def validate(self, value: str) -> ValidationResult:
        problem = amount_problem(value)
        return self.success() if problem is None else self.failure(problem)


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
        if busy:  # a new payment: the last one's result no longer describes what is going on
            self.clear_result()

    def clear_result(self) -> None:
        """Forget the last payment's outcome or error (a new payment, another user)."""
        self.outcome = ""
        self.error = ""

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
        amount = self.query_one("#pay-amount", Input)
        if (problem := amount_problem(amount.value)) is not None:
            self.error = problem  # said once, here, next to the field; nothing is sent
            amount.focus()
            return
        source = self.query_one("#pay-from", Select).selection  # "BankA/A-1001", None when logged out
        bank = self.query_one("#pay-bank", Select).selection
        from_bank, _, from_account = str(source or "").partition("/")
        self.post_message(
            self.PayRequested(
                to_bank=str(bank or ""),
                to_account=self.query_one("#pay-account", Input).value.strip(),
                amount_text=amount.value,
                from_bank=from_bank or None,
                from_account=from_account or None,
            )
        )
