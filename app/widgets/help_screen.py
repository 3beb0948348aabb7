"""`?`: every key of the control room on one overlay, grouped by where it works."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

BOX_WIDTH = 72
KEY_WIDTH = 17  # the key column: "tab / shift+tab" and a space
# What a key does wraps under itself, not under the keys: the box less its border (2),
# padding (4), scrollbar (2), indent (2) and the key column.
WHAT_WIDTH = BOX_WIDTH - 2 - 4 - 2 - 2 - KEY_WIDTH

# One section: its title and its (keys, what they do) lines.
Section = tuple[str, Sequence[tuple[str, str]]]


class HelpScreen(ModalScreen[None]):
    """Shows `sections`; Esc, `?` or q closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: BOX_WIDTH;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        padding: 0 2 1 2;
        border: round $accent;
        border-title-color: $text;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
        background: $surface;
    }
    HelpScreen .help-section { height: auto; margin-top: 1; }
    """.replace("BOX_WIDTH", str(BOX_WIDTH))

    BINDINGS = [Binding("escape,question_mark,q", "close", "Close help")]

    def __init__(self, sections: Sequence[Section]) -> None:
        super().__init__()
        self.sections = tuple(sections)

    def compose(self) -> ComposeResult:
        with VerticalScroll(can_focus=True) as scroll:
            scroll.border_title = "Keys"
            scroll.border_subtitle = "esc or ? closes"
            for title, lines in self.sections:
                yield Static(_section(title, lines), classes="help-section")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()  # ↑↓ scroll when the list is taller than the screen

    def action_close(self) -> None:
        self.dismiss(None)


def _section(title: str, lines: Sequence[tuple[str, str]]) -> Text:
    text = Text(title, style="bold")
    for keys, what in lines:
        text.append("\n  ")
        text.append(keys.ljust(KEY_WIDTH), style="bold")
        text.append(("\n  " + " " * KEY_WIDTH).join(textwrap.wrap(what, WHAT_WIDTH)))
    return text
