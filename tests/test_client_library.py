"""The client library against a real stack: lost responses, sessions of other
users, refused tokens; and its local parts (profile, outbox bounds, backoff)."""

import stat
import time

import pytest

from backend.client import ClientError, GatewayClient, Outbox, Profile, Retrier, Session, backoff_s
from backend.client import outbox as outbox_module
from backend.common import fixtures
from backend.common.events import Event
from backend.common.states import PaymentStatus
from tests.client_helpers import begun_by
from tests.stack import eventually, pay_request

PASSWORDS = {u["username"]: u["password"] for u in fixtures.users()}


def client_for(stack, profile, **kw) -> GatewayClient:
    return GatewayClient(stack.cfg.gateway_address, stack.cfg.certs_dir, profile, **kw)


async def test_lost_answer_is_resent_under_the_same_key_and_charged_once(stack, tmp_path):
    async with client_for(stack, tmp_path / "bob") as client:
        await client.login("bob", PASSWORDS["bob"])
        before = await stack.balances()

        # The gateway answers but the client dies before it records the answer:
        # the entry stays in the outbox (sent once, attempts 1).
        real_finish = client.outbox.finish

        def crash(*args, **kw):
            raise OSError("client crashed before recording the answer")

        client.outbox.finish = crash
        with pytest.raises(OSError):
            await client.pay("BankA", "A-1001", "5.00")
        client.outbox.finish = real_finish
        [entry] = client.outbox.entries()
        assert entry.attempts == 1
        charged = await stack.balances()
        assert charged["BankB", "B-2001"] == before["BankB", "B-2001"] - 500

        report = await client.sync()
        [delivery] = report.deliveries
        assert (delivery.idempotency_key, delivery.status, delivery.replayed) == (
            entry.idempotency_key,
            PaymentStatus.SUCCEEDED,
            True,
        )
        assert delivery.attempts == 2
        assert report.remaining == []
        assert await stack.balances() == charged  # the resend changed nothing
        assert len(await begun_by(stack, "bob")) == 1
        assert await stack.seen(lambda r: r.get("event") == Event.IDEMPOTENT_REPLAY)


async def test_answer_lost_on_the_wire_then_resent(stack, tmp_path):
    """Another sender (here a raw stub) delivered the entry's key; the outbox never
    heard. Sending the entry again gets the same payment back, charged once."""
    async with client_for(stack, tmp_path / "bob") as client:
        await client.login("bob", PASSWORDS["bob"])
        entry = client.outbox.add("bob", "BankC", "C-3001", 700, "BankB", "B-2001")
        gw, md = await stack.login("bob")
        first = await gw.Pay(
            pay_request("BankC", "C-3001", 700, key=entry.idempotency_key, from_bank="BankB", from_account="B-2001"),
            metadata=md,
            timeout=10,
        )
        after_first = await stack.balances()
        delivery = await client.resend(entry.idempotency_key)
        assert delivery.status == PaymentStatus.SUCCEEDED and delivery.replayed
        assert delivery.payment_id == first.payment_id
        assert await stack.balances() == after_first
        assert client.outbox.entries() == []
        assert client.outbox.get_sent(entry.idempotency_key).payment_id == first.payment_id


async def test_queued_payment_is_never_sent_with_another_users_session(stack, tmp_path):
    profile = tmp_path / "shared"
    before = await stack.balances()
    async with client_for(stack, profile, backoff_cap_s=0.2) as client:
        await client.login("bob", PASSWORDS["bob"])
        await stack.sup.kill("gateway")
        queued = await client.pay("BankA", "A-1001", "2.00")
        assert queued.status == PaymentStatus.QUEUED
        assert await client.logout() is False  # gateway down: forgotten here, not revoked there
        await stack.sup.restart("gateway")

        await client.login("alice", PASSWORDS["alice"])
        report = await client.sync()
        assert (report.deliveries, report.remaining, report.other_users) == ([], [], 1)
        retrier = Retrier(client, idle_poll_s=0.1)
        for _ in range(3):
            await retrier.round()
        paid = await client.pay("BankB", "B-2001", "1.00", from_bank="BankA")  # alice's own still flows
        assert paid.status == PaymentStatus.SUCCEEDED
        [still] = client.queued(all_users=True)
        assert (still.idempotency_key, still.username, still.attempts) == (queued.idempotency_key, "bob", 1)
        assert await begun_by(stack, "bob") == []
        assert (await stack.balances())["BankB", "B-2001"] == before["BankB", "B-2001"] + 100

        await client.login("bob", PASSWORDS["bob"])
        async with Retrier(client, idle_poll_s=0.1):
            await eventually(lambda: _no_entries(client))
        assert client.outbox.get_sent(queued.idempotency_key).status == PaymentStatus.SUCCEEDED
        after = await stack.balances()
        assert after["BankB", "B-2001"] == before["BankB", "B-2001"] + 100 - 200
        assert after["BankA", "A-1001"] == before["BankA", "A-1001"] - 100 + 200


