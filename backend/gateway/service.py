"""The Gateway and Coordinator gRPC services.

Handlers raise DomainError subclasses (backend/common/errors.py); the logging
interceptor turns them into status codes. Every call to a bank is bounded by
the caller's remaining deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from functools import partial

import grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import jsonlog, limits
from backend.common.db import Database
from backend.common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from backend.common.events import Event
from backend.common.interceptors import note, role_rules
from backend.common.states import Decision, Outcome
from backend.gateway import passwords, store
from backend.gateway.auth import current_token, current_user
from backend.gateway.banks import Banks
from backend.gateway.coordinator import Coordinator
from backend.gateway.links import LinkCache
from backend.gateway.login_limiter import LOCKOUT_S, MAX_FAILURES, WINDOW_S, LoginLimiter
from backend.gateway.membership import Membership
from backend.gateway.sessions import SessionCache
from backend.gateway.watchers import Watchers

# The longest a read waits for a bank, whatever the caller's deadline.
MAX_BANK_READ_S = 2.0
# Kept from the caller's remaining deadline for our own answer to reach it in time.
REPLY_MARGIN_S = 0.05
# Reads in flight to one bank at once. A bank allows 256 streams per connection and,
# when more are queued on the gateway's one channel, refuses some with REFUSED_STREAM
# (UNAVAILABLE): a burst of 500 Balance calls then showed a healthy bank as unreachable.
MAX_BANK_READS = 128
WATCH_PAGE = 200  # events a stream reads at once
WATCH_RECHECK_S = 30.0  # a stream looks again this often even if nobody woke it
ROLE_RULES = role_rules(*(pb.DESCRIPTOR.services_by_name[s] for s in ("Gateway", "Coordinator", "Demo")))
_STATUS = {Outcome.SUCCEEDED: pb.SUCCEEDED, Outcome.DECLINED: pb.DECLINED, None: pb.PENDING}


def payment_message(row) -> pb.Payment:
    return pb.Payment(
        payment_id=row["txn_id"],
        idempotency_key=row["idem_key"],
        username=row["username"],
        amount_cents=row["amount_cents"],
        status=_STATUS.get(row["outcome"], pb.PAYMENT_STATUS_UNSPECIFIED),
        reason=row["reason"],
        # the one business reason a bank declines for (an unknown account is NOT_FOUND, not a decline)
        decline_reason=pb.Errors.INSUFFICIENT_FUNDS
        if row["outcome"] == Outcome.DECLINED
        else pb.Errors.ERROR_REASON_UNSPECIFIED,
        created_at_ms=int(row["created_at"] * 1000),
        **{"from": pb.AccountRef(bank=row["from_bank"], account_id=row["from_account"])},
        to=pb.AccountRef(bank=row["to_bank"], account_id=row["to_account"]),
    )


def time_left_s(context: grpc.aio.ServicerContext, most_s: float) -> float:
    """How long work for this call may take: at most `most_s`, and no longer than the
    caller's deadline allows (minus the time to answer). DeadlineExceeded if none is left."""
    remaining = context.time_remaining()
    if remaining is None:
        return most_s
    left = min(most_s, remaining - REPLY_MARGIN_S)
    if left <= 0:
        raise DeadlineExceeded(
            "the call's deadline passed before the gateway could ask the banks", reason=pb.Errors.DEADLINE_TOO_SHORT
        )
    return left


