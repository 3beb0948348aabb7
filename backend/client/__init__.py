"""The Strife client library: a profile directory (session + outbox), the
gateway client that sends every payment through the outbox, and a background
retrier. Used by `strife client` and by the control room's embedded client.

    from backend.client import GatewayClient, Retrier, ClientError
    async with GatewayClient("127.0.0.1:50060", "certs", "~/.strife/profile") as client:
        await client.login("alice", password)
        delivery = await client.pay("BankB", "B-2001", "12.50", from_bank="BankA")
"""

from backend.client.errors import RETRYABLE_CODES, ClientError
from backend.client.gateway_client import (
    DEFAULT_GATEWAY,
    AccountBalance,
    Balance,
    Delivery,
    GatewayClient,
    History,
    PaymentEventView,
    PaymentView,
    SyncReport,
    backoff_s,
    payment_status,
)
from backend.client.outbox import MAX_QUEUED, Outbox, OutboxEntry, SentEntry
from backend.client.profile import DEFAULT_PROFILE, Profile, Session
from backend.client.retrier import Retrier
from backend.common.discovery import Replica

__all__ = [
    "AccountBalance",
    "Balance",
    "ClientError",
    "DEFAULT_GATEWAY",
    "DEFAULT_PROFILE",
    "Delivery",
    "GatewayClient",
    "History",
    "MAX_QUEUED",
    "Outbox",
    "OutboxEntry",
    "PaymentEventView",
    "PaymentView",
    "Profile",
    "RETRYABLE_CODES",
    "Replica",
    "Retrier",
    "SentEntry",
    "Session",
    "SyncReport",
    "backoff_s",
    "payment_status",
]
