"""Messages a ControlSource posts to the app. Small and immutable."""

from __future__ import annotations

from textual.message import Message

from app.model import Balances, ClientState, LogRecord, OutboxEntry, ProcessInfo, TxnRow


class ProcessesChanged(Message):
    def __init__(self, processes: tuple[ProcessInfo, ...]) -> None:
        super().__init__()
        self.processes = processes


class LogReceived(Message):
    def __init__(self, record: LogRecord) -> None:
        super().__init__()
        self.record = record


class TxnChanged(Message):
    def __init__(self, row: TxnRow) -> None:
        super().__init__()
        self.row = row


class BalancesChanged(Message):
    def __init__(self, balances: Balances) -> None:
        super().__init__()
        self.balances = balances


class OutboxChanged(Message):
    def __init__(self, entries: tuple[OutboxEntry, ...]) -> None:
        super().__init__()
        self.entries = entries


class ClientChanged(Message):
    def __init__(self, state: ClientState) -> None:
        super().__init__()
        self.state = state


class StatsChanged(Message):
    """Committed payments per second over the last seconds (oldest first) and recent latency."""

    def __init__(self, rate_per_s: tuple[int, ...], p50_ms: float | None, p99_ms: float | None) -> None:
        super().__init__()
        self.rate_per_s = rate_per_s
        self.p50_ms = p50_ms
        self.p99_ms = p99_ms
