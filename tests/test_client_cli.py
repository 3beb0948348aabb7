"""`strife client` end to end: real CLI processes against a real gateway and banks."""

import stat

from backend.common import fixtures
from backend.common.states import PaymentStatus
from tests.client_helpers import cli

PASSWORDS = {u["username"]: u["password"] for u in fixtures.users()}


async def test_register_login_balance_pay_history(stack, tmp_path):
    profile = tmp_path / "dave"
    before_total = await stack.total_cents()

    # The password read from $STRIFE_PASSWORD when given as "-": not on the command line.
    code, out = await cli(
        stack, profile, "register", "dave", "-", "BankA", "A-1002", env={"STRIFE_PASSWORD": "dave-secret-1"}
    )
    assert (code, out) == (0, {"registered": "dave", "account": {"bank": "BankA", "account_id": "A-1002"}})
    code, out = await cli(stack, profile, "login", "dave", env={"STRIFE_PASSWORD": "dave-secret-1"})
    assert code == 0 and out["username"] == "dave" and out["queued"] == 0
    assert out["accounts"] == [{"bank": "BankA", "account_id": "A-1002"}]
    assert "token" not in out

    code, out = await cli(stack, profile, "balance")
    assert code == 0
    assert out["accounts"] == [
        {"bank": "BankA", "account_id": "A-1002", "balance_cents": 50000, "available_cents": 50000, "reachable": True}
    ]
    assert out["total_cents"] == 50000 and out["unreachable_banks"] == []

    code, paid = await cli(stack, profile, "pay", "BankB", "B-2001", "12.50")
    assert code == 0, paid
    assert paid["status"] == PaymentStatus.SUCCEEDED and paid["amount_cents"] == 1250 and paid["error"] is None
    assert (paid["from_bank"], paid["from_account"]) == ("BankA", "A-1002")
    assert paid["payment_id"] and paid["idempotency_key"]
    balances = await stack.balances()
    assert balances["BankA", "A-1002"] == 50000 - 1250
    assert balances["BankB", "B-2001"] == 75000 + 1250
    assert await stack.total_cents() == before_total

    code, history = await cli(stack, profile, "history")
    assert code == 0
    [p] = history["payments"]
    assert (p["payment_id"], p["direction"], p["amount_cents"], p["status"]) == (
        paid["payment_id"],
        "sent",
        1250,
        PaymentStatus.SUCCEEDED,
    )
    code, queue = await cli(stack, profile, "queue")
    assert code == 0 and queue["queued"] == []
    assert [(f["idempotency_key"], f["status"]) for f in queue["finished"]] == [
        (paid["idempotency_key"], PaymentStatus.SUCCEEDED)
    ]

    # The profile is private: the directory 0700, its files 0600.
    assert stat.S_IMODE(profile.stat().st_mode) == 0o700
    for f in profile.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f

    code, out = await cli(stack, profile, "logout")
    assert (code, out) == (0, {"logged_out": "dave", "revoked": True})
    code, out = await cli(stack, profile, "balance")
    assert code == 1 and out["error"]["code"] == "UNAUTHENTICATED"


async def test_user_with_accounts_at_two_banks(stack, tmp_path):
    profile = tmp_path / "alice"
    code, out = await cli(stack, profile, "login", "alice", PASSWORDS["alice"])
    assert code == 0
    code, out = await cli(stack, profile, "balance")
    assert code == 0
    assert {(a["bank"], a["account_id"]): a["balance_cents"] for a in out["accounts"]} == {
        ("BankA", "A-1001"): 100000,
        ("BankC", "C-3002"): 20000,
    }
    assert out["total_cents"] == 120000

    code, out = await cli(stack, profile, "pay", "BankB", "B-2001", "1")
    assert code == 1 and out["error"]["code"] == "INVALID_ARGUMENT", out
    assert "which one" in out["error"]["message"]
    code, paid = await cli(stack, profile, "pay", "BankB", "B-2001", "7.05", "--from", "BankC")
    assert code == 0 and paid["status"] == PaymentStatus.SUCCEEDED
    assert (paid["from_bank"], paid["from_account"]) == ("BankC", "C-3002")
    code, out = await cli(stack, profile, "balance")
    assert out["total_cents"] == 120000 - 705

    # A bank down: its account is marked unreachable and left out of the total.
    await stack.sup.kill("BankC")
    code, out = await cli(stack, profile, "balance")
    assert code == 0 and out["unreachable_banks"] == ["BankC"]
    assert out["total_cents"] == 100000


async def test_errors_have_their_code_and_change_nothing(stack, tmp_path):
    profile = tmp_path / "bob"
    code, out = await cli(stack, profile, "login", "bob", "not-bobs-password")
    assert code == 1 and out["error"]["code"] == "UNAUTHENTICATED"
    code, out = await cli(stack, profile, "pay", "BankA", "A-1001", "1.00")
    assert code == 1 and out["error"]["code"] == "UNAUTHENTICATED"  # not logged in: nothing queued
    code, out = await cli(stack, profile, "login", "bob", PASSWORDS["bob"])
    assert code == 0
    before = await stack.balances()

    for amount in ("12.505", "0", "-5", "abc", "0.00", "1e3", "100000000.01"):
        code, out = await cli(stack, profile, "pay", "BankA", "A-1001", amount)
        assert code == 1, (amount, out)
        assert out["error"]["code"] == "INVALID_ARGUMENT", (amount, out)
    code, out = await cli(stack, profile, "queue")
    assert out["queued"] == [] and out["finished"] == []  # refused before the outbox

    code, out = await cli(stack, profile, "pay", "BankZ", "Z-1", "1.00")
    assert code == 1 and out["error"]["code"] == "NOT_FOUND", out
    code, out = await cli(stack, profile, "pay", "BankA", "A-9999", "1.00")
    assert code == 1 and out["error"]["code"] == "NOT_FOUND", out
    code, out = await cli(stack, profile, "pay", "BankA", "A-1001", "1.00", "--from", "BankA/A-1002")
    assert code == 1 and out["error"]["code"] == "PERMISSION_DENIED", out
    code, out = await cli(stack, profile, "queue")
    assert out["queued"] == []  # final errors leave the outbox, with what happened
    assert [(f["status"], f["code"]) for f in out["finished"]] == [
        (PaymentStatus.REJECTED, "PERMISSION_DENIED"),
        (PaymentStatus.REJECTED, "NOT_FOUND"),
        (PaymentStatus.REJECTED, "NOT_FOUND"),
    ]

    code, out = await cli(stack, profile, "pay", "BankA", "A-1001", "750.01")
    assert code == 4 and out["status"] == PaymentStatus.DECLINED and out["reason"] == "insufficient funds", out
    assert await stack.balances() == before

    code, out = await cli(stack, profile, "pay", "BankA")  # usage error: still one JSON object
    assert code == 2 and out["error"]["code"] == "INVALID_ARGUMENT"
