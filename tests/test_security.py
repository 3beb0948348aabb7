"""Transport and role security through real processes: who may call what, what a
connection without our mutual TLS gets, and that no secret reaches a log line."""

import asyncio
import hashlib
import json
import shutil
import sqlite3

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import certs, tls
from tests.stack import DEMO_PASSWORDS, eventually, pay_request, start_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory, certs_dir):
    s = await start_stack(tmp_path_factory.mktemp("security"), certs_dir)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(scope="module")
def odd_certs(tmp_path_factory, certs_dir):
    """A copy of our PKI plus a client certificate naming no known role, and a whole
    other CA with its own `gateway` certificate."""
    ours = tmp_path_factory.mktemp("ours") / "certs"
    shutil.copytree(certs_dir, ours)
    certs._issue(ours, "role-admin", "admin", server=False)
    other = certs.ensure_certs(tmp_path_factory.mktemp("other") / "certs")
    return ours, other


def prepare(txn="sec-1", account="A-1001", delta=-100):
    return pb.PrepareRequest(txn_id=txn, legs=[pb.Leg(account_id=account, delta_cents=delta)])


def decide(txn: str, decision: int) -> pb.DecideBatchRequest:
    return pb.DecideBatchRequest(decisions=[pb.DecisionItem(txn_id=txn, decision=decision)])


async def refused(call, code=DENIED):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value
    return err.value.details()


async def healthy(stack):
    """Every server still answers a real call."""
    for name in stack.cfg.bank_ports:
        await stack.bank(name).ListAccounts(pb.ListAccountsRequest(), timeout=5)
    gw, md = await stack.login("bob")
    await gw.Balance(pb.BalanceRequest(), metadata=md, timeout=5)


async def test_client_certificate_cannot_call_a_bank(stack):
    before = await stack.ledgers()
    bank = stack.bank("BankA", role="client")
    for call in (
        bank.PrepareBatch(pb.PrepareBatchRequest(prepares=[prepare()]), timeout=5),
        bank.DecideBatch(decide("sec-1", pb.COMMIT), timeout=5),
        bank.DecideBatch(decide("sec-1", pb.ABORT), timeout=5),
        bank.ListAccounts(pb.ListAccountsRequest(), timeout=5),
        bank.Balance(pb.BankBalanceRequest(account_id="A-1001"), timeout=5),
        bank.ListTransactions(pb.ListTransactionsRequest(), timeout=5),
    ):
        details = await refused(call)
        assert "role 'client'" in details
    assert await stack.ledgers() == before
    assert "sec-1" not in await stack.txn_states()


@pytest.mark.parametrize("role", ["operator", "bank", "client"])
async def test_only_the_gateway_certificate_moves_money_at_a_bank(stack, role):
    before = await stack.ledgers()
    bank = stack.bank("BankA", role=role)
    txn = f"sec-{role}"
    for call in (
        bank.PrepareBatch(pb.PrepareBatchRequest(prepares=[prepare(txn)]), timeout=5),
        bank.DecideBatch(decide(txn, pb.COMMIT), timeout=5),
        bank.DecideBatch(decide(txn, pb.ABORT), timeout=5),
    ):
        details = await refused(call)
        assert f"role '{role}'" in details and "allowed: gateway" in details
    assert await stack.ledgers() == before
    assert txn not in await stack.txn_states()


async def test_operator_certificate_reads_banks(stack):
    bank = stack.bank("BankA", role="operator")
    accounts = await bank.ListAccounts(pb.ListAccountsRequest(), timeout=5)
    assert accounts.bank == "BankA" and {a.account_id for a in accounts.accounts} >= {"A-1001", "A-1002"}
    assert (await bank.Balance(pb.BankBalanceRequest(account_id="A-1001"), timeout=5)).owner == "alice"
    await bank.ListTransactions(pb.ListTransactionsRequest(), timeout=5)


@pytest.mark.parametrize("role", ["gateway", "bank"])
async def test_server_roles_cannot_use_the_client_api(stack, role):
    gw = pb_grpc.GatewayStub(stack.channel(stack.cfg.gateway_address, role))
    details = await refused(gw.Login(pb.LoginRequest(username="bob", password=DEMO_PASSWORDS["bob"]), timeout=5))
    assert f"role '{role}'" in details


