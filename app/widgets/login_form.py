"""Who the embedded client is: log in, register (link an account you own), log out."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Button, Input, Label, Select, Static


class LoginForm(Vertical):
    username: reactive[str | None] = reactive(None, init=False)
    banks: reactive[tuple[str, ...]] = reactive(tuple, init=False)
    error: reactive[str] = reactive("", init=False)

    @dataclass
    class LoginRequested(Message):
        username: str
        password: str

    @dataclass
    class RegisterRequested(Message):
        username: str
        password: str
        bank: str
        account_id: str

    class LogoutRequested(Message):
        pass

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "You"

    def compose(self) -> ComposeResult:
        with Vertical(id="logged-out"):
            with Horizontal(classes="row"):
                yield Label("User", classes="field-label")
                yield Input(placeholder="e.g. alice", id="login-username", max_length=64, compact=True)
            with Horizontal(classes="row"):
                yield Label("Password", classes="field-label")
                yield Input(
                    placeholder="e.g. alice-demo-pw", password=True, id="login-password", max_length=128, compact=True
                )
            with Horizontal(classes="row"):
                yield Label("", classes="field-label")
                yield Button("Log in", variant="primary", id="login-submit", compact=True)
            yield Static("New user? Register with an account you own:", classes="hint")
            with Horizontal(classes="row"):
                yield Label("Account", classes="field-label")
                yield Select([], prompt="bank", id="register-bank", compact=True)
                yield Input(placeholder="account id", id="register-account", max_length=64, compact=True)
            with Horizontal(classes="row"):
                yield Label("", classes="field-label")
                yield Button("Register", id="register-submit", compact=True)
        with Horizontal(id="logged-in"):
            yield Label("", id="whoami")
            yield Button("Log out", id="logout", compact=True)
        yield Static("", id="login-error", classes="error", markup=False)

    def on_mount(self) -> None:
        self.query_one("#logged-in").display = False
        self.query_one("#login-error").display = False

    def watch_username(self, username: str | None) -> None:
        self.query_one("#logged-out").display = username is None
        self.query_one("#logged-in").display = username is not None
        self.query_one("#whoami", Label).update(Text.assemble("Logged in as ", (username or "", "bold")))
        self.query_one("#login-password", Input).value = ""
        self.error = ""

    def watch_banks(self, banks: tuple[str, ...]) -> None:
        self.query_one("#register-bank", Select).set_options((b, b) for b in banks)

    def watch_error(self, error: str) -> None:
        line = self.query_one("#login-error", Static)
        line.update(error)
        line.display = bool(error)

    @on(Input.Submitted, "#login-username, #login-password")
    @on(Button.Pressed, "#login-submit")
    def _login(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        self.post_message(self.LoginRequested(*self._credentials()))

    @on(Input.Submitted, "#register-account")
    @on(Button.Pressed, "#register-submit")
    def _register(self, event: Input.Submitted | Button.Pressed) -> None:
        event.stop()
        bank = self.query_one("#register-bank", Select).selection
        account = self.query_one("#register-account", Input).value.strip()
        self.post_message(self.RegisterRequested(*self._credentials(), str(bank or ""), account))

    @on(Button.Pressed, "#logout")
    def _logout(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.LogoutRequested())

    def _credentials(self) -> tuple[str, str]:
        return self.query_one("#login-username", Input).value.strip(), self.query_one("#login-password", Input).value
