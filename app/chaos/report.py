"""What `strife chaos` prints: the seed, what it did, and each invariant PASS/FAIL."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from app.chaos.check import Verdict

SHOWN_OFFENDERS = 10


@dataclass
class Outcome:
    seed: int
    command: str
    duration_s: float
    engine: str = "sqlite"  # where the gateway and the banks kept their state: sqlite | postgres
    wall_s: float = 0.0
    data_dir: str = ""
    kept: bool = False
    tally: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)  # heal/drain/settle/replay seconds
    verdicts: list[Verdict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the campaign itself could not do something

    @property
    def ok(self) -> bool:
        return bool(self.verdicts) and all(v.ok for v in self.verdicts) and not self.problems

    def to_json(self) -> dict:
        return {
            "seed": self.seed,
            "command": self.command,
            "ok": self.ok,
            "duration_s": self.duration_s,
            "engine": self.engine,
            "wall_s": round(self.wall_s, 1),
            "data_dir": self.data_dir if self.kept else None,
            "did": self.tally,
            "faults": self.faults,
            "phases_s": self.phases,
            "invariants": [v.to_json() for v in self.verdicts],
            "problems": self.problems,
        }


def render(outcome: Outcome, console: Console | None = None, as_json: bool = False) -> None:
    console = console or Console()
    if as_json:
        console.print_json(json.dumps(outcome.to_json()))
        return
    console.print(f"[bold]strife chaos[/] seed [bold cyan]{outcome.seed}[/]  (replay: {outcome.command})")

    did = Table(title="What it did", title_justify="left", show_header=True)
    did.add_column("clients", style="bold")
    did.add_column("count", justify="right")
    for name, n in outcome.tally.items():
        did.add_row(name, str(n))
    faults = Table(title="Faults injected", title_justify="left")
    faults.add_column("nemesis", style="bold")
    faults.add_column("count", justify="right")
    for name, n in outcome.faults.items():
        faults.add_row(name, str(n))
    for name, s in outcome.phases.items():
        faults.add_row(f"[dim]{name} (s)[/]", f"[dim]{s:.1f}[/]")
    console.print(did)
    console.print(faults)

    inv = Table(title="Invariants", title_justify="left")
    inv.add_column("#", justify="right")
    inv.add_column("invariant")
    inv.add_column("checked", justify="right")
    inv.add_column("result")
    inv.add_column("offending ids")
    for v in outcome.verdicts:
        shown = "\n".join(v.offenders[:SHOWN_OFFENDERS])
        if v.count > SHOWN_OFFENDERS:
            shown += f"\n… and {v.count - SHOWN_OFFENDERS} more"
        inv.add_row(
            str(v.number),
            v.title,
            str(v.checked),
            "[bold green]PASS[/]" if v.ok else f"[bold red]FAIL[/] ({v.count})",
            shown,
        )
    console.print(inv)
    for problem in outcome.problems:
        console.print(f"[bold red]problem:[/] {problem}")
    verdict = "[bold green]PASS[/]" if outcome.ok else "[bold red]FAIL[/]"
    where = f"; files kept in {outcome.data_dir}" if outcome.kept else ""
    console.print(
        f"{verdict}: seed {outcome.seed}, {outcome.engine}, {outcome.duration_s:.0f} s of faults, "
        f"{outcome.wall_s:.0f} s in all{where}"
    )