async def test_only_a_bank_certificate_may_resolve_transactions(stack):
    """If a client could call ResolveTransaction, it could presume-abort other people's
    payments in flight. Freeze BankB so a payment waits in 2PC, then try."""
    gw, md = await stack.login("alice")
    before = await stack.balances()
    begun_before = set(stack.begun())
    await stack.sup.freeze("BankB")
    try:
        paying = asyncio.ensure_future(
            gw.Pay(
                pay_request("BankB", "B-2001", 321, from_bank="BankA", from_account="A-1001"), metadata=md, timeout=10
            )
        )

        async def new_txn():
            return set(stack.begun()) - begun_before

        (txn,) = await eventually(new_txn, timeout_s=5, interval_s=0.02)
        for role in ("client", "operator", "gateway"):
            coordinator = pb_grpc.CoordinatorStub(stack.channel(stack.cfg.gateway_address, role))
            details = await refused(coordinator.ResolveTransaction(pb.ResolveRequest(txn_id=txn), timeout=5))
            assert f"role '{role}'" in details and "allowed: bank" in details
    finally:
        await stack.sup.thaw("BankB")
    paid = await paying
    assert paid.status == pb.SUCCEEDED and paid.payment_id == txn
    await stack.logs_caught_up()
    assert not [r for r in stack.log_lines("gateway") if r.get("phase") == "resolved" and r.get("txn") == txn]
    after = await stack.balances()
    assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] - 321


async def test_plaintext_connections_are_refused(stack):
    for target in (stack.cfg.gateway_address, *(stack.cfg.bank_address(b) for b in stack.cfg.bank_ports)):
        async with grpc.aio.insecure_channel(target) as channel:
            await refused(
                pb_grpc.GatewayStub(channel).Login(
                    pb.LoginRequest(username="bob", password=DEMO_PASSWORDS["bob"]), timeout=3
                ),
                grpc.StatusCode.UNAVAILABLE,
            )
            await refused(
                pb_grpc.BankStub(channel).ListAccounts(pb.ListAccountsRequest(), timeout=3), grpc.StatusCode.UNAVAILABLE
            )
            await refused(
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3),
                grpc.StatusCode.UNAVAILABLE,
            )
    await healthy(stack)


async def test_tls_without_a_client_certificate_is_refused(stack, certs_dir):
    creds = grpc.ssl_channel_credentials(root_certificates=(certs_dir / "ca.crt").read_bytes())
    for target in (stack.cfg.gateway_address, stack.cfg.bank_address("BankA")):
        async with grpc.aio.secure_channel(target, creds) as channel:
            await refused(
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3),
                grpc.StatusCode.UNAVAILABLE,
            )
    await healthy(stack)


async def test_certificate_from_another_ca_is_refused(stack, odd_certs):
    _, other = odd_certs
    # a `gateway` certificate, but signed by a CA the servers do not trust
    mixed = grpc.ssl_channel_credentials(
        root_certificates=(stack.cfg.certs_dir / "ca.crt").read_bytes(),
        private_key=(other / "role-gateway.key").read_bytes(),
        certificate_chain=(other / "role-gateway.crt").read_bytes(),
    )
    for target in (stack.cfg.gateway_address, stack.cfg.bank_address("BankA")):
        async with grpc.aio.secure_channel(target, mixed) as channel:
            await refused(
                pb_grpc.BankStub(channel).PrepareBatch(
                    pb.PrepareBatchRequest(prepares=[prepare("sec-other-ca")]), timeout=3
                ),
                grpc.StatusCode.UNAVAILABLE,
            )
        # and a client trusting only the other CA does not trust our servers either
        async with tls.secure_channel(target, other, "gateway") as channel:
            await refused(
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3),
                grpc.StatusCode.UNAVAILABLE,
            )
    assert "sec-other-ca" not in await stack.txn_states()
    await healthy(stack)


