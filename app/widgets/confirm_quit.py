"""The question `q` asks before it stops the control room and every process it runs."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

QUESTION = "Stop the control room and every process? y/n"


class ConfirmQuit(ModalScreen[bool]):
    """Dismissed with True (y) to stop everything, False (n, Esc) to carry on."""

    DEFAULT_CSS = """
    ConfirmQuit { align: center middle; }
    ConfirmQuit > Vertical {
        width: auto;
        height: auto;
        padding: 1 2;
        border: round $error;
        border-title-color: $text;
        border-title-style: bold;
        background: $surface;
    }
    ConfirmQuit #quit-question { width: auto; text-style: bold; }
    ConfirmQuit #quit-detail { width: auto; color: $text-muted; }
    ConfirmQuit Horizontal { width: auto; height: auto; margin-top: 1; }
    ConfirmQuit #quit-yes { margin-right: 2; }
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Stop everything"),
        Binding("n,escape", "answer(False)", "Cancel"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Quit"
            yield Static(QUESTION, id="quit-question", markup=False)
            yield Static("The gateway and every bank stop with it.", id="quit-detail")
            with Horizontal():
                yield Button("Stop everything (y)", variant="error", id="quit-yes", compact=True)
                yield Button("Cancel (n)", id="quit-no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#quit-no", Button).focus()  # Enter on the default never stops anything

    def action_answer(self, stop: bool) -> None:
        self.dismiss(stop)

    @on(Button.Pressed, "#quit-yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#quit-no")
    def _no(self) -> None:
        self.dismiss(False)
