"""The faults now in force, on one line above the footer on every tab: which process is
down or frozen, since when, and the key that picks it (and, for a gateway replica whose
lease ran out, which replica took its work over), and each bank whose circuit breaker is
not closed at some gateway replica. Hidden while every process serves and every breaker
is closed."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from app.format import duration
from app.model import ProcessInfo
from backend.common.states import ProcessState

BREAKER_RANK = {"closed": 0, "half_open": 1, "open": 2}  # the worst over the replicas is shown
BREAKER_WORDS = {"half_open": ("breaker half-open", "bold yellow"), "open": ("breaker open", "bold magenta")}
FAULT_WORDS = {  # state -> (mark, word, style)
    ProcessState.OFFLINE: ("✗", "killed", "bold red"),
    ProcessState.CRASHED: ("✗", "crashed", "bold red"),
    ProcessState.FROZEN: ("❄", "frozen", "bold cyan"),
}


class FaultsStrip(Static):
    processes: reactive[tuple[ProcessInfo, ...]] = reactive(tuple, init=False)
    now: reactive[float] = reactive(0.0, init=False)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._since: dict[str, tuple[ProcessState, float]] = {}  # name -> (fault, first seen at)
        self._taken_over: dict[str, str] = {}  # replica down -> the replica that took its work over
        self._breakers: dict[tuple[str, str], str] = {}  # (replica, bank) -> its breaker's state

    def taken_over(self, replica: str, by: str) -> None:
        """`by` took the work of `replica` over (said while `replica` stays down or frozen)."""
        self._taken_over[replica] = by
        self._show()

    def breaker(self, replica: str, bank: str, state: str) -> None:
        """`replica`'s circuit breaker for `bank` is now in `state` (closed, half_open, open)."""
        self._breakers[replica, bank] = state
        self._show()

    def breaker_state(self, bank: str) -> str:
        """The worst state of `bank`'s breakers over the replicas ("closed" if none said otherwise)."""
        states = [s for (_, b), s in self._breakers.items() if b == bank]
        return max(states, key=lambda s: BREAKER_RANK.get(s, 0), default="closed")

    def on_mount(self) -> None:
        self.display = False

    def watch_processes(self, processes: tuple[ProcessInfo, ...]) -> None:
        faults = {p.name: p.state for p in processes if p.state in FAULT_WORDS}
        self._since = {
            name: (state, self._since[name][1] if self._since.get(name, (None,))[0] == state else self.now)
            for name, state in faults.items()
        }
        # Back (restarted, thawed): its takeover is over; a new fault waits for a new one.
        self._taken_over = {name: by for name, by in self._taken_over.items() if name in faults}
        self._show()

    def watch_now(self) -> None:
        self._show()

    @property
    def faults(self) -> list[str]:
        """The faults in force, as words ("BankB killed"), in the Processes table's order."""
        return [f"{p.name} {FAULT_WORDS[p.state][1]}" for p in self.processes if p.state in FAULT_WORDS]

    def _show(self) -> None:
        line = Text.assemble((" Faults in force ", "bold reverse"), " ")
        shown = 0
        for number, p in enumerate(self.processes, start=1):
            if p.state not in FAULT_WORDS:
                continue
            mark, word, style = FAULT_WORDS[p.state]
            since = self._since.get(p.name, (p.state, self.now))[1]
            if shown:
                line.append("  ·  ", style="dim")
            line.append(f"{mark} {p.name} {word}", style=style)
            line.append(f" {duration(max(0.0, self.now - since))}", style="dim")
            line.append(f" ({number})", style="bold")
            if p.name in self._taken_over:
                line.append(f" → {self._taken_over[p.name]} took over", style="bold yellow")
            shown += 1
        for bank in sorted({b for _, b in self._breakers}):
            state = self.breaker_state(bank)
            if state not in BREAKER_WORDS:
                continue
            words, style = BREAKER_WORDS[state]
            if shown:
                line.append("  ·  ", style="dim")
            line.append(f"⚡ {bank} {words}", style=style)
            shown += 1
        if shown and any(p.state in FAULT_WORDS for p in self.processes):
            states = {p.state for p in self.processes}
            keys = ["number picks it"]
            keys += ["r restarts"] if states & {ProcessState.OFFLINE, ProcessState.CRASHED} else []
            keys += ["f thaws"] if ProcessState.FROZEN in states else []
            line.append("   " + " · ".join(keys), style="dim")
        self.display = bool(shown)
        self.update(line)