async def test_certificate_naming_no_known_role_is_refused(stack, odd_certs):
    ours, _ = odd_certs
    async with tls.secure_channel(stack.cfg.bank_address("BankA"), ours, "admin") as channel:
        bank = pb_grpc.BankStub(channel)
        for call in (
            bank.PrepareBatch(pb.PrepareBatchRequest(prepares=[prepare("sec-admin")]), timeout=5),
            bank.ListAccounts(pb.ListAccountsRequest(), timeout=5),
        ):
            details = await refused(call)
            assert "role 'unknown'" in details
    assert "sec-admin" not in await stack.txn_states()
    async with tls.secure_channel(stack.cfg.gateway_address, ours, "admin") as channel:
        await refused(
            pb_grpc.GatewayStub(channel).Login(
                pb.LoginRequest(username="bob", password=DEMO_PASSWORDS["bob"]), timeout=5
            )
        )


async def test_no_password_or_token_in_any_log_line(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, token_ttl_s=2.0)
    secrets = []
    try:
        gw = stack.gateway()
        password = "Zq9-never-log-me"
        secrets.append(password)
        await gw.Register(
            pb.RegisterRequest(
                username="dave", password=password, account=pb.AccountRef(bank="BankA", account_id="A-1002")
            ),
            timeout=10,
        )
        login = await gw.Login(pb.LoginRequest(username="dave", password=password), timeout=10)
        secrets.append(login.token)
        md = (("authorization", f"Bearer {login.token}"),)
        await gw.Pay(pay_request("BankB", "B-2001", 100), metadata=md, timeout=10)
        await gw.Balance(pb.BalanceRequest(), metadata=md, timeout=10)
        await gw.ListPayments(pb.ListPaymentsRequest(), metadata=md, timeout=10)
        await gw.Logout(pb.LogoutRequest(), metadata=md, timeout=10)
        await refused(gw.Balance(pb.BalanceRequest(), metadata=md, timeout=10), grpc.StatusCode.UNAUTHENTICATED)
        # a session that expires while in use
        second = await gw.Login(pb.LoginRequest(username="dave", password=password), timeout=10)
        secrets.append(second.token)
        md2 = (("authorization", f"Bearer {second.token}"),)

        async def expired():
            try:
                await gw.Balance(pb.BalanceRequest(), metadata=md2, timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc.code() == grpc.StatusCode.UNAUTHENTICATED
            return False

        await eventually(expired, timeout_s=6, interval_s=0.2)
        # wrong passwords, near misses of real ones, and refused registrations
        for name, wrong in (("dave", password + "x"), ("bob", DEMO_PASSWORDS["bob"] + "!"), ("nobody", "Yq8-guess-pw")):
            secrets.append(wrong)
            await refused(
                gw.Login(pb.LoginRequest(username=name, password=wrong), timeout=10), grpc.StatusCode.UNAUTHENTICATED
            )
        for bad in ("sh0rt", "W" * 300):
            secrets.append(bad)
            await refused(
                gw.Register(
                    pb.RegisterRequest(
                        username="erin", password=bad, account=pb.AccountRef(bank="BankA", account_id="A-1003")
                    ),
                    timeout=10,
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        forged = "forged-token-Xy7Q"
        secrets.append(forged)
        await refused(
            gw.Balance(pb.BalanceRequest(), metadata=(("authorization", f"Bearer {forged}"),), timeout=10),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        await stack.login("bob")  # the demo password of a seeded user
        secrets.append(DEMO_PASSWORDS["bob"])
    finally:
        await stack.close()

    # what is stored instead of secrets must not leak either
    db = sqlite3.connect(tmp_path / "data" / "gateway.sqlite")
    stored = [r[0] for r in db.execute("SELECT password_hash FROM users")]
    stored += [r[0] for r in db.execute("SELECT token_sha256 FROM sessions")]
    db.close()
    assert len(stored) >= 5
    assert hashlib.sha256(login.token.encode()).hexdigest() in stored  # the table really holds digests

    assert len(stack.records) > 30
    assert any(r.get("event") == "rpc" and r.get("method", "").endswith("/Login") for r in stack.records)
    text = "\n".join(json.dumps(r) for r in stack.records)  # stdout and stderr of every process
    for secret in secrets + stored:
        assert secret not in text, f"a secret reached the logs: {secret[:6]}…"
    assert "Bearer" not in text and "authorization" not in text.lower()