async def _no_entries(client):
    return not client.outbox.entries()


async def test_refused_token_keeps_the_payment_queued(stack, tmp_path):
    profile = Profile(tmp_path / "bob")
    async with client_for(stack, profile) as client:
        await client.login("bob", PASSWORDS["bob"])
        profile.save_session(Session("bob", "revoked-or-forged-token", time.time() + 3600, (("BankB", "B-2001"),)))
        delivery = await client.pay("BankA", "A-1001", "1.00")
        assert delivery.status == PaymentStatus.QUEUED and delivery.error.code == "UNAUTHENTICATED"
        assert "log in as bob" in delivery.error.message
        await client.login("bob", PASSWORDS["bob"])
        report = await client.sync()
        assert [d.status for d in report.deliveries] == [PaymentStatus.SUCCEEDED]


# ------------------------------------------------------------ local parts --
def test_profile_is_private_and_the_token_is_never_shown(tmp_path):
    profile = Profile(tmp_path / "p")
    session = Session("alice", "s3cret-token-value", time.time() + 60, (("BankA", "A-1001"),))
    profile.save_session(session)
    assert stat.S_IMODE(profile.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(profile.session_path.stat().st_mode) == 0o600
    assert "s3cret" not in repr(session)
    assert profile.load_session() == session
    profile.clear_session()
    assert profile.load_session() is None
    profile.session_path.write_text("{not json")
    with pytest.raises(ClientError) as err:
        profile.load_session()
    assert err.value.code == "FAILED_PRECONDITION"


def test_outbox_is_bounded_and_durable_across_reopen(tmp_path, monkeypatch):
    monkeypatch.setattr(outbox_module, "MAX_QUEUED", 3)
    box = Outbox(tmp_path / "outbox.sqlite")
    keys = [box.add("bob", "BankA", "A-1001", 100 + i).idempotency_key for i in range(3)]
    with pytest.raises(ClientError) as err:
        box.add("bob", "BankA", "A-1001", 1)
    assert err.value.code == "RESOURCE_EXHAUSTED"
    reopened = Outbox(tmp_path / "outbox.sqlite")
    assert [e.idempotency_key for e in reopened.entries("bob")] == keys
    assert reopened.entries("alice") == []
    assert reopened.finish(keys[0], PaymentStatus.SUCCEEDED, payment_id="t1").status == PaymentStatus.SUCCEEDED
    assert (
        reopened.finish(keys[0], PaymentStatus.REJECTED, "NOT_FOUND").status == PaymentStatus.SUCCEEDED
    )  # the first answer stays
    assert stat.S_IMODE((tmp_path / "outbox.sqlite").stat().st_mode) == 0o600


def test_backoff_is_bounded_full_jitter():
    assert backoff_s(1, rng=lambda: 1.0) == 0.5
    assert backoff_s(4, rng=lambda: 1.0) == 4.0
    assert backoff_s(50, rng=lambda: 1.0) == 30.0
    assert backoff_s(10_000, rng=lambda: 1.0) == 30.0
    assert backoff_s(3, rng=lambda: 0.0) == 0.0


async def test_bad_amount_is_refused_before_the_outbox(tmp_path):
    async with GatewayClient("127.0.0.1:1", tmp_path / "no-certs", tmp_path / "p") as client:
        client.profile.save_session(Session("bob", "t", time.time() + 60, (("BankB", "B-2001"),)))
        for amount in ("12.505", "0", "-5", "abc", 0, -1):
            with pytest.raises(ClientError) as err:
                await client.pay("BankA", "A-1001", amount)
            assert err.value.code == "INVALID_ARGUMENT"
        with pytest.raises(ClientError) as err:
            await client.pay("BankB", "B-2001", "1.00")
        assert err.value.code == "INVALID_ARGUMENT"  # to itself
        assert client.outbox.entries() == [] and client.outbox.sent() == []


async def test_entry_older_than_the_key_window_is_not_resent(tmp_path):
    """Past the gateway's 24 h key retention a resend could charge twice: it ends EXPIRED, unsent."""
    async with GatewayClient("127.0.0.1:1", tmp_path / "no-certs", tmp_path / "p") as client:
        client.profile.save_session(Session("bob", "t", time.time() + 60, (("BankB", "B-2001"),)))
        old = client.outbox.add("bob", "BankA", "A-1001", 100, "BankB", "B-2001", now=time.time() - 24 * 3600)
        report = await client.sync()
        [delivery] = report.deliveries
        assert (delivery.status, delivery.error.code) == (PaymentStatus.EXPIRED, "DEADLINE_EXCEEDED")
        assert client.outbox.entries() == []
        assert client.outbox.get_sent(old.idempotency_key).status == PaymentStatus.EXPIRED
