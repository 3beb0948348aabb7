"""What the control room talks to: a ControlSource.

The app never knows whether the source launches real processes (app/live_source.py)
or replays fixed data (tests/snapshot_source.py). A source reports by calling the
`post` callback it gets in `start` with the messages of app/messages.py; actions
return when done and raise ClientError for an error to show the user.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from textual.message import Message

from backend.client.errors import ClientError  # noqa: F401 - the one error type, re-exported


@dataclass(frozen=True)
class PayOutcome:
    """What came of a payment, as one line to show ("paid 12.50 to BankB/B-2001",
    "declined: insufficient funds", "queued 12.50 to ... (UNAVAILABLE): retrying ...").
    `queued_key`: the idempotency key of a payment left in the offline queue; its final
    answer comes later as a QueuedPaymentAnswered message with that key."""

    text: str
    queued_key: str | None = None

    @property
    def word(self) -> str:
        """paid / declined / queued."""
        return self.text.split(" ", 1)[0].rstrip(":")


class ControlSource(ABC):
    @abstractmethod
    async def start(self, post: Callable[[Message], None]) -> None:
        """Start (launch processes, open channels) and begin posting messages."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop everything started; after this no child process is left."""

    # -- fault toggles (process name: "gateway", "BankA", ...) -------------
    @abstractmethod
    async def kill(self, name: str) -> None:
        """Take a process offline with SIGKILL."""

    @abstractmethod
    async def freeze(self, name: str) -> None:
        """SIGSTOP: the process stays up but answers nothing."""

    @abstractmethod
    async def thaw(self, name: str) -> None:
        """SIGCONT a frozen process."""

    @abstractmethod
    async def restart(self, name: str) -> None:
        """Start a process that is offline or crashed (or stop and start a running one)."""

    # -- the embedded client --------------------------------------------
    @abstractmethod
    async def register(self, username: str, password: str, bank: str, account_id: str) -> None: ...

    @abstractmethod
    async def login(self, username: str, password: str) -> None: ...

    @abstractmethod
    async def logout(self) -> None: ...

    @abstractmethod
    async def pay(
        self,
        to_bank: str,
        to_account: str,
        amount_text: str,
        from_bank: str | None = None,
        from_account: str | None = None,
    ) -> PayOutcome:
        """Pay; `amount_text` as typed ("12.50"). Raises ClientError with INVALID_ARGUMENT
        for a bad amount before anything is sent."""

    @abstractmethod
    async def refresh_client(self) -> None:
        """Fetch balance and history again; the result arrives as a ClientChanged message."""

    @abstractmethod
    async def sync_outbox(self) -> None:
        """Try the queued payments now."""

    @abstractmethod
    async def set_slow_motion(self, pause_ms: int) -> None:
        """Make the gateway pause `pause_ms` between the phases of every payment (0: off);
        the value in force arrives as a SlowMotionChanged message."""

    @abstractmethod
    async def set_traffic(self, per_s: float) -> None:
        """Run simulated clients (the demo users paying each other small amounts through the
        real gateway) at `per_s` payments a second in total; 0 stops sending new ones. What
        comes of them arrives as TrafficChanged messages. Raises ClientError with
        INVALID_ARGUMENT for a rate below 0 or above the limit."""