class GatewayService(pb_grpc.GatewayServicer):
    def __init__(
        self,
        db: Database,
        banks: Banks,
        coordinator: Coordinator,
        token_ttl_s: float,
        sessions: SessionCache,
        links: LinkCache,
        membership: Membership,
        watchers: Watchers,
    ) -> None:
        self.db = db
        self.watchers = watchers
        self.membership = membership
        self.sessions = sessions
        self.links = links
        self.banks = banks
        self.coordinator = coordinator
        self.token_ttl_s = token_ttl_s
        self.limiter = LoginLimiter()
        self._bank_reads: dict[str, asyncio.Semaphore] = {}

    async def _bank_read(self, context, bank: str, method: str, request):
        """One read call to `bank`, at most MAX_BANK_READS at a time per bank; the wait
        for a turn counts against the call's time (raises TimeoutError)."""
        timeout_s = time_left_s(context, MAX_BANK_READ_S)
        turn = self._bank_reads.setdefault(bank, asyncio.Semaphore(MAX_BANK_READS))
        async with asyncio.timeout(timeout_s), turn:
            return await getattr(self.banks.stub(bank), method)(request, timeout=timeout_s)

    def _known_bank(self, value: str, field: str = "bank") -> str:
        bank = limits.bank(value, field)
        if bank not in self.banks:
            raise NotFound(f"unknown bank {bank}", reason=pb.Errors.UNKNOWN_BANK)
        return bank

    async def _own_account(self, context, ref: pb.AccountRef, username: str) -> tuple[str, str]:
        """Check that `ref` (the request's `account`) exists at a known bank and that the bank
        says `username` owns it."""
        bank = limits.bank(ref.bank, "account.bank")
        account_id = limits.account(ref.account_id, "account.account_id")
        self._known_bank(bank, "account.bank")
        try:
            answer = await self._bank_read(
                context, bank, "ValidateAccount", pb.ValidateAccountRequest(account_id=account_id)
            )
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"bank {bank} did not answer ({exc.code().name}); try again") from None
        except TimeoutError:
            raise Unavailable(f"bank {bank} did not answer in time; try again") from None
        if not answer.exists:
            raise NotFound(f"no account {account_id} at {bank}")
        if answer.owner != username:
            raise PermissionDenied(f"account {account_id} at {bank} is not held by {username}")
        return bank, account_id

    async def Register(self, request, context) -> pb.RegisterResponse:
        username = limits.username(request.username)
        limits.password(request.password)
        note(user=username)
        link = await self._own_account(context, request.account, username)
        digest = await asyncio.to_thread(passwords.hash_password, request.password)
        await self.db.write(lambda c: store.add_user(c, username, digest, [link]))
        jsonlog.emit(Event.REGISTERED, user=username, bank=link[0])
        return pb.RegisterResponse(username=username)

    async def Login(self, request, context) -> pb.LoginResponse:
        username = limits.username(request.username)
        limits.password(request.password)
        note(user=username)
        peer = context.peer() or ""
        async with self.limiter.one_at_a_time(username):
            # Failures of a known user are counted in the store, for the whole tier; the
            # limiter in memory also bounds unknown names and each peer address.
            stored, failures, locked_until = await self.db.read(lambda c: store.login_facts(c, username))
            _refuse_if_locked(username, max(self.limiter.blocked_for(username, peer), locked_until - time.time()))
            ok = await asyncio.to_thread(passwords.verify_password, request.password, stored or passwords.dummy_hash())
            if not ok or stored is None:
                self.limiter.failed(username, peer)
                if stored is not None:
                    await self.db.write(
                        lambda c: store.login_failed(c, username, time.time(), WINDOW_S, MAX_FAILURES, LOCKOUT_S)
                    )
                raise Unauthenticated("wrong username or password", reason=pb.Errors.WRONG_CREDENTIALS)
            self.limiter.succeeded(username, peer)
            if failures:
                await self.db.write(lambda c: store.login_succeeded(c, username))
        token = secrets.token_urlsafe(32)
        expires_at = time.time() + self.token_ttl_s
        await self.sessions.add(token, username, expires_at)
        return pb.LoginResponse(token=token, expires_at_ms=int(expires_at * 1000), username=username)

    async def WatchPayments(self, request, context):
        user = current_user()
        after = _watch_cursor(request.cursor)
        engine = self.watchers.engine
        with self.watchers.subscribe(user) as wake:
            if after is None:  # from now on
                after = await self.db.read(partial(store.last_position, username=user, engine=engine))
            while True:
                wake.clear()
                rows = await self.db.read(
                    partial(store.events_after, username=user, after=after, limit=WATCH_PAGE, engine=engine)
                )
                for row in rows:
                    after = (row["event_xid"], row["event_id"])
                    yield pb.PaymentEvent(
                        cursor=f"{after[0]}.{after[1]}",
                        payment_id=row["txn_id"],
                        kind=_EVENT_KIND[row["event_kind"]],
                        reason=row["event_reason"],
                        at_ms=int(row["event_at"] * 1000),
                        payment=payment_message(row),
                    )
                if len(rows) < WATCH_PAGE:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), WATCH_RECHECK_S)

    async def ListGateways(self, request, context) -> pb.ListGatewaysResponse:
        live = await self.membership.live()
        return pb.ListGatewaysResponse(
            gateways=[
                pb.GatewayReplica(
                    replica_id=r.replica_id,
                    address=r.address,
                    region=r.region,
                    started_at_ms=int(r.started_at * 1000),
                    heartbeat_at_ms=int(r.heartbeat_at * 1000),
                    in_flight=r.in_flight,
                    committing=self.coordinator.committing if r.replica_id == self.membership.replica_id else 0,
                )
                for r in live
            ],
            answered_by=self.membership.replica_id,
        )

    async def Logout(self, request, context) -> pb.LogoutResponse:
        await self.sessions.revoke(current_token())
        return pb.LogoutResponse()

    async def LinkAccount(self, request, context) -> pb.LinkAccountResponse:
        user = current_user()
        bank, account_id = await self._own_account(context, request.account, user)
        links = await self.links.link(user, bank, account_id)
        return pb.LinkAccountResponse(accounts=[pb.AccountRef(bank=b, account_id=a) for b, a in links])

    async def Balance(self, request, context) -> pb.BalanceResponse:
        user = current_user()
        links = await self.links.of(user)
        await self.coordinator.settle(user)  # read-your-writes: the commits already answered to this payer first
        answers = await asyncio.gather(*(self._bank_balance(context, b, a) for b, a in links))
        return pb.BalanceResponse(accounts=answers, total_cents=sum(a.balance_cents for a in answers if a.reachable))

    async def _bank_balance(self, context, bank: str, account_id: str) -> pb.AccountBalance:
        ref = pb.AccountRef(bank=bank, account_id=account_id)
        if bank not in self.banks:
            return pb.AccountBalance(account=ref, reachable=False)
        try:
            answer = await self._bank_read(context, bank, "Balance", pb.BankBalanceRequest(account_id=account_id))
        except (grpc.aio.AioRpcError, TimeoutError):
            return pb.AccountBalance(account=ref, reachable=False)
        return pb.AccountBalance(
            account=ref, balance_cents=answer.balance_cents, available_cents=answer.available_cents, reachable=True
        )

    async def Pay(self, request, context) -> pb.Payment:
        user = current_user()
        source = getattr(request, "from")
        payer = await self._named_payer(user, source) if source.bank or source.account_id else None
        key = limits.idempotency_key(request.idempotency_key)
        amount = limits.amount_cents(request.amount_cents)
        from_bank, from_account = payer or await self._default_payer(user, key)
        to_bank = limits.bank(request.to.bank, "to.bank")
        to_account = limits.account(request.to.account_id, "to.account_id")
        self._known_bank(from_bank, "from.bank")
        self._known_bank(to_bank, "to.bank")
        if (from_bank, from_account) == (to_bank, to_account):
            raise InvalidInput("payer and payee are the same account", field="to")
        fields = store.PaymentFields(user, key, from_bank, from_account, to_bank, to_account, amount)
        note(amount_cents=amount)
        result = await self.coordinator.pay(fields, time_left_s(context, self.coordinator.timeout_s))
        note(txn=result.row["txn_id"])
        if result.replayed:
            context.set_trailing_metadata((("idempotent-replayed", "true"),))
        return payment_message(result.row)

    async def _named_payer(self, user: str, source: pb.AccountRef) -> tuple[str, str]:
        """The payer account the request names: well formed (never echo an unbounded
        string in a refusal) and the caller's own."""
        try:
            bank, account_id = (
                limits.bank(source.bank, "from.bank"),
                limits.account(source.account_id, "from.account_id"),
            )
        except InvalidInput as exc:
            raise InvalidInput(f"from: {exc}", field=exc.field) from None
        if (bank, account_id) not in await self.links.of(user) and (bank, account_id) not in await self.links.of(
            user, fresh=True
        ):
            raise PermissionDenied(f"you can pay only from your own accounts; {account_id} at {bank} is not yours")
        return bank, account_id

    async def _default_payer(self, user: str, key: str) -> tuple[str, str]:
        """The payer when the request names none: the caller's only account, or, for a
        retry of a payment whose key is claimed, where the first one paid from (even if
        the user has linked another account since)."""
        links = await self.links.of(user)
        source = links[0] if len(links) == 1 else await self.db.read(lambda c: store.claimed_source(c, user, key))
        if source is None:
            raise InvalidInput(f"you hold {len(links)} accounts: say which one to pay from", field="from")
        return source

    async def GetPayment(self, request, context) -> pb.Payment:
        user = current_user()
        txn_id = limits.txn_id(request.payment_id)
        row = await self.db.read(lambda c: store.visible_payment(c, txn_id, user))
        if row is None:
            raise NotFound(f"no payment {txn_id} of yours", reason=pb.Errors.UNKNOWN_PAYMENT)
        return payment_message(row)

    async def ListPayments(self, request, context) -> pb.ListPaymentsResponse:
        user = current_user()
        size = limits.page_size(request.page_size)
        before = 2**62
        if request.page_token:
            token = request.page_token
            # ASCII digits only ("²".isdigit() is true) and no more than an SQLite integer holds
            if not (token.isascii() and token.isdigit() and len(token) <= 19 and int(token) <= before):
                raise InvalidInput("bad page_token: pass the one a previous page gave", field="page_token")
            before = int(token)
        rows = await self.db.read(lambda c: store.history(c, user, before, size))
        return pb.ListPaymentsResponse(
            payments=[payment_message(r) for r in rows],
            next_page_token=str(rows[-1]["seq"]) if len(rows) == size else "",
        )


