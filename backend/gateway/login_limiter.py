"""Bound failed logins per username and per peer address.

After MAX_FAILURES failures within WINDOW_S, further attempts are refused for
LOCKOUT_S. Memory is bounded: at most MAX_TRACKED keys, oldest dropped first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict

MAX_FAILURES = 5
WINDOW_S = 60.0
LOCKOUT_S = 30.0
MAX_TRACKED = 10_000


def _peer_host(peer: str) -> str:
    # "ipv4:127.0.0.1:53211" -> "ipv4:127.0.0.1"
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer


class LoginLimiter:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}  # username -> (lock, attempts using it)

    @contextlib.asynccontextmanager
    async def one_at_a_time(self, username: str):
        """Check, verify and record one attempt per username at a time, so concurrent
        guesses cannot all pass the check before the first failure is recorded.
        Memory: one lock per username with an attempt under way."""
        lock, users = self._turns.get(username, (asyncio.Lock(), 0))
        self._turns[username] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[username]
            if users == 1:
                del self._turns[username]
            else:
                self._turns[username] = (lock, users - 1)

    def _keys(self, username: str, peer: str) -> tuple[str, str]:
        return f"user:{username}", f"peer:{_peer_host(peer)}"

    def blocked_for(self, username: str, peer: str) -> float:
        now = self._clock()
        return max(self._locked_until.get(k, 0.0) - now for k in self._keys(username, peer))

    def failed(self, username: str, peer: str) -> None:
        now = self._clock()
        for key in self._keys(username, peer):
            recent = [t for t in self._failures.pop(key, []) if now - t < WINDOW_S] + [now]
            self._failures[key] = recent
            # a peer gets more room than one username: many users may share an address
            limit = MAX_FAILURES if key.startswith("user:") else MAX_FAILURES * 4
            if len(recent) >= limit:
                self._locked_until[key] = now + LOCKOUT_S
        while len(self._failures) > MAX_TRACKED:
            old, _ = self._failures.popitem(last=False)
            self._locked_until.pop(old, None)

    def succeeded(self, username: str, peer: str) -> None:
        self._failures.pop(self._keys(username, peer)[0], None)
