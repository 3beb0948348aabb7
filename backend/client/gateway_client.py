"""GatewayClient: the asyncio client of the Strife gateway, with the outbox.

Every payment goes through the outbox: written with a fresh idempotency key
before it is sent, sent again under the same key after a retryable failure,
removed only with a final answer. A queued payment is sent only with the
session of the user who made it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.client.balancer import POLICIES, READS_RETRIED, Balancer, no_op
from backend.client.errors import GATEWAY_UNREACHABLE, ClientError
from backend.client.outbox import Outbox, OutboxEntry
from backend.client.profile import Profile, Session
from backend.common import limits, metrics, money, tls
from backend.common.discovery import Replica, parse_seeds
from backend.common.states import PaymentStatus

DEFAULT_GATEWAY = "127.0.0.1:50060"
CALL_TIMEOUT_S = 5.0  # deadline of every call but Pay and Register
SLOW_CALL_TIMEOUT_S = 15.0  # Register and Login hash a password (scrypt)
PAY_TIMEOUT_S = 15.0  # Pay: 2PC prepare under the gateway's timeout, then commit
CONNECT_WAIT_S = 2.0  # at most this long for a fresh connection attempt before a call
LEASE_S = PAY_TIMEOUT_S + 5.0  # a claimed entry is not due again while its send may be in flight
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
# The gateway keeps idempotency keys at least 24 h. Past that a resend could be
# charged a second time, so an older entry is not sent again: it ends EXPIRED
# and the user checks `history` before paying again.
MAX_ENTRY_AGE_S = 23 * 3600.0
# A tier's Pay tries again on another replica (UNAVAILABLE, or ABORTED while a dead one's
# key waits for its takeover), at most this often, after this pause, within PAY_TIMEOUT_S.
MAX_PAY_TRIES = 40
FAILOVER_WAIT_S = 0.05
WATCH_BACKOFF_CAP_S = 2.0  # a cut watch stream is opened again at least this often
# The gateway's payment status (a proto enum) as the client names it: the one table.
_PAYMENT_STATUS: dict[int, PaymentStatus] = {
    pb.SUCCEEDED: PaymentStatus.SUCCEEDED,
    pb.DECLINED: PaymentStatus.DECLINED,
    pb.PENDING: PaymentStatus.PENDING,
}


def payment_status(proto_status: int) -> PaymentStatus:
    """A pb.PaymentStatus as a PaymentStatus; UNSPECIFIED for a value this client does not know."""
    return _PAYMENT_STATUS.get(proto_status, PaymentStatus.UNSPECIFIED)


def backoff_s(attempts: int, base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S, rng=random.random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(attempts-1))]."""
    exponent = min(max(attempts - 1, 0), 30)
    return rng() * min(cap_s, base_s * (2**exponent))


# ---------------------------------------------------------------- results --
@dataclass(frozen=True)
class AccountBalance:
    bank: str
    account_id: str
    balance_cents: int
    available_cents: int
    reachable: bool


@dataclass(frozen=True)
class Balance:
    username: str
    accounts: tuple[AccountBalance, ...]
    total_cents: int  # over reachable accounts

    @property
    def unreachable_banks(self) -> tuple[str, ...]:
        return tuple(sorted({a.bank for a in self.accounts if not a.reachable}))

    def to_json(self) -> dict:
        return {**asdict(self), "unreachable_banks": list(self.unreachable_banks)}


@dataclass(frozen=True)
class PaymentView:
    payment_id: str
    idempotency_key: str
    direction: str  # "sent" | "received"
    from_bank: str
    from_account: str
    to_bank: str
    to_account: str
    amount_cents: int
    status: PaymentStatus  # SUCCEEDED | DECLINED | PENDING
    reason: str
    created_at: float

    @property
    def counterparty(self) -> str:
        if self.direction == "sent":
            return f"{self.to_bank}/{self.to_account}"
        return f"{self.from_bank}/{self.from_account}"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PaymentEventView:
    """One state change of one of the user's payments (WatchPayments)."""

    cursor: str  # resume after this event with it
    payment_id: str
    kind: str  # ACCEPTED | COMMITTED | DECLINED | ABORTED
    reason: str
    at: float
    idempotency_key: str
    from_bank: str
    from_account: str
    to_bank: str
    to_account: str
    amount_cents: int

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class History:
    payments: tuple[PaymentView, ...]
    next_page_token: str

    def to_json(self) -> dict:
        return {"payments": [p.to_json() for p in self.payments], "next_page_token": self.next_page_token}