_EVENT_KIND = {
    store.EventKind.ACCEPTED: pb.PaymentEvent.ACCEPTED,
    store.EventKind.COMMITTED: pb.PaymentEvent.COMMITTED,
    store.EventKind.DECLINED: pb.PaymentEvent.DECLINED,
    store.EventKind.ABORTED: pb.PaymentEvent.ABORTED,
}


def _watch_cursor(cursor: str) -> store.Position | None:
    """None for "" (from now on), (0, 0) for "0" (from the start), else the cursor's position."""
    if not cursor:
        return None
    if cursor == "0":
        return (0, 0)
    xid, dot, event_id = cursor.partition(".")
    if not (len(cursor) <= 64 and dot and _digits(xid) and _digits(event_id)):
        raise InvalidInput("bad cursor: pass the cursor of an event you received, '0' or nothing", field="cursor")
    return int(xid), int(event_id)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 19


def _refuse_if_locked(username: str, wait_s: float) -> None:
    if wait_s > 0:
        raise ResourceExhausted(
            f"too many failed logins for {username}; try again in {int(wait_s) + 1} s", retry_after_s=wait_s
        )


class DemoService(pb_grpc.DemoServicer):
    """Switches for a presenter; only a gateway started with --demo obeys them."""

    def __init__(self, coordinator: Coordinator, enabled: bool) -> None:
        self.coordinator = coordinator
        self.enabled = enabled

    async def SetSlowMotion(self, request, context) -> pb.SlowMotionResponse:
        pause_ms = limits.slow_motion_ms(request.pause_ms)
        if not self.enabled:
            raise FailedPrecondition(
                "slow motion is for demos: start the gateway with --demo", reason=pb.Errors.DEMO_DISABLED
            )
        self.coordinator.slow_motion_s = pause_ms / 1000
        jsonlog.emit(Event.SLOW_MOTION, msg=f"{pause_ms} ms between phases" if pause_ms else "off")
        return pb.SlowMotionResponse(pause_ms=pause_ms)


class CoordinatorService(pb_grpc.CoordinatorServicer):
    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    async def ResolveTransaction(self, request, context) -> pb.ResolveResponse:
        txn_id = limits.txn_id(request.txn_id)
        note(txn=txn_id)
        decision = await self.coordinator.resolve(txn_id)
        return pb.ResolveResponse(decision=pb.COMMIT if decision == Decision.COMMIT else pb.ABORT)
