"""What the control room's conservation line compares: the banks' own seeded totals, and
payments still reaching their banks."""

import pytest

from app.live_source import committing
from app.model import Balances, BankBalances, BankStep, Participant, TxnRow
from backend.common import fixtures
from backend.common.states import Decision
from tests.stack import pay_request

pytestmark = pytest.mark.usefixtures("both_engines")  # each test on SQLite and on PostgreSQL


def row(decision, *phases, started_at=100.0):
    return TxnRow(
        "t",
        "BankA/A-1",
        "BankB/B-1",
        500,
        tuple(Participant(b, p) for b, p in zip(("BankA", "BankB"), phases, strict=True)),
        decision=decision,
        started_at=started_at,
    )


def test_committing_counts_recent_commits_some_bank_has_not_applied():
    rows = [
        row(Decision.COMMIT, BankStep.COMMITTED, BankStep.VOTED_YES),  # reaching BankB
        row(Decision.COMMIT, BankStep.COMMITTED, BankStep.COMMITTED),  # done
        row(Decision.ABORT, BankStep.ABORTED, BankStep.NO_ANSWER),  # moves no money
        row(Decision.PREPARING, BankStep.VOTED_YES, BankStep.VOTED_YES),  # undecided: moves no money yet
        row(Decision.COMMIT, BankStep.VOTED_YES, BankStep.IN_DOUBT, started_at=0.0),  # stuck long ago: not in flight
    ]
    assert committing(rows, now=101.0) == 1


def test_a_total_off_while_settling_is_not_a_loss_but_off_when_settled_is():
    banks = (BankBalances("BankA", True, total_cents=900), BankBalances("BankB", True, total_cents=1000))
    assert Balances(banks, 2000, settling=True).conserved
    assert not Balances(banks, 2000).conserved
    unreachable = (banks[0], BankBalances("BankB", False))
    assert Balances(unreachable, 2000).conserved  # incomplete, not wrong


async def test_each_bank_reports_what_it_was_seeded_with(stack):
    seeded = {
        name: sum(a["balance_cents"] for a in fixtures.bank_accounts(fixtures.DEFAULT_BANKS, name))
        for name in stack.cfg.bank_ports
    }
    gw, md = await stack.login("bob")
    await gw.Pay(pay_request("BankA", "A-1001", 2500), metadata=md, timeout=10)
    ledgers = await stack.ledgers()
    assert {n: ledger.seeded_total_cents for n, ledger in ledgers.items()} == seeded
    assert ledgers["BankA"].total_cents == seeded["BankA"] + 2500  # moved, yet the seed stays put
    assert sum(ledger.total_cents for ledger in ledgers.values()) == sum(seeded.values())