@dataclass(frozen=True)
class Delivery:
    """What one send of an outbox entry came to.

    status: SUCCEEDED / DECLINED (final answers from the gateway), REJECTED (a final
    error, in `error`), EXPIRED (too old to resend safely), QUEUED (a retryable
    failure, in `error`: it stays in the outbox until `next_retry_at`)."""

    status: PaymentStatus
    idempotency_key: str
    username: str
    from_bank: str
    from_account: str
    to_bank: str
    to_account: str
    amount_cents: int
    attempts: int
    payment_id: str = ""
    reason: str = ""
    replayed: bool = False
    next_retry_at: float | None = None
    error: ClientError | None = None

    @classmethod
    def of(
        cls,
        entry: OutboxEntry,
        status: PaymentStatus,
        *,
        payment_id: str = "",
        reason: str = "",
        replayed: bool = False,
        next_retry_at: float | None = None,
        error: ClientError | None = None,
    ) -> Delivery:
        return cls(
            status,
            entry.idempotency_key,
            entry.username,
            entry.from_bank,
            entry.from_account,
            entry.to_bank,
            entry.to_account,
            entry.amount_cents,
            entry.attempts,
            payment_id,
            reason,
            replayed,
            next_retry_at,
            error,
        )

    @property
    def final(self) -> bool:
        return self.status != PaymentStatus.QUEUED

    @property
    def payee(self) -> str:
        return f"{self.to_bank}/{self.to_account}"

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "error"}
        out["error"] = self.error.to_json() if self.error else None
        return out


@dataclass
class SyncReport:
    """What one `sync` did for the logged-in user."""

    username: str
    deliveries: list[Delivery] = field(default_factory=list)
    remaining: list[OutboxEntry] = field(default_factory=list)  # still queued for this user
    other_users: int = 0  # entries of other users, untouched
    stopped_by: ClientError | None = None  # why the round stopped early (gateway down, log in again)

    def to_json(self) -> dict:
        return {
            "username": self.username,
            "delivered": [d.to_json() for d in self.deliveries if d.final],
            "retried": [d.to_json() for d in self.deliveries if not d.final],
            "remaining": [e.to_json() for e in self.remaining],
            "other_users": self.other_users,
            "stopped_by": self.stopped_by.to_json() if self.stopped_by else None,
        }


def _invalid(check, value):
    try:
        return check(value)
    except limits.InvalidInput as exc:
        raise ClientError("INVALID_ARGUMENT", str(exc)) from None


def _ends_round(err: ClientError) -> bool:
    """After this failure the other entries would fail the same way: stop the round."""
    return err.code in ("UNAUTHENTICATED", "DEADLINE_EXCEEDED", "CANCELLED") or err.reason == GATEWAY_UNREACHABLE


