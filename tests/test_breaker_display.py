"""The control room shows a bank's circuit breaker: a killed bank's breaker opens (the
gateway's health check trips it) and the faults strip says so on every tab; once the bank
is back and traffic probes it, the breaker closes and the strip says nothing of it."""

from __future__ import annotations

from app.app import StrifeApp
from app.widgets.faults_strip import FaultsStrip
from app.widgets.process_panel import ProcessPanel
from backend.common.states import ProcessState
from tests.test_control_room_live import started, states, until


def strip_text(app) -> str:
    return str(app.query_one(FaultsStrip).render())


async def test_a_killed_banks_breaker_shows_open_and_closes_when_it_is_back(live_source):
    app = StrifeApp(live_source)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        names = [p.name for p in app.query_one(ProcessPanel).processes]
        number = str(names.index("BankB") + 1)
        await pilot.press(number, "k")
        await until(pilot, lambda: states(app)["BankB"] == ProcessState.OFFLINE, 10, "BankB killed")
        strip = app.query_one(FaultsStrip)
        await until(pilot, lambda: strip.breaker_state("BankB") == "open", 10, "its breaker opened")
        await pilot.pause()
        assert "BankB breaker open" in strip_text(app)
        assert strip.breaker_state("BankA") == "closed"

        await pilot.press(number, "r", "t")  # back, and traffic to probe it
        await until(pilot, lambda: states(app)["BankB"] == ProcessState.SERVING, 20, "BankB back")
        await until(pilot, lambda: strip.breaker_state("BankB") == "closed", 30, "its breaker closed")
        await pilot.pause()
        assert "breaker" not in strip_text(app)
