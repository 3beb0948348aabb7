"""Bound failed logins per username and per peer address.

After MAX_FAILURES failures within WINDOW_S, further attempts are refused for
LOCKOUT_S. Memory is bounded: at most MAX_TRACKED keys, oldest dropped first.
"""

from __future__ import annotations

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
