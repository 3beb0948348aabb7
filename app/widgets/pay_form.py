"""Pay from one of your accounts to any account at any bank.

Two of these: the Client tab's, and a compact one on the Dashboard (`quick`), beside the
2PC view, so a presenter pays and watches on one screen. Their fields have ids of their own
(`pay-...` and `quick-...`); the app shows each one's result in the form that asked."""

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
    username: reactive[str | None] = reactive(None, init=False)  # who pays; None when logged out
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
        form: PayForm | None = None  # the form that asked: its result is shown there

        @property
        def control(self) -> PayForm | None:
            return self.form

    def __init__(self, *, quick: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.quick = quick
        self.prefix = "quick" if quick else "pay"  # of its fields' ids
        self.set_class(quick, "-quick")
        self.border_title = self._title()
        self.border_subtitle = "" if quick else "enter pays"

    def _field_id(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _title(self) -> str:
        if not self.quick:
            return "Pay"
        return f"Pay as {self.username} (p)" if self.username else "Pay (p) · log in on Client (c)"

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label("From", classes="field-label")
            yield Select([], prompt="log in first", id=self._field_id("from"), classes="pay-from", compact=True)
        with Horizontal(classes="row"):
            yield Label("To", classes="field-label")
            yield Select([], prompt="bank", id=self._field_id("bank"), classes="pay-bank", compact=True)
            yield Input(
                placeholder="account" if self.quick else "account, e.g. B-2001",
                id=self._field_id("account"),
                max_length=64,
                compact=True,
            )
        with Horizontal(classes="row"):
            yield Label("Amount", classes="field-label")
            yield Input(
                placeholder="e.g. 12.50",
                id=self._field_id("amount"),
                classes="pay-amount",
                max_length=20,
                compact=True,
                validators=[AmountValidator()],
                validate_on=["changed"],
            )
            if self.quick:  # the button on the amount's line: one line less
                yield Button("Pay", variant="success", id=self._field_id("submit"), classes="pay-submit", compact=True)
        if not self.quick:
            with Horizontal(classes="row"):
                yield Label("", classes="field-label")
                yield Button("Pay", variant="success", id=self._field_id("submit"), classes="pay-submit", compact=True)
        yield Static("", id=self._field_id("error"), classes="error", markup=False)
        yield Static("", id=self._field_id("outcome"), classes="pay-outcome", markup=False)

    def on_mount(self) -> None:
        self.query_one(f"#{self._field_id('error')}").display = False
        self.query_one(f"#{self._field_id('outcome')}").display = False

    def watch_username(self) -> None:
        self.border_title = self._title()

    def watch_from_accounts(self, accounts: tuple[str, ...]) -> None:
        select = self.query_one(f"#{self._field_id('from')}", Select)
        select.set_options((a, a) for a in accounts)
        if accounts:
            select.value = accounts[0]

    def watch_banks(self, banks: tuple[str, ...]) -> None:
        select = self.query_one(f"#{self._field_id('bank')}", Select)
        value = select.value
        select.set_options((b, b) for b in banks)
        if value in banks:
            select.value = value

    def watch_error(self, error: str) -> None:
        self._show(self._field_id("error"), error)
        if error:
            self.outcome = ""

    def watch_outcome(self, outcome: str) -> None:
        self._show(self._field_id("outcome"), outcome)
        if outcome:
            self.error = ""

    def watch_busy(self, busy: bool) -> None:
        button = self.query_one(f"#{self._field_id('submit')}", Button)
        button.disabled = busy
        button.label = "Paying…" if busy else "Pay"
        if busy:  # a new payment: the last one's result no longer describes what is going on
            self.clear_result()

    def clear_result(self) -> None:
        """Forget the last payment's outcome or error (a new payment, another user)."""
        self.outcome = ""
        self.error = ""

    def focus_first_empty(self) -> None:
        """Focus the first field still to fill (payee bank, account, amount), else the amount."""
        bank = self.query_one(f"#{self._field_id('bank')}", Select)
        account = self.query_one(f"#{self._field_id('account')}", Input)
        if bank.selection is None:
            bank.focus()
        elif not account.value.strip():
            account.focus()
        else:
            self.query_one(f"#{self._field_id('amount')}", Input).focus()

    def _show(self, widget_id: str, text: str) -> None:
        line = self.query_one(f"#{widget_id}", Static)
        line.update(text)
        line.display = bool(text)

    @on(Input.Submitted)
    @on(Button.Pressed, ".pay-submit")
    def _pay(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        if self.busy:
            return
        amount = self.query_one(f"#{self._field_id('amount')}", Input)
        if (problem := amount_problem(amount.value)) is not None:
            self.error = problem  # said once, here, next to the field; nothing is sent
            amount.focus()
            return
        source = self.query_one(f"#{self._field_id('from')}", Select).selection  # "BankA/A-1001", None when logged out
        bank = self.query_one(f"#{self._field_id('bank')}", Select).selection
        from_bank, _, from_account = str(source or "").partition("/")
        self.post_message(
            self.PayRequested(
                to_bank=str(bank or ""),
                to_account=self.query_one(f"#{self._field_id('account')}", Input).value.strip(),
                amount_text=amount.value,
                from_bank=from_bank or None,
                from_account=from_account or None,
                form=self,
            )
        )