# ----------------------------------------------------------------- client --
class GatewayClient:
    """One user's view of the gateway through a profile directory.

    Use inside a running event loop: `async with GatewayClient(...) as client:`.
    Every method raises ClientError (code = gRPC status name) on failure."""

    def __init__(
        self,
        gateway: str,
        certs_dir: Path | str,
        profile: Profile | Path | str | None = None,
        role: str = "client",
        *,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
        rng=random.random,
        lb: str = "pick_first",
        region: str | None = None,
    ) -> None:
        """`gateway`: one address, or several ("h:p,h:p": any replicas of the tier; the rest
        are discovered); `lb`: a policy of backend/client/balancer.py; `region`: the replicas
        to prefer. One address with pick_first and no region is one plain channel."""
        self.gateway = gateway
        try:
            self._seeds = parse_seeds(gateway)
        except ValueError as exc:
            raise ClientError("INVALID_ARGUMENT", f"--gateway: {exc}") from None
        if lb not in POLICIES:
            raise ClientError("INVALID_ARGUMENT", f"--lb: use one of {', '.join(POLICIES)}, not {lb[:40]!r}")
        self.lb = lb
        self.region = region
        self._tiered = len(self._seeds) > 1 or lb != "pick_first" or region is not None
        self._balancer: Balancer | None = None
        self.certs_dir = Path(certs_dir)
        self.profile = profile if isinstance(profile, Profile) else Profile(profile)
        self.outbox = Outbox(self.profile.outbox_path)
        self.role = role
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._rng = rng
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.GatewayStub | None = None
        self._sending: set[str] = set()  # keys being sent by this process
        self._sync_lock = asyncio.Lock()
        self.on_outbox_change: Callable[[], None] | None = None  # called when the outbox changed

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None
        if self._balancer is not None:
            await self._balancer.close()
            self._balancer = None

    @property
    def stub(self) -> pb_grpc.GatewayStub:
        if self._stub is None:
            try:
                creds = tls.channel_credentials(self.certs_dir, self.role)
            except OSError as exc:
                raise ClientError(
                    "FAILED_PRECONDITION",
                    f"cannot read the {self.role!r} certificate in {self.certs_dir}/ ({exc.strerror}): run `strife certs`",
                ) from None
            options = [*tls.CHANNEL_OPTIONS, ("grpc.service_config", json.dumps(READS_RETRIED))]
            self._channel = grpc.aio.secure_channel(self.gateway, creds, options=options)
            self._stub = pb_grpc.GatewayStub(self._channel)
        return self._stub

    async def _pick(self) -> tuple[pb_grpc.GatewayStub, Callable[[], None]]:
        """The stub for the next call (a replica of the tier, picked by the balancer), and
        what to call when the call ended."""
        if not self._tiered:
            stub = self.stub
            await self._connected(self._channel)
            return stub, no_op
        if self._balancer is None:
            try:
                balancer = Balancer(self._seeds, self.certs_dir, self.role, self.lb, self.region)
                await balancer.start()
            except OSError as exc:
                raise ClientError(
                    "FAILED_PRECONDITION",
                    f"cannot read the {self.role!r} certificate in {self.certs_dir}/ ({exc.strerror}): run `strife certs`",
                ) from None
            self._balancer = balancer
        stub, done = self._balancer.pick()
        channel = self._balancer.channel
        if channel is not None:
            await self._connected(channel)
        return stub, done

    @property
    def balancer(self) -> Balancer | None:
        """The tier's balancer, once a call made one (None with one plain channel)."""
        return self._balancer

    async def _connected(self, channel) -> None:
        """Give the channel one fresh connection attempt before a call, bounded by
        CONNECT_WAIT_S. A channel that saw the gateway down sits in TRANSIENT_FAILURE
        (failing calls at once) until its reconnect backoff ends; without this, the
        first call after the gateway came back would fail although it is serving."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONNECT_WAIT_S
        state = channel.get_state(try_to_connect=True)
        tried = False
        while state != grpc.ChannelConnectivity.READY:
            if state == grpc.ChannelConnectivity.SHUTDOWN:
                return
            if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE and tried:
                return  # a fresh attempt failed: the gateway is down, let the call say so
            tried = tried or state == grpc.ChannelConnectivity.CONNECTING
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
            except TimeoutError:
                return
            state = channel.get_state(try_to_connect=True)

    async def _call(self, method: str, request, timeout_s: float, session: Session | None = None):
        stub, done = await self._pick()
        try:
            return await getattr(stub, method)(
                request, timeout=timeout_s, metadata=session.metadata if session else None
            )
        except grpc.aio.AioRpcError as exc:
            raise ClientError.from_rpc(exc) from None
        finally:
            done()

    def _changed(self) -> None:
        metrics.OUTBOX_DEPTH.set(self.outbox.count())
        if self.on_outbox_change is not None:
            self.on_outbox_change()

    # ------------------------------------------------------------ session --
    @property
    def session(self) -> Session | None:
        """The saved session (read from the profile each time), or None."""
        return self.profile.load_session()

    def require_session(self) -> Session:
        session = self.session
        if session is None:
            raise ClientError("UNAUTHENTICATED", "not logged in: run `strife client login USER`")
        return session

    async def register(self, username: str, password: str, bank: str, account_id: str) -> str:
        _invalid(limits.username, username)
        _invalid(limits.password, password)
        ref = pb.AccountRef(bank=_invalid(limits.bank, bank), account_id=_invalid(limits.account, account_id))
        answer = await self._call(
            "Register", pb.RegisterRequest(username=username, password=password, account=ref), SLOW_CALL_TIMEOUT_S
        )
        return answer.username

    async def login(self, username: str, password: str) -> Session:
        """Log in and save the session (replacing any other user's). Queued payments
        of `username` become sendable again; other users' stay queued."""
        _invalid(limits.username, username)
        _invalid(limits.password, password)
        answer = await self._call("Login", pb.LoginRequest(username=username, password=password), SLOW_CALL_TIMEOUT_S)
        session = Session(answer.username or username, answer.token, answer.expires_at_ms / 1000.0)
        self.profile.save_session(session)
        try:  # learn the user's accounts, so `pay --from BANK` works offline later
            await self.balance()
        except ClientError:
            pass
        # The user is back: send their queued payments at the next chance.
        await asyncio.to_thread(self.outbox.make_due, session.username, time.time())
        self._changed()
        return self.require_session()

    async def logout(self) -> bool:
        """Forget the session locally; True if the gateway also revoked the token.
        The user's queued payments stay queued until they log in again."""
        session = self.session
        if session is None:
            return False
        revoked = True
        try:
            await self._call("Logout", pb.LogoutRequest(), CALL_TIMEOUT_S, session)
        except ClientError:
            revoked = False
        self.profile.clear_session()
        return revoked

    # -------------------------------------------------------------- reads --
    async def link(self, bank: str, account_id: str) -> list[tuple[str, str]]:
        session = self.require_session()
        ref = pb.AccountRef(bank=_invalid(limits.bank, bank), account_id=_invalid(limits.account, account_id))
        answer = await self._call("LinkAccount", pb.LinkAccountRequest(account=ref), CALL_TIMEOUT_S, session)
        accounts = [(a.bank, a.account_id) for a in answer.accounts]
        self._remember_accounts(session, accounts)
        return accounts

    async def balance(self) -> Balance:
        session = self.require_session()
        answer = await self._call("Balance", pb.BalanceRequest(), CALL_TIMEOUT_S, session)
        accounts = tuple(
            AccountBalance(a.account.bank, a.account.account_id, a.balance_cents, a.available_cents, a.reachable)
            for a in answer.accounts
        )
        self._remember_accounts(session, [(a.bank, a.account_id) for a in accounts])
        return Balance(session.username, accounts, answer.total_cents)

    def _remember_accounts(self, session: Session, accounts: list[tuple[str, str]]) -> None:
        current = self.session
        if current is not None and current.token == session.token and current.accounts != tuple(accounts):
            self.profile.save_session(current.with_accounts(accounts))

    async def history(self, page_size: int = 20, page_token: str = "") -> History:
        session = self.require_session()
        size = _invalid(lambda v: limits.page_size(v), page_size)
        answer = await self._call(
            "ListPayments", pb.ListPaymentsRequest(page_size=size, page_token=page_token), CALL_TIMEOUT_S, session
        )
        return History(tuple(self._view(p, session.username) for p in answer.payments), answer.next_page_token)

    @staticmethod
    def _view(p: pb.Payment, username: str) -> PaymentView:
        source = getattr(p, "from")
        return PaymentView(
            payment_id=p.payment_id,
            idempotency_key=p.idempotency_key if p.username == username else "",
            direction="sent" if p.username == username else "received",
            from_bank=source.bank,
            from_account=source.account_id,
            to_bank=p.to.bank,
            to_account=p.to.account_id,
            amount_cents=p.amount_cents,
            status=payment_status(p.status),
            reason=p.reason,
            created_at=p.created_at_ms / 1000.0,
        )

    async def gateways(self) -> list[Replica]:
        """The live replicas of the gateway tier, as one of them lists them (no login needed)."""
        answer = await self._call("ListGateways", pb.ListGatewaysRequest(), CALL_TIMEOUT_S)
        return [Replica.of(g) for g in answer.gateways]

    async def watch(self, cursor: str = "") -> AsyncIterator[PaymentEventView]:
        """The state changes of the user's payments as they happen, from `cursor` ("" = from
        now, "0" = from the start). A stream cut by a gateway or replica going away is opened
        again from the last cursor received (on any replica), so nothing is missed or repeated."""
        session = self.require_session()
        failures = 0
        while True:
            stub, done = await self._pick()
            call = stub.WatchPayments(pb.WatchPaymentsRequest(cursor=cursor), metadata=session.metadata)
            try:
                async for event in call:
                    failures = 0
                    cursor = event.cursor
                    yield _event_view(event)
            except grpc.aio.AioRpcError as exc:
                err = ClientError.from_rpc(exc)
                if err.code != "UNAVAILABLE":
                    raise err from None
            finally:
                call.cancel()
                done()
            failures += 1
            await asyncio.sleep(backoff_s(failures, self.backoff_base_s, WATCH_BACKOFF_CAP_S, self._rng))

    # ---------------------------------------------------------------- pay --
    def queued(self, all_users: bool = False) -> list[OutboxEntry]:
        """The outbox, oldest first: the logged-in user's entries (everyone's with all_users)."""
        session = self.session
        if all_users or session is None:
            return self.outbox.entries()
        return self.outbox.entries(session.username)

    async def pay(
        self,
        to_bank: str,
        to_account: str,
        amount: str | int,
        from_bank: str | None = None,
        from_account: str | None = None,
    ) -> Delivery:
        """Pay `amount` ("12.50" as typed, or int cents) to an account.

        Validates first (ClientError INVALID_ARGUMENT, nothing queued), writes the
        payment to the outbox, then sends it once. Returns the Delivery: SUCCEEDED,
        DECLINED (with reason) or QUEUED (retryable failure; the outbox keeps it).
        A final error (NOT_FOUND, PERMISSION_DENIED, ...) raises ClientError; the
        entry then leaves the outbox as REJECTED."""
        if isinstance(amount, str):
            amount_cents = _invalid(money.parse_cents, amount)
        else:
            amount_cents = _invalid(limits.amount_cents, int(amount))
        to_bank = _invalid(limits.bank, to_bank)
        to_account = _invalid(limits.account, to_account)
        session = self.require_session()
        src_bank, src_account = await self._resolve_source(session, from_bank, from_account)
        if (src_bank, src_account) == (to_bank, to_account):
            raise ClientError("INVALID_ARGUMENT", "payer and payee are the same account")
        entry = await asyncio.to_thread(
            self.outbox.add, session.username, to_bank, to_account, amount_cents, src_bank, src_account
        )
        # Ours to send from now on: a sync that sends everything, due or not (after a wake for
        # a process back), must not send it too while this send is on its way.
        self._sending.add(entry.idempotency_key)
        try:
            self._changed()
            [claimed] = await asyncio.to_thread(
                self.outbox.claim, session.username, time.time(), LEASE_S, False, [entry.idempotency_key]
            )
            delivery = await self._send(session, claimed)
        finally:
            self._sending.discard(entry.idempotency_key)
        if delivery.status == PaymentStatus.REJECTED:
            assert delivery.error is not None
            raise delivery.error
        return delivery

    async def _resolve_source(
        self, session: Session, from_bank: str | None, from_account: str | None
    ) -> tuple[str, str]:
        """The payer account to put in the outbox entry. Fixed at queue time, so every
        resend is the same request (the gateway fingerprints the resolved account)."""
        if from_bank and from_account:
            return _invalid(limits.bank, from_bank), _invalid(limits.account, from_account)
        if from_bank:
            _invalid(limits.bank, from_bank)
        accounts = list(session.accounts)
        if not accounts:
            try:
                accounts = [(a.bank, a.account_id) for a in (await self.balance()).accounts]
            except ClientError as exc:
                if not exc.retryable:
                    raise
                if from_bank:
                    raise ClientError(
                        exc.code, f"cannot find your account at {from_bank} ({exc.message}); try again later"
                    ) from None
                return "", ""  # the gateway picks the only account, or says to choose
        mine = [a for a in accounts if from_bank is None or a[0] == from_bank]
        if len(mine) == 1:
            return mine[0]
        held = ", ".join(f"{b}/{a}" for b, a in accounts) or "none"
        if not mine:
            raise ClientError("NOT_FOUND", f"you hold no account at {from_bank} (your accounts: {held})")
        raise ClientError(
            "INVALID_ARGUMENT",
            f"you hold {len(mine)} accounts{' at ' + from_bank if from_bank else ''} ({held}): say which one to pay from",
        )

    async def _send(self, session: Session, entry: OutboxEntry) -> Delivery:
        """Send one claimed entry under its key and record what came of it."""
        assert entry.username == session.username, "a payment is sent only with its own user's session"
        if time.time() - entry.created_at > MAX_ENTRY_AGE_S:
            message = "not sent: queued for more than 23 h, past the gateway's idempotency window; check history"
            await asyncio.to_thread(
                self.outbox.finish, entry.idempotency_key, PaymentStatus.EXPIRED, "DEADLINE_EXCEEDED", message
            )
            self._changed()
            return Delivery.of(entry, PaymentStatus.EXPIRED, error=ClientError("DEADLINE_EXCEEDED", message))
        request = pb.PayRequest(
            idempotency_key=entry.idempotency_key,
            to=pb.AccountRef(bank=entry.to_bank, account_id=entry.to_account),
            amount_cents=entry.amount_cents,
            **{"from": pb.AccountRef(bank=entry.from_bank, account_id=entry.from_account)},
        )
        self._sending.add(entry.idempotency_key)
        try:
            payment, trailers = await self._pay_once(request, session)
        except ClientError as err:
            return await self._failed(entry, err)
        finally:
            self._sending.discard(entry.idempotency_key)
        status = payment_status(payment.status)
        if status not in (PaymentStatus.SUCCEEDED, PaymentStatus.DECLINED):
            return await self._failed(entry, ClientError("ABORTED", f"payment {payment.payment_id} is {status}"))
        replayed = any(k == "idempotent-replayed" for k, _ in trailers)
        await asyncio.to_thread(
            self.outbox.finish, entry.idempotency_key, status, "OK", payment.reason, payment.payment_id
        )
        self._changed()
        return Delivery.of(entry, status, payment_id=payment.payment_id, reason=payment.reason, replayed=replayed)

    async def _pay_once(self, request: pb.PayRequest, session: Session) -> tuple[pb.Payment, tuple]:
        """Send one Pay and get its final answer. On a tier, a replica that died under the
        call (UNAVAILABLE) or a key still in flight at one that died (ABORTED until a survivor
        takes its work over) is tried again at once, or after the delay the gateway asked for,
        on the replica the balancer picks, under the same key, within PAY_TIMEOUT_S."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PAY_TIMEOUT_S
        tries = 0
        while True:
            tries += 1
            stub, done = await self._pick()
            try:
                call = stub.Pay(request, timeout=max(0.1, deadline - loop.time()), metadata=session.metadata)
                payment = await call
                return payment, await call.trailing_metadata() or ()
            except grpc.aio.AioRpcError as exc:
                err = ClientError.from_rpc(exc)
            finally:
                done()
            wait_s = FAILOVER_WAIT_S if err.code == "UNAVAILABLE" else err.retry_after_s or FAILOVER_WAIT_S
            again = self._tiered and err.code in ("UNAVAILABLE", "ABORTED") and tries < MAX_PAY_TRIES
            if not again or err.reason in ("BREAKER_OPEN", "STORE_UNAVAILABLE", "BANK_UNAVAILABLE"):
                raise err  # nothing another replica would answer better: the outbox retries later
            if loop.time() + wait_s >= deadline:
                raise err
            await asyncio.sleep(wait_s)

    async def _failed(self, entry: OutboxEntry, err: ClientError) -> Delivery:
        if err.retryable:
            if err.code == "UNAUTHENTICATED":
                err = ClientError(err.code, f"{err.message} (queued: log in as {entry.username} to send it)")
            delay_s = backoff_s(entry.attempts, self.backoff_base_s, self.backoff_cap_s, self._rng)
            next_at = time.time() + max(delay_s, err.retry_after_s or 0.0)  # never sooner than the gateway asked
            await asyncio.to_thread(self.outbox.retry_later, entry.idempotency_key, err.code, err.message, next_at)
            self._changed()
            return Delivery.of(entry, PaymentStatus.QUEUED, next_retry_at=next_at, error=err)
        await asyncio.to_thread(
            self.outbox.finish, entry.idempotency_key, PaymentStatus.REJECTED, err.code, err.message
        )
        self._changed()
        return Delivery.of(entry, PaymentStatus.REJECTED, error=err)

    async def resend(self, key: str) -> Delivery:
        """Send one queued entry of the logged-in user now, whatever its next_retry_at."""
        session = self.require_session()
        claimed = await asyncio.to_thread(self.outbox.claim, session.username, time.time(), LEASE_S, False, [key])
        if not claimed:
            raise ClientError("NOT_FOUND", f"no queued payment {key} of {session.username}")
        return await self._send(session, claimed[0])

    async def sync(self, due_only: bool = False) -> SyncReport:
        """Send the logged-in user's queued payments now, oldest first (only those whose
        retry time has come with due_only). Entries of other users are never touched, nor
        those this process is sending. Without due_only an entry leased by another process
        may be sent too: the gateway answers one of the two sends (same key) and the other
        ABORTED, "in progress", so nothing is charged twice.
        Stops the round early when the gateway is unreachable or the session is refused."""
        session = self.require_session()
        async with self._sync_lock:
            report = SyncReport(session.username)
            now = time.time()
            queued = await asyncio.to_thread(self.outbox.entries, session.username)
            keys = [
                e.idempotency_key
                for e in queued
                if e.idempotency_key not in self._sending and (not due_only or e.next_retry_at <= now)
            ]
            for key in keys:
                if key in self._sending:
                    continue  # a pay or resend of this process took it meanwhile
                claimed = await asyncio.to_thread(
                    self.outbox.claim, session.username, time.time(), LEASE_S, due_only, [key]
                )
                if not claimed:
                    continue  # finished or taken by another sender meanwhile
                delivery = await self._send(session, claimed[0])
                report.deliveries.append(delivery)
                if delivery.error is not None and not delivery.final and _ends_round(delivery.error):
                    report.stopped_by = delivery.error
                    assert delivery.next_retry_at is not None  # a queued delivery has its next try
                    await asyncio.to_thread(self.outbox.defer, session.username, delivery.next_retry_at)
                    break
            report.remaining = await asyncio.to_thread(self.outbox.entries, session.username)
            report.other_users = await asyncio.to_thread(self.outbox.count) - len(report.remaining)
            return report


_EVENT_KINDS = {
    pb.PaymentEvent.ACCEPTED: "ACCEPTED",
    pb.PaymentEvent.COMMITTED: "COMMITTED",
    pb.PaymentEvent.DECLINED: "DECLINED",
    pb.PaymentEvent.ABORTED: "ABORTED",
}


def _event_view(event: pb.PaymentEvent) -> PaymentEventView:
    p = event.payment
    source = getattr(p, "from")
    return PaymentEventView(
        cursor=event.cursor,
        payment_id=event.payment_id,
        kind=_EVENT_KINDS.get(event.kind, "UNSPECIFIED"),
        reason=event.reason,
        at=event.at_ms / 1000,
        idempotency_key=p.idempotency_key,
        from_bank=source.bank,
        from_account=source.account_id,
        to_bank=p.to.bank,
        to_account=p.to.account_id,
        amount_cents=p.amount_cents,
    )
