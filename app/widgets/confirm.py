"""A yes/no question before an action a presenter cannot take back: `q` (stop the control
room and every process) and killing the gateway."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class Confirm(ModalScreen[bool]):
    """Dismissed with True (y) to go ahead, False (n, Esc, Enter on the default) to carry on."""

    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Vertical {
        width: auto;
        height: auto;
        padding: 1 2;
        border: round $error;
        border-title-color: $text;
        border-title-style: bold;
        background: $surface;
    }
    Confirm #quit-question { width: auto; text-style: bold; }
    Confirm #quit-detail { width: auto; color: $text-muted; }
    Confirm Horizontal { width: auto; height: auto; margin-top: 1; }
    Confirm #quit-yes { margin-right: 2; }
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, title: str, question: str, detail: str, yes: str) -> None:
        super().__init__()
        self.title_text, self.question, self.detail, self.yes = title, question, detail, yes

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static(f"{self.question} y/n", id="quit-question", markup=False)
            yield Static(self.detail, id="quit-detail", markup=False)
            with Horizontal():
                yield Button(f"{self.yes} (y)", variant="error", id="quit-yes", compact=True)
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
